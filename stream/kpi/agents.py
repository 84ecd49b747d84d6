"""Agent states: live counts per queue and state, and time-in-state for occupancy.

Each agent keeps the state changes of its recent past (sorted by event time), and the
occupancy facts they produced: seconds busy / acw / available per minute, split evenly
over the queues the agent serves. Like interactions, facts are re-derived whenever a
change arrives, so a late change is exact. Changes older than the recent past are final;
a change older still goes to the dead-letter topic as `too_late`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from . import buckets as b
from .shard import DeadLetter
from .store import BucketStore
from .windows import MINUTE, span_pieces

OCC_SLOT = {"busy": b.OCC_BUSY, "acw": b.OCC_ACW, "available": b.OCC_AVAILABLE}
STATES = ("available", "busy", "acw", "aux", "offline")


@dataclass(slots=True)
class Change:
    ts: float
    state: str
    queues: tuple
    capacity: tuple  # ((channel, n), ...)
    event_id: str


@dataclass(slots=True)
class AgentTimeline:
    changes: list[Change] = field(default_factory=list)
    facts: list = field(default_factory=list)
    final_before: float = 0.0  # changes before this are final and forgotten
    # the changes' event ids, for the duplicate check (a scan of an hour's changes per
    # change was a tenth of an agent change's cost). Derived, never checkpointed; rebuilt
    # when it does not match the changes (None, or the history was cut)
    ids: set | None = None

    def has_change(self, event_id: str) -> bool:
        ids = self.ids
        if ids is None or len(ids) != len(self.changes):
            ids = self.ids = {c.event_id for c in self.changes}
        return event_id in ids


def span_facts(agent: str, start: float, end: float, state: str, queues: tuple) -> list:
    """Occupancy facts for one closed span, per minute and per served queue. Runs on every
    agent state change (a sixth of all events): one key per queue and one delta per minute,
    shared."""
    slot = OCC_SLOT.get(state)
    if slot is None or end <= start:
        return []
    targets = queues or ("",)
    share = 1.0 / len(targets)
    keys = [(q, "*", agent) for q in targets]
    out = []
    for minute, seconds in span_pieces(start, end, MINUTE):
        delta = ((slot, round(seconds * share, 6)),)
        for key in keys:
            out.append((key, minute, delta))
    return out


class AgentShard(BucketStore):
    """State of one `cc.agent-states` partition."""

    def __init__(self, retention_s: float, minute_retention_s: float, name: str = "",
                 history_s: float = 3600.0) -> None:
        super().__init__(retention_s, minute_retention_s)
        self.name = name
        self.history_s = history_s
        self.agents: dict[str, AgentTimeline] = {}
        self.dirty_agents: set[str] = set()
        self.deadletters: list[DeadLetter] = []
        self.duplicates = 0
        self.new_events: Counter = Counter()

    def state_sizes(self) -> dict[str, int]:
        return {**BucketStore.state_sizes(self), "agent_timelines": len(self.agents)}

    def apply_change(self, agent: str, change: Change, raw: bytes = b"", topic: str = "",
                     partition: int = -1, offset: int = -1) -> str:
        tl = self.agents.get(agent)
        if tl is None:
            tl = self.agents[agent] = AgentTimeline()
        if tl.has_change(change.event_id):
            self.duplicates += 1
            return "duplicate"
        if change.ts < tl.final_before or change.ts < self.clock - self.retention_s:
            self.deadletters.append(DeadLetter("too_late", "agent state change older than the "
                                               "agent's recent history", raw, topic, partition,
                                               offset))
            return "too_late"
        if change.ts > self.max_ts:
            self.max_ts = change.ts
        changes = tl.changes
        tl.ids.add(change.event_id)  # has_change made it match the changes
        last = changes[-1] if changes else None
        if last is None or (change.ts, change.event_id) > (last.ts, last.event_id):
            # in order (the live case): the spans before stay as they are, only the span the
            # previous change opened is closed now — apply just its facts (bench: the full
            # re-derivation below was 56% of the worker's time, quadratic in an hour's changes)
            changes.append(change)
            if last is not None:
                new = span_facts(agent, last.ts, change.ts, last.state, last.queues)
                for fact in new:
                    self.apply_fact(fact, 1.0)
                tl.facts.extend(new)
            self.dirty_agents.add(agent)
        else:
            changes.append(change)
            changes.sort(key=lambda c: (c.ts, c.event_id))
            self._settle(agent, tl)
        self.new_events[("agent.state_changed", "")] += 1
        return "ok"

    def _derive(self, agent: str, changes: list) -> list:
        new = []
        for cur, nxt in zip(changes, changes[1:]):
            new.extend(span_facts(agent, cur.ts, nxt.ts, cur.state, cur.queues))
        return new

    def _settle(self, agent: str, tl: AgentTimeline) -> None:
        new = self._derive(agent, tl.changes)
        self.reconcile(tl.facts, new)
        tl.facts = new
        self.dirty_agents.add(agent)

    def advance(self, now: float) -> None:
        if now < self.clock:
            return
        self.clock = now
        cutoff = now - self.history_s
        for agent, tl in self.agents.items():
            # keep the last change (the open span) and everything after the cutoff
            keep_from = 0
            while keep_from < len(tl.changes) - 1 and tl.changes[keep_from + 1].ts < cutoff:
                keep_from += 1
            if keep_from:
                final_ts = tl.changes[keep_from].ts
                tl.changes = tl.changes[keep_from:]
                tl.ids = None
                # the facts of the spans kept, re-derived: a filter on the facts' minute would
                # drop the first minute piece of the span that opens at final_ts (its bucket
                # starts before final_ts), and the next full _settle would add it a second time
                tl.facts = self._derive(agent, tl.changes)
                tl.final_before = final_ts
                self.dirty_agents.add(agent)
        self.prune_buckets(now)

    def current_changes(self, now: float):
        """Each agent's last change at or before `now` (the state it is in)."""
        for tl in self.agents.values():
            changes = tl.changes
            if changes and changes[-1].ts <= now:
                yield changes[-1]

    def open_spans(self, now: float, agents: Iterable[str] | None = None):
        """(agent, state, since, queues) of the span still open at `now` (of `agents` only,
        when given)."""
        timelines = self.agents
        for agent in (timelines if agents is None else agents):
            tl = timelines.get(agent)
            if tl is not None and tl.changes:
                last = tl.changes[-1]
                if last.ts <= now:
                    yield agent, last.state, last.ts, last.queues

    def take_outputs(self):
        out = (self.deadletters, [], self.new_events, self.duplicates)
        self.deadletters, self.new_events, self.duplicates = [], Counter(), 0
        return out
