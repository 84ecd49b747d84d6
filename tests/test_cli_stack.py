"""`ccpulse up` / `ccpulse demo`: everything starts, and Ctrl-C leaves no process or port behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_sync

from stream import embedded

ROOT = Path(__file__).resolve().parent.parent


def _descendants(pid: int) -> set[int]:
    """Every process whose ancestry reaches pid (from /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, frontier = set(), {pid}
    while frontier:
        nxt = {p for p, pp in parents.items() if pp in frontier and p not in out}
        out |= nxt
        frontier = nxt
    return out


def run_and_interrupt(args: list[str], check) -> str:
    web_port = embedded.free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", *args, "--web-port", str(web_port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    text = "".join(lines)
    broker = int(re.search(r"broker\s+kafka://127.0.0.1:(\d+)", text).group(1))
    redis_port = int(re.search(r"redis\s+redis://127.0.0.1:(\d+)", text).group(1))
    children = _descendants(proc.pid)
    assert children, text
    try:
        check(redis_port, web_port)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped." in out
    time.sleep(0.5)
    alive = [p for p in children if os.path.exists(f"/proc/{p}") and
             open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    assert not alive, f"orphans left: {alive}"
    for port in (broker, redis_port, web_port):
        assert not embedded.port_open(port), f"port {port} still bound"
    return text


def test_up_starts_a_working_stack_and_ctrl_c_cleans_up():
    def check(redis_port, web_port):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if embedded.port_open(web_port):
                import urllib.request
                try:
                    if b"ready" in urllib.request.urlopen(f"http://127.0.0.1:{web_port}/readyz", timeout=2).read():
                        return
                except Exception:
                    pass
            time.sleep(0.5)
        logs = sorted(Path("/tmp").glob("ccpulse-*/worker.log"), key=lambda p: p.stat().st_mtime)
        pytest.fail("worker never became ready: " + (logs[-1].read_text()[-3000:] if logs else ""))

    run_and_interrupt(["up", "--partitions", "2"], check)


def test_demo_shows_kpis_moving_within_15_seconds_with_all_channels():
    def check(redis_port, web_port):
        client = redis_sync.Redis(port=redis_port)
        deadline = time.monotonic() + 90
        seen = {}
        while time.monotonic() < deadline:
            h = client.hgetall("cc:kpi:center:15m")
            offered = int(h.get(b"offered", b"0"))
            channels = {k.decode().split(":")[3] for k in client.scan_iter("cc:kpi:channel:*:15m")}
            seen = {"offered": offered, "channels": channels}
            if offered >= 3 and {"voice", "chat", "sms"} <= channels:
                break
            time.sleep(0.5)
        assert seen.get("offered", 0) >= 3, seen
        assert {"voice", "chat", "sms"} <= seen["channels"], seen
        import urllib.request
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5).read()
        assert b'cc_events_total{channel="voice"' in metrics

    run_and_interrupt(["demo", "--partitions", "2", "--rate", "20", "--wallboard-port",
                       str(embedded.free_port())], check)
