"""The indexed read paths of the publish cycle equal a plain scan of every bucket.

A publish cycle reads the queue side from the stores' agent-free sums and the agent side
one slice of agents at a time (issue 12: the cycle's cost must not grow with the agents).
Here a simulated center (agents with states and shifts, transfers, holds, surveys) is fed
to the engine and, at several moments, those paths are compared with `scan_windows` /
`scan_intervals` below — the straightforward sum over every (queue, channel, agent, start)
bucket that the rollup used before the indexes existed.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timezone

import pytest

from stream import config
from stream.kpi import buckets as b
from stream.kpi.agents import OCC_SLOT, AgentShard
from stream.kpi.engine import Engine
from stream.kpi.rollup import (agent_interval_partials, agent_slice, agent_window_partials,
                               interval_partials, merge, queue_interval_partials,
                               queue_window_partials, window_partials)
from stream.kpi.shard import scopes_of
from stream.kpi.windows import MINUTE, WINDOWS, interval_of, minute_of, window_start
from stream.simulate import SimConfig, Simulator

KIND = {"cc.interactions": "interactions", "cc.agent-states": "agents", "cc.surveys": "surveys"}


def _add(target: dict, key, acc) -> None:
    cur = target.get(key)
    if cur is None:
        target[key] = list(acc)
    else:
        b.add_into(cur, acc)


def scan_windows(stores, now: float, tz) -> dict:
    """Reference: every bucket of every store, scope by scope (no index)."""
    starts = {w: window_start(w, now, tz) for w in WINDOWS}
    end, current = minute_of(now) + MINUTE, interval_of(now)
    by_key: dict = {}
    for store in stores:
        for (q, ch, agent, minute), acc in store.minutes.items():
            if minute >= end:
                continue
            for w in ("15m", "1h"):
                if minute >= starts[w]:
                    _add(by_key, ((q, ch, agent), w), acc)
            if minute >= current and minute >= starts["today"]:
                _add(by_key, ((q, ch, agent), "today"), acc)
        for (q, ch, agent, start), acc in store.intervals.items():
            if starts["today"] <= start < current:
                _add(by_key, ((q, ch, agent), "today"), acc)
        if isinstance(store, AgentShard):
            for agent, state, since, queues in store.open_spans(now):
                slot = OCC_SLOT.get(state)
                if slot is None:
                    continue
                targets = queues or ("",)
                for w in WINDOWS:
                    seconds = now - max(since, starts[w])
                    if seconds > 0:
                        for q in targets:
                            acc = by_key.setdefault(((q, "*", agent), w), b.new())
                            acc[slot] += seconds / len(targets)
    out: dict = {}
    for (triple, w), acc in by_key.items():
        for scope in scopes_of(triple, True, mix=True):
            _add(out, (scope, w), acc)
    return out


def scan_intervals(stores, starts) -> dict:
    out: dict = {}
    for store in stores:
        for (q, ch, agent, start), acc in store.intervals.items():
            if starts is None or start in starts:
                for scope in scopes_of((q, ch, agent), True):
                    _add(out, (scope, start), acc)
    return out


def assert_same(expected: dict, got: dict) -> None:
    def nonzero(d):
        return {k: v for k, v in d.items() if not b.is_zero(v)}

    exp, act = nonzero(expected), nonzero(got)
    assert set(exp) == set(act), sorted(set(exp) ^ set(act))[:10]
    for key, acc in exp.items():
        for i, (x, y) in enumerate(zip(b.widen(list(acc)), b.widen(list(act[key])))):
            assert y == pytest.approx(x, rel=1e-9, abs=1e-6), (key, b.FIELDS[i] if i < b.N_FIELDS else i)


def members(engine: Engine, slices: int, k: int) -> set[str]:
    return {a for a in engine.agents if agent_slice(a, slices) == k}


@pytest.fixture(scope="module", params=[3, 11])
def fed(request):
    start = datetime(2026, 3, 28, 21, 0, tzinfo=timezone.utc)  # spans the Berlin DST night
    sim = Simulator(SimConfig(seed=request.param, rate=1.0, agents=30, start=start,
                              duration_s=3 * 3600, timezone="Europe/Berlin"))
    cfg = config.load(environ={"CCPULSE_KPI__RETENTION_H": "48"}, timezone="Europe/Berlin")
    engine = Engine(cfg)
    engine.future_limit = None
    last = start.timestamp()
    for rec in sim:
        p = zlib.crc32(rec.key or b"") % 4
        engine.ingest(KIND[rec.topic], rec.value, p)
        last = rec.ts.timestamp()
    engine.route_customer_records()
    return engine, last


def test_tiered_windows_equal_a_full_scan(fed):
    engine, last = fed
    stores = engine.stores()
    assert sum(len(s.agent_minutes) for s in stores) > 20  # agents are really there
    for now in (last - 1800.5, last - 61, last, last + 7.25):
        engine.advance(now)
        expected = scan_windows(stores, now, engine.cfg.tz)
        assert_same(expected, window_partials(stores, now, engine.cfg.tz))
        # the two sides are disjoint and together the whole
        queue_side = queue_window_partials(stores, now, engine.cfg.tz)
        assert not any(s.startswith("agent:") for s, _ in queue_side)
        # the agent side, a slice at a time, adds up to all agents
        slices = [agent_window_partials(stores, now, engine.cfg.tz, members(engine, 7, k))
                  for k in range(7)]
        agents = merge(slices)
        assert sum(len(s) for s in slices) == len(agents)  # no agent in two slices
        assert_same({k: v for k, v in expected.items() if k[0].startswith("agent:")}, agents)
        assert_same({k: v for k, v in expected.items() if not k[0].startswith("agent:")},
                    queue_side)


def test_tiered_intervals_equal_a_full_scan(fed):
    engine, last = fed
    stores = engine.stores()
    all_starts = {k[3] for s in stores for k in s.intervals}
    some = set(sorted(all_starts)[-3:])
    for starts in (None, some):
        expected = scan_intervals(stores, starts)
        assert_same(expected, interval_partials(stores, starts))
        parts = [agent_interval_partials(stores, starts, members(engine, 5, k)) for k in range(5)]
        assert_same(expected, merge([queue_interval_partials(stores, starts), *parts]))


def test_indexes_are_rebuilt_exactly_and_follow_pruning(fed):
    engine, last = fed
    for store in engine.stores():
        before = (dict(store.qminutes), dict(store.qintervals),
                  {a: set(k) for a, k in store.agent_minutes.items()},
                  {a: set(k) for a, k in store.agent_intervals.items()})
        store.rebuild_index()
        assert set(store.qminutes) == set(before[0]) and set(store.qintervals) == set(before[1])
        for key, acc in before[0].items():
            assert store.qminutes[key] == pytest.approx(acc, abs=1e-6)
        assert store.agent_minutes == before[2] and store.agent_intervals == before[3]
    # pruning drops index entries with their buckets (here: everything counts as published)
    for later in (last + 1800, last + 47 * 3600):
        kept = 0
        for store in engine.stores():
            store.changed_intervals = set()
            store.prune_buckets(later)
            assert {(k[0], k[1], k[3]) for k in store.minutes} == set(store.qminutes)
            assert {(k[0], k[1], k[3]) for k in store.intervals} == set(store.qintervals)
            assert set().union(*store.agent_minutes.values(), set()) == {
                k for k in store.minutes if k[2]}
            assert set().union(*store.agent_intervals.values(), set()) == {
                k for k in store.intervals if k[2]}
            kept += len(store.intervals)
        assert kept  # intervals within the retention are still there
