"""One input partition's state: interactions, minute and interval buckets, live indexes.

A shard owns everything derived from one partition of `cc.interactions` (and the same
partition of `cc.surveys`, which shares its key). It is pure: events and a clock in;
buckets, window partials, live figures, dead letters and a checkpoint delta out. The runtime
checkpoints a shard's state together with its input offsets, so a restart resumes exactly.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from . import buckets as b
from .interaction import CONFLICT, PENDING, Derived, Ev, Params, derive, survey_delta
from .store import BucketStore

Key = tuple  # (queue, channel, agent)


@dataclass(slots=True)
class Ix:
    """An interaction in flight: its events, the facts already applied, and summaries."""

    events: list[Ev] = field(default_factory=list)
    facts: list = field(default_factory=list)
    pending_raw: dict = field(default_factory=dict)  # event_id -> raw bytes, until it fits
    waiting: tuple | None = None
    acw_deadline: float | None = None
    done: float | None = None
    handled_key: tuple | None = None
    risk: float | None = None
    risk_since: float | None = None
    last_ts: float = 0.0
    customer_sent: tuple | None = None  # the FCR record last sent for this contact
    # derived from the events, never checkpointed, None after an event is removed (rebuilt
    # when next needed): each spares a scan of every event per event, quadratic in a chat.
    # The events' ids once there are more than SCAN_EVENTS (the duplicate check), and the
    # customer scores, (ts, event_id, score) sorted, once a scored message took the fast path
    ids: set | None = None
    scores: list | None = None


SCAN_EVENTS = 8  # up to this many events a scan for a duplicate id is as quick as a set


def has_event(ix: Ix, event_id: str) -> bool:
    """Whether the interaction already holds an event with this id (a redelivery)."""
    events = ix.events
    if len(events) <= SCAN_EVENTS:
        for e in events:
            if e.event_id == event_id:
                return True
        return False
    ids = ix.ids
    if ids is None or len(ids) != len(events):
        ids = ix.ids = {e.event_id for e in events}
    return event_id in ids


def customer_score(ev: Ev) -> float | None:
    """The sentiment score of a customer message (None for anything else)."""
    if ev.kind == "interaction.message":
        direction, score = ev.extra  # type: ignore[misc]
        if direction == "customer":
            return score
    return None


def add_event(ix: Ix, ev: Ev) -> None:
    ix.events.append(ev)
    if ix.ids is not None:
        ix.ids.add(ev.event_id)
    if ix.scores is not None:
        score = customer_score(ev)
        if score is not None:
            bisect.insort(ix.scores, (ev.ts, ev.event_id, score))


def events_removed(ix: Ix) -> None:
    """Drop what is derived from the events (rebuilt when next needed)."""
    ix.ids = None
    ix.scores = None


@dataclass(slots=True)
class DeadLetter:
    reason: str
    detail: str
    raw: bytes
    topic: str = ""
    partition: int = -1
    offset: int = -1


@dataclass(slots=True)
class ShardSettings:
    params: Params
    retention_s: float = 48 * 3600.0
    minute_retention_s: float = 75 * 60.0
    closed_keep_s: float = 3600.0
    orphan_timeout_s: float = 900.0
    survey_join_s: float = 7 * 86400.0
    max_inflight: int = 500_000


class InteractionShard(BucketStore):
    """State of one interactions/surveys partition pair."""

    def __init__(self, settings: ShardSettings, name: str = "") -> None:
        super().__init__(settings.retention_s, settings.minute_retention_s)
        self.s = settings
        self.name = name
        self.ix: dict[str, Ix] = {}
        self.handled_index: dict[str, tuple] = {}  # iid -> (q, ch, agent, handled_ts)
        self.survey_ids: dict[str, float] = {}  # surveys of forgotten interactions: id -> ts
        self.deadletters: list[DeadLetter] = []
        self.duplicates = 0
        self.new_observations: list[tuple] = []  # ("handle_time"|"answer_wait", q, ch, s)
        self.new_events: Counter = Counter()  # (type, channel) -> count, for cc_events_total
        self.dirty_ix: set[str] = set()
        self.dirty_index: set[str] = set()
        self.customer_outbox: list[tuple] = []  # (customer hash, iid, record | None)
        self.timeout_clock = 0.0  # how far ACW timeouts have been applied (see advance)
        # what `advance` has to look at, so a cycle costs what is due, not the whole state:
        # (deadline, iid) of interactions, never later than the interaction's next timeout,
        # expiry or forgetting on the timeout clock (`_deadline`), with `_sched` the earliest
        # queued per iid; and apart, because it follows the other clock, when an unfinished
        # interaction falls out of retention (`_stale_due`, `_stale_sched`). One queue for
        # both clocks re-queued every interaction on every cycle of a backlog, when the
        # timeout clock (the event watermark) is hours behind `now` (bench: 14 % of ingest)
        self._due: list[tuple[float, str]] = []
        self._sched: dict[str, float] = {}
        self._stale_due: list[tuple[float, str]] = []
        self._stale_sched: dict[str, float] = {}
        self._touched: set[str] = set()  # applied to since the last advance: schedule them
        self._index_expiry: list[tuple[float, str]] = []  # (handled ts, iid) of handled_index
        self._survey_expiry: list[tuple[float, str]] = []  # (ts, survey id) of survey_ids

    def state_sizes(self) -> dict[str, int]:
        return {**BucketStore.state_sizes(self), "interactions": len(self.ix),
                "handled_index": len(self.handled_index), "survey_ids": len(self.survey_ids)}

    # -- events -------------------------------------------------------------------------

    def apply_interaction(self, iid: str, ev: Ev, raw: bytes = b"", topic: str = "",
                          partition: int = -1, offset: int = -1) -> str:
        """Apply one validated interaction or survey event for interaction `iid`."""
        if ev.ts < self.clock - self.s.retention_s:
            self._reject("too_late", f"event older than the {self.s.retention_s:.0f}s retention",
                         raw, topic, partition, offset)
            return "too_late"
        if ev.ts > self.max_ts:
            self.max_ts = ev.ts
        ix = self.ix.get(iid)
        if ix is None:
            if ev.kind == "survey.responded" and iid in self.handled_index:
                return self._apply_forgotten_survey(iid, ev, raw, topic, partition, offset)
            if len(self.ix) >= self.s.max_inflight:
                self._reject("scope_limit", "too many interactions in flight", raw, topic,
                             partition, offset)
                return "scope_limit"
            ix = Ix()
        else:
            if has_event(ix, ev.event_id):
                self.duplicates += 1
                return "duplicate"
            if ev.kind == "interaction.message" and self._message_fast(iid, ix, ev):
                return "ok"
        add_event(ix, ev)
        derived = derive(ix.events, self.timeout_clock, self.s.params)
        new_index = len(ix.events) - 1
        status = derived.status
        if CONFLICT in status:
            old_pending = {e.event_id for e in ix.events[:-1] if e.event_id in ix.pending_raw}
            conflicted = [i for i, st in enumerate(status) if st == CONFLICT]
            if new_index in conflicted or any(ix.events[i].event_id not in old_pending
                                              for i in conflicted):
                ix.events.pop()
                events_removed(ix)
                self._reject("impossible_transition", f"{ev.kind} does not fit interaction "
                             "history", raw, topic, partition, offset)
                if ix.events:
                    self.ix[iid] = ix
                    self._touched.add(iid)
                return "impossible_transition"
            # the newcomer is fine; earlier stragglers that never fitted are the bad ones
            for i in sorted(conflicted, reverse=True):
                bad = ix.events.pop(i)
                events_removed(ix)
                self._reject("impossible_transition", f"{bad.kind} does not fit interaction "
                             "history", ix.pending_raw.pop(bad.event_id, b""), topic, partition, -1)
            derived = derive(ix.events, self.timeout_clock, self.s.params)
            status = derived.status
        self.ix[iid] = ix
        self.dirty_ix.add(iid)
        self._touched.add(iid)
        ix.last_ts = max(ix.last_ts, ev.ts)
        self.new_events[(ev.kind, ev.channel)] += 1
        result = "ok"
        if ix.pending_raw or PENDING in status:  # usually neither: no loop over the events
            for i, st in enumerate(status):
                eid = ix.events[i].event_id
                if st == PENDING:
                    if eid not in ix.pending_raw:
                        ix.pending_raw[eid] = raw if i == new_index else b""
                    if i == new_index:
                        result = "pending"
                elif eid in ix.pending_raw:
                    del ix.pending_raw[eid]
        self._settle(iid, ix, derived)
        return result

    def _message_fast(self, iid: str, ix: Ix, ev: Ev) -> bool:
        """Add a message to a known interaction without re-deriving it, where that is exact.

        A message never changes legs, facts other than sentiment, or any other event's status
        (`_step` only collects its score; it is always legal). So an agent message or an
        unscored one changes nothing derived, and a scored customer message only changes the
        risk while the contact is not done (the sentiment fact exists only once handled).
        Messages are half of all events, and `derive` is linear in the interaction's events.
        """
        scored = customer_score(ev) is not None
        events = ix.events
        if scored:
            if ix.done is not None:
                return False  # may change the sentiment fact: derive
            if not any(e.kind == "interaction.offered" for e in events):
                return False  # no leg yet: derive leaves the risk unset
        add_event(ix, ev)
        self.dirty_ix.add(iid)
        if ev.ts > ix.last_ts:
            ix.last_ts = ev.ts
        self.new_events[(ev.kind, ev.channel)] += 1
        if scored:
            # derive's risk: mean of the last `sentiment_span` scores in (ts, id, score) order
            scores = ix.scores
            if scores is None:  # add_event keeps them sorted from now on
                scores = ix.scores = sorted(
                    (e.ts, e.event_id, sc) for e in events
                    if (sc := customer_score(e)) is not None)
            recent = [s for _, _, s in scores[-self.s.params.sentiment_span:]]
            self._set_risk(ix, sum(recent) / len(recent))
        return True

    def _set_risk(self, ix: Ix, risk: float | None) -> None:
        """Recent customer sentiment; `risk_since` marks when it fell to the threshold."""
        ix.risk = risk
        if risk is not None and risk <= self.s.params.at_risk_threshold:
            if ix.risk_since is None:  # entered the at-risk list now
                ix.risk_since = ix.last_ts
        else:
            ix.risk_since = None

    def _apply_forgotten_survey(self, iid, ev, raw, topic, partition, offset) -> str:
        if ev.event_id in self.survey_ids:
            self.duplicates += 1
            return "duplicate"
        q, ch, agent, _ = self.handled_index[iid]
        self.survey_ids[ev.event_id] = ev.ts
        heapq.heappush(self._survey_expiry, (ev.ts, ev.event_id))
        self.apply_fact(((q, ch, agent), ev.ts, survey_delta(ev.extra, True)), 1.0)
        self.new_events[(ev.kind, "")] += 1
        return "ok"

    def _settle(self, iid: str, ix: Ix, d: Derived) -> None:
        """Apply the difference between the facts already applied and the new ones."""
        for fact in self.reconcile(ix.facts, d.facts):
            self._observe(fact)
        ix.facts = d.facts
        record = None
        if d.customer is not None and d.first_offered is not None:
            record = (d.customer, d.first_offered, d.done if d.handled_key else None,
                      d.handled_key, d.disposition)
        if record != ix.customer_sent:
            if record is None:  # the contact lost its customer record: withdraw it
                self.customer_outbox.append((ix.customer_sent[0], iid, None))
            else:
                if ix.customer_sent is not None and ix.customer_sent[0] != record[0]:
                    self.customer_outbox.append((ix.customer_sent[0], iid, None))
                self.customer_outbox.append((record[0], iid, record[1:]))
            ix.customer_sent = record
        ix.waiting = d.waiting
        ix.acw_deadline = d.acw_deadline
        ix.done = d.done
        ix.handled_key = d.handled_key
        self._set_risk(ix, d.risk)

    def _observe(self, fact: tuple) -> None:
        (q, ch, _), _, delta = fact
        slots = dict(delta)
        if slots.get(b.HANDLED):
            self.new_observations.append(
                ("handle_time", q, ch, slots[b.TALK] + slots[b.HOLD] + slots[b.ACW]))
        elif slots.get(b.ANSWERED):
            self.new_observations.append(("answer_wait", q, ch, slots[b.ANSWER_WAIT]))

    def _reject(self, reason, detail, raw, topic, partition, offset) -> None:
        self.deadletters.append(DeadLetter(reason, detail, raw, topic, partition, offset))

    # -- time ---------------------------------------------------------------------------

    def advance(self, now: float, timeouts_at: float | None = None) -> None:
        """Move the clock: ACW timeouts, orphans, forgotten interactions, bucket retention.

        `timeouts_at` is how far ACW timeouts may go (default `now`): while the partition
        still has a backlog the runtime passes its event watermark instead, so a wrap-up
        that is merely not read yet is not pre-empted by a timeout (a timeout applied and
        then replaced would be observed twice by the Prometheus histogram).
        """
        if now < self.clock:
            return
        self.clock = now
        self.timeout_clock = max(self.timeout_clock, min(now, now if timeouts_at is None
                                                          else timeouts_at))
        tnow = self.timeout_clock
        ix_of = self.ix
        for iid in self._touched:
            self._schedule(iid, ix_of.get(iid))
        self._touched = set()
        ready: dict[str, None] = {}  # due on either clock, once each, in the order popped
        for due, sched, clock in ((self._due, self._sched, tnow),
                                  (self._stale_due, self._stale_sched, now)):
            while due and due[0][0] <= clock:
                key, iid = heapq.heappop(due)
                if sched.get(iid) == key:  # not forgotten, nor handled by an earlier entry
                    del sched[iid]
                    ready[iid] = None
        later = []  # looked at, nothing left to do yet: queued again
        for iid in ready:
            ix = ix_of.get(iid)
            if ix is None:
                continue
            if ix.acw_deadline is not None and tnow >= ix.acw_deadline:
                self._settle(iid, ix, derive(ix.events, tnow, self.s.params))
                self.dirty_ix.add(iid)
            # orphans and forgetting follow the same clock as the timeouts: during a
            # backlog a finished interaction stays (dedup, late events) and an early event
            # waits for its predecessor for closed_keep_s / orphan_timeout_s of the
            # partition's event time, not of wall time that the backlog is far behind
            if ix.pending_raw:
                self._expire_orphans(iid, ix, tnow)
            if ix.done is not None and tnow - ix.done >= self.s.closed_keep_s:
                self._forget(iid, ix)
            elif ix.done is None and ix.last_ts < now - self.s.retention_s:
                self._forget(iid, ix)
            elif not ix.events:
                self._forget(iid, ix)
            else:
                later.append(iid)
        for iid in later:
            self._schedule(iid, ix_of.get(iid))
        self._prune(now)

    def _deadline(self, ix: Ix) -> float:
        """The earliest timeout clock at which `advance` may change this interaction: its ACW
        timeout, a pending event's orphan expiry, or its forgetting once finished."""
        if not ix.events:
            return -math.inf
        d = ix.done + self.s.closed_keep_s if ix.done is not None else math.inf
        if ix.acw_deadline is not None and ix.acw_deadline < d:
            d = ix.acw_deadline
        if ix.pending_raw:
            pending = ix.pending_raw
            for e in ix.events:
                if e.event_id in pending and e.ts + self.s.orphan_timeout_s < d:
                    d = e.ts + self.s.orphan_timeout_s
        return d

    def _schedule(self, iid: str, ix: Ix | None) -> None:
        """Queue the interaction for `advance` at its deadline, unless an entry at least as
        early is queued already (that one finds it not due yet and queues it again)."""
        if ix is None:
            return
        d = self._deadline(ix)
        if d < self._sched.get(iid, math.inf):
            self._sched[iid] = d
            heapq.heappush(self._due, (d, iid))
        if ix.done is not None or not ix.events:
            self._stale_sched.pop(iid, None)  # its entry in the heap is void now
        else:  # forgotten unfinished once out of the retention (of `now`)
            d = ix.last_ts + self.s.retention_s
            if d < self._stale_sched.get(iid, math.inf):
                self._stale_sched[iid] = d
                heapq.heappush(self._stale_due, (d, iid))

    def rebuild_deadlines(self) -> None:
        """After a restore: every interaction, handled-index entry and survey id queued."""
        self._due, self._sched, self._touched = [], {}, set(self.ix)
        self._stale_due, self._stale_sched = [], {}
        self._index_expiry = [(v[3], iid) for iid, v in self.handled_index.items()]
        heapq.heapify(self._index_expiry)
        self._survey_expiry = [(ts, sid) for sid, ts in self.survey_ids.items()]
        heapq.heapify(self._survey_expiry)

    def _expire_orphans(self, iid: str, ix: Ix, now: float) -> None:
        expired = [e for e in ix.events
                   if e.event_id in ix.pending_raw and e.ts < now - self.s.orphan_timeout_s]
        if not expired:
            return
        events_removed(ix)
        for e in expired:
            ix.events.remove(e)
            self._reject("impossible_transition",
                         f"{e.kind} without its predecessor after {self.s.orphan_timeout_s:.0f}s",
                         ix.pending_raw.pop(e.event_id), "", -1, -1)
        self._settle(iid, ix, derive(ix.events, self.timeout_clock, self.s.params))
        self.dirty_ix.add(iid)

    def _forget(self, iid: str, ix: Ix) -> None:
        if ix.handled_key is not None and ix.done is not None:
            q, ch, agent = ix.handled_key
            self.handled_index[iid] = (q, ch, agent, ix.done)
            heapq.heappush(self._index_expiry, (ix.done, iid))
            self.dirty_index.add(iid)
        del self.ix[iid]
        self._sched.pop(iid, None)
        self._stale_sched.pop(iid, None)
        self.dirty_ix.add(iid)

    def _prune(self, now: float) -> None:
        self.prune_buckets(now)
        shorizon = now - self.s.survey_join_s
        expiry, index = self._index_expiry, self.handled_index
        while expiry and expiry[0][0] < shorizon:
            ts, iid = heapq.heappop(expiry)
            entry = index.get(iid)
            if entry is not None and entry[3] == ts:  # not re-added later with another time
                del index[iid]
                self.dirty_index.add(iid)
        expiry, surveys = self._survey_expiry, self.survey_ids
        while expiry and expiry[0][0] < shorizon:
            ts, sid = heapq.heappop(expiry)
            if surveys.get(sid) == ts:
                del surveys[sid]

    # -- reading ------------------------------------------------------------------------

    def waiting(self) -> Iterable[tuple]:
        for ix in self.ix.values():
            if ix.waiting is not None:
                yield ix.waiting

    def at_risk(self, threshold: float) -> Iterable[tuple]:
        """(iid, queue, agent, score, since) of ongoing contacts at or below the threshold."""
        for iid, ix in self.ix.items():
            if ix.risk is not None and ix.risk <= threshold and ix.done is None:
                last = ix.events[-1] if ix.events else None
                queue = ix.waiting[0] if ix.waiting else (ix.handled_key or (None,))[0]
                agent = ""
                for e in reversed(sorted(ix.events, key=lambda e: e.ts)):
                    if e.kind == "interaction.offered" and not queue:
                        queue = e.queue
                    if e.agent and not agent:
                        agent = e.agent
                    if queue and agent:
                        break
                if not queue and last is not None:
                    queue = last.queue
                yield iid, queue or "", agent, ix.risk, ix.risk_since

    def take_outputs(self) -> tuple[list[DeadLetter], list[tuple], Counter, int]:
        """Dead letters, histogram observations, event counts and duplicates since last call."""
        out = (self.deadletters, self.new_observations, self.new_events, self.duplicates)
        self.deadletters, self.new_observations, self.new_events = [], [], Counter()
        self.duplicates = 0
        return out


MIX_PREFIX = "mix:"  # internal scope mix:<queue>|<channel>: a queue's channel mix (staffing)


def scopes_of(key: Key, per_agent: bool = True, mix: bool = False) -> list[str]:
    """The scopes a (queue, channel, agent) bucket adds into (plus the internal channel-mix
    scope of its queue when `mix`: staffing needs each queue's busiest channel)."""
    q, ch, agent = key
    out = ["center"]
    if q:
        out.append("queue:" + q)
    if ch and ch != "*":
        out.append("channel:" + ch)
        if mix and q:
            out.append(f"{MIX_PREFIX}{q}|{ch}")
    if agent and per_agent:
        out.append("agent:" + agent)
    return out
