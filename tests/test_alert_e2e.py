"""A real AHT-spike alert end to end, and the real /metrics against promtool and the rules.

`test_aht_spike_alert_fires_for_that_queue_only`: Debian's `prometheus` on a free port
scrapes a real `ccpulse worker` fed by the simulator, which injects an AHT spike on one
queue. Time is compressed 60x everywhere, consistently:

* the simulator's contact-center time runs 60x faster than the wall clock (one simulated
  minute per second, `speedup=60`), and its event times end at "now", so the wall-clock
  worker sees a busy contact center whose handle-time histogram grows 60x faster than in
  real life (its ACW timeout is set longer than the run: see the test);
* the shipped `deploy/prometheus/rules/*.yml` are copied with every PromQL range, offset
  and `for:` divided by 60 (15m -> 15s, 2h -> 120s, for 5m -> 5s) and nothing else changed
  — the test checks that — so what fires is the shipped logic;
* Prometheus scrapes and evaluates every second.

The alert must reach `firing` in `/api/v1/alerts` for the spiking queue, and the other
queues must never have the alert, pending or firing (checked by polling and afterwards over
the whole run with `ALERTS` in a range query).

`test_real_scrape_passes_promtool_and_covers_the_rules_and_dashboard`: a worker that
processed realistic simulated traffic (all channels, messages, surveys, transfers, agents,
a few bad records) serves a scrape that `promtool check metrics` accepts, and that has
samples of every metric the Grafana dashboard and the rules use.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from conftest import wait_for
from stream import embedded
from stream import simulate as sim
from test_deploy_prometheus import (
    dashboard_exprs,
    dashboard_variable_queries,
    metric_names,
    promtool,
    recording_rules,
)
from test_deploy_prometheus import rules as shipped_rules

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"  # Debian package, required
SCALE = 60  # one wall-clock second = one minute of contact-center time

pytestmark = pytest.mark.slow

# ------------------------------------------------------------------ time compression

_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_DUR = r"(?:\d+(?:ms|[smhdwy]))+"
# a range `[15m]`, a subquery `[1h:5m]` / `[1h:]`, or an offset `offset 15m`
_PROMQL_DURATION = re.compile(rf"(?<=\[)\s*{_DUR}\s*(?=[\]:])|(?<=:)\s*{_DUR}\s*(?=\])"
                              rf"|(?<=\boffset)\s+-?{_DUR}")


def duration_seconds(text: str) -> float:
    text = text.strip()
    assert _PART.sub("", text) == "", f"not a Prometheus duration: {text!r}"
    return sum(int(n) * _UNIT_S[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    assert ms > 0, seconds
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def compress_duration(text: str, scale: float = SCALE) -> str:
    return format_duration(duration_seconds(text) / scale)


def compress_promql(expr: str, scale: float = SCALE) -> str:
    """Every range, subquery step and offset divided by `scale`; the rest untouched."""

    def one(m: re.Match) -> str:
        text = m.group(0)
        lead = text[: len(text) - len(text.lstrip())]
        body = text.strip()
        sign = "-" if body.startswith("-") else ""
        return f"{lead}{sign}{compress_duration(body.lstrip('-'), scale)}"

    return _PROMQL_DURATION.sub(one, expr)


def compress_rule_file(src: Path, dst: Path, scale: float = SCALE) -> dict:
    doc = yaml.safe_load(src.read_text())
    for group in doc["groups"]:
        if "interval" in group:
            group["interval"] = compress_duration(group["interval"], scale)
        for rule in group["rules"]:
            rule["expr"] = compress_promql(rule["expr"], scale)
            if "for" in rule:
                rule["for"] = compress_duration(rule["for"], scale)
    dst.write_text(yaml.safe_dump(doc, sort_keys=False, width=1000))
    return doc


def test_compression_changes_only_durations(tmp_path):
    assert compress_promql("rate(x[15m]) / rate(y[2h] offset 15m)") == "rate(x[15s]) / rate(y[120s] offset 15s)"
    assert compress_promql("avg_over_time(a:b:c[1h:5m] offset 1h30m)") == "avg_over_time(a:b:c[60s:5s] offset 90s)"
    assert compress_promql("g:h_offset15m[5m]") == "g:h_offset15m[5s]"  # names untouched
    assert compress_duration("5m") == "5s" and compress_duration("90s", 120) == "750ms"
    anything = re.compile(_PROMQL_DURATION.pattern)
    for path in sorted(RULES.glob("*.yml")):
        out = tmp_path / path.name
        compress_rule_file(path, out)
        orig = {(r.get("alert") or r["record"]): r for g in yaml.safe_load(path.read_text())["groups"]
                for r in g["rules"]}
        new = {(r.get("alert") or r["record"]): r for g in yaml.safe_load(out.read_text())["groups"]
               for r in g["rules"]}
        assert orig.keys() == new.keys()
        for name, rule in orig.items():
            assert anything.sub("D", rule["expr"]) == anything.sub("D", new[name]["expr"]), name
            assert {k: v for k, v in rule.items() if k not in ("expr", "for")} == \
                {k: v for k, v in new[name].items() if k not in ("expr", "for")}, name
            if "for" in rule:
                assert duration_seconds(new[name]["for"]) * SCALE == duration_seconds(rule["for"])
        proc = subprocess.run([promtool(), "check", "rules", str(out)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    spike = yaml.safe_load((tmp_path / "alerts.yml").read_text())["groups"][0]["rules"][0]
    assert spike["alert"] == "CcpulseAhtSpike" and spike["for"] == "5s"
    recording = yaml.safe_load((tmp_path / "recording.yml").read_text())
    exprs = {r["record"]: r["expr"] for g in recording["groups"] for r in g["rules"]}
    assert "[120s] offset 15s" in exprs["queue:cc_handle_time_seconds:avg2h_offset15m"]
    assert "[15s]" in exprs["queue:cc_handle_time_seconds_count:increase15m"]


# ------------------------------------------------------------------ Prometheus

class Prometheus:
    """Debian's prometheus on a free port, with time-compressed copies of the shipped rules."""

    def __init__(self, tmp: Path, targets: list[str], scale: float = SCALE) -> None:
        self.port = embedded.free_port()
        rule_paths = []
        for name in ("recording.yml", "alerts.yml"):
            dst = tmp / f"compressed-{name}"
            compress_rule_file(RULES / name, dst, scale)
            rule_paths.append(str(dst))
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_paths,
            # job name as shipped: the rules select up{job="ccpulse"}
            "scrape_configs": [{"job_name": "ccpulse", "metrics_path": "/metrics",
                                "static_configs": [{"targets": targets}]}],
        }
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        check = subprocess.run([promtool(), "check", "config", str(self.config)],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
        (tmp / "tsdb").mkdir()
        self.log = tmp / "prometheus.log"
        self.child = embedded.ChildProcess(
            "prometheus",
            [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h",
             "--log.level=warn"],
            self.port, self.log)

    def start(self) -> "Prometheus":
        self.child.start(timeout=60)
        wait_for(lambda: self._status("/-/ready") == 200, 60, what="prometheus ready")
        return self

    def stop(self) -> None:
        self.child.stop(timeout=10)

    def _status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as resp:
                return resp.status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **params) -> dict:
        query = ("?" + urllib.parse.urlencode(params)) if params else ""
        with urllib.request.urlopen(self.url(path + query), timeout=10) as resp:
            doc = json.loads(resp.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> dict[str, float]:
        """Instant query → {queue label (or "") : value}."""
        data = self.get("/api/v1/query", query=expr)
        return {r["metric"].get("queue", ""): float(r["value"][1]) for r in data["result"]}

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.get("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name]


# ------------------------------------------------------------------ traffic

SPIKE_QUEUE = "billing"
QUEUES = ("billing", "support", "sales")
RUN_MIN = 70  # simulated minutes, ending at "now" (70 s of wall time at SCALE 60)
SPIKE_AT_MIN = 30  # the spike starts after 30 simulated minutes of normal handle times
SPIKE_FACTOR = 3.0


def spike_simulation(now: float) -> sim.Simulator:
    """Voice only, steady handle times (AHT ~150 s: talk 120 + ACW 30, sigma 0.1), enough
    agents on shift all day (shift 25 h, nobody absent) for the tripled load, no abandons,
    holds, transfers or missing wrap-ups; ~240 contacts an hour per queue (~60 handled per
    15 minutes: three times the alert's volume guard). From minute 30 the handle times of
    `billing` triple (AHT ~450 s: above the 240 s floor and 1.5x its baseline)."""
    start = datetime.fromtimestamp(now, timezone.utc) - timedelta(minutes=RUN_MIN)
    never = {"voice": 86400.0, "chat": 86400.0, "sms": 86400.0}
    cfg = sim.SimConfig(
        seed=11, rate=0.2, queues=QUEUES, agents=150, start=start, duration_s=RUN_MIN * 60.0,
        profile=(1.0,) * 24, channel_mix={"voice": 1.0},
        talk_mean_s={"voice": 120.0, "chat": 480.0, "sms": 900.0}, talk_sigma=0.1,
        acw_mean_s={"voice": 30.0, "chat": 45.0, "sms": 30.0}, acw_sigma=0.1,
        hold_probs=(0.0, 0.0), transfer_rate=0.0, missing_wrapup_rate=0.0,
        short_abandon_share=0.0, patience_mean_s=never, survey_rate=0.0, messages=False,
        absent_rate=0.0, shift_hours=25.0,
        aht_spike=(SPIKE_QUEUE, SPIKE_AT_MIN * 60.0, RUN_MIN * 60.0, SPIKE_FACTOR))
    return sim.Simulator(cfg)


def topic_map(unique) -> dict[str, str]:
    return {sim.TOPIC_INTERACTIONS: unique.interactions, sim.TOPIC_AGENTS: unique.agents,
            sim.TOPIC_SURVEYS: unique.surveys}


class Feeder(threading.Thread):
    """Sends a simulator's records in a thread at `speedup` x event time, until stopped."""

    def __init__(self, stack, unique, simulator: sim.Simulator, speedup: float | None) -> None:
        super().__init__(daemon=True)
        self.stack, self.topics, self.sim, self.speedup = stack, topic_map(unique), simulator, speedup
        self.stop_event = threading.Event()
        self.stats = sim.ProduceStats()
        self.error: BaseException | None = None
        self.started_at: float | None = None

    def records(self):
        for rec in self.sim:
            if self.stop_event.is_set():
                return
            yield rec

    def run(self) -> None:
        self.started_at = time.time()
        try:
            asyncio.run(sim.produce(self.records(), self.stack.bootstrap, self.speedup,
                                    topics=self.topics, stats=self.stats))
        except BaseException as exc:  # reported by the test
            self.error = exc

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)


def rfc3339(text: str) -> float:
    """Prometheus' `2024-05-01T10:00:00.123456789Z` (nanoseconds) → epoch seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    assert m, text
    whole = datetime.fromisoformat(m.group(1) + m.group(3).replace("Z", "+00:00")).timestamp()
    return whole + (float("0." + m.group(2)) if m.group(2) else 0.0)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


# ------------------------------------------------------------------ the alert


def test_aht_spike_alert_fires_for_that_queue_only(stack, unique, worker_factory, tmp_path):
    t_begin = time.monotonic()
    # A wall-clock worker, as in production. The simulated contacts end up to 70 simulated
    # minutes in the past, so by the wall clock their ACW timeout (10 min) has passed when
    # `ended` is processed and the wrap-up comes one cycle later: the contact is handled
    # first with the timeout's ACW, then corrected — and cc_handle_time_seconds observes
    # both (the same happens to a backlog after an outage). Live traffic never meets that;
    # here the timeout is made longer than the compressed run instead. (The event clock
    # would suit a compressed run, but a worker that publishes before its first event moves
    # its shards to the wall clock, with the same effect.)
    worker = worker_factory(CCPULSE_KPI__ACW_TIMEOUT_S=str(2 * RUN_MIN * 60))
    prom = Prometheus(tmp_path, [f"127.0.0.1:{worker.web_port}"]).start()
    feeder = None
    try:
        wait_for(lambda: http_status(worker.url("/readyz")) == 200, 60, what="worker ready")
        wait_for(lambda: prom.query('up{job="ccpulse"}').get("") == 1.0, 30,
                 what="prometheus scraping the worker")
        feeder = Feeder(stack, unique, spike_simulation(time.time()), speedup=SCALE)
        feeder.start()
        wait_for(lambda: feeder.started_at, 10, what="feeder start")
        spike_wall = feeder.started_at + SPIKE_AT_MIN * 60.0 / SCALE
        seen: dict[str, set[str]] = {}  # queue -> states seen
        first_firing: float | None = None
        firing_alert = None
        deadline = feeder.started_at + (RUN_MIN * 60.0 / SCALE) + 20
        while time.time() < deadline:
            assert feeder.error is None, feeder.error
            for alert in prom.alerts("CcpulseAhtSpike"):
                q = alert["labels"].get("queue", "")
                seen.setdefault(q, set()).add(alert["state"])
                if q == SPIKE_QUEUE and alert["state"] == "firing" and first_firing is None:
                    first_firing, firing_alert = time.time(), alert
            assert set(seen) <= {SPIKE_QUEUE}, f"AHT spike alert for other queues: {seen}"
            if first_firing is not None:
                break
            time.sleep(0.5)
        figures = {name: prom.query(name) for name in (
            "queue:cc_handle_time_seconds:avg15m", "queue:cc_handle_time_seconds:avg2h_offset15m",
            "queue:cc_handle_time_seconds_count:increase15m")}
        assert first_firing is not None, (
            f"CcpulseAhtSpike never fired for {SPIKE_QUEUE} within the run; states seen {seen}; "
            f"rules now {figures}; sent {feeder.stats.as_dict()}")
        # it fired because of the spike, after the shipped `for` (5m → 5s) in pending
        active_at = rfc3339(firing_alert["activeAt"])
        assert active_at > spike_wall - 1, (active_at, spike_wall)
        assert first_firing >= active_at + 5 - 1.5
        assert firing_alert["labels"]["severity"] == "page"
        assert firing_alert["annotations"]["summary"] == f"AHT spike in queue {SPIKE_QUEUE}"
        assert "more than 1.5x its 2-hour baseline" in firing_alert["annotations"]["description"]
        assert float(firing_alert["value"]) > 240
        # the recorded figures that made it fire (and kept the others quiet)
        avg15 = figures["queue:cc_handle_time_seconds:avg15m"]
        assert set(QUEUES) <= set(avg15), figures
        assert avg15[SPIKE_QUEUE] > 240
        for q in QUEUES:
            if q != SPIKE_QUEUE:
                assert 100 < avg15[q] < 200, figures
        # over the whole run, not just at the polls: the ALERTS series Prometheus wrote at
        # every evaluation have no other queue, and show the spike queue pending then firing
        def alert_series():
            data = prom.get("/api/v1/query_range", query='ALERTS{alertname="CcpulseAhtSpike"}',
                            start=f"{feeder.started_at - 5:.3f}", end=f"{time.time():.3f}",
                            step="0.5")
            got = {(r["metric"].get("queue"), r["metric"].get("alertstate")) for r in data["result"]}
            return got if (SPIKE_QUEUE, "firing") in got else None

        series = wait_for(alert_series, 15, what="the ALERTS series of the firing alert")
        assert series == {(SPIKE_QUEUE, "pending"), (SPIKE_QUEUE, "firing")}, series
        print(f"spike at +{spike_wall - feeder.started_at:.1f}s, pending at "
              f"+{active_at - feeder.started_at:.1f}s, firing seen at "
              f"+{first_firing - feeder.started_at:.1f}s; figures {figures}")
    finally:
        if feeder is not None:
            feeder.stop()
        prom.stop()
    assert time.monotonic() - t_begin < 150


# ------------------------------------------------------------------ the real scrape


def parse_scrape(text: str) -> dict[str, list[tuple[str, float]]]:
    """metric name -> [(labels text, value)] of every sample line."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        assert m, line
        out.setdefault(m.group(1), []).append((m.group(2) or "", float(m.group(3))))
    return out


def used_metric_names() -> set[str]:
    used: set[str] = set()
    for expr in dashboard_exprs() + dashboard_variable_queries():
        used |= metric_names(expr)
    for rule in shipped_rules():
        used |= metric_names(rule["expr"])
    return used


def realistic_simulation(now: float) -> sim.Simulator:
    """All channels, holds, transfers, messages (sentiment), surveys, repeats, agents with
    shifts and breaks, a few bad records; 40 simulated minutes ending now."""
    start = datetime.fromtimestamp(now, timezone.utc) - timedelta(minutes=40)
    return sim.Simulator(sim.SimConfig(
        seed=5, rate=0.5, agents=None, start=start, duration_s=40 * 60.0, profile=(1.0,) * 24,
        survey_delay_median_s=300.0, repeat_delay_median_s=900.0, bad_rate=0.005))


def test_real_scrape_passes_promtool_and_covers_the_rules_and_dashboard(stack, unique,
                                                                        worker_factory, tmp_path):
    from stream.sinks.prometheus_sink import EXPORTED_METRICS, HISTOGRAMS

    worker = worker_factory()
    wait_for(lambda: http_status(worker.url("/readyz")) == 200, 60, what="worker ready")
    feeder = Feeder(stack, unique, realistic_simulation(time.time()), speedup=None)
    feeder.start()
    feeder.join(120)
    assert not feeder.is_alive() and feeder.error is None, feeder.error
    assert feeder.stats.total > 1000
    recorded = set(recording_rules())
    needed = used_metric_names() - recorded - {"up"}
    histograms = set(HISTOGRAMS)
    contract = set()
    for name in EXPORTED_METRICS:
        contract |= {f"{name}{s}" for s in ("_bucket", "_sum", "_count")} if name in histograms else {name}
    assert needed <= contract, f"used but not in the contract: {sorted(needed - contract)}"

    missing: list[str] = []

    def complete() -> str | None:
        text = urllib.request.urlopen(worker.url("/metrics"), timeout=10).read().decode()
        missing[:] = sorted(contract - set(parse_scrape(text)))
        return None if missing else text

    try:
        text = wait_for(complete, 60, interval=1.0, what="samples of every contract metric")
    except AssertionError:
        raise AssertionError(f"no samples of {missing} in the scrape") from None
    samples = parse_scrape(text)
    (tmp_path / "scrape.txt").write_text(text)
    proc = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    # (the linter does lint: a counter without help and _total fails)
    bad = subprocess.run([promtool(), "check", "metrics"], input="# TYPE foo counter\nfoo 1\n",
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "no help text" in bad.stdout + bad.stderr
    # every metric the dashboard and the rules read has samples in the real scrape
    assert needed <= set(samples), sorted(needed - set(samples))
    # and the traffic really went through: events, handle times, bad records
    assert sum(v for _, v in samples["cc_events_total"]) > 1000
    assert sum(v for _, v in samples["cc_handle_time_seconds_count"]) > 100
    assert sum(v for _, v in samples["cc_events_rejected_total"]) > 0
    queues = {re.search(r'queue="([^"]*)"', lbl).group(1) for lbl, _ in samples["cc_required_agents"]}
    assert set(sim.SimConfig().queues) <= queues
