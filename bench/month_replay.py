"""Replay a month of call-log history through the embedded stack and check the history.

Run: .venv/bin/python bench/month_replay.py [--rows 32000] [--days 31] [--start 2026-10-01]

Not a test: it prints figures. It generates a month-long call log (several queues and
channels, Europe/Berlin with its October fall-back day), starts the embedded broker and
Redis (`stream.embedded.start_stack()`) and one `ccpulse worker` on the event clock, runs
`ccpulse replay` and times it, then runs `ccpulse report` for the whole month (center and
each queue, plus the last week, and `--by interval` for center) and compares it with the
independent oracle (tests/oracle.py) computed from the same CSV (read under the replay rule
by tests/calllog.py): counts exactly, ratios to 1e-9. The worker's RSS is sampled every
second from /proc/<pid>/status (VmRSS); the first and last quarter of the run are compared
to show whether memory grows with history (it should not: state is bounded by retention).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import calllog  # noqa: E402
import eventgen  # noqa: E402
import oracle  # noqa: E402
from stream import embedded  # noqa: E402


def make_log(rows_wanted: int, days: int, start: datetime, tz: str, seed: int) -> str:
    """`days` consecutive generated days, kept to what a call log can say, ≥ rows_wanted rows."""
    per_day = math.ceil(rows_wanted / days / 0.86)  # ~14 % of calls transfer or stay open
    while True:
        events = []
        for k in range(days):
            day = eventgen.random_day(seed + k, per_day, start + timedelta(days=k), tz=tz)
            events += [e for e in day if e["type"] not in ("interaction.message", "survey.responded")]
        text = eventgen.to_call_log_csv(events)
        if text.count("\n") - 1 >= rows_wanted:
            return text
        per_day = math.ceil(per_day * 1.05)


class RssSampler(threading.Thread):
    """VmRSS of one process every `every` seconds, as (monotonic time, kB)."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                with open(f"/proc/{self.pid}/status") as fh:
                    for line in fh:
                        if line.startswith("VmRSS:"):
                            self.samples.append((time.monotonic(), int(line.split()[1])))
                            break
            except OSError:
                return
            self.stop_event.wait(self.every)

    def between(self, t0: float, t1: float) -> list[int]:
        return [kb for t, kb in self.samples if t0 <= t <= t1]


def wait_ready(port: int, worker: subprocess.Popen, timeout: float) -> bool:
    """True once the worker's /readyz answers 200 (partitions assigned and restored)."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
            return True
        except OSError:
            time.sleep(0.2)
    return False


def worker_rejections(port: int) -> dict[str, float]:
    """cc_events_rejected_total by reason from the worker's /metrics (non-zero only)."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError as exc:
        return {"(metrics unavailable)": 0.0, str(exc)[:60]: 0.0}
    out = {}
    for line in text.splitlines():
        if line.startswith("cc_events_rejected_total{"):
            name, _, value = line.rpartition(" ")
            if float(value):
                out[name.split('"')[1]] = float(value)
    return out


def run_cli(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32000, help="call-log rows (calls), at least")
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--start", default="2026-10-01", help="first local day")
    ap.add_argument("--tz", default="Europe/Berlin")
    ap.add_argument("--seed", type=int, default=500)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="also write the call log here")
    args = ap.parse_args()
    zone = ZoneInfo(args.tz)
    first_day = datetime.fromisoformat(args.start)

    t = time.monotonic()
    text = make_log(args.rows, args.days, first_day, args.tz, args.seed)
    rows = text.count("\n") - 1
    queues = sorted({r["queue"] for r in csv.DictReader(io.StringIO(text))})
    print(f"call log        {rows} calls over {args.days} days from {args.start} ({args.tz}), "
          f"queues {', '.join(queues)}  [{time.monotonic() - t:.1f}s to generate]")

    t = time.monotonic()
    events = calllog.events_from_call_log(text, args.tz)
    cfg = oracle.OracleConfig(timezone=args.tz)
    now = max(oracle.parse_ts(e["ts"]) for e in events) + timedelta(days=1)
    all_facts = oracle.facts(events, cfg, now)
    print(f"oracle          {len(events)} events, {len(all_facts)} facts  "
          f"[{time.monotonic() - t:.1f}s]")

    work = Path(tempfile.mkdtemp(prefix="ccpulse-month-"))
    path = args.keep or work / "calls.csv"
    path.write_text(text, encoding="utf-8")
    stack = embedded.start_stack(args.partitions, work)
    worker = None
    sampler = None
    try:
        env = {**os.environ, "CCPULSE_BROKER_URL": stack.broker_url,
               "CCPULSE_REDIS_URL": stack.redis_url, "CCPULSE_CLOCK": "event",
               "CCPULSE_TIMEZONE": args.tz, "CCPULSE_PARTITIONS": str(args.partitions),
               "CCPULSE_WEB_PORT": str(embedded.free_port()),
               "CCPULSE_DATA_DIR": str(work / "data")}
        worker = subprocess.Popen(embedded.python_cmd("worker"), env=env, cwd=str(ROOT),
                                  stdout=open(work / "worker.log", "ab"), stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        port = int(env["CCPULSE_WEB_PORT"])
        t = time.monotonic()
        if not wait_ready(port, worker, 120):
            print(f"the worker did not become ready; logs in {work}")
            return 1
        print(f"worker ready    in {time.monotonic() - t:.1f}s (pid {worker.pid})")
        sampler = RssSampler(worker.pid)
        sampler.start()

        t0 = time.monotonic()
        replay = run_cli(["replay", str(path), "--timezone", args.tz, "--wait", "3000"], env, 3600)
        t1 = time.monotonic()
        print("--- ccpulse replay")
        print(replay.stdout.rstrip())
        if replay.returncode != 0:
            print(replay.stderr[-2000:])
            print(f"replay failed with exit code {replay.returncode}; logs in {work}")
            return 1
        wall = t1 - t0
        rejected = worker_rejections(port)
        print(f"worker rejected {rejected or 'nothing'}")
        print(f"--- replay wall time {wall:.1f}s, {len(events) / wall:,.0f} events/s, "
              f"{rows / wall:,.0f} calls/s (CSV read, produce, consume, publish)")

        # the month, each queue, the last week, and every interval of the center
        month_lo = first_day.replace(tzinfo=zone).isoformat()
        month_hi = (first_day + timedelta(days=args.days + 1)).replace(tzinfo=zone).isoformat()
        week_lo = (first_day + timedelta(days=args.days - 7)).replace(tzinfo=zone).isoformat()
        checks = [("center", month_lo, month_hi), *[(f"queue:{q}", month_lo, month_hi) for q in queues],
                  ("center", week_lo, month_hi)]
        all_ok = True
        t = time.monotonic()
        for scope, lo, hi in checks:
            rep = run_cli(["report", "--scope", scope, "--from", lo, "--to", hi, "--format", "json"],
                          env, 120)
            if rep.returncode != 0:
                print(f"report {scope}: exit {rep.returncode}: {rep.stderr.strip()}")
                all_ok = False
                continue
            got = json.loads(rep.stdout)
            expected = calllog.range_kpis(all_facts, cfg, scope, calllog.read_ts(lo, zone),
                                          calllog.read_ts(hi, zone))
            diff = calllog.mismatches(expected, got)
            all_ok &= not diff
            print(f"report {scope:<20} [{lo[:10]}, {hi[:10]}) intervals {got['intervals']:>5} "
                  f"offered {got['offered']:>6}/{expected['offered']:<6} "
                  f"aht_s {got.get('aht_s', float('nan')):9.3f}/{expected.get('aht_s', float('nan')):<9.3f} "
                  f"{'match' if not diff else 'MISMATCH ' + diff[0][:300]}")
        rep = run_cli(["report", "--scope", "center", "--from", month_lo, "--to", month_hi,
                       "--by", "interval", "--format", "json"], env, 120)
        doc = json.loads(rep.stdout)
        wanted = {start: k for (s, start), k in oracle.intervals(events, cfg, now).items()
                  if s == "center"}
        got_rows = {r["start"]: r for r in doc["intervals"]}
        bad = [s for s in wanted if s not in got_rows or calllog.mismatches(wanted[s], got_rows[s])]
        extra = [s for s in got_rows if s not in wanted]
        all_ok &= not bad and not extra
        print(f"report center --by interval: {len(got_rows)} intervals, oracle {len(wanted)}, "
              f"{len(bad)} missing or different, {len(extra)} extra"
              + (f" (first: {sorted(bad, key=datetime.fromisoformat)[:3]})" if bad else ""))
        print(f"--- reports {time.monotonic() - t:.1f}s; match with the oracle: "
              f"{'YES' if all_ok else 'NO'}")

        samples = sampler.between(t0, t1)
        if len(samples) >= 4:
            q = len(samples) // 4
            first, last = samples[:q], samples[-q:]
            mean_first, mean_last = sum(first) / len(first), sum(last) / len(last)
            print(f"--- worker RSS from ready to replayed ({len(samples)} samples, 1/s): "
                  f"first quartile mean {mean_first / 1024:.1f} MiB, "
                  f"last quartile mean {mean_last / 1024:.1f} MiB "
                  f"({(mean_last / mean_first - 1) * 100:+.1f} %), peak {max(samples) / 1024:.1f} MiB")
        else:
            print(f"--- worker RSS: only {len(samples)} samples")
        return 0 if all_ok else 2
    finally:
        if sampler is not None:
            sampler.stop_event.set()
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(5)
        stack.stop()
        print(f"logs in {work}")


if __name__ == "__main__":
    sys.exit(main())
