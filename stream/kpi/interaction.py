"""Per-interaction state machine: an interaction's events in, its KPI facts out.

The facts of an interaction are a pure function of the set of its events (and of `now`,
for the ACW timeout). So the engine keeps an interaction's few events, re-derives its
facts whenever one arrives — in whatever order — and applies only the difference to the
buckets. That makes late and out-of-order events exact by construction, and keeps the
facts an interaction already applied in its own state, so they can be retracted.

Legs: offered → answered | abandoned; answered → (hold_started hold_ended)* → transferred |
ended → wrapup_completed. A transfer closes the leg (it counts `transferred`, not
`handled`) and the next `offered` opens the leg in `to_queue`.
"""

from __future__ import annotations

from copy import copy
from dataclasses import dataclass, field

from . import buckets as b

# event codes: the tie-break order of events that share a timestamp
OFFERED, ANSWERED, ABANDONED, HOLD_START, HOLD_END, MESSAGE, TRANSFERRED, ENDED, WRAPUP = (
    0, 1, 1, 2, 3, 4, 5, 5, 6)
REOFFER = 7  # an `offered` after the first: it follows the transfer that caused it
SURVEY = 8

TYPE_CODES = {
    "interaction.offered": OFFERED, "interaction.answered": ANSWERED,
    "interaction.abandoned": ABANDONED, "interaction.hold_started": HOLD_START,
    "interaction.hold_ended": HOLD_END, "interaction.message": MESSAGE,
    "interaction.transferred": TRANSFERRED, "interaction.ended": ENDED,
    "interaction.wrapup_completed": WRAPUP, "survey.responded": SURVEY,
}

NONE_KEY = ("", "", "")  # a fact with no queue/channel/agent: counts in center only

OK, PENDING, CONFLICT = 0, 1, 2


@dataclass(slots=True)
class Ev:
    """The part of an event the state machine needs (message text is never kept)."""

    ts: float
    kind: str  # the event type
    event_id: str
    queue: str = ""
    channel: str = ""
    agent: str = ""
    extra: object = None  # customer / to_queue / disposition / (direction, score) / survey

    def as_tuple(self) -> tuple:
        return (self.ts, self.kind, self.event_id, self.queue, self.channel, self.agent,
                self.extra)


@dataclass(slots=True)
class Params:
    """What the derivation needs from configuration."""

    sl_threshold: object  # callable (queue, channel) -> seconds
    short_abandon_s: float = 5.0
    exclude_short_abandons: bool = True
    acw_timeout_s: float = 600.0
    sentiment_span: int = 3
    at_risk_threshold: float = -0.5


@dataclass(slots=True)
class Leg:
    queue: str
    channel: str
    offered: float
    customer: object = None
    answered: float | None = None
    agent: str = ""
    abandoned: float | None = None
    hold_open: float | None = None
    hold: float = 0.0
    transferred: float | None = None
    to_queue: str = ""
    ended: float | None = None
    wrapup: float | None = None
    disposition: str | None = None
    handled: float | None = None


@dataclass(slots=True)
class Derived:
    """Everything the engine needs from one derivation."""

    facts: list = field(default_factory=list)  # [((q, ch, agent), ts, ((slot, value), ...))]
    status: list = field(default_factory=list)  # per event: OK / PENDING / CONFLICT
    legs: list = field(default_factory=list)
    waiting: tuple | None = None  # (queue, channel, offered_ts) while in a queue
    acw_deadline: float | None = None  # ended + timeout while no wrap-up
    done: float | None = None  # when the interaction finished (handled or abandoned)
    handled_key: tuple | None = None  # (q, ch, agent) of the handled final leg
    customer: object = None
    first_offered: float | None = None
    disposition: str | None = None  # of the handled final leg
    risk: float | None = None  # mean of the last customer scores while ongoing


def _close_hold(leg: Leg, ts: float) -> None:
    """An open hold ends with hold_ended, or at the transfer or end of the talk."""
    if leg.hold_open is not None:
        leg.hold += ts - leg.hold_open
        leg.hold_open = None


def _step(cur: "Leg | None", legs: list, ev: Ev, scores: list, surveys: list):
    """Apply one event to the leg state; returns (status, current leg).

    An event that does not fit (yet) is PENDING: with out-of-order arrival its missing
    predecessor may still come (a transfer and re-offer before a second `answered`). One that
    never fits is dead-lettered as an impossible transition when the orphan timeout passes.
    """
    kind = ev.kind
    st = OK
    if kind == "interaction.message":
        direction, score = ev.extra  # type: ignore[misc]
        if direction == "customer" and score is not None:
            scores.append((ev.ts, ev.event_id, score))
    elif kind == "survey.responded":
        surveys.append(ev)
    elif kind == "interaction.offered":
        if cur is None:
            if legs:  # the interaction already finished: a new offer is impossible
                st = PENDING
            else:
                cur = Leg(ev.queue, ev.channel, ev.ts, ev.extra)
        elif cur.transferred is not None:
            if ev.queue != cur.to_queue and cur.to_queue:
                st = PENDING
            else:
                legs.append(cur)
                cur = Leg(ev.queue, ev.channel, ev.ts, ev.extra or cur.customer)
        else:
            st = PENDING  # a second offer while the leg is still open
    elif cur is None:
        st = PENDING if legs else PENDING
    elif kind == "interaction.answered":
        if cur.answered is None and cur.abandoned is None:
            cur.answered, cur.agent = ev.ts, ev.agent
        else:
            st = PENDING
    elif kind == "interaction.abandoned":
        if cur.answered is None and cur.abandoned is None:
            cur.abandoned = ev.ts
        else:
            st = PENDING
    elif cur.abandoned is not None or cur.transferred is not None:
        st = PENDING
    elif cur.answered is None:
        st = PENDING  # talk-phase event whose `answered` has not arrived yet
    elif kind == "interaction.hold_started":
        if cur.ended is not None or cur.hold_open is not None:
            st = PENDING
        else:
            cur.hold_open = ev.ts
    elif kind == "interaction.hold_ended":
        if cur.ended is not None:
            st = PENDING
        elif cur.hold_open is None:
            st = PENDING
        else:
            _close_hold(cur, ev.ts)
    elif kind == "interaction.transferred":
        if cur.ended is not None:
            st = PENDING
        else:
            _close_hold(cur, ev.ts)
            cur.transferred, cur.to_queue = ev.ts, str(ev.extra or "")
    elif kind == "interaction.ended":
        if cur.ended is not None:
            st = PENDING
        else:
            _close_hold(cur, ev.ts)
            cur.ended = ev.ts
    elif kind == "interaction.wrapup_completed":
        if cur.ended is None:
            st = PENDING
        elif cur.wrapup is not None:
            st = PENDING
        else:
            cur.wrapup, cur.disposition = ev.ts, ev.extra  # type: ignore[assignment]
    return st, cur


def derive(events: list[Ev], now: float, p: Params) -> Derived:
    """Replay an interaction's events in event-time order into legs and facts."""
    # the replay order: (ts, code, event_id, index), sorted as tuples in C (a key function
    # per event cost a third of the derivation: derive runs once per event). Messages without
    # a customer score change nothing here (always OK, no leg, no score): left out of the
    # replay, which is linear in the events and chats are mostly messages
    keyed = []
    first_offer: tuple | None = None
    offers = 0
    for i, e in enumerate(events):
        kind = e.kind
        if kind == "interaction.message":
            x = e.extra
            if x[0] != "customer" or x[1] is None:  # type: ignore[index]
                continue
            code = MESSAGE
        else:
            code = TYPE_CODES[kind]
            if kind == "interaction.offered":
                offers += 1
                if first_offer is None or (e.ts, e.event_id) < first_offer:
                    first_offer = (e.ts, e.event_id)
        keyed.append((e.ts, code, e.event_id, i))
    if offers > 1:  # every offer but the first follows the transfer that caused it
        first_id = first_offer[1]  # type: ignore[index]
        keyed = [(ts, REOFFER, eid, i) if code == OFFERED and eid != first_id
                 else (ts, code, eid, i) for ts, code, eid, i in keyed]
    keyed.sort()
    status = [OK] * len(events)
    out = Derived(status=status)
    legs: list[Leg] = out.legs
    cur: Leg | None = None
    scores: list[tuple[float, str, float]] = []  # (ts, event_id, score)
    surveys: list[Ev] = []

    n = len(keyed)
    i = 0
    while i < n:
        # events sharing a timestamp: apply whichever is legal first (a transfer and the
        # re-offer it causes, or a whole contact logged in one second)
        ts = keyed[i][0]
        j = i + 1
        while j < n and keyed[j][0] == ts:
            j += 1
        if j == i + 1:
            idx = keyed[i][3]
            status[idx], cur = _step(cur, legs, events[idx], scores, surveys)
            i = j
            continue
        group = [k[3] for k in keyed[i:j]]
        while group:
            pick = 0
            if len(group) > 1:
                for k, idx in enumerate(group):
                    trial = _step(copy(cur) if cur else None, list(legs), events[idx], [], [])[0]
                    if trial == OK:
                        pick = k
                        break
            idx = group.pop(pick)
            status[idx], cur = _step(cur, legs, events[idx], scores, surveys)
        i = j

    if cur is not None:
        legs.append(cur)
    if legs:
        out.customer = legs[0].customer
        out.first_offered = legs[0].offered
    for leg in legs:
        _leg_facts(leg, now, p, out)
    last = legs[-1] if legs else None
    scores.sort()
    if last is not None:
        if last.handled is not None:
            out.done = last.handled
            out.handled_key = (last.queue, last.channel, last.agent)
            out.disposition = last.disposition
            if out.customer is None:  # FCR cannot follow this contact: count it as excluded
                out.facts.append((NONE_KEY, last.handled, ((b.FCR_EXCLUDED, 1.0),)))
            counted = [sc for sc in scores if sc[0] <= last.handled]
            if counted:
                _sentiment_fact(counted, last, p, out)
        elif last.abandoned is not None:
            out.done = last.abandoned
        elif last.answered is None and last.transferred is None:
            out.waiting = (last.queue, last.channel, last.offered)
        elif last.ended is not None and last.wrapup is None:
            out.acw_deadline = last.ended + p.acw_timeout_s
        if out.done is None and scores:
            recent = [s for _, _, s in scores[-p.sentiment_span:]]
            out.risk = sum(recent) / len(recent)
    for sv in surveys:
        _survey_fact(sv, out)
    return out


def dur(seconds: float) -> float:
    """A duration rounded to the microsecond: epoch floats carry ~0.2 µs of noise."""
    return round(seconds, 6)


def _leg_facts(leg: Leg, now: float, p: Params, out: Derived) -> None:
    q, ch = leg.queue, leg.channel
    facts = out.facts
    facts.append(((q, ch, ""), leg.offered, ((b.OFFERED, 1.0),)))
    threshold = p.sl_threshold(q, ch)
    if leg.answered is not None:
        wait = dur(leg.answered - leg.offered)
        facts.append(((q, ch, leg.agent), leg.answered,
                       ((b.ANSWERED, 1.0), (b.ANSWER_WAIT, wait),
                        (b.SL_ANS_WITHIN, 1.0 if wait <= threshold else 0.0))))
    elif leg.abandoned is not None:
        wait = dur(leg.abandoned - leg.offered)
        short = wait < p.short_abandon_s
        counted = not (short and p.exclude_short_abandons)
        facts.append(((q, ch, ""), leg.abandoned,
                       ((b.ABANDONED, 1.0), (b.SHORT_ABANDONS, 1.0 if short else 0.0),
                        (b.SL_ABN_COUNTED, 1.0 if counted else 0.0),
                        (b.SL_ABN_WITHIN, 1.0 if counted and wait <= threshold else 0.0),
                        (b.ABANDON_WAIT, wait))))
    if leg.transferred is not None:
        facts.append(((q, ch, leg.agent), leg.transferred, ((b.TRANSFERRED, 1.0),)))
        return
    if leg.ended is None or leg.answered is None:
        return
    deadline = leg.ended + p.acw_timeout_s
    if leg.wrapup is not None and leg.wrapup <= deadline:
        leg.handled = leg.wrapup
    elif now >= deadline:
        # ACW closed by the timeout; a wrap-up after it comes too late to change the leg
        leg.handled = deadline
        leg.disposition = None
    else:
        return
    hold = dur(leg.hold)
    talk = dur(leg.ended - leg.answered - leg.hold)
    acw = dur(leg.handled - leg.ended)
    delta = [(b.HANDLED, 1.0), (b.TALK, talk), (b.HOLD, hold), (b.ACW, acw)]
    if leg.disposition is not None:
        delta.append((b.DISP_N, 1.0))
        if leg.disposition == "resolved":
            delta.append((b.DISP_RESOLVED, 1.0))
    facts.append(((q, ch, leg.agent), leg.handled, tuple(delta)))


def _sentiment_fact(scores: list[tuple[float, str, float]], last: Leg, p: Params,
                    out: Derived) -> None:
    k = p.sentiment_span
    first = [s for _, _, s in scores[:k]]
    final = [s for _, _, s in scores[-k:]]
    start, end = sum(first) / len(first), sum(final) / len(final)
    out.facts.append(((last.queue, last.channel, last.agent), last.handled,
                      ((b.SENT_SAMPLES, 1.0), (b.SENT_END_SUM, end),
                       (b.SENT_NEGATIVE, 1.0 if end <= -0.05 else 0.0),
                       (b.SENT_IMPROVED, 1.0 if end > start else 0.0))))


def survey_delta(extra: tuple, joined: bool) -> tuple:
    nps, csat, ces = extra
    delta = [(b.SURVEYS, 1.0)]
    if not joined:
        delta.append((b.SURVEYS_UNJOINED, 1.0))
    if nps is not None:
        delta += [(b.NPS_N, 1.0), (b.NPS_PROMOTERS, 1.0 if nps >= 9 else 0.0),
                  (b.NPS_DETRACTORS, 1.0 if nps <= 6 else 0.0)]
    if csat is not None:
        delta += [(b.CSAT_N, 1.0), (b.CSAT_GOOD, 1.0 if csat >= 4 else 0.0)]
    if ces is not None:
        delta += [(b.CES_N, 1.0), (b.CES_SUM, float(ces)), (b.CES_HIGH, 1.0 if ces >= 5 else 0.0)]
    return tuple(delta)


def _survey_fact(sv: Ev, out: Derived) -> None:
    key = out.handled_key
    out.facts.append((key or NONE_KEY, sv.ts, survey_delta(sv.extra, key is not None)))  # type: ignore[arg-type]
