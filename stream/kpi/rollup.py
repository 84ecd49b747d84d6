"""Windows and scopes from buckets, read at publish time.

`window_partials` sums one worker's buckets into (scope, window) accumulators; partials of
several partitions or workers are combined by `merge` (elementwise addition), and only then
turned into ratios. Rolling windows end with the current minute: `15m` is the current minute
and the 14 before it, `1h` the current and 59 before, `today` everything since local
midnight. Agent open spans (the state an agent is in right now) are added up to `now`.
"""

from __future__ import annotations

from typing import Iterable
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
        for i, v in enumerate(acc):
            if v:
                cur[i] += v


def window_partials(stores: Iterable[BucketStore], now: float, tz: ZoneInfo,
                    per_agent: bool = True) -> Partial:
    starts = {w: window_start(w, now, tz) for w in WINDOWS}
    end = minute_of(now) + MINUTE
    current_interval = interval_of(now)
    by_key: dict[tuple, list[float]] = {}
    for store in stores:
        for (q, ch, agent, minute), acc in store.minutes.items():
            if minute >= end:
                continue
            triple = (q, ch, agent)
            if minute >= starts["15m"]:
                _add(by_key, (triple, "15m"), acc)
            if minute >= starts["1h"]:
                _add(by_key, (triple, "1h"), acc)
            if minute >= current_interval and minute >= starts["today"]:
                _add(by_key, (triple, "today"), acc)
        for (q, ch, agent, start), acc in store.intervals.items():
            if starts["today"] <= start < current_interval:
                _add(by_key, ((q, ch, agent), "today"), acc)
        if isinstance(store, AgentShard):
            for agent, state, since, queues in store.open_spans(now):
                slot = OCC_SLOT.get(state)
                if slot is None:
                    continue
                targets = queues or ("",)
                for w in WINDOWS:
                    seconds = now - max(since, starts[w])
                    if seconds <= 0:
                        continue
                    for q in targets:
                        acc = by_key.setdefault(((q, "*", agent), w), b.new())
                        acc[slot] += seconds / len(targets)
    out: Partial = {}
    for (triple, w), acc in by_key.items():
        for scope in scopes_of(triple, per_agent, mix=True):
            _add(out, (scope, w), acc)
    return out


def interval_partials(stores: Iterable[BucketStore], starts: set[int] | None,
                      per_agent: bool = True) -> Partial:
    """(scope, interval_start) accumulators for the given interval starts (None = all)."""
    out: Partial = {}
    for store in stores:
        for (q, ch, agent, start), acc in store.intervals.items():
            if starts is not None and start not in starts:
                continue
            for scope in scopes_of((q, ch, agent), per_agent):
                _add(out, (scope, start), acc)
    return out


def merge(partials: Iterable[Partial]) -> Partial:
    out: Partial = {}
    for partial in partials:
        for key, acc in partial.items():
            _add(out, key, acc)
    return out


def closed_intervals(starts: Iterable[int], now: float) -> list[int]:
    return sorted(s for s in starts if s + INTERVAL <= now)
