"""Minute and 15-minute interval buckets keyed by (queue, channel, agent, start).

Shared by the interaction and agent shards. Minute buckets serve the rolling 15m/1h
windows and are kept `minute_retention_s`; interval buckets serve `today`, the interval
history and late events, and are kept for the retention. Every change is remembered as
dirty (for the checkpoint) and its interval as changed (for the interval history).

Two derived indexes keep the publish cycle independent of the number of agents: agent-free
sums per (queue, channel, start) — exactly the sum of that key's agent buckets — feed the
center, queue and channel scopes every cycle, and per-agent key sets let the agent scopes be
published a slice of agents at a time. Neither is checkpointed: `rebuild_index` derives
them from the buckets after a restore.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection

from . import buckets as b
from .windows import INTERVAL, interval_of, minute_of


class BucketStore:
    def __init__(self, retention_s: float, minute_retention_s: float) -> None:
        self.retention_s = retention_s
        self.minute_retention_s = minute_retention_s
        self.minutes: dict[tuple, list[float]] = {}
        self.intervals: dict[tuple, list[float]] = {}
        # derived (see the module docstring): (q, ch, start) sums and agent -> bucket keys
        self.qminutes: dict[tuple, list[float]] = {}
        self.qintervals: dict[tuple, list[float]] = {}
        self.agent_minutes: dict[str, set[tuple]] = {}
        self.agent_intervals: dict[str, set[tuple]] = {}
        self.clock = 0.0
        self.max_ts = 0.0  # event-time watermark of this shard
        self.dirty_minutes: set[tuple] = set()
        self.dirty_intervals: set[tuple] = set()
        self.changed_intervals: set[int] = set()
        # the agent buckets among them: each refreshes only its agent's slice (an FCR outcome
        # settled days later changes a few agents' intervals, not every slice's)
        self.changed_agent_keys: set[tuple] = set()
        # interval starts some other output still has to publish from memory (the agent
        # slices waiting for their turn): set by the pipeline, never pruned
        self.keep_intervals: Collection[int] = ()
        # no interval starting here or later was ever pruned (see `complete_from`)
        self._whole_from = -math.inf
        self._prune_gate: tuple = ()

    def apply_fact(self, fact: tuple, sign: float) -> None:
        """Add (or retract, sign=-1) a fact ((q, ch, agent), ts, delta) into its buckets: the
        minute and interval bucket of its key and their agent-free sums, all four in one
        pass over the delta (`buckets.apply_all`). Runs for every fact of every event."""
        key, ts, delta = fact
        q, ch, agent = key
        targets = []
        minute = minute_of(ts)
        if minute >= self.clock - self.minute_retention_s:
            mkey = (q, ch, agent, minute)
            acc = self.minutes.get(mkey)
            if acc is None:
                acc = self.minutes[mkey] = b.new()
                if agent:
                    self.agent_minutes.setdefault(agent, set()).add(mkey)
            targets.append(acc)
            self.dirty_minutes.add(mkey)
            qkey = (q, ch, minute)
            acc = self.qminutes.get(qkey)
            if acc is None:
                acc = self.qminutes[qkey] = b.new()
            targets.append(acc)
        interval = interval_of(ts)
        if interval >= self.clock - self.retention_s - INTERVAL:
            ikey = (q, ch, agent, interval)
            acc = self.intervals.get(ikey)
            if acc is None:
                acc = self.intervals[ikey] = b.new()
                if agent:
                    self.agent_intervals.setdefault(agent, set()).add(ikey)
            targets.append(acc)
            qkey = (q, ch, interval)
            acc = self.qintervals.get(qkey)
            if acc is None:
                acc = self.qintervals[qkey] = b.new()
            targets.append(acc)
            self.dirty_intervals.add(ikey)
            self.changed_intervals.add(interval)
            if agent:
                self.changed_agent_keys.add(ikey)
        if targets:
            b.apply_all(targets, delta, sign)

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
        # which keys are past a horizon only changes when it crosses a bucket boundary (or
        # the unpublished intervals change): skip the scans of every key otherwise
        gate = (math.ceil(horizon / 60), math.ceil((now - self.retention_s) / INTERVAL),
                len(self.changed_intervals), len(self.keep_intervals))
        if gate == self._prune_gate:
            return
        self._prune_gate = gate
        for key in [k for k in self.minutes if k[3] < horizon]:
            del self.minutes[key]
            self.dirty_minutes.add(key)
            _unindex(self.agent_minutes, key)
        for key in [k for k in self.qminutes if k[2] < horizon]:
            del self.qminutes[key]
        ihorizon = now - self.retention_s - INTERVAL
        unpublished, kept = self.changed_intervals, self.keep_intervals
        gone = [k for k in self.intervals
                if k[3] < ihorizon and k[3] not in unpublished and k[3] not in kept]
        for key in gone:
            del self.intervals[key]
            self.dirty_intervals.add(key)
            _unindex(self.agent_intervals, key)
        if gone:
            self._whole_from = max(self._whole_from, max(k[3] for k in gone) + INTERVAL)
        for key in [k for k in self.qintervals
                    if k[2] < ihorizon and k[2] not in unpublished and k[2] not in kept]:
            del self.qintervals[key]

    def state_sizes(self) -> dict[str, int]:
        """Entries of the state by what they hold: all bounded by a retention, so a long run
        shows them level once it is full (`cc_state_entries`; the bench samples it)."""
        return {"minute_buckets": len(self.minutes), "interval_buckets": len(self.intervals)}

    def complete_from(self) -> float:
        """Intervals starting here or later are whole in memory: pruning and the refusal of
        late facts only ever touch intervals before clock − retention − one interval, and
        the clock only moves forward. Earlier still where nothing that late was pruned
        (intervals kept for their publication, `keep_intervals`): a late fact refused there
        is missing from the part in Redis too, so memory and Redis agree."""
        return min(self.clock - self.retention_s - INTERVAL, self._whole_from)

    def rebuild_index(self) -> None:
        """Derive the agent-free sums and the agent key sets from the buckets (after a restore)."""
        # what the shard pruned before its checkpoint is not known: as far as the retention
        self._whole_from = self.clock - self.retention_s - INTERVAL
        for source, sums, index in ((self.minutes, self.qminutes, self.agent_minutes),
                                    (self.intervals, self.qintervals, self.agent_intervals)):
            sums.clear()
            index.clear()
            for key, acc in source.items():
                q, ch, agent, start = key
                cur = sums.get((q, ch, start))
                if cur is None:
                    sums[(q, ch, start)] = list(acc)
                else:
                    b.add_into(cur, acc)
                if agent:
                    index.setdefault(agent, set()).add(key)


def _unindex(index: dict[str, set[tuple]], key: tuple) -> None:
    agent = key[2]
    if agent:
        keys = index.get(agent)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[agent]
