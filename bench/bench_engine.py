"""The KPI engine alone, compiled against from source: `make bench-engine`.

Run: .venv/bin/python bench/bench_engine.py [--events N] [--rounds R]

Not a test. The pipeline's figures (`make bench`) mix the engine with Kafka, Redis, the
publish cycles and a machine whose speed drifts between runs; this isolates the part our
code decides: the same data set as `make bench` (the simulator's realistic mix, seed 42)
fed through `Engine.ingest` in a fresh interpreter, in batches of 2,500 records applied as
the worker applies a fetched batch, with a cycle every 5,000 records as the worker runs one
(FCR records routed, clocks advanced, outputs taken, the heap frozen). Each round runs the
compiled modules and then the same from source (`CCPULSE_PURE_PYTHON=1`), so the ratio is
measured in one run; it prints µs per record by topic and for the cycles. With
`--against DIR` (another checkout of ccpulse, compiled there) it alternates this tree and
that one instead, both compiled: the way to measure a change of the engine's code.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KIND = {"cc.interactions": "interactions", "cc.agent-states": "agents",
        "cc.surveys": "surveys"}
BATCH = 2500  # records per fetched batch (the worker's getmany returns up to 5,000)
CYCLE_EVERY = 5000  # records between two cycles


def write_dataset(path: Path, events: int, seed: int) -> dict:
    """The make-bench data set, as msgpack (topic, key, value) triples, for the children."""
    import msgspec

    spec = importlib.util.spec_from_file_location("bench_pipeline",
                                                  ROOT / "bench" / "bench_pipeline.py")
    bp = sys.modules["bench_pipeline"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bp)  # type: ignore[union-attr]
    records, info, _ = bp.make_dataset(events, seed, 4.0, datetime.now(timezone.utc))
    path.write_bytes(msgspec.msgpack.encode([(r.topic, r.key, r.value) for r in records]))
    info["now"] = time.time()  # the data set ends about a minute before: the children's clock
    return info


def child(path: str, now0: float, root: str) -> None:
    """Feed the data set through one Engine of the tree `root`; print timings as JSON."""
    import msgspec

    sys.path.insert(0, root)

    from stream import config
    from stream._compiled import compiled_modules
    from stream.kpi.engine import Engine, encode_customer_record
    from stream.kpi.shard import InteractionShard

    try:  # how the worker applies a fetched batch (an older tree may not have it)
        from stream.memory import growing_state
    except ImportError:
        growing_state = contextlib.nullcontext

    records = msgspec.msgpack.decode(Path(path).read_bytes())
    cfg = config.load()
    try:  # the worker's scorer (VADER, cached): customer messages are scored as in the worker
        from stream.sentiment import default_scorer
        scorer = default_scorer(cfg)
    except ImportError:
        scorer = None
    engine = Engine(cfg, scorer)
    ingest = engine.ingest
    clock = time.perf_counter_ns
    by_kind: dict[str, list[int]] = {}  # kind -> [records, ns]
    cycle_ns = batch_ns = 0
    started = time.process_time()
    t0 = time.perf_counter()
    for first in range(0, len(records), BATCH):
        t_batch = clock()
        in_records = 0
        with growing_state():
            for i in range(first, min(first + BATCH, len(records))):
                topic, key, value = records[i]
                kind = KIND.get(topic, "interactions")
                partition = int.from_bytes(key[:2], "big") % 4
                t = clock()
                ingest(kind, value, partition, i, topic)
                spent = clock() - t
                in_records += spent
                slot = by_kind.get(kind)
                if slot is None:
                    slot = by_kind[kind] = [0, 0]
                slot[0] += 1
                slot[1] += spent
        batch_ns += clock() - t_batch - in_records
        if (first // BATCH + 1) % (CYCLE_EVERY // BATCH) == 0 or first + BATCH >= len(records):
            t = clock()
            for customer, iid, fcr in engine.take_customer_records():
                ingest("customers", encode_customer_record(customer, iid, fcr),
                       int(customer[:8], 16) % 4, i, "cc.customers")
            # the worker's clocks (Pipeline._advance_clocks): the wall clock, the interaction
            # shards' timeouts at their watermark while a backlog waits
            now = now0 + time.perf_counter() - t0
            for store in engine.stores():
                if isinstance(store, InteractionShard):
                    store.advance(now, timeouts_at=store.max_ts)
                else:
                    store.advance(now)
            engine.take_outputs()
            gc.freeze()  # as the worker does after each cycle (Pipeline._collect_garbage)
            cycle_ns += clock() - t
    cpu = time.process_time() - started
    print(json.dumps({"records": len(records), "by_kind": by_kind, "cycle_ns": cycle_ns,
                      "batch_ns": batch_ns,
                      "cpu_s": cpu, "compiled": len(compiled_modules()),
                      "minute_buckets": sum(len(s.minutes) for s in engine.stores())}))


def run_child(path: Path, now0: float, pure: bool, root: Path = ROOT) -> dict:
    env = {**os.environ}
    env.pop("CCPULSE_PURE_PYTHON", None)
    if pure:
        env["CCPULSE_PURE_PYTHON"] = "1"
    out = subprocess.run([sys.executable, __file__, "--child", str(path), "--now", str(now0),
                          "--root", str(root)], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def per_record_us(r: dict) -> float:
    ns = sum(v[1] for v in r["by_kind"].values()) + r["cycle_ns"] + r.get("batch_ns", 0)
    return ns / 1000 / r["records"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", choices=("compiled", "source"), help="one mode only")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--now", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument("--against", type=Path, metavar="DIR",
                    help="another checkout: alternate it with this tree, both compiled")
    args = ap.parse_args()
    if args.child:
        child(args.child, args.now, args.root)
        return
    with tempfile.TemporaryDirectory(prefix="ccpulse-engine-") as tmp:
        path = Path(tmp) / "records.msgpack"
        t = time.perf_counter()
        info = write_dataset(path, args.events, args.seed)
        print(f"data set: {args.events:,} records ({info['agents']} agents) in "
              f"{time.perf_counter() - t:.1f}s", flush=True)
        modes = [args.only] if args.only else ["compiled", "source"]
        roots = {m: ROOT for m in modes}
        if args.against:
            modes = ["this tree", "against"]
            roots = {"this tree": ROOT, "against": args.against.resolve()}
        results: dict[str, list[dict]] = {m: [] for m in modes}
        for rnd in range(args.rounds):
            for mode in modes:
                r = run_child(path, info["now"], mode == "source", roots[mode])
                results[mode].append(r)
                kinds = ", ".join(f"{k} {v[1] / 1000 / v[0]:.1f}"
                                  for k, v in sorted(r["by_kind"].items()))
                print(f"round {rnd + 1} {mode} ({r['compiled']} modules compiled): "
                      f"{per_record_us(r):.2f} µs/record; by topic µs: {kinds}; cycles "
                      f"{r['cycle_ns'] / 1e9:.2f} s; outside ingest (loop, collector) {r['batch_ns'] / 1e9:.2f} s; process CPU {r['cpu_s']:.1f} s; "
                      f"{r['minute_buckets']:,} minute buckets at the end", flush=True)
        means = {m: statistics.mean(per_record_us(r) for r in rs) for m, rs in results.items()}
        line = ", ".join(f"{m} {v:.2f} µs/record" for m, v in means.items())
        if "source" in means and "compiled" in means:
            line += f"; compiled ÷ source time {means['compiled'] / means['source']:.2f}×"
        if "against" in means:
            line += f"; this tree ÷ {args.against} time {means['this tree'] / means['against']:.2f}×"
        print(f"means over {args.rounds} rounds: {line}")


if __name__ == "__main__":
    main()
