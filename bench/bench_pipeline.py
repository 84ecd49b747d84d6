"""Throughput, freshness, replay and memory of the worker, in one run: `make bench`.

Run: .venv/bin/python bench/bench_pipeline.py [--events N] [--full] [--out docs/BENCHMARKS.md]

Not a test: it starts the embedded stack (tansu + a private redis-server on free loopback
ports), loads one realistic simulator data set (stream/simulate.py: all channels, agents,
surveys, messages) into its own topics, and measures on that same data

1. ceilings: raw aiokafka `getmany` + decode (msgspec, the worker's validating decoder, and
   orjson), and a bare Faust agent with the tuned settings that only counts (subprocess);
2. the pipeline (`ccpulse worker` subprocesses): events/s from the first event consumed to
   the moment Redis shows the last one (every partition applied past its end, then a
   publish cycle of every worker started after that), with one and with two workers, each
   run with its own consumer group and prefix;
3. freshness at a steady 5,000 events/s: production → visible in Redis, via marker contacts;
4. `ccpulse replay` of a generated month-long call log (and 1,000,000 calls with --full);
5. worker RSS over the longest run, first vs last quartile.

Every figure is printed as it comes and all of them are written, with the machine and the
date, to docs/BENCHMARKS.md. Everything it starts is in its own process group and stopped
at the end; it only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("interactions", "agents", "surveys")
SIM_TOPIC = {"interactions": "cc.interactions", "agents": "cc.agent-states",
             "surveys": "cc.surveys"}
PARTITIONS = 4
MARKER_QUEUE = "bench-marker"
MARKER_WAIT_S = 30.0  # a marker not visible this long after the load stopped counts as lost
MARKER_EVERY_S = 0.025  # 1,200 markers in 30 s: a p99 of a dozen samples, not three


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------


def say(msg: str) -> None:
    print(msg, flush=True)


def machine_info() -> dict:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return {"cpus": os.cpu_count(), "model": model, "mem_gib": mem_gib,
            "python": platform.python_version(), "platform": platform.platform(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def fmt_ms(x: float) -> str:
    return f"> {MARKER_WAIT_S:.0f} s (lost)" if x == math.inf else f"{x * 1e3:,.0f} ms"


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{x:,.0f}"


@dataclass
class TopicSet:
    """One run's topics, consumer group and Redis prefix."""

    tag: str

    @property
    def topics(self) -> dict[str, str]:
        return {k: f"b{self.tag}.{SIM_TOPIC[k].split('.', 1)[1]}" for k in KINDS}

    @property
    def deadletter(self) -> str:
        return f"b{self.tag}.deadletter"

    def create(self, bootstrap: str) -> "TopicSet":
        from stream import embedded

        asyncio.run(embedded.create_topics(bootstrap, PARTITIONS,
                                           (*self.topics.values(), self.deadletter)))
        return self

    def customers_topic(self, bootstrap: str, run: str) -> str:
        """A fresh internal FCR topic per run: runs on the same input must not share it."""
        from stream import embedded

        name = f"b{self.tag}.{run}.customers"
        asyncio.run(embedded.create_topics(bootstrap, PARTITIONS, (name,)))
        return name

    def worker_env(self, stack, group: str, prefix: str, **extra) -> dict[str, str]:
        t = self.topics
        env = {"CCPULSE_BROKER_URL": stack.broker_url, "CCPULSE_REDIS_URL": stack.redis_url,
               "CCPULSE_TOPIC_INTERACTIONS": t["interactions"],
               "CCPULSE_TOPIC_AGENTS": t["agents"], "CCPULSE_TOPIC_SURVEYS": t["surveys"],
               "CCPULSE_TOPIC_DEADLETTER": self.deadletter, "CCPULSE_GROUP_ID": group,
               "CCPULSE_TOPIC_CUSTOMERS": self.customers_topic(stack.bootstrap, group),
               "CCPULSE_REDIS_PREFIX": prefix, "CCPULSE_PARTITIONS": str(PARTITIONS),
               "CCPULSE_DATA_DIR": f"/tmp/ccpulse-bench-{group}",
               "CCPULSE_LOG_LEVEL": "warning"}
        env.update(WORKER_ENV)
        env.update({k: str(v) for k, v in extra.items()})
        return env


SOURCE_RUN = "1 worker, from source (CCPULSE_PURE_PYTHON=1)"


def compiled_text() -> str:
    """Whether the workers run the hot modules compiled (scripts/build_compiled.py)."""
    spec = importlib.util.spec_from_file_location("build_compiled",
                                                  ROOT / "scripts" / "build_compiled.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)  # type: ignore[union-attr]
    if build.current():
        return (f"the workers run {len(build.HOT)} hot modules compiled with Cython "
                "(`scripts/build_compiled.py`), except where a run says from source")
    return "**the hot modules are not compiled** (run `make install`): every run is from source"


def one_worker_rate(r: dict) -> tuple[float, list[float]]:
    """The one-worker baseline of two ÷ one: the mean rate of the compiled one-worker runs
    (the first, and the compiled ones of the alternating runs)."""
    runs = [p.rate for m, p in r.get("compile_ab") or [] if m == "compiled"]
    if not runs:
        runs = [r["pipeline"]["1"].rate]
    return sum(runs) / len(runs), runs


def compile_ratio(ab: list) -> str:
    """Mean events/s compiled ÷ from source over the alternating runs, and the CPU ratio."""
    def mean(mode: str, what) -> float:
        vals = [what(p) for m, p in ab if m == mode]
        return sum(vals) / len(vals) if vals else math.nan

    return (f"{mean('compiled', lambda p: p.rate) / mean('source', lambda p: p.rate):.2f}× "
            f"events/s, {mean('compiled', lambda p: p.cpu_s[0]) / mean('source', lambda p: p.cpu_s[0]):.2f}× "
            "worker CPU-s")


CHILDREN: list["Proc"] = []
WORKER_ENV: dict[str, str] = {}  # --worker-env: extra environment of every worker started


def kill_children() -> None:
    """SIGKILL every child process group this bench started and that is still running."""
    for child in CHILDREN:
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)


class Proc:
    """A child process in its own process group (stopped by its own pid only)."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, env={**os.environ, **env}, cwd=str(ROOT),
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        CHILDREN.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(10)


class Worker(Proc):
    def __init__(self, env: dict[str, str], log: Path) -> None:
        from stream import embedded

        self.web_port = embedded.free_port()
        super().__init__([sys.executable, "-m", "stream.cli", "worker"],
                         {**env, "CCPULSE_WEB_PORT": str(self.web_port)}, log)

    def get(self, path: str, timeout: float = 0.5) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}",
                                        timeout=timeout) as resp:
                return json.loads(resp.read())
        except Exception:
            return None

    def cycle_stats(self) -> dict | None:
        """Publish cycles so far from the worker's cc_publish_cycle_seconds histogram."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/metrics",
                                        timeout=2) as resp:
                text = resp.read().decode()
        except Exception:
            return None
        buckets, total, n = {}, 0.0, 0
        phase_s: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("cc_publish_phase_seconds_sum"):
                phase = line.split('phase="', 1)[1].split('"', 1)[0]
                phase_s[phase] = float(line.rsplit(" ", 1)[1])
            if line.startswith("cc_publish_cycle_seconds_bucket"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[le] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("cc_publish_cycle_seconds_sum"):
                total = float(line.rsplit(" ", 1)[1])
            elif line.startswith("cc_publish_cycle_seconds_count"):
                n = int(float(line.rsplit(" ", 1)[1]))
        if not n:
            return None
        share = {le: c / n for le, c in buckets.items()}
        return {"cycles": n, "mean_ms": total / n * 1000, "le_100ms": share.get("0.1", 0.0),
                "le_300ms": share.get("0.3", 0.0),
                "phase_mean_ms": {k: v / n * 1000 for k, v in phase_s.items()}}

    def events(self) -> int:
        h = self.get("/healthz")
        return int(h["events"]) if h else 0

    def ready(self) -> bool:
        h = self.get("/readyz")
        return bool(h and h.get("status") == "ready")


# ---------------------------------------------------------------------------------------
# the data set
# ---------------------------------------------------------------------------------------


def make_dataset(n: int, seed: int, rate: float, end: datetime) -> tuple[list, dict, float]:
    """The first n records of a simulated center at a constant rate, event time ending
    about at `end`."""
    from stream.simulate import SimConfig, Simulator

    # ~n / (events per contact-second) seconds of event time; ends a few minutes before `end`
    per_s = rate * 11.0
    span = n / per_s
    start = (end - timedelta(seconds=span * 1.05 + 120)).replace(microsecond=0)
    # a flat daily profile: the data set's size and mix must not depend on the hour the
    # bench runs at (the daily profile gave 300 k records at 17:40 and 174 k at 20:40)
    sim = Simulator(SimConfig(seed=seed, rate=rate, agents=None, start=start,
                              duration_s=span * 3 + 3600, profile=(1.0,) * 24))
    out = []
    t = time.perf_counter()
    stop_at = end - timedelta(seconds=60)
    for rec in sim:
        if rec.ts > stop_at:
            break
        out.append(rec)
        if len(out) >= n:
            break
    gen_s = time.perf_counter() - t
    mix: dict[str, int] = {}
    for rec in out:
        typ = rec.value[rec.value.find(b'"type":"') + 8:].split(b'"', 1)[0].decode()
        mix[typ] = mix.get(typ, 0) + 1
    info = {"agents": sim.n_agents, "rate": rate, "seed": seed, "start": out[0].ts.isoformat(),
            "end": out[-1].ts.isoformat(), "mix": mix,
            "bytes": sum(len(r.value) for r in out)}
    return out, info, gen_s


async def produce_records(records, bootstrap: str, topics: dict[str, str]
                          ) -> tuple[float, dict[tuple[str, int], int]]:
    """Send every record; returns seconds and the end offset (last + 1) per topic-partition,
    taken from the acks (tansu's ListOffsets answer lags, so it is not asked)."""
    from aiokafka import AIOKafkaProducer

    mapping = {SIM_TOPIC[k]: v for k, v in topics.items()}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    ends: dict[tuple[str, int], int] = {}

    def note(mds) -> None:
        for md in mds:
            key = (md.topic, md.partition)
            if md.offset + 1 > ends.get(key, 0):
                ends[key] = md.offset + 1

    t = time.perf_counter()
    try:
        pending = []
        for rec in records:
            pending.append(await producer.send(mapping[rec.topic], rec.value, key=rec.key))
            if len(pending) >= 20000:
                note(await asyncio.gather(*pending))
                pending = []
        note(await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return time.perf_counter() - t, ends


# ---------------------------------------------------------------------------------------
# ceilings
# ---------------------------------------------------------------------------------------


async def raw_ceiling(bootstrap: str, ts: TopicSet, total: int, decoder: str) -> dict:
    """aiokafka getmany with the worker's fetch settings, decoding every record."""
    import orjson
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream import events as E

    kind_of = {v: k for k, v in ts.topics.items()}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=32 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in ts.topics.values() for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        n = bad = 0
        first = None
        deadline = time.monotonic() + 600
        decode = E.decode
        loads = orjson.loads
        while n < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, recs in batches.items():
                if first is None:
                    first = time.perf_counter()
                kind = kind_of[tp.topic]
                if decoder == "msgspec":
                    for r in recs:
                        try:
                            decode(r.value, kind)
                        except E.Rejected:
                            bad += 1
                else:
                    for r in recs:
                        loads(r.value)
                n += len(recs)
        elapsed = time.perf_counter() - (first or time.perf_counter())
        return {"events": n, "seconds": elapsed, "rate": n / elapsed if elapsed else None,
                "rejected": bad}
    finally:
        await consumer.stop()


FAUST_COUNTER = '''
import json, os, sys, time
import faust
cfg = json.loads(sys.argv[1])
app = faust.App(cfg["app"], broker="kafka://" + cfg["bootstrap"], store="memory://",
                autodiscover=False, web_enabled=False, topic_allow_declare=False,
                topic_partitions=cfg["partitions"], broker_max_poll_records=5000,
                stream_buffer_maxsize=20000, consumer_max_fetch_size=8 * 1024 * 1024,
                broker_session_timeout=6, broker_heartbeat_interval=1,
                consumer_auto_offset_reset="earliest", datadir=cfg["datadir"])
topic = app.topic(*cfg["topics"], value_serializer="raw")
state = {"n": 0, "first": None}

@app.agent(topic)
async def count(stream):
    async for _ in stream:
        n = state["n"] = state["n"] + 1
        if n == 1:
            state["first"] = time.time()
        if n >= cfg["expect"]:
            with open(cfg["out"] + ".tmp", "w") as fh:
                json.dump({"events": n, "first": state["first"], "last": time.time()}, fh)
            os.replace(cfg["out"] + ".tmp", cfg["out"])

sys.argv = [sys.argv[0], "worker", "-l", "warn"]
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
app.main()
'''


def faust_ceiling(stack, ts: TopicSet, total: int, work: Path, timeout: float = 900) -> dict:
    out = work / f"faust-{uuid.uuid4().hex[:6]}.json"
    script = work / "faust_counter.py"
    script.write_text(FAUST_COUNTER)
    cfg = {"app": f"bench-faust-{uuid.uuid4().hex[:8]}", "bootstrap": stack.bootstrap,
           "partitions": PARTITIONS, "topics": list(ts.topics.values()), "expect": total,
           "out": str(out), "datadir": str(work / "faust-data")}
    proc = Proc([sys.executable, str(script), json.dumps(cfg)], {}, work / "faust.log")
    started = time.monotonic()
    cpu0 = cpu_seconds(proc.pid)
    try:
        while not out.exists():
            if not proc.alive():
                raise RuntimeError(f"faust counter exited; see {proc.log}")
            if time.monotonic() - started > timeout:
                raise RuntimeError("faust counter did not finish in time")
            time.sleep(0.1)
        cpu = cpu_seconds(proc.pid) - cpu0
        data = json.loads(out.read_text())
    finally:
        proc.stop()
    elapsed = data["last"] - data["first"]
    return {"events": data["events"], "seconds": elapsed, "rate": data["events"] / elapsed,
            "cpu_s": cpu}


# ---------------------------------------------------------------------------------------
# pipeline runs
# ---------------------------------------------------------------------------------------


def applied_all(health: list[dict], ends: dict) -> bool:
    """Every data partition applied past its last offset by one of the workers (their
    /healthz `positions`; a partition moved by a rebalance counts where it is furthest)."""
    at: dict[str, int] = {}
    for h in health:
        for key, off in (h.get("positions") or {}).items():
            at[key] = max(at.get(key, 0), int(off))
    return all(at.get(f"{topic}:{p}", 0) >= end for (topic, p), end in ends.items() if end > 0)


@dataclass
class RunResult:
    events: int
    seconds: float
    rate: float
    cpu_s: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    rss_trend: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)


def quartile_trend(samples: list[float]) -> tuple[float, float] | None:
    if len(samples) < 8:
        return None
    q = len(samples) // 4
    return statistics.mean(samples[:q]), statistics.mean(samples[-q:])


def center_today(client, prefix: str) -> dict[str, str | None]:
    """The counts of `kpi:center:today` that the cross-check compares."""
    center = {k.decode(): v.decode() for k, v in
              client.hgetall(f"{prefix}kpi:center:today").items()}
    return {k: center.get(k) for k in ("offered", "answered", "abandoned", "handled", "surveys",
                                       "sentiment_samples")}


def parts_offered(client, prefix: str) -> dict[str, tuple[float, float | None]]:
    """Per shard: its published partial's center/today `offered` and `__as_of`."""
    from stream import checkpoint as ck
    from stream.kpi import buckets as b

    out = {}
    for key in sorted(client.scan_iter(f"{prefix}part:*")):
        raw = client.hgetall(key)
        acc = raw.get(b"center|today")
        as_of = raw.get(b"__as_of")
        out[key.decode()[len(prefix):]] = (
            b.unpack(ck.decode(acc))[b.OFFERED] if acc else 0.0,
            float(as_of) if as_of else None)
    return out


REBALANCE_ATTEMPTS = 3  # runs of the 2-worker pipeline until one without a rebalance


def pipeline_run(stack, ts: TopicSet, ends: dict, total: int, workers: int, work: Path,
                 label: str, timeout: float = 1800, reference: dict | None = None,
                 **env_extra) -> RunResult:
    """Workers on the data set from the start; first event consumed → last one in Redis.

    The cross-check reads `kpi:center:today` WALL_TIMEOUTS_QUIET_S + 2.5 s after that. With
    `reference` (the one-worker run's counts), a run that published other counts also
    records each shard's partial and the view read again 5 s later.

    Start: the first /healthz poll (every 20 ms) that shows a consumed event. End: the
    workers' /healthz (polled every 50 ms) show every partition applied past its last
    offset, and then every worker has completed two more publish cycles. The second one
    started after the last record was applied, so it wrote it; the last worker's cycle
    merges the others' parts. That is the moment the KPI keys show everything. Waiting
    for the checkpoints instead, as the bench did until 2026-12-05, added 0-5 s: each
    shard is checkpointed only on its turn, every `checkpoint_interval_s`.
    """
    import redis as redis_sync

    tag = uuid.uuid4().hex[:6]
    group, prefix = f"bench-{label}-{tag}", f"bench{label}{tag}:"
    env = ts.worker_env(stack, group, prefix, **env_extra)
    client = redis_sync.Redis.from_url(stack.redis_url)
    procs = [Worker(env, work / f"worker-{label}-{i}.log") for i in range(workers)]
    cpu0 = {w.pid: cpu_seconds(w.pid) for w in procs}
    # the rest of the machine's CPU: broker, Redis and the bench share the cores with the
    # workers, so the report gives what each of them spends per event
    others = {"broker": stack.broker.proc.pid, "redis": stack.redis.proc.pid,
              "bench": os.getpid()}
    others0 = {k: cpu_seconds(pid) for k, pid in others.items()}
    first = None
    assignments: list[tuple] = []  # each worker's shards, as they changed during the run
    rss: list[float] = []
    last_rss = 0.0
    started = time.monotonic()
    try:
        while first is None:
            for w in procs:
                if not w.alive():
                    raise RuntimeError(f"worker exited; see {w.log}")
                if w.events() > 0:
                    first = time.time()
                    break
            if time.monotonic() - started > 120:
                raise RuntimeError("no worker consumed anything within 120 s")
            time.sleep(0.02)
        cycles_at_done: list[int] | None = None
        while True:
            health = [w.get("/healthz") or {} for w in procs]
            now = time.time()
            if cycles_at_done is None and applied_all(health, ends):
                cycles_at_done = [int(h.get("cycles", 0)) for h in health]
            if cycles_at_done is not None and all(
                    int(h.get("cycles", 0)) >= c + 2 for h, c in zip(health, cycles_at_done)):
                break
            if now - last_rss >= 0.5:
                rss.append(sum(rss_mib(w.pid) or 0.0 for w in procs))
                last_rss = now
                if workers > 1:
                    owned = tuple(tuple((w.get("/readyz") or {}).get("shards", ())) for w in procs)
                    if not assignments or owned != assignments[-1]:
                        assignments.append(owned)
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"pipeline run {label} did not finish within {timeout:.0f}s")
            if not all(w.alive() for w in procs):
                raise RuntimeError(f"a worker exited; see {work}")
            time.sleep(0.05)
        elapsed = now - first
        cpus = [cpu_seconds(w.pid) - cpu0[w.pid] for w in procs]
        others_cpu = {k: cpu_seconds(pid) - others0[k] for k, pid in others.items()}
        # a rebalance while consuming (a worker joining the group after the other started:
        # tansu has no initial rebalance delay) pauses both and re-reads what was not
        # checkpointed: group formation, not the steady rate of two workers
        # (the first sample is taken as consuming starts; records read include the FCR
        # records the workers pass each other through cc.customers)
        read = sum(w.events() for w in procs)
        moved = max(0, len(assignments) - 1)
        # then read the merged picture once it has settled: ACW timeouts and orphan expiry
        # move to the wall clock only after a partition has had no record for
        # WALL_TIMEOUTS_QUIET_S (until then they follow its event watermark), so the counts
        # still change for that long after the last record (2.5 s was too short: 2-worker
        # runs read `handled` 50-250 below the 1-worker run, equal 4 s later)
        from stream.pipeline import WALL_TIMEOUTS_QUIET_S

        time.sleep(WALL_TIMEOUTS_QUIET_S + 2.5)
        extra = {"center_today": center_today(client, prefix),
                 "others_cpu_s": others_cpu, "records_read": read, "reassigned": moved}
        if reference is not None and extra["center_today"] != reference:
            # keep what tells a trailing view from wrong counts: each shard's published
            # partial, and the view read again later
            extra["parts_offered"] = parts_offered(client, prefix)
            time.sleep(5.0)
            extra["center_today_later"] = center_today(client, prefix)
        return RunResult(total, elapsed, total / elapsed, cpus, rss, quartile_trend(rss), extra)
    finally:
        for w in procs:
            w.stop()
        client.close()


def py_spy_profile(stack, ts: TopicSet, work: Path, seconds: float = 20) -> str | None:
    """A py-spy top-of-stack summary of one worker consuming the data set (if py-spy exists),
    running from source: py-spy sees no Python frames inside compiled functions."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        return None
    tag = uuid.uuid4().hex[:6]
    env = ts.worker_env(stack, f"bench-spy-{tag}", f"benchspy{tag}:", CCPULSE_PURE_PYTHON="1")
    w = Worker(env, work / "worker-spy.log")
    try:
        deadline = time.monotonic() + 60
        while w.events() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        out = work / "py-spy.txt"
        subprocess.run([str(spy), "record", "--pid", str(w.pid), "--duration", str(int(seconds)),
                        "--format", "raw", "--output", str(out), "--nonblocking"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 60)
        return summarize_py_spy(out)
    except Exception as exc:  # profiling is a bonus: never fail the bench on it
        return f"py-spy failed: {exc}"
    finally:
        w.stop()


def summarize_py_spy(path: Path, top: int = 15) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [f.split(" (", 1)[0] + " " + f.rsplit("/", 1)[-1].split(":", 1)[0].rstrip(")")
                  for f in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    lines = [f"{total} samples; self time:"]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    lines.append("inclusive (ccpulse code):")
    ours = [(k, v) for k, v in incl.items() if any(m in k for m in (
        "pipeline.py", "engine.py", "shard.py", "interaction.py", "agents.py", "store.py",
        "rollup.py", "view.py", "redis_sink.py", "checkpoint.py", "events.py"))]
    for name, n in sorted(ours, key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# freshness
# ---------------------------------------------------------------------------------------


async def paced_load(bootstrap: str, redis_url: str, prefix: str, ts: TopicSet, records: list,
                     rate: float, seconds: float, warmup: float, marker_every: float) -> dict:
    """Send `records` at `rate`/s for warmup+seconds with marker contacts; watch Redis."""
    import orjson
    import redis.asyncio as aioredis
    from aiokafka import AIOKafkaProducer

    from stream.kpi.windows import iso_utc

    mapping = {SIM_TOPIC[k]: v for k, v in ts.topics.items()}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=False, linger_ms=2)
    await producer.start()
    client = aioredis.from_url(redis_url)
    sent_at: list[float] = []
    seen_at: list[float] = []
    stop = asyncio.Event()
    key = f"{prefix}kpi:queue:{MARKER_QUEUE}:15m"

    async def watch() -> None:
        seen = 0
        while not stop.is_set() or seen < len(sent_at):
            raw = await client.hget(key, "offered")
            now = time.time()
            count = int(raw) if raw else 0
            while seen < count and seen < len(sent_at):
                seen_at.append(now)
                seen += 1
            if stop.is_set() and time.time() - stop_time[0] > MARKER_WAIT_S:
                break
            await asyncio.sleep(0.01)

    stop_time = [0.0]
    watcher = asyncio.create_task(watch())
    # the data set again from the start if the run outlasts it (at 5,000/s, 300 k records
    # last 60 s); repeats are duplicates to the worker
    it = itertools.cycle(records)
    sent = 0
    pending = []
    t0 = time.time()
    next_marker = t0 + warmup
    marker_i = 0
    try:
        while True:
            now = time.time()
            elapsed = now - t0
            if elapsed >= warmup + seconds:
                break
            due = int(elapsed * rate)
            while sent < due:
                rec = next(it)
                pending.append(await producer.send(mapping[rec.topic], rec.value, key=rec.key))
                sent += 1
            if now >= next_marker:
                iid = f"mk-{uuid.uuid4().hex[:10]}-{marker_i}"
                ev = {"event_id": iid + "-o", "type": "interaction.offered", "ts": iso_utc(now),
                      "schema_version": 1, "interaction_id": iid, "channel": "voice",
                      "queue": MARKER_QUEUE}
                sent_at.append(time.time())
                pending.append(await producer.send(ts.topics["interactions"], orjson.dumps(ev),
                                                   key=iid.encode()))
                marker_i += 1
                next_marker += marker_every
            if len(pending) > 2000:
                await asyncio.gather(*pending)
                pending = []
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
        produced_s = time.time() - t0
        stop_time[0] = time.time()
        stop.set()
        await asyncio.wait_for(watcher, MARKER_WAIT_S + 30)
    finally:
        stop.set()
        await producer.stop()
        await client.aclose()
    # a marker never seen counts as infinitely late, so it lands in the upper percentiles
    lat = [s - p for p, s in zip(sent_at, seen_at)] + [math.inf] * (len(sent_at) - len(seen_at))
    return {"sent": sent, "markers": len(sent_at), "seen": len(seen_at),
            "achieved_rate": sent / produced_s, "latencies": lat,
            "timeline": [(round(p - t0, 3), x) for p, x in zip(sent_at, lat)]}


def freshness_run(stack, records: list, work: Path, rate: float = 5000, seconds: float = 30,
                  warmup: float = 5, profile: bool = False, **extra) -> dict:
    ts = TopicSet(uuid.uuid4().hex[:8]).create(stack.bootstrap)
    tag = uuid.uuid4().hex[:6]
    prefix = f"benchfresh{tag}:"
    env = ts.worker_env(stack, f"bench-fresh-{tag}", prefix, **extra)
    w = Worker(env, work / f"worker-fresh-{tag}.log")
    try:
        deadline = time.monotonic() + 60
        while not w.ready():
            if time.monotonic() > deadline or not w.alive():
                raise RuntimeError(f"worker not ready; see {w.log}")
            time.sleep(0.1)
        time.sleep(1.0)
        cpu0 = cpu_seconds(w.pid)
        others = {"broker": stack.broker.proc.pid, "redis": stack.redis.proc.pid,
                  "bench (producer + poller)": os.getpid()}
        others0 = {k: cpu_seconds(pid) for k, pid in others.items()}
        spy_proc = None
        spy = Path(sys.executable).parent / "py-spy"
        if profile and spy.exists():
            spy_out = work / f"py-spy-fresh-{tag}.txt"
            spy_proc = subprocess.Popen(
                [str(spy), "record", "--pid", str(w.pid), "--duration", str(int(seconds)),
                 "--format", "raw", "--output", str(spy_out), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res = asyncio.run(paced_load(stack.bootstrap, stack.redis_url, prefix, ts, records, rate,
                                     seconds, warmup, MARKER_EVERY_S))
        if spy_proc is not None:
            with contextlib.suppress(Exception):
                spy_proc.wait(60)
                res["profile"] = summarize_py_spy(spy_out)
                if os.environ.get("BENCH_KEEP_PROFILE"):  # the raw stacks, for a closer look
                    shutil.copy(spy_out, os.environ["BENCH_KEEP_PROFILE"])
        res["cpu_s"] = cpu_seconds(w.pid) - cpu0
        res["others_cpu_s"] = {k: cpu_seconds(pid) - others0[k] for k, pid in others.items()}
        res["rss_mib"] = rss_mib(w.pid)
        res["cycles"] = w.cycle_stats()
        return res
    finally:
        w.stop()


# ---------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------

CALL_COLUMNS = ["interaction_id", "queue", "channel", "customer_id", "agent_id", "disposition",
                "offered_at", "answered_at", "abandoned_at", "ended_at", "wrapup_completed_at",
                "hold_s"]


def write_call_log(path: Path, calls: int, days: int, seed: int) -> dict:
    """A call log (DESIGN §2) of `calls` rows over `days` days, with a daily profile."""
    from stream.simulate import DEFAULT_PROFILE

    rnd = random.Random(seed)
    start = datetime(2026, 9, 1, tzinfo=timezone.utc).timestamp()
    queues = ("billing", "support", "sales", "retention")
    channels = (("voice", 0.6), ("chat", 0.3), ("sms", 0.1))
    wait_mean = {"voice": 25.0, "chat": 50.0, "sms": 300.0}
    patience = {"voice": 90.0, "chat": 300.0, "sms": 3600.0}
    talk_mean = {"voice": 240.0, "chat": 480.0, "sms": 900.0}
    acw_mean = {"voice": 60.0, "chat": 45.0, "sms": 30.0}
    dispositions = (("resolved", 0.7), ("unresolved", 0.12), ("follow_up", 0.12),
                    ("escalated", 0.06))
    hours = list(range(24))
    weights = list(DEFAULT_PROFILE)
    offers = sorted(start + rnd.randrange(days) * 86400 + rnd.choices(hours, weights)[0] * 3600
                    + rnd.random() * 3600 for _ in range(calls))

    def pick(pairs):
        r, acc = rnd.random(), 0.0
        for name, w in pairs:
            acc += w
            if r < acc:
                return name
        return pairs[-1][0]

    def lognormal(mean: float, sigma: float = 0.6) -> float:
        return rnd.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")

    abandoned = 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CALL_COLUMNS)
        for i, offered in enumerate(offers):
            ch = pick(channels)
            q = queues[rnd.randrange(len(queues))]
            cust = f"cust-{rnd.randrange(50_000):06d}"
            wait = rnd.expovariate(1 / wait_mean[ch])
            give_up = (rnd.uniform(0.3, 5) if rnd.random() < 0.05
                       else rnd.expovariate(1 / patience[ch]))
            row = [f"call-{i:08d}", q, ch, cust, "", "", iso(offered), "", "", "", "", ""]
            if give_up < wait:
                row[8] = iso(offered + give_up)
                abandoned += 1
            else:
                answered = offered + wait
                talk = lognormal(talk_mean[ch])
                hold = (min(talk, rnd.uniform(5, 120.0)) * 0.9
                        if ch == "voice" and rnd.random() < 0.2 else 0)
                ended = answered + talk
                row[4] = f"agent-{rnd.randrange(300):04d}"
                row[7], row[9] = iso(answered), iso(ended)
                if rnd.random() >= 0.02:
                    row[10] = iso(ended + lognormal(acw_mean[ch], 0.5))
                    row[5] = pick(dispositions)
                row[11] = f"{hold:.1f}" if hold else ""
            w.writerow(row)
    return {"calls": calls, "days": days, "abandoned": abandoned,
            "bytes": path.stat().st_size}


def replay_run(stack, csv_path: Path, work: Path, label: str, wait_s: float, days: int) -> dict:
    """`ccpulse replay` against a fresh event-clock worker; RSS of the worker sampled together
    with the events it has checkpointed, so memory can be read per day of history."""
    import redis as redis_sync

    ts = TopicSet(uuid.uuid4().hex[:8]).create(stack.bootstrap)
    tag = uuid.uuid4().hex[:6]
    prefix = f"benchreplay{tag}:"
    env = ts.worker_env(stack, f"bench-replay-{tag}", prefix, CCPULSE_CLOCK="event")
    w = Worker(env, work / f"worker-replay-{label}.log")
    client = redis_sync.Redis.from_url(stack.redis_url)
    rss: list[tuple[float, float, int]] = []  # (wall s, RSS MiB, events checkpointed)
    state: list[tuple[float, float, int]] = []  # (wall s, state entries, events checkpointed)
    heap: list[tuple[float, float, int]] = []  # (wall s, C heap in use MiB, events checkpointed)
    py_live: list[tuple[float, float, int]] = []  # (wall s, pymalloc blocks in use MiB, events)
    py_arenas: list[tuple[float, float, int]] = []  # (wall s, pymalloc arenas MiB, events)
    topic = ts.topics["interactions"]
    try:
        deadline = time.monotonic() + 60
        while not w.ready():
            if time.monotonic() > deadline or not w.alive():
                raise RuntimeError(f"worker not ready; see {w.log}")
            time.sleep(0.1)
        cpu0 = cpu_seconds(w.pid)
        out_path = work / f"replay-{label}.out"
        t0 = time.monotonic()
        rp = Proc([sys.executable, "-m", "stream.cli", "replay", str(csv_path), "--wait",
                   str(int(wait_s))], env, out_path)
        peak_replay = 0.0
        collections = 0  # full garbage collections of the worker (/healthz)
        while rp.alive():
            done = checkpointed_events(client, prefix, topic)
            rss.append((time.monotonic() - t0, rss_mib(w.pid) or 0.0, done))
            h = w.get("/healthz")
            if h and h.get("state"):
                state.append((time.monotonic() - t0, float(sum(h["state"].values())), done))
            if h and h.get("heap"):
                heap.append((time.monotonic() - t0, h["heap"]["in_use"] / 2**20, done))
            if h and h.get("pymalloc"):
                py = h["pymalloc"]
                py_live.append((time.monotonic() - t0, py["in_use"] / 2**20, done))
                py_arenas.append((time.monotonic() - t0, (py["in_use"] + py["free"]) / 2**20, done))
            if h:
                collections = h.get("full_collections", collections)
            peak_replay = max(peak_replay, rss_mib(rp.pid) or 0.0)
            time.sleep(0.5)
        wall = time.monotonic() - t0
        text = out_path.read_text()
        if rp.proc.returncode != 0:
            raise RuntimeError(f"replay failed ({rp.proc.returncode}): {text[-500:]}")
        produced = int(text.split("events produced", 1)[1].split()[0])
        produce_s = float(text.split("events produced", 1)[1].split(" in ", 1)[1].split("s")[0])
        rejected = int(text.split("rows rejected", 1)[1].split()[0])
        samples = [r for _, r, _ in rss if r > 0]
        history = agent_history_check(client, prefix)
        return {"history": history, "events": produced, "wall_s": wall, "rate": produced / wall,
                "read_and_produce_s": produce_s, "rows_rejected": rejected,
                "worker_cpu_s": cpu_seconds(w.pid) - cpu0, "rss": samples,
                "rss_trend": quartile_trend(samples), "replay_peak_rss_mib": peak_replay,
                "rss_by_day": per_day(rss, produced, days), "rss_samples": rss,
                "state_by_day": per_day(state, produced, days),
                "heap_by_day": per_day(heap, produced, days, pick=min),
                "pymalloc_by_day": (per_day(py_live, produced, days, pick=min),
                                    per_day(py_live, produced, days),
                                    per_day(py_arenas, produced, days)),
                "full_collections": collections}
    finally:
        client.close()
        w.stop()


# what every handled contact adds to exactly one agent's history and to the center's
AGENT_ADDITIVE = ("handled", "sum_talk_sum", "sum_acw_sum")


def agent_history_check(client, prefix: str) -> dict:
    """The agents' interval history summed per interval against the center's: each handled
    contact is one agent's, so the two must agree in every interval. A replay moves days of
    event time per cycle while agent slices are published in turn: an agent's part pruned
    before its turn went missing here (found 2026-12-05)."""
    def sums(pattern: str) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        keys = list(client.scan_iter(pattern, count=5000))
        for i in range(0, len(keys), 5000):
            pipe = client.pipeline(transaction=False)
            for key in keys[i:i + 5000]:
                pipe.hmget(key, "start", *AGENT_ADDITIVE)
            for start, *values in pipe.execute():
                cur = out.setdefault(start.decode(), [0.0] * len(AGENT_ADDITIVE))
                for j, v in enumerate(values):
                    cur[j] += float(v or 0)
        return out

    agents, center = sums(f"{prefix}interval:agent:*"), sums(f"{prefix}interval:center:*")
    none = [0.0] * len(AGENT_ADDITIVE)
    bad = sorted(s for s in center.keys() | agents.keys()
                 if any(abs(a - c) > 1e-6 * max(1.0, abs(c)) for a, c in
                        zip(agents.get(s, none), center.get(s, none))))
    return {"intervals": len(center), "mismatched": len(bad), "first_bad": bad[:3],
            "center_handled": sum(v[0] for v in center.values()),
            "agents_handled": sum(v[0] for v in agents.values())}


def history_text(h: dict | None) -> str:
    if not h:
        return "agent history: not checked"
    ok = "all agree" if not h["mismatched"] else f"{h['mismatched']} disagree (e.g. {h['first_bad']})"
    return (f"agent history vs center, {h['intervals']:,} intervals: {ok}; handled "
            f"{h['agents_handled']:,.0f} in the agents' history of {h['center_handled']:,.0f}")


def checkpointed_events(client, prefix: str, topic: str) -> int:
    """Records of `topic` the worker has checkpointed (sum over its partitions)."""
    pipe = client.pipeline(transaction=False)
    for p in range(PARTITIONS):
        pipe.hget(f"{prefix}state:i{p}:meta", f"offset:{topic}:{p}")
    return sum(int(v) for v in pipe.execute() if v is not None)


# the state is full once every retention has passed: buckets 48 h, FCR horizon + retention
# + 1 h (5 days), the survey join index 7 days; from then on memory should stay level
STATE_FULL_DAY = 8


def per_day(samples: list[tuple[float, float, int]], events: int, days: int,
            pick=max) -> list[tuple[int, float]]:
    """(day of history, the highest sample (worker RSS, state entries) while that day was
    being checkpointed): a replay spreads its events evenly over the days, so
    checkpointed/total events tells the day. `pick=min`: the lowest instead (the C heap in
    use between cycles, without their transient buffers)."""
    by_day: dict[int, float] = {}
    for _, mib, done in samples:
        if mib > 0 and events:
            day = min(days, int(done / events * days) + 1)
            by_day[day] = pick(by_day.get(day, mib), mib)
    return sorted(by_day.items())


def days_shown(by_day: list[tuple[int, float]]) -> tuple[dict[int, float], int, list[int]]:
    """(value by day, the last day, the few days a report shows)."""
    days = dict(by_day)
    last = max(days, default=0)
    return days, last, sorted({d for d in (1, 2, 4, STATE_FULL_DAY, 12, 15, 19, 22, 26, last)
                               if d in days})


def rss_days_text(by_day: list[tuple[int, float]]) -> str:
    """RSS on a few days of history and its slope once the state is full."""
    days, last, shown = days_shown(by_day)
    text = "worker RSS by day of history: " + ", ".join(f"day {d} {days[d]:.0f} MiB"
                                                          for d in shown)
    fill = memory_after_fill(by_day)
    if fill:
        text += (f"; after the state is full (day {STATE_FULL_DAY} → {last}): "
                 f"{fill[0]:.0f} → {fill[1]:.0f} MiB, {fill[2]:+.1f} MiB/day"
                 + late_slope_text(by_day))
    return text


def state_days_text(by_day: list[tuple[int, float]]) -> str:
    """The worker's state entries (`cc_state_entries`, summed) on the same days: what the
    memory holds, without the allocator's share of the RSS."""
    days, last, shown = days_shown(by_day)
    text = "state entries by day: " + ", ".join(f"day {d} {days[d]:,.0f}" for d in shown)
    fill = memory_after_fill(by_day)
    if fill and fill[0]:
        text += (f"; day {STATE_FULL_DAY} → {last}: {(fill[1] / fill[0] - 1) * 100:+.1f}% "
                 f"({fill[2] / fill[0] * 100:+.2f}%/day)")
    return text


def heap_days_text(by_day: list[tuple[int, float]]) -> str:
    """The lowest C heap in use (`cc_worker_heap_bytes`) on the same days: live allocations
    over 512 bytes between cycles; rising beside level state entries means something outside
    the state holds memory, rising RSS beside a level heap means the allocator keeps it."""
    return mib_days_text("C heap in use (lowest)", by_day)


def pymalloc_days_text(by_day: tuple[list[tuple[int, float]], ...]) -> str:
    """Python's small-object allocator (`cc_worker_pymalloc_bytes`) on the same days: its
    live blocks (lowest and highest sample) and its arenas (highest). Arenas rising beside
    level live blocks are arenas kept by a few long-lived objects each, not a leak."""
    low, high, arenas = by_day
    return "; ".join((mib_days_text("pymalloc live blocks (lowest)", low),
                      mib_days_text("pymalloc live blocks (highest)", high),
                      mib_days_text("pymalloc arenas (highest)", arenas)))


def mib_days_text(title: str, by_day: list[tuple[int, float]]) -> str:
    """`title` by day on the days a report shows, and its slope once the state is full."""
    days, last, shown = days_shown(by_day)
    text = f"{title} by day: " + ", ".join(f"day {d} {days[d]:.0f} MiB" for d in shown)
    fill = memory_after_fill(by_day)
    if fill:
        text += f"; day {STATE_FULL_DAY} → {last}: {fill[2]:+.1f} MiB/day" + late_slope_text(by_day)
    return text


def late_slope_text(by_day: list[tuple[int, float]]) -> str:
    """The slope over the second half of the full-state days: a leak keeps its slope, an
    allocator settling into the state's pattern flattens."""
    days = dict(by_day)
    last = max(days, default=0)
    mid = min((d for d in days if d >= (STATE_FULL_DAY + last) // 2), default=last)
    if last - mid < 4:
        return ""
    return f", day {mid} → {last}: {(days[last] - days[mid]) / (last - mid):+.1f} MiB/day"


def memory_after_fill(by_day: list[tuple[int, float]]) -> tuple[float, float, float] | None:
    """(RSS on day STATE_FULL_DAY, RSS on the last day, MiB per day in between)."""
    days = dict(by_day)
    last = max(days, default=0)
    if STATE_FULL_DAY not in days or last <= STATE_FULL_DAY:
        return None
    a, b = days[STATE_FULL_DAY], days[last]
    return a, b, (b - a) / (last - STATE_FULL_DAY)


def cycles_text(c: dict | None) -> str:
    if not c:
        return "publish cycles: not scraped"
    phases = c.get("phase_mean_ms") or {}
    split = ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
    return (f"{c['cycles']:,} publish cycles, mean {c['mean_ms']:.0f} ms"
            + (f" ({split} ms)" if split else "")
            + f", {c['le_100ms']:.0%} ≤ 100 ms, {c['le_300ms']:.0%} ≤ 300 ms")


def cpu_text(p: RunResult) -> str:
    """CPU-s per 100,000 events of every process in a run, from the workers' start (their
    start-up included) to the last event visible."""
    per = {"workers": sum(p.cpu_s), **p.extra.get("others_cpu_s", {})}
    return (", ".join(f"{k} {v * 1e5 / p.events:.2f}" for k, v in per.items())
            + f" (total {sum(per.values()) * 1e5 / p.events:.2f})")


def ratio(x: float, ceiling: float | None) -> str:
    """x ÷ ceiling as '1.23×', or '—' when the ceiling was not measured (--only)."""
    return f"{x / ceiling:.2f}×" if ceiling else "—"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def dataset_and_throughput(r: dict) -> list[str]:
    """The data set's and the throughput runs' sections of the report."""
    m, d = r["machine"], r["dataset"]
    lines = [
        "## Data set",
        "",
        f"{d['events']:,} records from `stream/simulate.py` (seed {d['seed']}, "
        f"{d['rate']:g} contacts/s at the profile's peak, {d['agents']:,} agents sized by the "
        f"simulator, event time {d['start']} … {d['end']}, {d['bytes'] / 1e6:.0f} MB), "
        f"{PARTITIONS} partitions per topic. Mix:",
        "",
        "| type | records |",
        "|---|---:|",
    ]
    for typ, n in sorted(d["mix"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| `{typ}` | {n:,} |")
    lines += ["", f"Produced into the broker at {fmt_rate(d['produce_rate'])} records/s "
              "(aiokafka, acks=all).", ""]
    c = r["ceilings"]
    p1, p2 = r["pipeline"].get("1"), r["pipeline"].get("2")
    lines += ["## Throughput", "",
              "The machine may be shared with other jobs while this runs: compare the ratios "
              "within one run; absolute figures of repeated runs of the same code have varied "
              "by up to 2× here. Worker CPU-s include the publish cycles, whose cost is per "
              "second, not per event: a slower run spends more CPU per event.", "",
              "| run | events | seconds | events/s | vs bare Faust | vs raw getmany+msgspec | worker CPU-s |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    faust = c.get("faust", {}).get("rate")
    raw = c.get("msgspec", {}).get("rate")
    for name, key in (("raw aiokafka getmany + msgspec decode (validating)", "msgspec"),
                      ("raw aiokafka getmany + orjson.loads", "orjson"),
                      ("bare Faust agent, counting only (tuned settings)", "faust")):
        x = c.get(key)
        if x:
            cpu = f"{x['cpu_s']:.1f}" if "cpu_s" in x else "— (in the bench)"
            lines.append(f"| {name} | {x['events']:,} | {x['seconds']:.1f} | {fmt_rate(x['rate'])} "
                         f"| {ratio(x['rate'], faust)} | {ratio(x['rate'], raw)} | {cpu} |")
    names = {"1": "pipeline, 1 worker", "2": "pipeline, 2 workers"}
    for n, p in r["pipeline"].items():
        if p:
            lines.append(f"| {names.get(n, 'pipeline, ' + n)} (first event → "
                         f"last visible in Redis) | {p.events:,} | {p.seconds:.1f} | "
                         f"{fmt_rate(p.rate)} | {ratio(p.rate, faust)} | {ratio(p.rate, raw)} | "
                         f"{' + '.join(f'{x:.1f}' for x in p.cpu_s)} |")
    lines.append("")
    lines.append(f"- Code: {r['machine'].get('compiled', '?')}.")
    ab = r.get("compile_ab")
    if ab:
        lines.append(f"  - One worker compiled ÷ the same from source: {compile_ratio(ab)}, "
                     "means of alternating runs (" + ", ".join(
                         f"{m} {fmt_rate(p.rate)}/s {p.cpu_s[0]:.1f} CPU-s" for m, p in ab)
                     + "); the table shows the first of each.")
    if p1 and faust:
        lines.append(f"- Target one worker ≥ 0.8 × bare Faust agent: {p1.rate / faust:.2f}× — "
                     f"{verdict(p1.rate >= 0.8 * faust)}.")
    if p1 and p2:
        one, runs = one_worker_rate(r)
        lines.append(f"- Target two workers ≥ 1.6 × one: {p2.rate / one:.2f}× the mean of the "
                     f"compiled one-worker runs ({', '.join(fmt_rate(x) for x in runs)}/s), "
                     f"{p2.rate / p1.rate:.2f}× the first alone — {verdict(p2.rate >= 1.6 * one)}. "
                     "Identical one-worker runs drift by up to a third here (four in one script: "
                     "22,132–29,539/s), so one run is no baseline. The "
                     f"{m['cpus']} CPUs are shared by the broker, Redis, the bench and the workers.")
        lines.append(f"  - CPU-s per 100,000 events, 1 worker: {cpu_text(p1)}; 2 workers: "
                     f"{cpu_text(p2)}. Publish cycles cost per second (4 a second per worker), not "
                     "per event, and each worker's cycles checkpoint and stage only its own "
                     "shards: a shorter 2-worker run can spend less CPU per event than one "
                     "worker.")
        tries = p2.extra.get("attempts", [])
        if len(tries) > 1:
            lines.append("  - Two-worker runs: " + ", ".join(
                f"{fmt_rate(rate)}/s{' (partitions moved while consuming)' if moved else ''}"
                for rate, moved in tries) + ". A worker that joins the group after the other "
                "has started takes partitions from it (tansu has no initial rebalance delay): "
                "both pause and re-read what was not checkpointed. That run measures group "
                "formation, so the bench runs again; the table shows the last run.")
        if p2.extra.get("reassigned"):
            lines.append("  - **The run in the table had partitions move while consuming.**")
    if p1 and p2:
        same = p1.extra["center_today"] == p2.extra["center_today"]
        lines.append(f"- Cross-check: the 1- and 2-worker runs published "
                     f"{'the same' if same else '**different**'} center/today counts "
                     f"({p1.extra['center_today']}"
                     f"{'' if same else ' vs ' + str(p2.extra['center_today'])}).")
        if not same:
            lines.append(f"  - 5 s later the 2-worker view read {p2.extra['center_today_later']}; "
                         f"each shard's partial (center/today offered, as_of) at the first read: "
                         f"{p2.extra['parts_offered']}.")
    lines.append("")
    return lines


def write_report(path: Path, r: dict) -> None:
    m = r["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `bench/bench_pipeline.py{r['argv']}` (`make bench`, or `make bench-long` "
        f"for the long replay alone) on {m['date']}.",
        "",
        f"Machine: {m['cpus']} CPUs ({m['model']}), {m['mem_gib']:.0f} GiB, Python "
        f"{m['python']}, {m['platform']}. Broker: embedded tansu; Redis: private "
        "redis-server; all on this one machine, so broker, Redis, the bench process and the "
        "workers share its CPUs.",
        "",
    ]
    if r["ceilings"] or any(r["pipeline"].values()):  # not for the long replay alone
        lines += dataset_and_throughput(r)
    f = r.get("freshness")
    if f:
        lines += ["## Freshness", ""]
        for label, x in f.items():
            lat = x["latencies"]
            lines.append(
                f"- {label}: {x['sent']:,} records at {x['achieved_rate']:,.0f}/s achieved, "
                f"{x['seen']}/{x['markers']} markers seen; production → visible in Redis "
                f"p50 {fmt_ms(pct(lat, 50))}, p95 {fmt_ms(pct(lat, 95))}, "
                f"p99 {fmt_ms(pct(lat, 99))}, max {fmt_ms(max(lat))} "
                f"(CPU, share of one core: worker {x['cpu_s'] / x['duration']:.0%}, "
                + ", ".join(f"{k} {v / x['duration']:.0%}"
                            for k, v in x.get("others_cpu_s", {}).items()) + "; "
                + f"{cycles_text(x.get('cycles'))}).")
        main = f.get(next(iter(f)))
        if main:
            lines.append(f"- Target p99 ≤ 1 s at 5k/s: {verdict(pct(main['latencies'], 99) <= 1.0)}.")
        lines += ["",
                  "Method: the load is the data set's records (their own event times) sent at a "
                  "steady rate by one aiokafka producer (linger 2 ms, acks=all), to fresh topics "
                  "with a worker already assigned and idle. Every 25 ms (after a 5 s warm-up) a "
                  f"marker contact, `interaction.offered` in queue `{MARKER_QUEUE}` with "
                  "`ts` = now, is sent with the load; its send time is taken just before "
                  "`producer.send`. The bench polls "
                  f"`<prefix>kpi:queue:{MARKER_QUEUE}:15m` field `offered` every 10 ms: when it "
                  "reads k, markers 1…k count as visible at that moment. So a latency is "
                  "producer batching + broker + fetch + engine + waiting for the next publish "
                  "cycle + the cycle's part up to the view (partials, merge, one Lua call; "
                  "a worker that owns every partition sends its checkpoint after the view) + "
                  "≤ 10 ms polling. With the default 0.25 s publish timer the wait for the next "
                  "cycle alone is uniform in 0…0.25 s, and a record that arrives while a cycle holds "
                  "consuming waits for the one after. The phases in brackets are the means "
                  "of `cc_publish_phase_seconds`: prepare, merge and write come before the "
                  "view.", ""]
    rp = r.get("replay")
    if rp:
        lines += ["## Replay (`ccpulse replay`, worker with `CCPULSE_CLOCK=event`)", "",
                  "| call log | rows | events | read + produce s | wall s (until Redis has it) | events/s | worker CPU-s | worker RSS first → last quartile |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for label, x in rp.items():
            trend = x["rss_trend"]
            tr = f"{trend[0]:.0f} → {trend[1]:.0f} MiB" if trend else "n/a"
            lines.append(f"| {label} | {x['calls']:,} | {x['events']:,} | "
                         f"{x['read_and_produce_s']:.1f} | {x['wall_s']:.1f} | "
                         f"{fmt_rate(x['rate'])} | {x['worker_cpu_s']:.1f} | {tr} |")
        lines += [""] + [f"- {label}: {history_text(x.get('history'))}." for label, x in rp.items()]
        lines += ["", "Calls are generated with a daily profile over the days shown (voice/chat/sms, "
                  "abandons incl. short ones, holds, missing wrap-ups, dispositions), in the CSV "
                  "format of DESIGN §2. Wall time is the whole command: reading the CSV, "
                  "producing, and waiting until every partition's checkpoint is past the last "
                  "offset, the snapshot was rewritten and every slice of agents was published "
                  "past it (`agents:through`).", ""]
    mem = r.get("memory")
    if mem:
        lines += ["## Memory", ""]
        for label, x in mem.items():
            lines.append(f"- {label}: worker RSS first quartile {x[0]:.0f} MiB, last quartile "
                         f"{x[1]:.0f} MiB ({(x[1] / x[0] - 1) * 100:+.0f}%), max {x[2]:.0f} MiB "
                         f"over {x[3]} samples.")
            if len(x) > 4 and x[4]:
                lines.append(f"  - {rss_days_text(x[4])}")
            if len(x) > 5 and x[5]:
                lines.append(f"  - {state_days_text(x[5])}")
            if len(x) > 6 and x[6]:
                lines.append(f"  - {heap_days_text(x[6])}")
            if len(x) > 7 and x[7] and x[7][0]:
                lines.append(f"  - {pymalloc_days_text(x[7])}")
        lines += ["", "Quartiles are of wall time; the first includes the state filling up. "
                  "The replay's RSS is also read per day of history (the highest sample while "
                  f"that day was published): the state is full from day {STATE_FULL_DAY} "
                  "(bucket retention 48 h, FCR horizon + retention + 1 h, survey join 7 days), "
                  "so from then on it should stay level. The state entries (`cc_state_entries` "
                  "summed, from /healthz) are read with it: they count what the state holds, "
                  "so they tell growth of the state from the allocator's share of the RSS "
                  "(freed memory kept by glibc and pymalloc after a cycle's peak). The C heap "
                  "in use (`cc_worker_heap_bytes`, lowest sample per day) counts the live "
                  "allocations over 512 bytes: rising with level state entries, something "
                  "outside the state holds it. Python's small objects (512 bytes or less, most "
                  "of the state) live in pymalloc's arenas (`cc_worker_pymalloc_bytes`): its "
                  "live blocks (lowest and highest sample per day) are what they hold, its "
                  "arenas (highest) what they keep resident; an arena goes back to the OS only "
                  "when every block in it is free, so arenas rise towards the highest live "
                  "peak and then level.", ""]
    if r.get("not_run"):
        lines += ["## Not run", ""] + [f"- {x}" for x in r["not_run"]] + [""]
    if r.get("profile"):
        lines += ["## Worker profile (py-spy, one worker on the data set)", "",
                  "From source (CCPULSE_PURE_PYTHON=1): py-spy sees no Python frames inside "
                  "compiled functions, so this shows where the time goes in the code as "
                  "written; compiled, each part costs less.", "", "```",
                  r["profile"], "```", ""]
    path.write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000, help="size of the data set")
    ap.add_argument("--rate", type=float, default=4.0, help="simulated contacts/s at peak")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--month-calls", type=int, default=30_000)
    ap.add_argument("--full", action="store_true",
                    help="also replay 1,000,000 calls (≥ 5 M events: the long memory run)")
    ap.add_argument("--big-calls", type=int, default=1_000_000)
    ap.add_argument("--fresh-rate", type=float, default=5000)
    ap.add_argument("--fresh-seconds", type=float, default=30)
    ap.add_argument("--fresh-profile", action="store_true",
                    help="py-spy each freshness run (printed, not written to the report)")
    ap.add_argument("--fresh-variants", default="",
                    help="comma list of freshness variant numbers (0 default settings, "
                         "1 publish 0.5 s, 2 per_agent_kpis=false, 3 1,000/s)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the workers only (e.g. an allocator to try)")
    ap.add_argument("--fresh-dump", default="",
                    help="write each freshness run's (sent s, latency s) per marker to this "
                         "JSON file (to see whether the tail is stalls or spread)")
    ap.add_argument("--no-profile", dest="profile", action="store_false",
                    help="skip the py-spy sample of a worker (taken when py-spy is installed)")
    ap.add_argument("--only", default="", help="comma list: ceilings,pipeline,fresh,replay")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args()
    WORKER_ENV.update(item.split("=", 1) for item in args.worker_env)
    only = set(filter(None, args.only.split(",")))

    def want(part: str) -> bool:
        return not only or part in only

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from stream import embedded

    def on_term(signum, frame):  # noqa: ARG001 - SIGTERM cleans up like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    work = Path(tempfile.mkdtemp(prefix="ccpulse-bench-"))
    r: dict = {"machine": machine_info(), "argv": "".join(f" {a}" for a in sys.argv[1:]),
               "ceilings": {}, "pipeline": {}, "not_run": []}
    m = r["machine"]
    m["compiled"] = compiled_text()
    say(f"machine: {m['cpus']} CPUs, {m['model']}, Python {m['python']}; logs in {work}")
    say(f"code: {m['compiled']}")
    stack = embedded.start_stack(PARTITIONS, work)
    try:
        t = time.perf_counter()
        records, info, gen_s = make_dataset(args.events, args.seed, args.rate,
                                            datetime.now(timezone.utc))
        say(f"data set: {len(records):,} records generated in {gen_s:.1f}s "
            f"({info['agents']} agents, {info['start']} … {info['end']})")
        ts = TopicSet(uuid.uuid4().hex[:8]).create(stack.bootstrap)
        prod_s, ends = asyncio.run(produce_records(records, stack.bootstrap, ts.topics))
        total = sum(ends.values())
        info.update(events=total, produce_rate=total / prod_s)
        r["dataset"] = info
        say(f"produced {total:,} records in {prod_s:.1f}s ({total / prod_s:,.0f}/s)")

        if want("ceilings"):
            for dec in ("msgspec", "orjson"):
                x = asyncio.run(raw_ceiling(stack.bootstrap, ts, total, dec))
                r["ceilings"][dec] = x
                say(f"ceiling raw getmany + {dec}: {fmt_rate(x['rate'])} events/s "
                    f"({x['events']:,} in {x['seconds']:.1f}s)")
            x = faust_ceiling(stack, ts, total, work)
            r["ceilings"]["faust"] = x
            say(f"ceiling bare Faust agent: {fmt_rate(x['rate'])} events/s "
                f"({x['events']:,} in {x['seconds']:.1f}s, {x['cpu_s']:.1f} CPU-s)")
        if want("pipeline"):
            for n in (1, 2):
                ref = r["pipeline"]["1"].extra["center_today"] if n == 2 else None
                attempts: list[RunResult] = []
                while True:  # a run disturbed by a rebalance is reported, and run again
                    p = pipeline_run(stack, ts, ends, total, n, work,
                                     f"w{n}" + (f"r{len(attempts)}" if attempts else ""),
                                     reference=ref)
                    attempts.append(p)
                    if not p.extra["reassigned"] or len(attempts) == REBALANCE_ATTEMPTS:
                        break
                    say(f"pipeline {n} worker(s): {fmt_rate(p.rate)} events/s, but partitions "
                        f"moved while consuming ({p.extra['records_read']:,} records read): "
                        "run again")
                p.extra["attempts"] = [(a.rate, a.extra["reassigned"] > 0) for a in attempts]
                r["pipeline"][str(n)] = p
                say(f"pipeline {n} worker(s): {fmt_rate(p.rate)} events/s "
                    f"({p.events:,} in {p.seconds:.1f}s; worker CPU-s "
                    f"{', '.join(f'{c:.1f}' for c in p.cpu_s)}; records read "
                    f"{p.extra['records_read']:,}; center today "
                    f"{p.extra['center_today']})")
                if "center_today_later" in p.extra:
                    say(f"  CROSS-CHECK MISMATCH with 1 worker; 5 s later "
                        f"{p.extra['center_today_later']}; parts {p.extra['parts_offered']}")
                faust = r["ceilings"].get("faust", {}).get("rate")
                raw = r["ceilings"].get("msgspec", {}).get("rate")
                if faust and raw:
                    say(f"  = {p.rate / faust:.2f}× bare Faust, {p.rate / raw:.2f}× raw getmany")
            p = pipeline_run(stack, ts, ends, total, 1, work, "w1na",
                             CCPULSE_PER_AGENT_KPIS="false")
            r["pipeline"]["1 worker, per_agent_kpis=false"] = p
            say(f"pipeline 1 worker, per_agent_kpis=false: {fmt_rate(p.rate)} events/s "
                f"({p.events:,} in {p.seconds:.1f}s; worker CPU-s {p.cpu_s[0]:.1f})")
            # compiled against from source: alternating runs, as the machine's speed drifts
            # between runs (the same code has varied by 15 % from one run to the next)
            ab = r["compile_ab"] = [("compiled", r["pipeline"]["1"])] if "1" in r["pipeline"] else []
            for i, mode in enumerate(("source", "compiled", "source")):
                extra = {"CCPULSE_PURE_PYTHON": "1"} if mode == "source" else {}
                p = pipeline_run(stack, ts, ends, total, 1, work, f"w1ab{i}", **extra)
                ab.append((mode, p))
                say(f"pipeline 1 worker, {mode}: {fmt_rate(p.rate)} events/s "
                    f"({p.events:,} in {p.seconds:.1f}s; worker CPU-s {p.cpu_s[0]:.1f})")
                if mode == "source" and SOURCE_RUN not in r["pipeline"]:
                    r["pipeline"][SOURCE_RUN] = p
            say(f"  compiled / from source: {compile_ratio(ab)}")
            if "1" in r["pipeline"] and "2" in r["pipeline"]:
                one, runs = one_worker_rate(r)
                say(f"  two workers / one: {r['pipeline']['2'].rate / one:.2f}× the mean of "
                    f"{len(runs)} compiled one-worker runs, "
                    f"{r['pipeline']['2'].rate / r['pipeline']['1'].rate:.2f}× the first")
        if args.profile and want("pipeline"):
            r["profile"] = py_spy_profile(stack, ts, work)
            say(r["profile"] or "py-spy not installed (.venv/bin/pip install py-spy): no profile")
        if want("fresh"):
            r["freshness"] = {}
            need = int(args.fresh_rate * (args.fresh_seconds + 6))
            load = records[-need:] if need <= len(records) else records
            from stream.config import Settings

            default_p = Settings().publish_interval_s
            variants = [(f"{args.fresh_rate:,.0f}/s, publish every {default_p:g} s (default)", {}),
                        (f"{args.fresh_rate:,.0f}/s, publish every 0.5 s",
                         {"CCPULSE_PUBLISH_INTERVAL_S": "0.5"}),
                        (f"{args.fresh_rate:,.0f}/s, per_agent_kpis=false",
                         {"CCPULSE_PER_AGENT_KPIS": "false"}),
                        ("1,000/s (default settings)", {"rate": 1000.0})]
            if args.fresh_variants:
                variants = [variants[int(i)] for i in args.fresh_variants.split(",")]
            for label, extra in variants:
                extra = dict(extra)
                rate = extra.pop("rate", args.fresh_rate)
                x = freshness_run(stack, load, work, rate, args.fresh_seconds,
                                  profile=args.fresh_profile, **extra)
                x["duration"] = args.fresh_seconds + 5
                r["freshness"][label] = x
                if args.fresh_dump:
                    Path(args.fresh_dump).write_text(json.dumps(
                        {k: v["timeline"] for k, v in r["freshness"].items()}))
                lat = x["latencies"]
                say(f"freshness {label}: achieved {x['achieved_rate']:,.0f}/s, "
                    f"{x['seen']}/{x['markers']} markers; p50 {fmt_ms(pct(lat, 50))}, "
                    f"p95 {fmt_ms(pct(lat, 95))}, p99 {fmt_ms(pct(lat, 99))}; "
                    f"{cycles_text(x.get('cycles'))}; CPU worker "
                    f"{x['cpu_s'] / x['duration']:.0%}, " + ", ".join(
                        f"{k} {v / x['duration']:.0%}" for k, v in x["others_cpu_s"].items()))
                if x.get("profile"):
                    say(x["profile"])
        del records
        if want("replay"):
            r["replay"], r["memory"] = {}, {}
            runs = [("month", args.month_calls, 30)]
            if args.full:
                runs.append(("big", args.big_calls, 30))
            else:
                r["not_run"].append(f"replay of {args.big_calls:,} calls (≈ 3.7 events a call, "
                                    "30 days of history) and with it the long memory run: "
                                    "`make bench-long` (`--full`, the replay alone) writes it "
                                    "to `docs/BENCHMARKS-long.md`; at the month replay's rate "
                                    "above it needs rows × 3.7 / (events/s) seconds")
            for label, calls, days in runs:
                path = work / f"calls-{label}.csv"
                t = time.perf_counter()
                meta = write_call_log(path, calls, days, args.seed)
                say(f"call log {label}: {calls:,} calls over {days} days, "
                    f"{meta['bytes'] / 1e6:.1f} MB, written in {time.perf_counter() - t:.1f}s")
                x = replay_run(stack, path, work, label, wait_s=7200, days=days)
                x.update(calls=calls, days=days)
                name = f"{calls:,} calls / {days} days"
                r["replay"][name] = x
                say(f"replay {name}: {x['events']:,} events in {x['wall_s']:.1f}s wall "
                    f"({fmt_rate(x['rate'])} events/s; read+produce {x['read_and_produce_s']:.1f}s; "
                    f"rejected rows {x['rows_rejected']})")
                say("  " + history_text(x["history"]))
                if x["history"]["mismatched"]:
                    say("  AGENT HISTORY MISMATCH")
                if x["rss_trend"]:
                    a, b = x["rss_trend"]
                    r["memory"][f"replay of {name} ({x['events']:,} events, event clock)"] = (
                        a, b, max(x["rss"]), len(x["rss"]), x["rss_by_day"],
                        x["state_by_day"], x["heap_by_day"], x["pymalloc_by_day"])
                    say(f"  worker RSS first quartile {a:.0f} MiB → last quartile {b:.0f} MiB "
                        f"(max {max(x['rss']):.0f})")
                    say("  " + rss_days_text(x["rss_by_day"]))
                    say("  " + state_days_text(x["state_by_day"]))
                    if x["heap_by_day"]:
                        say("  " + heap_days_text(x["heap_by_day"])
                            + f"; full garbage collections {x['full_collections']}")
                    if x["pymalloc_by_day"][0]:
                        say("  " + pymalloc_days_text(x["pymalloc_by_day"]))
                path.unlink(missing_ok=True)
        names_mem = {"1": "1 worker", "2": "2 workers"}
        for n, p in r["pipeline"].items():
            if p.rss_trend:
                r.setdefault("memory", {})[
                    f"pipeline run {names_mem.get(n, n)} (sum of RSS; the state fills up with "
                    "the data set's 1½ h, so growth is expected here)"] = (
                    p.rss_trend[0], p.rss_trend[1], max(p.rss_mib), len(p.rss_mib))
    finally:
        kill_children()
        stack.stop()
    out = Path(args.out)
    write_report(out, r)
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
