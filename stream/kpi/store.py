"""Minute and 15-minute interval buckets keyed by (queue, channel, agent, start).

Shared by the interaction and agent shards. Minute buckets serve the rolling 15m/1h
windows and are kept `minute_retention_s`; interval buckets serve `today`, the interval
history and late events, and are kept for the retention. Every change is remembered as
dirty (for the checkpoint) and its interval as changed (for the interval history).
"""

from __future__ import annotations

from collections import Counter

from . import buckets as b
from .windows import INTERVAL, interval_of, minute_of


class BucketStore:
    def __init__(self, retention_s: float, minute_retention_s: float) -> None:
        self.retention_s = retention_s
        self.minute_retention_s = minute_retention_s
        self.minutes: dict[tuple, list[float]] = {}
        self.intervals: dict[tuple, list[float]] = {}
        self.clock = 0.0
        self.max_ts = 0.0  # event-time watermark of this shard
        self.dirty_minutes: set[tuple] = set()
        self.dirty_intervals: set[tuple] = set()
        self.changed_intervals: set[int] = set()

    def apply_fact(self, fact: tuple, sign: float) -> None:
        """Add (or retract, sign=-1) a fact ((q, ch, agent), ts, delta) into its buckets."""
        key, ts, delta = fact
        q, ch, agent = key
        minute = minute_of(ts)
        if minute >= self.clock - self.minute_retention_s:
            mkey = (q, ch, agent, minute)
            acc = self.minutes.get(mkey)
            if acc is None:
                acc = self.minutes[mkey] = b.new()
            b.apply(acc, delta, sign)
            self.dirty_minutes.add(mkey)
        interval = interval_of(ts)
        if interval >= self.clock - self.retention_s - INTERVAL:
            ikey = (q, ch, agent, interval)
            acc = self.intervals.get(ikey)
            if acc is None:
                acc = self.intervals[ikey] = b.new()
            b.apply(acc, delta, sign)
            self.dirty_intervals.add(ikey)
            self.changed_intervals.add(interval)

    def reconcile(self, applied: list, derived: list) -> list:
        """Move the buckets from the facts `applied` to the facts `derived`; returns the facts
        that are new. Both are multisets: an equal list (the common case) costs one compare."""
        if applied == derived:
            return []
        n = len(applied)
        if derived[:n] == applied:  # the usual change: facts only added (offer, answer, …)
            added = derived[n:]
            for fact in added:
                self.apply_fact(fact, 1.0)
            return list(added)
        old, new = Counter(applied), Counter(derived)
        if old == new:
            return []
        for fact, n in (old - new).items():
            for _ in range(n):
                self.apply_fact(fact, -1.0)
        added = []
        for fact, n in (new - old).items():
            for _ in range(n):
                self.apply_fact(fact, 1.0)
                added.append(fact)
        return added

    def prune_buckets(self, now: float) -> None:
        """Drop minute buckets past their horizon and published intervals past retention."""
        horizon = now - self.minute_retention_s - 60
        for key in [k for k in self.minutes if k[3] < horizon]:
            del self.minutes[key]
            self.dirty_minutes.add(key)
        ihorizon = now - self.retention_s - INTERVAL
        unpublished = self.changed_intervals
        for key in [k for k in self.intervals if k[3] < ihorizon and k[3] not in unpublished]:
            del self.intervals[key]
            self.dirty_intervals.add(key)
