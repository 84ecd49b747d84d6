"""Independent recount of the ccpulse KPIs (DESIGN §2, §3, §5) — the test oracle.

This module shares no code with ``stream/``. It is deliberately plain: it takes the
whole list of events, rebuilds every interaction from scratch and recounts. It is slow
on purpose; clarity over speed, no incremental state.

Public API
----------
``OracleConfig``                                 the parameters (defaults from DESIGN)
``compute(events, cfg, now)``                    {(scope, window): {field: value}}
``intervals(events, cfg, now)``                  {(scope, interval_start_local_iso): {field: value}}
``live(events, cfg, now)``                       {key: {"waiting": n, "longest_wait_s": s}}
``facts(events, cfg, now)``                      the attributed facts (for debugging a mismatch)
``interactions(events, cfg, now)``               the rebuilt interactions and their legs
``window_bounds(cfg, now)``, ``interval_start(t)``, ``parse_ts(s)``

Windows are ``"15m"``, ``"1h"``, ``"today"``; scopes are ``"center"``, ``"queue:<q>"``,
``"channel:<ch>"``, ``"agent:<id>"``.

Interpretation choices (the spec text the engine is aligned to)
----------------------------------------------------------------
 1. "As of now": an event whose ``ts`` is later than ``now`` has not happened yet and is
    ignored. Every fact therefore happens at a moment ≤ now.
 2. Duplicates: events are deduplicated by ``event_id``. Exact duplicates count once. If two
    *different* events share an id, the one with the smallest canonical JSON is kept, so the
    result never depends on arrival order.
 3. Order: an interaction's events are sorted by (ts, type rank) with the rank
    offered < answered|abandoned < hold_started < hold_ended < transferred|ended <
    wrapup_completed. Among events with the *same* ts, the first one (in rank order) that is
    legal in the current leg state is applied first; this makes "transferred at t" come
    before "offered in to_queue at t". Events that are illegal in the state machine
    (e.g. ``answered`` without ``offered``) are ignored and listed in
    ``Interaction.ignored``. Valid streams never have any.
 4. Legs: ``offered`` opens a leg; it is legal only as the first event or after a
    ``transferred``. A transfer ends the leg: the leg is NOT handled; it counts
    ``transferred`` at the transfer ts in its queue, channel, answering agent and center.
    Its talk and hold (answer → transfer) are in NO talk/hold/AHT sum: AHT only covers
    handled legs. The next ``offered`` (queue = to_queue) opens a new leg that is offered,
    answered, abandoned and handled in its own queue.
 5. Center counts legs: an interaction transferred once counts ``offered`` twice in
    center (once per queue leg). So Σ over queue scopes = center for every count.
 6. Handled moment (DESIGN §3 "handled when ACW ends"): the ``wrapup_completed`` ts; or,
    without a wrap-up, ``ended + acw_timeout_s`` once ``now ≥ ended + acw_timeout_s``
    (ACW = acw_timeout_s, no disposition). A wrap-up later than ``ended + acw_timeout_s`` is
    ignored (the timeout already closed the leg); one exactly at that moment counts.
 7. talk = (ended − answered) − hold; hold = Σ (hold_ended − hold_started), an unclosed
    hold closes at ``ended`` (or at ``transferred``); ACW = handled moment − ended.
    AHT = Σ(talk + hold + ACW) / handled.
 8. Windows use minute granularity: with m = floor_minute(now) and end = m + 1 min,
    ``15m`` = [end − 15 min, end), ``1h`` = [end − 60 min, end), ``today`` = [local
    midnight of now in cfg.timezone, end) computed with zoneinfo (a DST day is 23 h or 25 h
    long). A fact at instant t is in a window when start ≤ t < end.
 9. Intervals are the 15-minute intervals [s, s + 15 min) with s a multiple of 900 s of
    epoch time (the same as local quarter hours for every zone whose UTC offset is a whole
    number of quarter hours). An interval is closed when s + 15 min ≤ now. Keys use the
    local start with its offset (``isoformat()``), so the repeated hour of a fall-back day
    gives distinct keys (``…T02:15:00+02:00`` then ``…T02:15:00+01:00``). Only (scope,
    interval) pairs with at least one fact are returned.
10. Scopes returned by ``compute``: center, plus every scope that has at least one fact at
    any moment ≤ now; each gets all three windows (counts 0 when empty).
11. Agent scopes (agent = ``agent_id`` of the leg's ``answered``): answered (with its
    answer wait, so ``asa_s`` is that agent's), transferred, handled (with talk/hold/ACW,
    dispositions, FCR, TTR, sentiment) and joined surveys. The SL variants and
    ``abandon_rate`` are omitted in agent scopes; offered/abandoned/short_abandons are 0.
12. ``sl_threshold_s`` (queue scopes only) is present when the (queue, channel) pairs
    that have at least one fact in that scope and window all map to the same threshold.
    Thresholds: cfg.sl_thresholds[(queue, channel)], else cfg.channel_thresholds[channel],
    else the DESIGN default (voice 20, chat 60, sms 900).
13. Service level: answered wait = answered − offered of the leg, abandon wait = abandoned
    − offered. "Within T" is wait ≤ T. A short abandon has wait < short_abandon_s
    (strictly; 5.0 s is not short). With exclude_short_abandons, short abandons are left
    out of N, of B and of the abandon rate (numerator and denominator) but still count in
    ``abandoned`` and ``short_abandons``:
        A = answered with wait ≤ T, B = counted abandoned with wait ≤ T,
        N = answered + counted abandoned,
        service_level = A/(N−B), sl_abandons_negative = A/N, sl_abandons_positive = (A+B)/N,
        abandon_rate = counted abandoned / (answered + counted abandoned),
        transfer_rate = transferred / answered, asa_s = Σ answer wait / answered.
14. FCR (repeat-based): the contact is the *interaction*. It is handled when its last leg
    is handled; its wrap-up moment w is that leg's handled moment; its customer is the
    ``customer_id`` of its first ``offered``; it is attributed to that last leg's scopes
    at w. It is *repeated* when another interaction of the same customer (any queue,
    channel or outcome, even abandoned or still waiting) has its first ``offered`` in
    (w, w + fcr_horizon_s] — "within the horizon" includes exactly the horizon. A contact
    offered at or before w (overlapping) is not a repeat. It is *decided* when repeated or
    when now ≥ w + horizon; until then, and while not repeated, it is ``fcr_pending``.
    fcr_rate = (handled − repeated) / handled over handled contacts with a customer, as
    DESIGN §3 writes it: provisional, and corrected when a repeat arrives. The counts sit at w, so a later repeat
    corrects the interval of w. Handled interactions without customer_id are left out and
    counted as ``fcr_excluded`` (center scope only, at w).
15. Disposition FCR counts handled *legs*: resolved / legs with a disposition. A leg closed
    by the ACW timeout has no disposition and is in neither count.
16. TTR, per customer, over handled interactions only (unhandled ones have no wrap-up and
    neither start, extend nor resolve a chain), sorted by (first offered, interaction_id):
    a contact offered at most fcr_horizon_s after the latest wrap-up of the open chain
    (overlapping contacts included) extends it; otherwise the open chain is resolved at
    its contact with the latest wrap-up and the contact starts a new chain. A contact with
    disposition ``resolved`` resolves its chain at once (the next contact starts a new
    chain). An open chain whose latest wrap-up is ≥ horizon before now is resolved at that
    contact. TTR = resolving contact's w − first contact's first offered, attributed at
    the resolving contact's w in its scopes. ttr_s = mean, ttr_p90_s = nearest rank
    (the ⌈0.9·n⌉-th smallest).
17. Surveys: each ``survey.responded`` counts at its own ts. It joins (by interaction_id)
    the interaction's last leg if that interaction is handled as of now (even if the survey
    came first); otherwise it counts in center only and as ``surveys_unjoined`` (center).
    NPS = (promoters 9–10 − detractors 0–6) / responses with nps × 100; CSAT = responses
    4–5 / responses with csat; CES = mean; ces_high_effort = share ≥ 5. A missing or null
    score is not a response for that score. No 7-day join limit is applied.
18. Sentiment: a customer message's score is ``cfg.score_fn(text)`` when a score_fn is
    given, else the event's ``score`` field; messages with neither are skipped. Per
    handled interaction, over its customer messages with ts ≤ w sorted by (ts, event_id):
    start = mean of the first ``sentiment_span``, end = mean of the last
    ``sentiment_span`` (they overlap with few messages). Counted at w in the last leg's
    scopes: sentiment = mean end, sentiment_negative = share end ≤ −0.05,
    sentiment_improved = share end > start, sentiment_samples = interactions with ≥ 1
    scored customer message.
19. Ratios with a zero denominator are absent. Counts are ints and always present:
    offered, answered, abandoned, short_abandons, handled, transferred, fcr_pending,
    surveys, sentiment_samples (+ fcr_excluded and surveys_unjoined in center). No rounding.
20. live(): a leg is waiting when its ``offered`` ts ≤ now and, as of now, it has not been
    answered or abandoned. longest_wait_s = now − the oldest waiting offered (0.0 when none).
    Keys: "center", "queue:<q>", "queue:<q>|channel:<ch>" for every queue / pair that has
    any leg; zeros when nothing waits.
21. ``retention_s`` is not applied: the oracle sees no arrival order. Generated streams
    keep lateness well under it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Callable, Optional
from zoneinfo import ZoneInfo

UTC = timezone.utc

DEFAULT_CHANNEL_THRESHOLDS = {"voice": 20, "chat": 60, "sms": 900}
WINDOWS = ("15m", "1h", "today")
INTERVAL = timedelta(minutes=15)

OFFERED = "interaction.offered"
ANSWERED = "interaction.answered"
ABANDONED = "interaction.abandoned"
HOLD_STARTED = "interaction.hold_started"
HOLD_ENDED = "interaction.hold_ended"
TRANSFERRED = "interaction.transferred"
ENDED = "interaction.ended"
WRAPUP = "interaction.wrapup_completed"
MESSAGE = "interaction.message"
SURVEY = "survey.responded"

# Fixed order for events of one interaction with equal ts (choice 3).
TYPE_RANK = {
    OFFERED: 0,
    ANSWERED: 1,
    ABANDONED: 1,
    HOLD_STARTED: 2,
    HOLD_ENDED: 3,
    TRANSFERRED: 4,
    ENDED: 4,
    WRAPUP: 5,
}

COUNT_FIELDS = (
    "offered", "answered", "abandoned", "short_abandons", "handled", "transferred",
    "fcr_pending", "surveys", "sentiment_samples",
)
CENTER_ONLY_COUNTS = ("fcr_excluded", "surveys_unjoined")
NOT_IN_AGENT_SCOPES = (
    "service_level", "sl_abandons_negative", "sl_abandons_positive", "abandon_rate",
)


# --------------------------------------------------------------------------- config


@dataclass
class OracleConfig:
    """Parameters of the recount; defaults from DESIGN §3 (and §2 for retention)."""

    timezone: str = "UTC"                      # center's IANA zone (for `today` and interval keys)
    retention_s: float = 48 * 3600             # documented only (choice 21)
    fcr_horizon_s: float = 72 * 3600           # FCR / TTR horizon
    acw_timeout_s: float = 600                 # ACW closes after this without a wrap-up
    short_abandon_s: float = 5                 # abandoned with wait < this is short
    exclude_short_abandons: bool = True
    channel_thresholds: dict = field(default_factory=dict)   # {channel: T}, overrides defaults
    sl_thresholds: dict = field(default_factory=dict)        # {(queue, channel): T}
    sentiment_span: int = 3                    # first/last N customer messages
    sentiment_negative_at: float = -0.05       # end ≤ this is negative
    score_fn: Optional[Callable[[str], float]] = None        # text → score, wins over `score`

    def threshold(self, queue: str, channel: str) -> float:
        """SL threshold T for (queue, channel) (DESIGN §3: per queue and channel)."""
        if (queue, channel) in self.sl_thresholds:
            return self.sl_thresholds[(queue, channel)]
        if channel in self.channel_thresholds:
            return self.channel_thresholds[channel]
        return DEFAULT_CHANNEL_THRESHOLDS[channel]

    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- time helpers


def parse_ts(value: str) -> datetime:
    """RFC 3339 timestamp with offset (DESIGN §2 envelope) → aware datetime in UTC."""
    t = datetime.fromisoformat(value)
    if t.tzinfo is None:
        raise ValueError(f"timestamp without offset: {value!r}")
    return t.astimezone(UTC)


def _as_utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def window_bounds(cfg: OracleConfig, now: datetime) -> dict[str, tuple[datetime, datetime]]:
    """Rolling windows from minute buckets (DESIGN §3 "Windows", §7; choice 8)."""
    now = _as_utc(now)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    local_date = now.astimezone(cfg.tz()).date()
    midnight = datetime.combine(local_date, time(0, 0), tzinfo=cfg.tz()).astimezone(UTC)
    return {
        "15m": (end - timedelta(minutes=15), end),
        "1h": (end - timedelta(minutes=60), end),
        "today": (midnight, end),
    }


def interval_start(t: datetime) -> datetime:
    """Start (UTC) of the 15-minute interval [start, start + 15 min) holding t (choice 9)."""
    epoch = int(math.floor(t.timestamp()))
    return datetime.fromtimestamp(epoch - epoch % 900, tz=UTC)


def _seconds(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


# --------------------------------------------------------------------------- input


def _dedup(events: list[dict], now: datetime) -> list[dict]:
    """One event per event_id, ts ≤ now (DESIGN §2 "takes effect once"; choices 1, 2)."""
    chosen: dict[str, tuple[str, dict]] = {}
    for e in events:
        canonical = json.dumps(e, sort_keys=True, default=str)
        key = e["event_id"]
        if key not in chosen or canonical < chosen[key][0]:
            chosen[key] = (canonical, e)
    kept = []
    for _, e in chosen.values():
        if parse_ts(e["ts"]) <= now:
            kept.append(e)
    return kept


# --------------------------------------------------------------------------- interactions


@dataclass
class Leg:
    """One queue leg of an interaction: from `offered` to abandon, transfer or handled."""

    interaction_id: str
    queue: str
    channel: str
    customer_id: Optional[str]
    offered_ts: datetime
    state: str = "waiting"          # waiting, talking, on_hold, acw, done, abandoned, transferred
    answered_ts: Optional[datetime] = None
    agent_id: Optional[str] = None
    abandoned_ts: Optional[datetime] = None
    hold_s: float = 0.0
    hold_since: Optional[datetime] = None
    ended_ts: Optional[datetime] = None
    transferred_ts: Optional[datetime] = None
    to_queue: Optional[str] = None
    wrapup_ts: Optional[datetime] = None
    disposition: Optional[str] = None
    handled_ts: Optional[datetime] = None
    acw_s: Optional[float] = None

    @property
    def answer_wait_s(self) -> float:
        return _seconds(self.offered_ts, self.answered_ts)

    @property
    def abandon_wait_s(self) -> float:
        return _seconds(self.offered_ts, self.abandoned_ts)

    @property
    def talk_s(self) -> float:
        """talk = answered→ended minus hold (DESIGN §3 "talk, hold, ACW")."""
        return _seconds(self.answered_ts, self.ended_ts) - self.hold_s


@dataclass
class Interaction:
    """All legs and messages of one interaction_id, as of now."""

    interaction_id: str
    legs: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    ignored: list = field(default_factory=list)

    @property
    def customer_id(self) -> Optional[str]:
        return self.legs[0].customer_id

    @property
    def first_offered_ts(self) -> datetime:
        return self.legs[0].offered_ts

    @property
    def handled_leg(self) -> Optional[Leg]:
        """The last leg when it is handled (choice 14: the interaction is then handled)."""
        last = self.legs[-1]
        return last if last.handled_ts is not None else None


def _is_legal(leg: Optional[Leg], e: dict, cfg: OracleConfig) -> bool:
    """The interaction state machine (DESIGN §2 interaction events; choices 3, 4, 6)."""
    kind = e["type"]
    if kind == OFFERED:
        return leg is None or leg.state == "transferred"
    if leg is None:
        return False
    if kind in (ANSWERED, ABANDONED):
        return leg.state == "waiting"
    if kind == HOLD_STARTED:
        return leg.state == "talking"
    if kind == HOLD_ENDED:
        return leg.state == "on_hold"
    if kind in (TRANSFERRED, ENDED):
        return leg.state in ("talking", "on_hold")
    if kind == WRAPUP:
        if leg.state != "acw":
            return False
        deadline = leg.ended_ts + timedelta(seconds=cfg.acw_timeout_s)
        return parse_ts(e["ts"]) <= deadline
    return False


def _apply(legs: list, e: dict) -> None:
    """Apply one legal event to the current leg (or open a new leg)."""
    kind, t = e["type"], parse_ts(e["ts"])
    if kind == OFFERED:
        legs.append(Leg(e["interaction_id"], e["queue"], e["channel"], e.get("customer_id"), t))
        return
    leg = legs[-1]
    if kind == ANSWERED:
        leg.answered_ts, leg.agent_id, leg.state = t, e.get("agent_id"), "talking"
    elif kind == ABANDONED:
        leg.abandoned_ts, leg.state = t, "abandoned"
    elif kind == HOLD_STARTED:
        leg.hold_since, leg.state = t, "on_hold"
    elif kind == HOLD_ENDED:
        leg.hold_s += _seconds(leg.hold_since, t)
        leg.hold_since, leg.state = None, "talking"
    elif kind in (TRANSFERRED, ENDED):
        if leg.hold_since is not None:          # an unclosed hold closes here (choice 7)
            leg.hold_s += _seconds(leg.hold_since, t)
            leg.hold_since = None
        if kind == TRANSFERRED:
            leg.transferred_ts, leg.to_queue, leg.state = t, e.get("to_queue"), "transferred"
        else:
            leg.ended_ts, leg.state = t, "acw"
    elif kind == WRAPUP:
        leg.wrapup_ts, leg.disposition, leg.state = t, e.get("disposition"), "done"
        leg.handled_ts = t
        leg.acw_s = _seconds(leg.ended_ts, t)


def _rebuild(interaction_id: str, evs: list, cfg: OracleConfig, now: datetime) -> Interaction:
    """Rebuild one interaction's legs from its events in any order (choices 3–7)."""
    inter = Interaction(interaction_id)
    leg_events = []
    for e in evs:
        if e["type"] == MESSAGE:
            inter.messages.append(e)
        else:
            leg_events.append(e)
    leg_events.sort(key=lambda e: (parse_ts(e["ts"]), TYPE_RANK[e["type"]], e["event_id"]))

    # Group by ts; inside a group apply the first legal event in rank order, repeatedly.
    groups: dict[datetime, list] = defaultdict(list)
    for e in leg_events:
        groups[parse_ts(e["ts"])].append(e)
    for t in sorted(groups):
        pending = list(groups[t])
        while pending:
            current = inter.legs[-1] if inter.legs else None
            legal = [e for e in pending if _is_legal(current, e, cfg)]
            if legal:
                chosen = legal[0]
                _apply(inter.legs, chosen)
            else:
                chosen = pending[0]
                inter.ignored.append(chosen)
            pending.remove(chosen)

    # ACW timeout (DESIGN §3: ACW closed after acw_timeout_s if no wrap-up comes).
    timeout = timedelta(seconds=cfg.acw_timeout_s)
    for leg in inter.legs:
        if leg.state == "acw" and now >= leg.ended_ts + timeout:
            leg.handled_ts = leg.ended_ts + timeout
            leg.acw_s = cfg.acw_timeout_s
            leg.state = "done"
    return inter


def interactions(events: list[dict], cfg: OracleConfig, now: datetime) -> dict[str, Interaction]:
    """All interactions with at least one leg, rebuilt as of now (DESIGN §2, §3)."""
    cfg = cfg or OracleConfig()
    now = _as_utc(now)
    by_id: dict[str, list] = defaultdict(list)
    for e in _dedup(events, now):
        if e["type"].startswith("interaction."):
            by_id[e["interaction_id"]].append(e)
    result = {}
    for iid in sorted(by_id):          # sorted: facts (and float sums) never depend on input order
        inter = _rebuild(iid, by_id[iid], cfg, now)
        if inter.legs:
            result[iid] = inter
    return result


# --------------------------------------------------------------------------- facts


@dataclass
class Fact:
    """Something counted at instant t in some scopes (DESIGN §3: "each in its own interval")."""

    t: datetime
    scopes: tuple
    values: dict
    qc: Optional[tuple] = None        # (queue, channel) behind the fact, for sl_threshold_s
    ttr: tuple = ()                   # TTR values resolved at t


def _scopes(leg: Leg, with_agent: bool) -> tuple:
    scopes = ("center", f"queue:{leg.queue}", f"channel:{leg.channel}")
    if with_agent and leg.agent_id:
        scopes += (f"agent:{leg.agent_id}",)
    return scopes


def _leg_facts(leg: Leg, cfg: OracleConfig) -> list[Fact]:
    """offered / answered / abandoned / transferred / handled facts of one leg (DESIGN §3)."""
    qc = (leg.queue, leg.channel)
    T = cfg.threshold(leg.queue, leg.channel)
    out = [Fact(leg.offered_ts, _scopes(leg, False), {"offered": 1}, qc)]
    if leg.answered_ts is not None:
        wait = leg.answer_wait_s
        out.append(Fact(leg.answered_ts, _scopes(leg, True), {
            "answered": 1,
            "answer_wait_sum": wait,
            "sl_a": int(wait <= T),
            "sl_n": 1,
        }, qc))
    if leg.abandoned_ts is not None:
        wait = leg.abandon_wait_s
        short = wait < cfg.short_abandon_s
        counted = not (short and cfg.exclude_short_abandons)
        out.append(Fact(leg.abandoned_ts, _scopes(leg, False), {
            "abandoned": 1,
            "short_abandons": int(short),
            "abandoned_counted": int(counted),
            "sl_b": int(counted and wait <= T),
            "sl_n": int(counted),
        }, qc))
    if leg.transferred_ts is not None:
        out.append(Fact(leg.transferred_ts, _scopes(leg, True), {"transferred": 1}, qc))
    if leg.handled_ts is not None:
        values = {
            "handled": 1,
            "talk_sum": leg.talk_s,
            "hold_sum": leg.hold_s,
            "acw_sum": leg.acw_s,
        }
        if leg.disposition is not None:
            values["disp_any"] = 1
            values["disp_resolved"] = int(leg.disposition == "resolved")
        out.append(Fact(leg.handled_ts, _scopes(leg, True), values, qc))
    return out


def _message_score(e: dict, cfg: OracleConfig) -> Optional[float]:
    if cfg.score_fn is not None:
        return float(cfg.score_fn(e.get("text", "")))
    if e.get("score") is not None:
        return float(e["score"])
    return None


def _sentiment_values(inter: Interaction, cfg: OracleConfig) -> dict:
    """Per-interaction start/end sentiment, counted when handled (DESIGN §3; choice 18)."""
    w = inter.handled_leg.handled_ts
    msgs = [m for m in inter.messages
            if m.get("direction") == "customer" and parse_ts(m["ts"]) <= w]
    msgs.sort(key=lambda m: (parse_ts(m["ts"]), m["event_id"]))
    scores = [s for s in (_message_score(m, cfg) for m in msgs) if s is not None]
    if not scores:
        return {}
    span = cfg.sentiment_span
    start = sum(scores[:span]) / len(scores[:span])
    end = sum(scores[-span:]) / len(scores[-span:])
    return {
        "sentiment_samples": 1,
        "sentiment_end_sum": end,
        "sentiment_negative_n": int(end <= cfg.sentiment_negative_at),
        "sentiment_improved_n": int(end > start),
    }


def _fcr_values(inter: Interaction, same_customer: list, cfg: OracleConfig, now: datetime) -> dict:
    """Repeat-based FCR status of one handled interaction (DESIGN §3 FCR; choice 14)."""
    w = inter.handled_leg.handled_ts
    horizon = timedelta(seconds=cfg.fcr_horizon_s)
    repeated = any(
        other.interaction_id != inter.interaction_id
        and w < other.first_offered_ts <= w + horizon
        for other in same_customer
    )
    # DESIGN §3: FCR = (handled − repeated) / handled, provisional until the horizon passes
    # and corrected when a repeat arrives; fcr_pending = not repeated, horizon not passed.
    pending = int(not repeated and now < w + horizon)
    return {"fcr_handled": 1, "fcr_repeated": int(repeated), "fcr_pending": pending}


def _ttr_resolutions(handled: list, cfg: OracleConfig, now: datetime) -> list:
    """TTR chains of one customer's handled interactions (DESIGN §3 TTR; choice 16).

    Returns (resolving interaction, ttr seconds) pairs.
    """
    horizon = timedelta(seconds=cfg.fcr_horizon_s)
    handled = sorted(handled, key=lambda i: (i.first_offered_ts, i.interaction_id))
    resolved = []
    chain_start = None          # first offered ts of the open chain
    chain_last = None           # interaction with the latest wrap-up in the open chain

    def w(inter):
        return inter.handled_leg.handled_ts

    for inter in handled:
        if chain_last is not None and inter.first_offered_ts > w(chain_last) + horizon:
            resolved.append((chain_last, _seconds(chain_start, w(chain_last))))
            chain_start, chain_last = None, None
        if chain_last is None:
            chain_start, chain_last = inter.first_offered_ts, inter
        elif w(inter) >= w(chain_last):
            chain_last = inter
        if inter.handled_leg.disposition == "resolved":
            resolved.append((inter, _seconds(chain_start, w(inter))))
            chain_start, chain_last = None, None
    if chain_last is not None and now >= w(chain_last) + horizon:
        resolved.append((chain_last, _seconds(chain_start, w(chain_last))))
    return resolved


def _survey_values(e: dict) -> dict:
    """One survey response's contributions (DESIGN §3 NPS, CSAT, CES)."""
    values = {"surveys": 1}
    if e.get("nps") is not None:
        values.update(nps_n=1, nps_promoters=int(e["nps"] >= 9), nps_detractors=int(e["nps"] <= 6))
    if e.get("csat") is not None:
        values.update(csat_n=1, csat_satisfied=int(e["csat"] >= 4))
    if e.get("ces") is not None:
        values.update(ces_n=1, ces_sum=e["ces"], ces_high=int(e["ces"] >= 5))
    return values


def facts(events: list[dict], cfg: OracleConfig, now: datetime) -> list[Fact]:
    """Every counted fact with its moment and scopes (DESIGN §3 attribution rules)."""
    cfg = cfg or OracleConfig()
    now = _as_utc(now)
    inters = interactions(events, cfg, now)
    out: list[Fact] = []

    for inter in inters.values():
        for leg in inter.legs:
            out.extend(_leg_facts(leg, cfg))

    # Interaction-level facts at the handled moment of the last leg.
    by_customer: dict[str, list] = defaultdict(list)
    for inter in inters.values():
        if inter.customer_id is not None:
            by_customer[inter.customer_id].append(inter)
    for inter in inters.values():
        leg = inter.handled_leg
        if leg is None:
            continue
        qc = (leg.queue, leg.channel)
        values = {}
        if inter.customer_id is None:
            out.append(Fact(leg.handled_ts, ("center",), {"fcr_excluded": 1}))
        else:
            values.update(_fcr_values(inter, by_customer[inter.customer_id], cfg, now))
        values.update(_sentiment_values(inter, cfg))
        if values:
            out.append(Fact(leg.handled_ts, _scopes(leg, True), values, qc))

    for customer in sorted(by_customer):
        contacts = by_customer[customer]
        handled = [i for i in contacts if i.handled_leg is not None]
        for inter, ttr in _ttr_resolutions(handled, cfg, now):
            leg = inter.handled_leg
            out.append(Fact(leg.handled_ts, _scopes(leg, True), {"ttr_n": 1},
                            (leg.queue, leg.channel), (ttr,)))

    # Surveys, counted at their own ts.
    surveys = [e for e in _dedup(events, now) if e["type"] == SURVEY]
    for e in sorted(surveys, key=lambda e: (parse_ts(e["ts"]), e["event_id"])):
        t = parse_ts(e["ts"])
        values = _survey_values(e)
        inter = inters.get(e["interaction_id"])
        leg = inter.handled_leg if inter else None
        if leg is not None:
            out.append(Fact(t, _scopes(leg, True), values, (leg.queue, leg.channel)))
        else:
            values["surveys_unjoined"] = 1
            out.append(Fact(t, ("center",), values))
    return out


# --------------------------------------------------------------------------- KPIs


@dataclass
class _Acc:
    sums: dict = field(default_factory=lambda: defaultdict(float))
    ttr: list = field(default_factory=list)
    qcs: set = field(default_factory=set)


def _accumulate(selected: list) -> dict[str, _Acc]:
    """Add numerators and denominators per scope (DESIGN §3: never average ratios)."""
    accs: dict[str, _Acc] = defaultdict(_Acc)
    for f in selected:
        for scope in f.scopes:
            acc = accs[scope]
            for k, v in f.values.items():
                acc.sums[k] += v
            acc.ttr.extend(f.ttr)
            if f.qc is not None:
                acc.qcs.add(f.qc)
    return accs


def _p90(values: list) -> float:
    """Nearest-rank 90th percentile: the ⌈0.9·n⌉-th smallest value."""
    ordered = sorted(values)
    rank = (9 * len(ordered) + 9) // 10
    return ordered[rank - 1]


def kpis(scope: str, acc: Optional[_Acc], cfg: OracleConfig) -> dict:
    """The §5 field set of one scope from its sums (DESIGN §3 formulas; choices 11–19)."""
    acc = acc or _Acc()
    s = acc.sums

    def n(key):
        return s.get(key, 0)

    out = {name: int(round(n(name))) for name in COUNT_FIELDS}
    if scope == "center":
        for name in CENTER_ONLY_COUNTS:
            out[name] = int(round(n(name)))

    def ratio(name, num, den, scale=1.0):
        if den:
            out[name] = num / den * scale

    handled, answered = n("handled"), n("answered")
    ratio("aht_s", n("talk_sum") + n("hold_sum") + n("acw_sum"), handled)
    ratio("talk_s", n("talk_sum"), handled)
    ratio("hold_s", n("hold_sum"), handled)
    ratio("acw_s", n("acw_sum"), handled)
    ratio("asa_s", n("answer_wait_sum"), answered)

    A, B, N = n("sl_a"), n("sl_b"), n("sl_n")
    ratio("service_level", A, N - B)
    ratio("sl_abandons_negative", A, N)
    ratio("sl_abandons_positive", A + B, N)
    counted_abandoned = n("abandoned_counted")
    ratio("abandon_rate", counted_abandoned, answered + counted_abandoned)
    ratio("transfer_rate", n("transferred"), answered)

    if scope.startswith("queue:"):
        queue = scope[len("queue:"):]
        thresholds = {cfg.threshold(q, ch) for (q, ch) in acc.qcs if q == queue}
        if len(thresholds) == 1:
            out["sl_threshold_s"] = thresholds.pop()

    ratio("fcr_rate", n("fcr_handled") - n("fcr_repeated"), n("fcr_handled"))
    ratio("fcr_disposition_rate", n("disp_resolved"), n("disp_any"))
    if acc.ttr:
        out["ttr_s"] = sum(acc.ttr) / len(acc.ttr)
        out["ttr_p90_s"] = _p90(acc.ttr)

    ratio("nps", n("nps_promoters") - n("nps_detractors"), n("nps_n"), 100.0)
    ratio("csat", n("csat_satisfied"), n("csat_n"))
    ratio("ces", n("ces_sum"), n("ces_n"))
    ratio("ces_high_effort", n("ces_high"), n("ces_n"))

    samples = n("sentiment_samples")
    ratio("sentiment", n("sentiment_end_sum"), samples)
    ratio("sentiment_negative", n("sentiment_negative_n"), samples)
    ratio("sentiment_improved", n("sentiment_improved_n"), samples)

    if scope.startswith("agent:"):
        for name in NOT_IN_AGENT_SCOPES:
            out.pop(name, None)
    return out


def _all_scopes(all_facts: list) -> list[str]:
    scopes = {"center"}
    for f in all_facts:
        scopes.update(f.scopes)
    return sorted(scopes)


def compute(events: list[dict], cfg: OracleConfig, now: datetime) -> dict:
    """KPIs per (scope, window) for windows 15m, 1h, today (DESIGN §3, §5; choices 8, 10)."""
    cfg = cfg or OracleConfig()
    now = _as_utc(now)
    all_facts = facts(events, cfg, now)
    scopes = _all_scopes(all_facts)
    result = {}
    for window, (start, end) in window_bounds(cfg, now).items():
        accs = _accumulate([f for f in all_facts if start <= f.t < end])
        for scope in scopes:
            result[(scope, window)] = kpis(scope, accs.get(scope), cfg)
    return result


def intervals(events: list[dict], cfg: OracleConfig, now: datetime) -> dict:
    """Closed 15-minute interval history per scope (DESIGN §5 cc:interval; choice 9)."""
    cfg = cfg or OracleConfig()
    now = _as_utc(now)
    by_start: dict[datetime, list] = defaultdict(list)
    for f in facts(events, cfg, now):
        by_start[interval_start(f.t)].append(f)
    result = {}
    for start in sorted(by_start):
        if start + INTERVAL > now:
            continue                      # not closed yet
        key = start.astimezone(cfg.tz()).isoformat()
        for scope, acc in _accumulate(by_start[start]).items():
            result[(scope, key)] = kpis(scope, acc, cfg)
    return result


def live(events: list[dict], cfg: OracleConfig, now: datetime) -> dict:
    """Contacts waiting and longest wait per queue, queue|channel, center (DESIGN §3; choice 20)."""
    cfg = cfg or OracleConfig()
    now = _as_utc(now)
    waiting: dict[str, list] = defaultdict(list)
    keys = {"center"}
    for inter in interactions(events, cfg, now).values():
        for leg in inter.legs:
            leg_keys = (f"queue:{leg.queue}", f"queue:{leg.queue}|channel:{leg.channel}")
            keys.update(leg_keys)
            if leg.state == "waiting":
                for key in ("center",) + leg_keys:
                    waiting[key].append(_seconds(leg.offered_ts, now))
    return {
        key: {"waiting": len(waiting[key]), "longest_wait_s": max(waiting[key], default=0.0)}
        for key in sorted(keys)
    }
