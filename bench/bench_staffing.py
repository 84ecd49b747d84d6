"""Benchmark staffing: a day plan (96 intervals × 50 queues), one 5,000-Erlang search,
and the worker's per-publish call for 50 queues. Run: .venv/bin/python bench/bench_staffing.py

Not a test: it prints figures. Loads follow a smooth daily curve per queue, each queue with
its own size and handle time, so few intervals share inputs (no help from caching).
"""

from __future__ import annotations

import math
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.kpi.erlang import QueueLoad, Targets, required_agents  # noqa: E402
from stream.staffing import _live_required, live_queue_staffing, plan_intervals  # noqa: E402

QUEUES = 50
INTERVALS = 96  # one day of 15-minute intervals


def day_rows(q: int) -> list[tuple[str, float, float]]:
    """Contacts per 15 minutes: quiet nights, a morning and an afternoon peak."""
    peak = 5 + 490 * ((q * 37) % 50) / 49  # 5 … 495 contacts per interval at the peak
    aht = 150 + (q * 53) % 400  # 150 … 549 s
    t0 = datetime(2024, 5, 6)
    rows = []
    for i in range(INTERVALS):
        h = i / 4
        shape = 0.05 + math.exp(-((h - 10.5) / 2.2) ** 2) + 0.8 * math.exp(-((h - 15) / 2.5) ** 2)
        contacts = round(peak * shape / 1.05)
        rows.append(((t0 + timedelta(minutes=15 * i)).isoformat(), contacts, aht + (i % 7)))
    return rows


def bench_plan(patience: float | None) -> tuple[float, int, float]:
    targets = Targets(0.8, 20, 0.85, 0.3)
    data = [day_rows(q) for q in range(QUEUES)]
    start = time.perf_counter()
    total_agents = 0
    max_erlangs = 0.0
    for rows in data:
        for p in plan_intervals(rows, 15, targets, patience_s=patience):
            total_agents += p.agents
            max_erlangs = max(max_erlangs, p.offered_erlangs)
    return time.perf_counter() - start, total_agents, max_erlangs


def bench_big(patience: float | None, max_occupancy: float) -> tuple[float, int, float]:
    load = QueueLoad(5000 * 3600 / 180, 180, patience_s=patience)  # 5,000 Erlangs
    start = time.perf_counter()
    r = required_agents(load, Targets(0.8, 20, max_occupancy, 0.3))
    return time.perf_counter() - start, r.agents, r.metrics.service_level


def bench_live() -> float:
    _live_required.cache_clear()
    start = time.perf_counter()
    for q in range(QUEUES):
        live_queue_staffing(10 + q * 9, 170.0 + q * 3.1, 300.0, 0.8, 20.0, 0.85, 0.3,
                            1 if q % 3 else 3, 240.0 if q % 2 else None, 10)
    return time.perf_counter() - start


def main() -> None:
    print(f"day plan: {INTERVALS} intervals x {QUEUES} queues = {INTERVALS * QUEUES} searches")
    for patience, name in ((None, "Erlang C"), (300.0, "Erlang A (patience 300 s)")):
        best = min(bench_plan(patience)[0] for _ in range(3))
        _, agents, peak = bench_plan(patience)
        print(f"  {name:<26} {best * 1e3:8.1f} ms  ({best / (INTERVALS * QUEUES) * 1e6:6.1f} µs/interval; "
              f"peak load {peak:.0f} Erlangs; {agents} agent-intervals)")
    print("one search at 5,000 Erlangs (AHT 180 s, T 20 s, SL 80%):")
    for patience, name in ((None, "Erlang C"), (300.0, "Erlang A (patience 300 s)")):
        for occ in (0.85, 1.0):
            dt, agents, sl = min(bench_big(patience, occ) for _ in range(3))
            print(f"  {name:<26} max occ {occ:4.2f}: {dt * 1e3:7.2f} ms -> {agents} agents (SL {sl:.3f})")
    dt = min(bench_live() for _ in range(5))
    print(f"live staffing, {QUEUES} queues uncached (one publish): {dt * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
