"""Generators of valid ccpulse event streams (DESIGN §2) for property tests.

Shares no code with ``stream/``. Two front ends draw the same kind of *plans* (what happens
to each interaction) and one renderer turns a plan into events:

- ``event_streams(...)``: a hypothesis strategy of ``(events, now)``.
- ``random_day(seed, n_calls, start, tz)``: a plain ``random.Random`` day of thousands of
  interactions (returns the event list; ``latest_ts(events)`` is a natural ``now``).
- ``with_duplicates_and_shuffle(events, rnd, max_lateness_s)``: exact duplicates plus
  bounded out-of-order delivery.
- ``to_call_log_csv(events)``: the replay CSV of DESIGN §2 for the interactions it can express.

Every event is a dict with the envelope (``event_id`` unique string, ``type``, ``ts`` RFC 3339
with an explicit offset, ``schema_version`` 1) and the fields of its type in DESIGN §2.
Timestamps use three forms, chosen from a hash of the event_id: ``…Z``, ``…+01:00`` and the
local offset of the stream's zone (e.g. ``…+02:00`` in Berlin summer); milliseconds appear
only when the instant has them. Customer ``interaction.message`` events carry an extra
field ``score`` (float in −1…1, 3 decimals) for the oracle; agent messages carry none.

Features: queues ``q1``, ``billing``, ``support.en``, ``sales-2``; channels voice/chat/sms;
agents ``a1``…; customers with repeat contacts (and repeats placed exactly at, 1 s before
and 1 s after the FCR horizon); holds (some never closed); transfers (``transferred`` then
``offered`` in ``to_queue``, sometimes in the same second); abandons with short waits
(< 5 s), exactly 5 s, waits exactly at / 1 s around the channel's SL threshold and waits that
leave the queue exactly at a 15-minute boundary; wrap-ups missing (ACW timeout) or exactly
at the timeout; dispositions with optional ``reason``; surveys after the wrap-up, before it
(while the contact is still open) and for contacts never handled; contacts still waiting,
still talking or still in ACW at ``now``; anchors around Europe/Berlin DST changes
(2026-03-29, 2026-10-25) and local / UTC midnights.
"""

from __future__ import annotations

import copy
import csv
import io
import random
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

UTC = timezone.utc
PLUS_ONE = timezone(timedelta(hours=1))

QUEUES = ("q1", "billing", "support.en", "sales-2")
CHANNELS = ("voice", "chat", "sms")
AGENTS = ("a1", "a2", "a3", "a4", "agent.5", "a-6")
DISPOSITIONS = ("resolved", "unresolved", "follow_up", "escalated")
DEFAULT_THRESHOLDS = {"voice": 20, "chat": 60, "sms": 900}
SHORT_ABANDON_S = 5

# Instants (UTC) streams start near: Berlin DST spring-forward (01:00Z) and fall-back
# (01:00Z), Berlin midnight 22:00Z / 23:00Z, UTC midnight, and an ordinary morning.
ANCHORS = (
    datetime(2026, 3, 28, 23, 30, tzinfo=UTC),
    datetime(2026, 3, 29, 0, 45, tzinfo=UTC),
    datetime(2026, 10, 24, 21, 30, tzinfo=UTC),
    datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
    datetime(2026, 1, 5, 22, 50, tzinfo=UTC),
    datetime(2026, 6, 15, 7, 45, tzinfo=UTC),
)


# --------------------------------------------------------------------------- plans


@dataclass
class LegPlan:
    """What happens in one queue leg."""

    queue: str
    outcome: str                  # "answered" | "abandoned" | "waiting"
    wait_s: object = 0           # seconds, or "boundary" (see _plan_wait)
    agent_id: Optional[str] = None
    holds: list = field(default_factory=list)     # [(talk before the hold, hold length)]
    unclosed_hold: bool = False   # the last hold has no hold_ended
    tail_s: float = 0             # talk after the last hold
    end: str = "ended"            # "ended" | "transferred" | "talking" (nothing yet)
    transfer_gap_s: float = 0     # transferred → next offered
    wrapup: str = "completed"     # "completed" | "missing"
    acw_s: float = 0
    disposition: str = "resolved"
    reason: Optional[str] = None


@dataclass
class SurveyPlan:
    when: str                     # "after" (the handled moment / last event) | "before"
    delay_s: float
    nps: Optional[int] = None
    csat: Optional[int] = None
    ces: Optional[int] = None


@dataclass
class InteractionPlan:
    iid: str
    channel: str
    customer_id: Optional[str]
    offered_at: datetime
    legs: list
    messages: list = field(default_factory=list)   # [(fraction of the span, direction, score)]
    survey: Optional[SurveyPlan] = None


class _RandomChooser:
    """Choices from random.Random (for random_day)."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd

    def pick(self, options):
        return self.rnd.choice(list(options))

    def int(self, lo, hi):
        return self.rnd.randint(lo, hi)

    def chance(self, pct):
        return self.rnd.random() * 100 < pct


class _DrawChooser:
    """The same choices through hypothesis ``draw`` (so examples shrink)."""

    def __init__(self, draw):
        self.draw = draw

    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def chance(self, pct):
        # shrinks towards 0 → False (the simpler stream)
        return self.draw(st.integers(0, 99)) >= 100 - pct


def _next_boundary_s(t: datetime) -> float:
    """Seconds from t to the next 15-minute boundary (1…900)."""
    nxt = (int(t.timestamp()) // 900 + 1) * 900
    return (datetime.fromtimestamp(nxt, tz=UTC) - t).total_seconds()


def _plan_wait(c, channel: str, abandoned: bool):
    """A queue wait that likes the edges: short abandons, exactly T, 15-minute boundaries.

    Returns seconds, or "boundary": leave the queue exactly at the next 15-minute boundary
    (resolved when rendering, once the offered instant is known).
    """
    T = DEFAULT_THRESHOLDS[channel]
    kind = c.pick(["short", "exact_T", "T-1", "T+1", "five", "boundary", "random", "random"])
    if kind == "short":
        return c.int(0, 4)
    if kind == "exact_T":
        return T
    if kind == "T-1":
        return T - 1
    if kind == "T+1":
        return T + 1
    if kind == "five":
        return SHORT_ABANDON_S
    if kind == "boundary":
        return "boundary"
    return c.int(0, min(3 * T, 1800 if abandoned else 2700))


def _plan_interaction(c, iid: str, offered_at: datetime, customer_id: Optional[str],
                      acw_timeout_s: float, allow_open: bool = True,
                      transfer_choices=(0, 0, 0, 0, 0, 1, 1, 2)) -> InteractionPlan:
    """Draw what happens to one interaction (DESIGN §2 event sequences).

    ``allow_open``: the contact may still be waiting or talking at the end of the stream.
    """
    channel = c.pick(CHANNELS)
    n_transfers = c.pick(transfer_choices)
    legs = []
    queue = c.pick(QUEUES)
    for i in range(n_transfers + 1):
        last = i == n_transfers
        if last:
            weights = ["answered"] * 14 + ["abandoned"] * 5 + (["waiting"] if allow_open else [])
            outcome = c.pick(weights)
        else:
            outcome = "answered"
        leg = LegPlan(queue=queue, outcome=outcome)
        if outcome != "waiting":
            leg.wait_s = _plan_wait(c, channel, outcome == "abandoned")
        if outcome == "answered":
            leg.agent_id = c.pick(AGENTS)
            n_holds = c.pick([0, 0, 0, 1, 1, 2]) if channel == "voice" else c.pick([0, 0, 0, 0, 1])
            leg.holds = [(c.int(0, 240), c.int(0, 120)) for _ in range(n_holds)]
            leg.unclosed_hold = bool(leg.holds) and c.chance(20)
            leg.tail_s = c.int(0, 600)
            if not last:
                leg.end = "transferred"
                leg.transfer_gap_s = c.pick([0, 0, 1, c.int(2, 30)])
                queue = c.pick(QUEUES)
            else:
                leg.end = "talking" if (allow_open and c.chance(4)) else "ended"
                leg.wrapup = "missing" if c.chance(20) else "completed"
                leg.acw_s = c.pick([0, c.int(1, 120), c.int(1, 400), acw_timeout_s])
                leg.disposition = c.pick(DISPOSITIONS)
                leg.reason = c.pick([None, None, "billing-question", "password reset"])
        legs.append(leg)
    messages = []
    n_messages = c.pick([0, 0, 1, 2, 3, 5, 7]) if channel != "voice" else c.pick([0, 0, 0, 2, 4])
    for _ in range(n_messages):
        direction = "customer" if c.chance(70) else "agent"
        score = c.pick([-1.0, -0.5, -0.05, -0.04, 0.0, 0.3, 1.0, c.int(-1000, 1000) / 1000])
        messages.append((c.int(0, 100) / 100, direction, score))
    survey = None
    if c.chance(30):
        fields = {}
        if c.chance(80):
            fields["nps"] = c.pick([0, 3, 6, 7, 8, 9, 10])
        if c.chance(60):
            fields["csat"] = c.int(1, 5)
        if c.chance(50) or not fields:
            fields["ces"] = c.int(1, 7)
        survey = SurveyPlan(when=c.pick(["after", "after", "before"]),
                            delay_s=c.pick([1, c.int(1, 3600)]), **fields)
    return InteractionPlan(iid, channel, customer_id, offered_at, legs, messages, survey)


# --------------------------------------------------------------------------- rendering


@dataclass
class _Rendered:
    events: list                   # dicts whose "ts" is still a UTC datetime
    handled_at: Optional[datetime] # when the interaction's last leg is handled (wrap-up / timeout)
    last_at: datetime              # latest event instant


def _render(plan: InteractionPlan, acw_timeout_s: float) -> _Rendered:
    """Turn a plan into interaction/survey events in causal order (DESIGN §2)."""
    events = []

    def add(kind, t, **fields):
        events.append({"event_id": f"{plan.iid}-{len(events) + 1:02d}", "type": kind,
                       "ts": t, "schema_version": 1, **fields})

    t = plan.offered_at
    handled_at = None
    conv_end = t
    leg_starts = []              # (offered instant, queue, agent) for message attribution
    answered_at = None
    ended_at = None
    for i, leg in enumerate(plan.legs):
        base = {"interaction_id": plan.iid, "channel": plan.channel, "queue": leg.queue}
        offered = dict(base)
        if plan.customer_id is not None:
            offered["customer_id"] = plan.customer_id
        add("interaction.offered", t, **offered)
        leg_starts.append((t, leg.queue, leg.agent_id))
        if leg.outcome == "waiting":
            break
        wait = _next_boundary_s(t) if leg.wait_s == "boundary" else leg.wait_s
        t = t + timedelta(seconds=wait)
        if leg.outcome == "abandoned":
            add("interaction.abandoned", t, **base)
            break
        add("interaction.answered", t, agent_id=leg.agent_id, **base)
        answered_at = answered_at or t
        agent = {"agent_id": leg.agent_id}
        for k, (before, length) in enumerate(leg.holds):
            if k == 0 and i > 0:
                # a hold in the very second of the transfer that opened this leg is ambiguous
                # (legal-first puts it on the previous, still talking leg): ≥ 1 s later
                before = max(before, 1)
            t = t + timedelta(seconds=before)
            add("interaction.hold_started", t, **agent, **base)
            t = t + timedelta(seconds=length)
            if not (leg.unclosed_hold and k == len(leg.holds) - 1):
                add("interaction.hold_ended", t, **agent, **base)
        t = t + timedelta(seconds=leg.tail_s)
        if leg.end == "talking":
            break
        if leg.end == "transferred":
            add("interaction.transferred", t, to_queue=plan.legs[i + 1].queue, **agent, **base)
            t = t + timedelta(seconds=leg.transfer_gap_s)
            continue
        add("interaction.ended", t, **agent, **base)
        ended_at = t
        if leg.wrapup == "completed":
            t = t + timedelta(seconds=leg.acw_s)
            wrap = dict(agent, disposition=leg.disposition, **base)
            if leg.reason:
                wrap["reason"] = leg.reason
            add("interaction.wrapup_completed", t, **wrap)
            handled_at = t
        else:
            handled_at = t + timedelta(seconds=acw_timeout_s)
    conv_end = ended_at or t

    # Messages spread over [offered, end of conversation], in the queue of that moment.
    span = (conv_end - plan.offered_at).total_seconds()
    for frac, direction, score in plan.messages:
        mt = plan.offered_at + timedelta(seconds=round(span * frac))
        start, queue, agent_id = [s for s in leg_starts if s[0] <= mt][-1]
        msg = {"interaction_id": plan.iid, "channel": plan.channel, "queue": queue,
               "direction": direction, "text": f"{direction} says something ({score})"}
        if direction == "customer":
            msg["score"] = score
        elif agent_id:
            msg["agent_id"] = agent_id
        if len(events) % 2:
            msg["language"] = "en"
        add("interaction.message", mt, **msg)

    last_at = max(e["ts"] for e in events)
    if plan.survey is not None:
        s = plan.survey
        if s.when == "before" and answered_at is not None:
            st_at = answered_at + timedelta(seconds=min(s.delay_s, max(span, 0)) // 2)
        else:
            st_at = (handled_at or last_at) + timedelta(seconds=s.delay_s)
        survey = {"interaction_id": plan.iid, "customer_id": plan.customer_id or "c-anon"}
        for name in ("nps", "csat", "ces"):
            if getattr(s, name) is not None:
                survey[name] = getattr(s, name)
        add("survey.responded", st_at, **survey)
    return _Rendered(events, handled_at, max(e["ts"] for e in events))


def _format_ts(t: datetime, style: int, tz: ZoneInfo) -> str:
    """RFC 3339 with an explicit offset: 0 → Z, 1 → +01:00, 2 → local offset of tz."""
    spec = "milliseconds" if t.microsecond else "seconds"
    if style == 0:
        return t.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")
    if style == 1:
        return t.astimezone(PLUS_ONE).isoformat(timespec=spec)
    return t.astimezone(tz).isoformat(timespec=spec)


def _finish(rendered: list, tz_name: str) -> list:
    """Merge interactions in ts order (causal order kept on ties) and format timestamps."""
    tz = ZoneInfo(tz_name)
    keyed = []
    for n, r in enumerate(rendered):
        for k, e in enumerate(r.events):
            keyed.append((e["ts"], n, k, e))
    keyed.sort(key=lambda x: x[:3])
    out = []
    for ts, _, _, e in keyed:
        e = dict(e)
        e["ts"] = _format_ts(ts, zlib.crc32(e["event_id"].encode()) % 3, tz)
        out.append(e)
    return out


def _repeat_at_horizon(c, iid: str, prev: _Rendered, customer: str, horizon_s: float,
                       acw_timeout_s: float) -> InteractionPlan:
    """A contact of the same customer offered exactly at the FCR horizon (−1 s, 0, +1 s)."""
    delta = c.pick([-1, 0, 1])
    offered_at = prev.handled_at + timedelta(seconds=horizon_s + delta)
    return _plan_interaction(c, iid, offered_at, customer, acw_timeout_s)


def _ts_of(e: dict) -> datetime:
    return datetime.fromisoformat(e["ts"]).astimezone(UTC)


def latest_ts(events: list) -> datetime:
    """The latest event instant of a stream (UTC) — a natural ``now``."""
    return max(_ts_of(e) for e in events)


def _build_stream(c, n: int, customers: list, prefix: str,
                  acw_timeout_s: float, fcr_horizon_s: Optional[float], n_horizon_repeats: int,
                  allow_missing_customer: bool, tz_name: str, offered_times: list,
                  open_after: Optional[datetime] = None,
                  transfer_choices=(0, 0, 0, 0, 0, 1, 1, 2)):
    """Plan and render n interactions (+ horizon repeats); open ones only after open_after."""
    rendered = []
    plans_customer = []
    for i in range(n):
        if allow_missing_customer and c.chance(8):
            customer = None
        else:
            customer = c.pick(customers)
        allow_open = open_after is None or offered_times[i] >= open_after
        plan = _plan_interaction(c, f"{prefix}{i:05d}", offered_times[i], customer, acw_timeout_s,
                                 allow_open, transfer_choices)
        rendered.append(_render(plan, acw_timeout_s))
        plans_customer.append(customer)
    if fcr_horizon_s is not None:
        candidates = [k for k in range(n)
                      if plans_customer[k] is not None and rendered[k].handled_at is not None]
        for j in range(min(n_horizon_repeats, len(candidates))):
            k = c.pick(candidates)
            plan = _repeat_at_horizon(c, f"{prefix}r{j:04d}", rendered[k], plans_customer[k],
                                      fcr_horizon_s, acw_timeout_s)
            rendered.append(_render(plan, acw_timeout_s))
    return _finish(rendered, tz_name), rendered


# --------------------------------------------------------------------------- public API


@st.composite
def event_streams(draw, min_interactions: int = 1, max_interactions: int = 12,
                  tz: str = "Europe/Berlin", acw_timeout_s: float = 600,
                  fcr_horizon_s: Optional[float] = 72 * 3600,
                  allow_missing_customer: bool = True):
    """Hypothesis strategy of ``(events, now)``: a valid stream in ts order and a now ≥ all ts.

    ``fcr_horizon_s`` (None to disable) places some repeat contacts exactly at, 1 s before
    and 1 s after that horizon from an earlier contact's handled moment; ``tz`` is only used
    for the local-offset timestamp form. ``now`` is the latest ts plus 0 s, a few minutes,
    the next 15-minute boundary exactly, just past the ACW timeout, or past the FCR horizon.
    """
    c = _DrawChooser(draw)
    anchor = c.pick(ANCHORS)
    span_s = c.pick([900, 3600, 4 * 3600])
    n = c.int(min_interactions, max_interactions)
    customers = [f"c{k}" for k in range(1, c.int(1, 5) + 1)]
    offered_times = []
    for _ in range(n):
        if c.chance(30):      # near a 15-minute boundary
            at = anchor + timedelta(seconds=900 * c.int(0, span_s // 900) + c.int(-30, 30))
        else:
            at = anchor + timedelta(seconds=c.int(0, span_s))
        if c.chance(10):
            at += timedelta(milliseconds=c.pick([1, 250, 500, 999]))
        offered_times.append(at)
    n_repeats = c.int(0, 2) if fcr_horizon_s is not None else 0
    events, _ = _build_stream(c, n, customers, "i", acw_timeout_s,
                              fcr_horizon_s, n_repeats, allow_missing_customer, tz, offered_times)
    last = latest_ts(events)
    mode = c.pick(["same", "minutes", "boundary", "after_acw", "after_horizon"])
    if mode == "same":
        now = last
    elif mode == "minutes":
        now = last + timedelta(seconds=c.int(1, 1800))
    elif mode == "boundary":
        now = last + timedelta(seconds=_next_boundary_s(last))
    elif mode == "after_acw":
        now = last + timedelta(seconds=acw_timeout_s + 1)
    else:
        now = last + timedelta(seconds=(fcr_horizon_s or 72 * 3600) + 1)
    return events, now


def random_day(seed: int, n_calls: int, start: datetime, tz: str = "UTC",
               acw_timeout_s: float = 600, fcr_horizon_s: Optional[float] = None) -> list:
    """A plain-random stream of ``n_calls`` interactions offered over 24 h from ``start``.

    ``start`` may be naive (read in ``tz``) or aware. Offered times follow a simple
    day curve (more contacts 08:00–20:00 local). About 12 % of calls are transferred;
    only calls offered in the last 30 min may still be waiting or talking at the end.
    Has the same features as
    ``event_streams``; customers (about n_calls/3 of them) repeat within the day. With
    ``fcr_horizon_s`` set, about 1 % more calls are repeats placed exactly at / 1 s around
    that horizon after an earlier contact (so they may fall after the day).
    Returns the events in ts order; use ``latest_ts(events)`` (or later) as ``now``.
    """
    rnd = random.Random(seed)
    c = _RandomChooser(rnd)
    zone = ZoneInfo(tz)
    if start.tzinfo is None:
        start = start.replace(tzinfo=zone)
    start = start.astimezone(UTC)
    offered_times = []
    while len(offered_times) < n_calls:
        at = start + timedelta(seconds=rnd.uniform(0, 86400))
        hour = at.astimezone(zone).hour
        if rnd.random() < (1.0 if 8 <= hour < 20 else 0.25):
            offered_times.append(at.replace(microsecond=rnd.choice([0, 0, 0, 500000])))
    offered_times.sort()
    customers = [f"cust-{k}" for k in range(max(1, n_calls // 3))]
    n_repeats = max(1, n_calls // 100) if fcr_horizon_s is not None else 0
    events, _ = _build_stream(c, n_calls, customers, f"d{seed}-", acw_timeout_s,
                              fcr_horizon_s, n_repeats, True, tz, offered_times,
                              open_after=start + timedelta(hours=23, minutes=30),
                              transfer_choices=(0,) * 17 + (1, 1, 2))
    return events


def with_duplicates_and_shuffle(events: list, rnd: random.Random, max_lateness_s: float,
                                dup_fraction: float = 0.1) -> list:
    """Some exact duplicates (same event_id, deep copies) plus bounded out-of-order delivery.

    Each delivered copy gets a delivery key ts + U(0, max_lateness_s) and the list is sorted
    by it, so an event is delivered after events at most ``max_lateness_s`` newer than it
    (DESIGN §2: late and out-of-order within the retention).
    """
    copies = [copy.deepcopy(e) for e in events]
    for e in events:
        if rnd.random() < dup_fraction:
            copies.append(copy.deepcopy(e))
    keyed = [(_ts_of(e) + timedelta(seconds=rnd.uniform(0, max_lateness_s)), rnd.random(), e)
             for e in copies]
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in keyed]


CSV_COLUMNS = ("interaction_id", "queue", "channel", "customer_id", "agent_id", "disposition",
               "offered_at", "answered_at", "abandoned_at", "ended_at", "wrapup_completed_at",
               "hold_s")


def to_call_log_csv(events: list) -> str:
    """The replay call log (DESIGN §2 "Historical call logs") of the expressible interactions.

    One row per interaction that has no transfer and no messages, that left the queue
    (answered or abandoned) and, when answered, has ended. ``hold_s`` = total hold (an
    unclosed hold ends at ``ended``); ``wrapup_completed_at`` is empty when there was no
    wrap-up — note the replay rule reads that as ACW = 0, not the timeout, unlike live
    events. Timestamps are the events' own strings. Surveys are not part of the log.
    """
    by_id: dict[str, list] = {}
    for e in events:
        if e["type"].startswith("interaction."):
            by_id.setdefault(e["interaction_id"], [])
            if all(x["event_id"] != e["event_id"] for x in by_id[e["interaction_id"]]):
                by_id[e["interaction_id"]].append(e)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for iid in sorted(by_id, key=lambda i: min(_ts_of(e) for e in by_id[i])):
        evs = sorted(by_id[iid], key=_ts_of)
        kinds = [e["type"].split(".", 1)[1] for e in evs]
        if "transferred" in kinds or "message" in kinds or kinds.count("offered") != 1:
            continue
        first = {}
        for e, kind in zip(evs, kinds):
            first.setdefault(kind, e)
        if ("answered" in first) == ("abandoned" in first):
            continue
        if "answered" in first and "ended" not in first:
            continue
        hold = 0.0
        since = None
        for e, kind in zip(evs, kinds):
            if kind == "hold_started":
                since = _ts_of(e)
            elif kind in ("hold_ended", "ended") and since is not None:
                hold += (_ts_of(e) - since).total_seconds()
                since = None
        offered = first["offered"]
        row = {
            "interaction_id": iid,
            "queue": offered["queue"],
            "channel": offered["channel"],
            "customer_id": offered.get("customer_id", ""),
            "agent_id": first["answered"]["agent_id"] if "answered" in first else "",
            "disposition": first["wrapup_completed"]["disposition"]
            if "wrapup_completed" in first else "",
            "offered_at": offered["ts"],
            "answered_at": first["answered"]["ts"] if "answered" in first else "",
            "abandoned_at": first["abandoned"]["ts"] if "abandoned" in first else "",
            "ended_at": first["ended"]["ts"] if "ended" in first else "",
            "wrapup_completed_at": first["wrapup_completed"]["ts"]
            if "wrapup_completed" in first else "",
            "hold_s": (f"{hold:.3f}".rstrip("0").rstrip(".") if "answered" in first else ""),
        }
        writer.writerow(row)
    return out.getvalue()
