"""Windows and scopes from buckets, read at publish time.

`window_partials` sums one worker's buckets into (scope, window) accumulators; partials of
several partitions or workers are combined by `merge` (elementwise addition), and only then
turned into ratios. Rolling windows end with the current minute: `15m` is the current minute
and the 14 before it, `1h` the current and 59 before, `today` everything since local
midnight. Agent open spans (the state an agent is in right now) are added up to `now`.

The queue side (center, queue, channel) reads the stores' agent-free sums and the agent side
reads per-agent key sets, so a publish cycle can refresh every queue scope at a cost that
does not grow with the number of agents, and the agent scopes one slice at a time.
"""

from __future__ import annotations

import zlib
from functools import lru_cache
from typing import Collection, Iterable
from zoneinfo import ZoneInfo

from . import buckets as b
from .agents import OCC_SLOT, AgentShard
from .shard import scopes_of
from .store import BucketStore
from .windows import INTERVAL, MINUTE, WINDOWS, interval_of, minute_of, window_start

Partial = dict[tuple[str, str], list[float]]


def _add(target: dict, key, acc: list[float]) -> None:
    cur = target.get(key)
    if cur is None:
        target[key] = list(acc)
    else:
        b.add_into(cur, acc)


def _bounds(now: float, tz: ZoneInfo) -> tuple[dict[str, int], int, int]:
    """Window starts, the end of the current minute, and the current interval's start."""
    return ({w: window_start(w, now, tz) for w in WINDOWS}, minute_of(now) + MINUTE,
            interval_of(now))


def _bucket_windows(items, starts: dict[str, int], end: int, current_interval: int,
                    out: dict, scope_key) -> None:
    """Add minute buckets ((key, minute), acc) into the rolling windows and today's tail.

    The windows nest (today's tail ⊆ 15m ⊆ 1h: the current interval starts within the last
    15 minutes), so each bucket is filed once under the innermost window it belongs to and
    each group is summed by columns (`buckets.total`); the windows are then sums of their groups.
    """
    s15, s1h = starts["15m"], starts["1h"]
    tail = max(current_interval, starts["today"])
    groups: dict[tuple, list] = {}
    for key, minute, acc in items:
        if minute >= end or minute < s1h:
            continue
        gkey = (scope_key(key), 0 if minute >= tail else 1 if minute >= s15 else 2)
        group = groups.get(gkey)
        if group is None:
            groups[gkey] = [acc]
        else:
            group.append(acc)
    for (k, inner), accs in groups.items():
        acc = b.total(accs)
        for w in _NESTED[inner]:
            _add(out, (k, w), acc)


_NESTED = (("today", "15m", "1h"), ("15m", "1h"), ("1h",))  # windows holding each group


def _open_spans(store: AgentShard, now: float, starts: dict[str, int], out: dict,
                by_agent: bool, agents: Collection[str] | None = None) -> None:
    """Seconds of the spans agents are in right now, up to `now`, split over their queues,
    into ("agent:<id>", window) when `by_agent`, else into ((queue, "*", ""), window).

    The queue side runs every cycle over every agent: spans are first summed per (queues,
    state), so the per-agent work is three subtractions, not a dict update per window and
    queue."""
    sums: dict[tuple, list[float]] = {}
    bounds = [starts[w] for w in WINDOWS]
    for agent, state, since, queues in store.open_spans(now, agents):
        slot = OCC_SLOT.get(state)
        if slot is None:
            continue
        gkey = (agent if by_agent else "", queues, slot)
        cur = sums.get(gkey)
        if cur is None:
            cur = sums[gkey] = [0.0] * len(WINDOWS)
        for i, start in enumerate(bounds):
            seconds = now - (since if since > start else start)
            if seconds > 0:
                cur[i] += seconds
    for (agent, queues, slot), per_window in sums.items():
        targets = queues or ("",)
        for w, seconds in zip(WINDOWS, per_window):
            if seconds <= 0:
                continue
            share = seconds / len(targets)
            for q in targets:
                key = ("agent:" + agent if by_agent else (q, "*", ""), w)
                acc = out.get(key)
                if acc is None:
                    acc = out[key] = b.new()
                acc[slot] += share


def queue_window_partials(stores: Iterable[BucketStore], now: float, tz: ZoneInfo) -> Partial:
    """(scope, window) accumulators of every scope but agents (incl. the internal channel mix).

    Reads the agent-free sums, so its cost does not grow with the number of agents: this is
    what every publish cycle computes.
    """
    starts, end, current = _bounds(now, tz)
    by_key: dict[tuple, list[float]] = {}
    no_agent = lambda key: (key[0], key[1], "")  # noqa: E731
    for store in stores:
        _bucket_windows((((q, ch, ""), m, acc) for (q, ch, m), acc in store.qminutes.items()),
                        starts, end, current, by_key, no_agent)
        for (q, ch, start), acc in store.qintervals.items():
            if starts["today"] <= start < current:
                _add(by_key, ((q, ch, ""), "today"), acc)
        if isinstance(store, AgentShard):
            _open_spans(store, now, starts, by_key, False)
    out: Partial = {}
    for (triple, w), acc in by_key.items():
        for scope in scopes_of(triple, False, mix=True):
            _add(out, (scope, w), acc)
    return out


def agent_window_partials(stores: Iterable[BucketStore], now: float, tz: ZoneInfo,
                          agents: Collection[str] | None = None) -> Partial:
    """(agent:<id>, window) accumulators of `agents` (all agents when None)."""
    starts, end, current = _bounds(now, tz)
    out: Partial = {}
    scope = lambda key: "agent:" + key[2]  # noqa: E731
    for store in stores:
        minutes, intervals = store.minutes, store.intervals
        _bucket_windows(((k, k[3], minutes[k])
                         for _, keys in _agent_keys(store.agent_minutes, agents) for k in keys),
                        starts, end, current, out, scope)
        for agent, keys in _agent_keys(store.agent_intervals, agents):
            for k in keys:
                if starts["today"] <= k[3] < current:
                    _add(out, ("agent:" + agent, "today"), intervals[k])
        if isinstance(store, AgentShard):
            _open_spans(store, now, starts, out, True, agents)
    return out


def _agent_keys(index: dict[str, set[tuple]], agents: Collection[str] | None):
    """(agent, bucket keys) of the index, for `agents` only when given."""
    if agents is None:
        return index.items()
    return ((a, index[a]) for a in agents if a in index)


def window_partials(stores: Iterable[BucketStore], now: float, tz: ZoneInfo,
                    per_agent: bool = True) -> Partial:
    """Every scope's (scope, window) accumulators: the queue side plus, with `per_agent`, all agents."""
    stores = list(stores)
    out = queue_window_partials(stores, now, tz)
    if per_agent:
        out.update(agent_window_partials(stores, now, tz))
    return out


def queue_interval_partials(stores: Iterable[BucketStore], starts: set[int] | None) -> Partial:
    """(scope, interval_start) accumulators of every scope but agents (None = all starts)."""
    out: Partial = {}
    for store in stores:
        for (q, ch, start), acc in store.qintervals.items():
            if starts is not None and start not in starts:
                continue
            for scope in scopes_of((q, ch, ""), False):
                _add(out, (scope, start), acc)
    return out


def agent_interval_partials(stores: Iterable[BucketStore], starts: set[int] | None,
                            agents: Collection[str] | None = None) -> Partial:
    """(agent:<id>, interval_start) accumulators of `agents` (all agents when None)."""
    out: Partial = {}
    for store in stores:
        intervals = store.intervals
        for agent, keys in _agent_keys(store.agent_intervals, agents):
            for k in keys:
                if starts is None or k[3] in starts:
                    _add(out, ("agent:" + agent, k[3]), intervals[k])
    return out


def interval_partials(stores: Iterable[BucketStore], starts: set[int] | None,
                      per_agent: bool = True) -> Partial:
    """(scope, interval_start) accumulators for the given interval starts (None = all)."""
    stores = list(stores)
    out = queue_interval_partials(stores, starts)
    if per_agent:
        out.update(agent_interval_partials(stores, starts))
    return out


@lru_cache(maxsize=1 << 16)
def agent_slice(agent: str, slices: int) -> int:
    """The slice of agents an agent's scope is published with (stable across workers)."""
    return zlib.crc32(agent.encode()) % slices


def merge(partials: Iterable[Partial]) -> Partial:
    out: Partial = {}
    for partial in partials:
        for key, acc in partial.items():
            _add(out, key, acc)
    return out


def closed_intervals(starts: Iterable[int], now: float) -> list[int]:
    return sorted(s for s in starts if s + INTERVAL <= now)
