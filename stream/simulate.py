"""Contact-center traffic simulator: seeded, deterministic events per DESIGN §2.

This module owns two things:

* **Generation** (pure, no I/O): :class:`Simulator` runs a small discrete-event model of a
  contact center — Poisson arrivals shaped by a time-of-day profile, skills-based FIFO
  routing per (queue, channel) to agents with shifts, breaks and per-channel concurrency,
  customer patience and abandons, lognormal talk / hold / after-contact-work times,
  transfers, missing wrap-ups, repeat contacts, surveys and conversation messages — and
  yields :class:`SimRecord` objects in event-time order. The same :class:`SimConfig`
  (seed included) always yields the same bytes. Optionally it injects extra *bad* records
  on ``cc.interactions`` (``bad_rate``), each labelled with its ``bad_kind`` so tests can
  tell them apart; the valid stream is identical with or without them.
* **Production** (I/O): :func:`produce` sends records to Kafka with aiokafka, as fast as
  possible, at ``speedup``× event time, or live (event time = wall clock); :func:`simulate`
  is the typer command behind ``ccpulse simulate``; :func:`write_jsonl` / :func:`read_jsonl`
  dump and load records for tests and benchmarks.

Event time inside the model is float seconds since ``start``; a record's ``ts`` is rendered
with millisecond precision in UTC (``2026-11-23T10:15:02.123Z``).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import heapq
import math
import os
import random
import time as _time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional
from zoneinfo import ZoneInfo

import orjson

__all__ = [
    "BAD_KINDS",
    "CHANNELS",
    "DEFAULT_PROFILE",
    "EXTRA_KINDS",
    "NAME_RE",
    "ProduceStats",
    "SimConfig",
    "SimRecord",
    "Simulator",
    "TOPIC_AGENTS",
    "TOPIC_INTERACTIONS",
    "TOPIC_SURVEYS",
    "auto_agents",
    "generate",
    "parse_broker",
    "produce",
    "read_jsonl",
    "simulate",
    "write_jsonl",
]

TOPIC_INTERACTIONS = "cc.interactions"
TOPIC_AGENTS = "cc.agent-states"
TOPIC_SURVEYS = "cc.surveys"

CHANNELS = ("voice", "chat", "sms")
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

#: Hourly arrival-rate multipliers (local time 00:00 … 23:00): quiet nights, a mid-morning
#: peak and a second one in the afternoon. Linearly interpolated within the hour.
DEFAULT_PROFILE: tuple[float, ...] = (
    0.08, 0.05, 0.04, 0.04, 0.05, 0.10,  # 00-05
    0.22, 0.45, 0.75, 0.95, 1.00, 0.95,  # 06-11
    0.80, 0.78, 0.90, 0.95, 0.85, 0.70,  # 12-17
    0.52, 0.38, 0.28, 0.20, 0.14, 0.10,  # 18-23
)

#: Kinds of injected bad records (all belong on the dead-letter topic).
BAD_KINDS: tuple[str, ...] = (
    "truncated_json",   # JSON cut in the middle
    "invalid_utf8",     # bytes that are not UTF-8
    "not_object",       # valid JSON, but not an object
    "wrong_type",       # a field of the wrong JSON type
    "unknown_type",     # `type` not in the contract
    "missing_field",    # a required field left out
    "bad_timestamp",    # `ts` not RFC 3339 with offset
    "bad_name",         # queue / channel / agent_id / to_queue violating NAME_RE
    "bad_value",        # value out of range / not in its enum
    "text_too_long",    # message text over 4,000 characters
    "orphan_answered",  # `answered` for an interaction that was never offered
)
#: Extra kinds that are not bad input but can be injected through ``bad_kinds``.
EXTRA_KINDS: tuple[str, ...] = ("duplicate",)  # an exact byte copy of a valid record

DISPOSITIONS = ("resolved", "unresolved", "follow_up", "escalated")
AUX_REASONS = ("break", "lunch", "meeting", "training", "coaching", "personal")


class SimRecord(NamedTuple):
    """One Kafka record: topic, key and value bytes, event time; ``bad_kind`` for injected bad input."""

    topic: str
    key: bytes
    value: bytes
    ts: datetime
    bad_kind: Optional[str] = None


@dataclass
class SimConfig:
    """Everything the model does, with defaults for a mid-size center.

    Times are seconds; ``*_mean_s`` are means of the named distribution.
    """

    seed: int = 1
    rate: float = 2.0  # fresh contacts per second across the center, at profile multiplier 1.0
    queues: tuple[str, ...] = ("billing", "support", "sales", "retention")
    agents: Optional[int] = 24  # None = sized from rate and handle times (see auto_agents)
    start: Optional[datetime] = None  # None = now (UTC), truncated to the millisecond
    duration_s: Optional[float] = 3600.0  # event-time length; None = run forever
    drain: bool = False  # after duration_s: no new contacts, run until every contact is done
    timezone: str = "UTC"  # for the time-of-day profile and the shifts
    profile: tuple[float, ...] = DEFAULT_PROFILE  # 24 hourly multipliers
    queue_weights: Optional[dict[str, float]] = None  # share of contacts per queue; None = equal
    channel_mix: dict[str, float] = field(
        default_factory=lambda: {"voice": 0.6, "chat": 0.3, "sms": 0.1})
    capacity: dict[str, int] = field(default_factory=lambda: {"voice": 1, "chat": 3, "sms": 5})
    customers: int = 200_000  # size of the customer-id pool (cust-000000 …)
    # patience (exponential) and short abandons
    patience_mean_s: dict[str, float] = field(
        default_factory=lambda: {"voice": 90.0, "chat": 300.0, "sms": 3600.0})
    short_abandon_share: float = 0.06  # of contacts: patience uniform in (0.3, 5) s
    ring_s: tuple[float, float] = (2.0, 8.0)  # routed → answered, uniform
    # routing: across channels, the waiting contact furthest behind its goal goes first
    service_goal_s: dict[str, float] = field(
        default_factory=lambda: {"voice": 20.0, "chat": 60.0, "sms": 900.0})
    # handling (lognormal: mean and sigma of the log)
    talk_mean_s: dict[str, float] = field(
        default_factory=lambda: {"voice": 240.0, "chat": 480.0, "sms": 900.0})
    talk_sigma: float = 0.6
    acw_mean_s: dict[str, float] = field(
        default_factory=lambda: {"voice": 60.0, "chat": 45.0, "sms": 30.0})
    acw_sigma: float = 0.5
    acw_timeout_s: float = 600.0  # a missing wrap-up frees the agent after this
    missing_wrapup_rate: float = 0.02
    hold_probs: tuple[float, float] = (0.15, 0.05)  # voice: P(1 hold), P(2 holds)
    hold_mean_s: float = 40.0
    transfer_rate: float = 0.05  # per answered leg
    max_transfers: int = 2
    disposition_weights: dict[str, float] = field(default_factory=lambda: {
        "resolved": 0.70, "unresolved": 0.12, "follow_up": 0.12, "escalated": 0.06})
    # repeat contacts: probability by outcome, delay lognormal around the median
    repeat_prob: dict[str, float] = field(default_factory=lambda: {
        "resolved": 0.04, "unresolved": 0.45, "follow_up": 0.55, "escalated": 0.30,
        "abandoned": 0.35})
    repeat_delay_median_s: float = 5 * 3600.0
    abandon_retry_median_s: float = 600.0
    repeat_same_queue: float = 0.5
    # surveys
    survey_rate: float = 0.20
    survey_delay_median_s: float = 900.0
    # messages
    messages: bool = True
    voice_transcribed_share: float = 0.3
    language: str = "en"
    # staffing
    absent_rate: float = 0.08  # an agent is off for the whole day
    shift_hours: float = 8.5
    # adverse input and scenarios
    bad_rate: float = 0.0  # extra bad records per valid cc.interactions record
    bad_kinds: tuple[str, ...] = BAD_KINDS
    aht_spike: Optional[tuple[str, float, float, float]] = None  # (queue, start_offset_s, duration_s, factor)

    def validated(self) -> "SimConfig":
        import re

        name = re.compile(NAME_RE)
        if not self.queues:
            raise ValueError("at least one queue")
        for q in self.queues:
            if not name.match(q):
                raise ValueError(f"queue name {q!r} does not match {NAME_RE}")
        if len(set(self.queues)) != len(self.queues):
            raise ValueError("duplicate queue names")
        if self.rate < 0:
            raise ValueError("rate must be >= 0")
        if len(self.profile) != 24 or min(self.profile) < 0:
            raise ValueError("profile needs 24 non-negative hourly multipliers")
        if self.agents is not None and self.agents < 0:
            raise ValueError("agents must be >= 0")
        if not 0 <= self.bad_rate <= 1:
            raise ValueError("bad_rate must be within 0..1")
        unknown = set(self.bad_kinds) - set(BAD_KINDS) - set(EXTRA_KINDS)
        if unknown:
            raise ValueError(f"unknown bad kinds: {sorted(unknown)}")
        if self.bad_rate > 0 and not self.bad_kinds:
            raise ValueError("bad_rate > 0 needs bad_kinds")
        if set(self.channel_mix) - set(CHANNELS) or sum(self.channel_mix.values()) <= 0:
            raise ValueError("channel_mix: weights for voice/chat/sms")
        if self.queue_weights is not None and set(self.queue_weights) - set(self.queues):
            raise ValueError("queue_weights names a queue not in queues")
        if self.aht_spike is not None:
            q, _, dur, factor = self.aht_spike
            if q not in self.queues or dur < 0 or factor <= 0:
                raise ValueError("aht_spike = (queue in queues, start_offset_s, duration_s >= 0, factor > 0)")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError("duration_s must be >= 0")
        ZoneInfo(self.timezone)
        return self


# --------------------------------------------------------------------------------------
# phrase lists for messages (tone: negative / neutral / positive)
# --------------------------------------------------------------------------------------

CUSTOMER_PHRASES: dict[str, tuple[str, ...]] = {
    "negative": (
        "I've been waiting forever, this is ridiculous.",
        "Why was I transferred again? I already explained all of this.",
        "This is the third time I'm contacting you about the same problem.",
        "Honestly, I'm really frustrated right now 😠",
        "Your service has been terrible lately.",
        "Nobody ever gets back to me.",
        "I'm thinking about cancelling my account.",
        "That doesn't help me at all.",
        "I was charged twice and nobody can explain why!",
        "This is unacceptable.",
        "I've been on hold for ages and I'm getting annoyed.",
        "Still not working. Great. 🙄",
        "I'm very disappointed with how this was handled.",
        "This is a waste of my time.",
    ),
    "neutral": (
        "Hi, I have a question about my bill.",
        "My order number is 48213.",
        "Can you check the status of my request?",
        "I'd like to change my plan.",
        "Okay, let me look.",
        "The app shows an error when I log in.",
        "I moved last month and need to update my address.",
        "Which options do I have?",
        "Let me get my account details.",
        "Sure, one second.",
        "I'm contacting you about the letter I received.",
        "It says the payment is pending.",
        "The reference on the invoice is INV-2291.",
        "I'm using the latest version of the app.",
    ),
    "positive": (
        "Thank you so much, that fixed it!",
        "Great, that's exactly what I needed 😊",
        "You've been really helpful, thanks.",
        "Perfect, I appreciate your help.",
        "Awesome, it works now 🎉",
        "Thanks for sorting this out so quickly.",
        "That's wonderful news.",
        "Much better, thank you!",
        "I'm happy with this solution.",
        "You made my day 👍",
        "Excellent service, thanks a lot.",
    ),
}

AGENT_PHRASES: tuple[str, ...] = (
    "Thanks for reaching out, I'm happy to help.",
    "Let me look into that for you.",
    "I'm sorry for the wait, thank you for your patience.",
    "Could you confirm your account number, please?",
    "I completely understand how frustrating that is.",
    "I've updated your details.",
    "One moment while I check this.",
    "I can see the issue on our side.",
    "I've applied a credit to your account.",
    "Could you try restarting the app, please?",
)
AGENT_CLOSING: dict[str, tuple[str, ...]] = {
    "resolved": ("Glad I could help, have a great day!", "Everything is sorted now. Anything else I can do?"),
    "unresolved": ("I'm sorry I couldn't fix this today.", "Unfortunately I can't change that from here."),
    "follow_up": ("We'll follow up with you by email within 48 hours.", "I've opened a ticket and we'll call you back."),
    "escalated": ("I've escalated this to our specialist team.", "A supervisor will review your case today."),
    "transfer": ("I'll transfer you to a colleague who can help with this.", "Let me connect you with the right team."),
}
WRAPUP_REASONS: dict[str, tuple[str, ...]] = {
    "unresolved": ("no_fix_available", "customer_declined"),
    "follow_up": ("callback_scheduled", "ticket_opened"),
    "escalated": ("needs_specialist", "complaint"),
}

_TONE_START_SOUR = (("negative", 0.70), ("neutral", 0.25), ("positive", 0.05))
_TONE_START_CALM = (("negative", 0.15), ("neutral", 0.70), ("positive", 0.15))
_TONE_END = {
    "resolved": (("negative", 0.05), ("neutral", 0.20), ("positive", 0.75)),
    "follow_up": (("negative", 0.15), ("neutral", 0.55), ("positive", 0.30)),
    "unresolved": (("negative", 0.60), ("neutral", 0.35), ("positive", 0.05)),
    "escalated": (("negative", 0.55), ("neutral", 0.40), ("positive", 0.05)),
    "transfer": (("negative", 0.40), ("neutral", 0.60), ("positive", 0.00)),
}
_LONG_WAIT_S = {"voice": 60.0, "chat": 180.0, "sms": 1800.0}
_MSG_SPACING_S = {"voice": 12.0, "chat": 40.0, "sms": 120.0}
_MSG_BOUNDS = {"voice": (4, 80), "chat": (2, 60), "sms": (2, 30)}


def _lognormal_mu(mean: float, sigma: float) -> float:
    return math.log(max(mean, 1e-9)) - sigma * sigma / 2.0


def _cum(weights: dict[str, float], order: Iterable[str]) -> tuple[list[str], list[float]]:
    names = [k for k in order if weights.get(k, 0) > 0]
    total = sum(weights[k] for k in names)
    acc, cum = 0.0, []
    for k in names:
        acc += weights[k] / total
        cum.append(acc)
    cum[-1] = 1.0
    return names, cum


def _pick(rng_random: Callable[[], float], names: list[str], cum: list[float]) -> str:
    return names[bisect.bisect_left(cum, rng_random())]


def _pick_tone(r: float, table: tuple[tuple[str, float], ...]) -> str:
    for tone, p in table:
        if r < p:
            return tone
        r -= p
    return table[-1][0]


def shift_start_quantiles(profile: tuple[float, ...], n: int) -> list[float]:
    """Shift start hours (local) for ``n`` agents, spread so coverage follows the profile.

    The weight of starting at hour h is the demand around mid-shift (h + 4 h).
    """
    w = [max(profile[(h + 4) % 24], 0.0) + 1e-6 for h in range(24)]
    total = sum(w)
    cum, acc = [], 0.0
    for x in w:
        acc += x / total
        cum.append(acc)
    out = []
    for i in range(n):
        q = (i + 0.5) / n
        h = bisect.bisect_left(cum, q)
        h = min(h, 23)
        lo = cum[h - 1] if h else 0.0
        frac = (q - lo) / max(cum[h] - lo, 1e-12)
        out.append(h + frac)
    return out


def auto_agents(cfg: SimConfig) -> int:
    """Agents needed so the center copes with ``cfg.rate`` at every hour of the profile.

    Rough sizing: offered load in agent-equivalents (each contact occupies 1/capacity of an
    agent for ring + talk + hold + ACW), 85 % occupancy plus a square-root safety margin,
    divided by the share of agents on shift at that hour (shifts, absence, breaks).
    """
    mix_total = sum(cfg.channel_mix.values())
    per_contact = 0.0
    for ch, share in cfg.channel_mix.items():
        cap = cfg.capacity.get(ch, 0)
        if cap <= 0 or share <= 0:
            continue
        hold = 0.0
        if ch == "voice":
            p1, p2 = cfg.hold_probs
            hold = (p1 + 2 * p2) * cfg.hold_mean_s
        handle = sum(cfg.ring_s) / 2 + cfg.talk_mean_s[ch] + hold + cfg.acw_mean_s[ch]
        per_contact += share / mix_total * handle / cap
    starts = shift_start_quantiles(cfg.profile, 240)
    need = 0.0
    for h in range(24):
        load = cfg.rate * cfg.profile[h] * per_contact
        if load <= 0:
            continue
        on = sum(1 for s in starts if (h + 0.5 - s) % 24 < cfg.shift_hours) / len(starts)
        on *= (1 - cfg.absent_rate) * 0.88
        staffed = load / 0.85 + 2 * math.sqrt(load) + 1
        need = max(need, staffed / max(on, 0.05))
    return max(len(cfg.queues), math.ceil(need))


# --------------------------------------------------------------------------------------
# model state
# --------------------------------------------------------------------------------------

_WAITING, _RINGING, _TALKING, _ACW, _DONE = range(5)


class _Agent:
    __slots__ = (
        "id", "queues", "queues_list", "base_start_h", "on_shift", "shift_no", "state",
        "reason", "n_ring", "n_talk", "n_acw", "load", "in_aux", "aux_pending",
        "logout_pending", "break_no", "idle_since", "emitted", "emitted_reason",
    )

    def __init__(self, agent_id: str, queues: list[str], base_start_h: float) -> None:
        self.id = agent_id
        self.queues = tuple(queues)
        self.queues_list = list(queues)
        self.base_start_h = base_start_h
        self.on_shift = False
        self.shift_no = 0
        self.state = "offline"
        self.reason: Optional[str] = None
        self.n_ring = 0
        self.n_talk = 0
        self.n_acw = 0
        self.load = 0.0
        self.in_aux = False
        self.aux_pending: Optional[tuple[str, float]] = None
        self.logout_pending = False
        self.break_no = 0
        self.idle_since = 0.0
        self.emitted = False
        self.emitted_reason: Optional[str] = None


class _Contact:
    __slots__ = (
        "id", "customer", "queue", "channel", "state", "offered_t", "leg", "transfers",
        "total_wait", "agent", "disposition", "answered_t", "ended_t", "leg_wait",
    )

    def __init__(self, cid: str, customer: str, queue: str, channel: str, t: float) -> None:
        self.id = cid
        self.customer = customer
        self.queue = queue
        self.channel = channel
        self.state = _WAITING
        self.offered_t = t
        self.leg = 0
        self.transfers = 0
        self.total_wait = 0.0
        self.agent: Optional[_Agent] = None
        self.disposition: Optional[str] = None
        self.answered_t = 0.0
        self.ended_t = 0.0
        self.leg_wait = 0.0


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Simulator:
    """Seeded discrete-event model of a contact center; iterate it for :class:`SimRecord`.

    ``Simulator(cfg)`` or ``Simulator(seed=7, rate=0.5, duration_s=7200)`` (keywords override
    fields of ``cfg``). Records come out in non-decreasing ``ts``; per interaction the order
    is always valid. ``stats`` counts what the model did (ground truth for tests).
    A Simulator is single-use: iterate it once.
    """

    def __init__(self, config: Optional[SimConfig] = None, **overrides: Any) -> None:
        cfg = replace(config or SimConfig(), **overrides) if overrides else (config or SimConfig())
        cfg = cfg.validated()
        start = cfg.start or datetime.now(timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=ZoneInfo(cfg.timezone))
        start_ms = int(start.timestamp() * 1000)
        self.start = _EPOCH + timedelta(milliseconds=start_ms)
        self.config = cfg = replace(cfg, start=self.start)
        self._start_ms = start_ms
        self._start_epoch = start_ms / 1000.0
        self._tz = ZoneInfo(cfg.timezone)
        self._end = math.inf if cfg.duration_s is None else float(cfg.duration_s)
        self._tag = f"{cfg.seed}x{start_ms:x}"

        self._rng = rng = random.Random(f"ccpulse-sim:{cfg.seed}")
        self._bad_rng = random.Random(f"ccpulse-sim-bad:{cfg.seed}")
        self.stats: dict[str, int] = {
            k: 0 for k in (
                "contacts", "repeat_contacts", "offered", "answered", "abandoned",
                "short_abandons", "transferred", "ended", "wrapups", "missing_wrapups",
                "holds", "messages", "surveys", "agent_events", "bad", "records")}

        # lookup tables
        self._queues = list(cfg.queues)
        qw = cfg.queue_weights or {q: 1.0 for q in cfg.queues}
        self._q_names, self._q_cum = _cum({q: qw.get(q, 0.0) for q in cfg.queues}, cfg.queues)
        self._ch_names, self._ch_cum = _cum(cfg.channel_mix, CHANNELS)
        self._disp_names, self._disp_cum = _cum(cfg.disposition_weights, DISPOSITIONS)
        self._goal = {ch: max(float(cfg.service_goal_s.get(ch, 60.0)), 1e-3) for ch in CHANNELS}
        self._w = {ch: (1.0 / cfg.capacity[ch] if cfg.capacity.get(ch, 0) > 0 else math.inf)
                   for ch in CHANNELS}
        self._capacity = {ch: int(cfg.capacity.get(ch, 0)) for ch in CHANNELS}
        self._talk_mu = {ch: _lognormal_mu(cfg.talk_mean_s[ch], cfg.talk_sigma) for ch in CHANNELS}
        self._acw_mu = {ch: _lognormal_mu(cfg.acw_mean_s[ch], cfg.acw_sigma) for ch in CHANNELS}
        self._hold_mu = _lognormal_mu(cfg.hold_mean_s, 0.6)
        self._max_mult = max(cfg.profile)
        self._lam_max = cfg.rate * self._max_mult
        self._mult_cache: dict[int, float] = {}

        # agents
        n_agents = auto_agents(cfg) if cfg.agents is None else cfg.agents
        self.n_agents = n_agents
        starts = shift_start_quantiles(cfg.profile, n_agents)
        rng.shuffle(starts)
        self._agents: list[_Agent] = []
        self._agents_by_queue: dict[str, list[_Agent]] = {q: [] for q in cfg.queues}
        nq = len(cfg.queues)
        for i in range(n_agents):
            skills = [cfg.queues[i % nq]]
            others = [q for q in cfg.queues if q != skills[0]]
            rng.shuffle(others)
            extra = (1 if rng.random() < 0.45 else 0) + (1 if rng.random() < 0.15 else 0)
            skills += others[:extra]
            a = _Agent(f"agent-{i + 1:03d}", skills, starts[i])
            self._agents.append(a)
            for q in skills:
                self._agents_by_queue[q].append(a)
        self._idle: dict[str, dict[_Agent, None]] = {q: {} for q in cfg.queues}
        self._n_waiting: dict[str, int] = {q: 0 for q in cfg.queues}
        self._waiting: dict[tuple[str, str], deque[_Contact]] = {
            (q, ch): deque() for q in cfg.queues for ch in CHANNELS}

        # event heaps: simulation events and rendered-later output
        self._seq = 0
        self._events: list[tuple[float, int, Callable[[Any], None], Any]] = []
        self._out: list[tuple[float, int, str, str, str, dict[str, Any]]] = []
        self._repeats: list[tuple[float, int, str, str]] = []
        self._n_contacts = 0
        self._active = 0  # contacts not finished + pending surveys (for drain)
        self._draining = False
        self._iterated = False
        self._now = 0.0  # event time of the handler being run

        # rendering caches
        self._n_events = 0
        self._n_bad = 0

        # initial schedule: shifts of yesterday and today, first arrival, agent snapshot
        local_start = self.start.astimezone(self._tz)
        d0 = local_start.date()
        self._plan_day(d0 - timedelta(days=1))
        self._plan_day(d0)
        self._schedule_plan(d0 + timedelta(days=1))
        self._schedule(0.0, self._snapshot, None)
        if self._lam_max > 0:
            self._schedule_next_arrival(0.0)

    # ------------------------------------------------------------------ plumbing
    def _schedule(self, t: float, fn: Callable[[Any], None], arg: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (t, self._seq, fn, arg))

    def _emit(self, t: float, topic: str, key: str, typ: str, fields: dict[str, Any]) -> None:
        self._seq += 1
        heapq.heappush(self._out, (t, self._seq, topic, key, typ, fields))

    def _offset(self, dt: datetime) -> float:
        return dt.timestamp() - self._start_epoch

    def _mult(self, t: float) -> float:
        slot = int(t // 900)
        m = self._mult_cache.get(slot)
        if m is None:
            if len(self._mult_cache) > 10_000:
                self._mult_cache.clear()
            local = datetime.fromtimestamp(self._start_epoch + slot * 900 + 450, self._tz)
            hf = local.hour + local.minute / 60.0 + local.second / 3600.0
            h0 = int(hf) % 24
            frac = hf - int(hf)
            # interpolate between hour centres
            if frac >= 0.5:
                a, b, f = self.config.profile[h0], self.config.profile[(h0 + 1) % 24], frac - 0.5
            else:
                a, b, f = self.config.profile[(h0 - 1) % 24], self.config.profile[h0], frac + 0.5
            m = a + (b - a) * f
            self._mult_cache[slot] = m
        return m

    def profile_multiplier(self, t: float) -> float:
        """Rate multiplier at event-time offset ``t`` seconds (for tests and planners)."""
        return self._mult(t)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[SimRecord]:
        return self.records()

    def records(self) -> Iterator[SimRecord]:
        """Run the model and yield records in event-time order (single use)."""
        if self._iterated:
            raise RuntimeError("a Simulator can be iterated once; make a new one")
        self._iterated = True
        events, out = self._events, self._out
        heappop = heapq.heappop
        end = self._end
        drain = self.config.drain
        limit = math.inf
        dumps = orjson.dumps
        tag = f"ev-{self._tag}-"
        start_ms = self._start_ms
        bad_rate = self.config.bad_rate
        bad_random = self._bad_rng.random
        stats = self.stats
        n = self._n_events
        sec_cached, prefix = -1, ""
        epoch, td = _EPOCH, timedelta
        inter = TOPIC_INTERACTIONS
        strftime, gmtime = _time.strftime, _time.gmtime
        try:
            while True:
                if events:
                    t, _, fn, arg = heappop(events)
                    if t > end:
                        if not drain:
                            t, limit, fn = end, end, None
                        else:
                            self._draining = True
                            if self._active <= 0:
                                t, fn = math.inf, None
                else:
                    t, fn = math.inf, None
                    if not drain:
                        limit = end
                # render everything due up to t (all of it at the end)
                while out and out[0][0] <= t and out[0][0] <= limit:
                    et, _, topic, key, typ, fields = heappop(out)
                    ms = start_ms + int(et * 1000.0)
                    sec = ms // 1000
                    if sec != sec_cached:
                        sec_cached = sec
                        prefix = strftime("%Y-%m-%dT%H:%M:%S", gmtime(sec))
                    n += 1
                    ev = {"event_id": f"{tag}{n}", "type": typ,
                          "ts": f"{prefix}.{ms - sec * 1000:03d}Z", "schema_version": 1}
                    ev.update(fields)
                    value = dumps(ev)
                    dt = epoch + td(milliseconds=ms)
                    kb = key.encode()
                    yield SimRecord(topic, kb, value, dt)
                    if bad_rate and topic is inter and bad_random() < bad_rate:
                        stats["bad"] += 1
                        yield self._make_bad(ev, value, kb, dt)
                if fn is None:
                    return
                self._now = t
                fn(arg)
        finally:
            stats["records"] = n
            self._n_events = n

    # ------------------------------------------------------------------ agents
    def _set_state(self, a: _Agent, t: float) -> None:
        """Derive the agent's state from its work and emit it when it changed."""
        if a.n_talk > 0:
            st, reason = "busy", None
        elif a.n_acw > 0:
            st, reason = "acw", None
        elif a.in_aux:
            st, reason = "aux", a.reason
        elif a.on_shift:
            st, reason = "available", None
        else:
            st, reason = "offline", None
        if not a.emitted or st != a.state or reason != a.emitted_reason:
            a.state = st
            a.emitted_reason = reason
            self._emit_agent(a, t)

    def _emit_agent(self, a: _Agent, t: float) -> None:
        a.emitted = True
        fields: dict[str, Any] = {"agent_id": a.id, "state": a.state}
        if a.state == "aux" and a.emitted_reason:
            fields["reason"] = a.emitted_reason
        fields["queues"] = a.queues_list
        fields["capacity"] = self._capacity
        self.stats["agent_events"] += 1
        self._emit(t, TOPIC_AGENTS, a.id, "agent.state_changed", fields)

    def _agent_freed(self, a: _Agent, t: float) -> None:
        """Called when the agent's load went down: maybe aux/offline, else take work."""
        if a.n_ring + a.n_talk + a.n_acw == 0:
            a.load = 0.0
            a.idle_since = t
            if a.on_shift and a.logout_pending:
                a.on_shift = False
                a.logout_pending = False
                a.aux_pending = None
            elif a.on_shift and a.aux_pending is not None:
                reason, dur = a.aux_pending
                a.aux_pending = None
                self._enter_aux(a, t, reason, dur)
                return
        self._set_state(a, t)
        self._try_assign(a, t)

    def _enter_aux(self, a: _Agent, t: float, reason: str, dur: float) -> None:
        a.in_aux = True
        a.reason = reason
        a.break_no += 1
        self._set_state(a, t)
        self._schedule(t + dur, self._break_end, (a, a.break_no))

    def _break_start(self, arg: tuple[_Agent, int, str, float]) -> None:
        a, shift_no, reason, dur = arg
        t = self._now
        if not a.on_shift or a.shift_no != shift_no or a.logout_pending or a.in_aux \
                or a.aux_pending is not None:
            return
        if a.n_ring + a.n_talk + a.n_acw == 0:
            self._enter_aux(a, t, reason, dur)
        else:
            a.aux_pending = (reason, dur)

    def _break_end(self, arg: tuple[_Agent, int]) -> None:
        a, break_no = arg
        if not a.in_aux or a.break_no != break_no:
            return
        t = self._now
        a.in_aux = False
        a.reason = None
        a.idle_since = t
        self._set_state(a, t)
        self._try_assign(a, t)

    def _shift_start(self, arg: tuple[_Agent, int]) -> None:
        a, shift_no = arg
        t = self._now
        a.shift_no = shift_no
        a.logout_pending = False
        if a.on_shift:
            return
        a.on_shift = True
        a.in_aux = False
        a.aux_pending = None
        a.idle_since = t
        self._set_state(a, t)
        self._try_assign(a, t)

    def _shift_end(self, arg: tuple[_Agent, int]) -> None:
        a, shift_no = arg
        if not a.on_shift or a.shift_no != shift_no:
            return
        t = self._now
        a.aux_pending = None
        if a.n_ring + a.n_talk + a.n_acw == 0:
            a.on_shift = False
            a.in_aux = False
            a.break_no += 1
            self._set_state(a, t)
        else:
            a.logout_pending = True

    def _snapshot(self, _: Any) -> None:
        for a in self._agents:
            if not a.emitted:
                self._emit_agent(a, self._now)

    def _schedule_plan(self, day: date) -> None:
        midnight = datetime.combine(day, time(), tzinfo=self._tz)
        t = self._offset(midnight) - 2 * 3600.0
        self._schedule(max(t, 0.0), self._plan_event, day)

    def _plan_event(self, day: date) -> None:
        if self._draining:
            return
        self._plan_day(day)
        self._schedule_plan(day + timedelta(days=1))

    def _plan_day(self, day: date) -> None:
        rng = self._rng
        cfg = self.config
        midnight = datetime.combine(day, time(), tzinfo=self._tz)
        for a in self._agents:
            if rng.random() < cfg.absent_rate:
                continue
            h = a.base_start_h + rng.uniform(-0.25, 0.25)
            st = self._offset(midnight + timedelta(hours=h))
            en = st + cfg.shift_hours * 3600.0
            breaks = [
                (2.0 + rng.uniform(-0.33, 0.33), "break", 900.0),
                (4.0 + rng.uniform(-0.5, 0.5), "lunch", 1800.0),
                (6.5 + rng.uniform(-0.33, 0.33), "break", 900.0),
            ]
            if rng.random() < 0.25:
                breaks.append((rng.uniform(1.0, 7.0), rng.choice(("meeting", "training", "coaching")), 1800.0))
            if rng.random() < 0.15:
                breaks.append((rng.uniform(0.5, 8.0), "personal", rng.uniform(300.0, 600.0)))
            if en <= 0:
                continue
            shift_no = self._seq + 1  # unique token
            self._schedule(max(st, 0.0), self._shift_start, (a, shift_no))
            self._schedule(en, self._shift_end, (a, shift_no))
            for off_h, reason, dur in breaks:
                bt = st + off_h * 3600.0
                if bt > 0:
                    self._schedule(bt, self._break_start, (a, shift_no, reason, dur))

    # ------------------------------------------------------------------ contacts
    def _schedule_next_arrival(self, t: float) -> None:
        rng = self._rng
        lam, mmax = self._lam_max, self._max_mult
        while True:
            t += rng.expovariate(lam)
            if t > self._end:
                self._schedule(t, self._noop, None)
                return
            if rng.random() * mmax < self._mult(t):
                self._schedule(t, self._arrival, None)
                return

    def _noop(self, _: Any) -> None:
        pass

    def _arrival(self, _: Any) -> None:
        t = self._now
        rng = self._rng
        cfg = self.config
        self._schedule_next_arrival(t)
        rep = self._repeats
        if rep and rep[0][0] <= t:
            _, _, customer, prev_q = heapq.heappop(rep)
            self.stats["repeat_contacts"] += 1
            if rng.random() < cfg.repeat_same_queue:
                queue = prev_q
            else:
                queue = _pick(rng.random, self._q_names, self._q_cum)
        else:
            customer = f"cust-{rng.randrange(cfg.customers):06d}"
            queue = _pick(rng.random, self._q_names, self._q_cum)
        channel = _pick(rng.random, self._ch_names, self._ch_cum)
        self._n_contacts += 1
        self.stats["contacts"] += 1
        c = _Contact(f"ix-{self._tag}-{self._n_contacts}", customer, queue, channel, t)
        self._active += 1
        self._offer(c, t)

    def _offer(self, c: _Contact, t: float, avoid: Optional[_Agent] = None) -> None:
        c.state = _WAITING
        c.offered_t = t
        c.agent = None
        self.stats["offered"] += 1
        self._emit(t, TOPIC_INTERACTIONS, c.id, "interaction.offered", {
            "interaction_id": c.id, "channel": c.channel, "queue": c.queue,
            "customer_id": c.customer})
        # the best free agent: an idle one (longest idle first), else the least loaded
        # busy agent with room for this channel
        w = self._w[c.channel]
        if w > 1.000001 or self._n_waiting[c.queue] > 0:
            best: Optional[_Agent] = None  # FIFO per queue: never overtake a waiting contact
        else:
            best = None
            idle = self._idle[c.queue]
            skipped = False
            while idle:
                a = next(iter(idle))
                del idle[a]
                if a is avoid:
                    skipped = True
                    continue
                if a.n_ring + a.n_talk + a.n_acw == 0 and a.on_shift and not a.in_aux \
                        and a.aux_pending is None and not a.logout_pending:
                    best = a
                    break
            if skipped:
                idle[avoid] = None  # type: ignore[index]  # still idle: keep it listed
            if best is None and w < 0.999999:
                for a in self._agents_by_queue[c.queue]:
                    if a is avoid or a.load + w > 1.000001 or not a.on_shift or a.in_aux \
                            or a.aux_pending is not None or a.logout_pending:
                        continue
                    if a.n_talk == 0 and a.n_acw > 0:
                        continue  # in ACW: not routable
                    if best is None or a.load < best.load or (
                            a.load == best.load and a.idle_since < best.idle_since):
                        best = a
        if best is not None:
            self._route(c, best, t)
            return
        self._waiting[(c.queue, c.channel)].append(c)
        self._n_waiting[c.queue] += 1
        cfg = self.config
        rng = self._rng
        if rng.random() < cfg.short_abandon_share:
            patience = rng.uniform(0.3, 5.0)
        else:
            patience = rng.expovariate(1.0 / cfg.patience_mean_s[c.channel])
            if c.transfers:
                patience *= 1.5
        c.leg += 1
        self._schedule(t + patience, self._patience, (c, c.leg))

    def _patience(self, arg: tuple[_Contact, int]) -> None:
        c, leg = arg
        if c.state != _WAITING or c.leg != leg:
            return
        t = self._now
        c.state = _DONE
        self._n_waiting[c.queue] -= 1
        self.stats["abandoned"] += 1
        if t - c.offered_t < 5.0:
            self.stats["short_abandons"] += 1
        self._emit(t, TOPIC_INTERACTIONS, c.id, "interaction.abandoned", {
            "interaction_id": c.id, "channel": c.channel, "queue": c.queue})
        self._active -= 1
        cfg = self.config
        rng = self._rng
        if not self._draining and rng.random() < cfg.repeat_prob.get("abandoned", 0.0):
            delay = 30.0 + rng.lognormvariate(math.log(cfg.abandon_retry_median_s), 0.8)
            self._seq += 1
            heapq.heappush(self._repeats, (t + delay, self._seq, c.customer, c.queue))

    def _route(self, c: _Contact, a: _Agent, t: float) -> None:
        c.state = _RINGING
        c.agent = a
        a.n_ring += 1
        a.load += self._w[c.channel]
        lo, hi = self.config.ring_s
        self._schedule(t + self._rng.uniform(lo, hi), self._answer, c)

    def _try_assign(self, a: _Agent, t: float) -> None:
        """Give a free(d) agent waiting contacts of its queues: FIFO per (queue, channel);
        across them the head furthest behind its channel's service goal (wait / goal).

        When that contact needs more room than the agent has (a call while it is on a
        chat), the agent takes nothing new until it is free enough: it drains.
        """
        if not a.on_shift or a.in_aux or a.aux_pending is not None or a.logout_pending:
            return
        if a.n_talk == 0 and a.n_acw > 0:
            return
        waiting = self._waiting
        n_waiting = self._n_waiting
        w = self._w
        goal = self._goal
        while True:
            best_dq = None
            best = -math.inf
            for q in a.queues:
                if not n_waiting[q]:
                    continue
                for ch in CHANNELS:
                    dq = waiting[(q, ch)]
                    while dq and dq[0].state != _WAITING:
                        dq.popleft()
                    if dq:
                        behind = (t - dq[0].offered_t) / goal[ch]
                        if behind > best:
                            best = behind
                            best_dq = dq
            if best_dq is None or a.load + w[best_dq[0].channel] > 1.000001:
                break
            c = best_dq.popleft()
            n_waiting[c.queue] -= 1
            self._route(c, a, t)
        if a.n_ring + a.n_talk + a.n_acw == 0:
            # idle and routable: join the idle lists (insertion order = longest idle first)
            for q in a.queues:
                d = self._idle[q]
                d.pop(a, None)
                d[a] = None

    def _spike(self, c: _Contact, t: float) -> float:
        sp = self.config.aht_spike
        if sp is None:
            return 1.0
        q, off, dur, factor = sp
        return factor if (c.queue == q and off <= t < off + dur) else 1.0

    def _answer(self, c: _Contact) -> None:
        t = self._now
        a = c.agent
        assert a is not None
        cfg = self.config
        rng = self._rng
        ch = c.channel
        a.n_ring -= 1
        a.n_talk += 1
        c.state = _TALKING
        c.answered_t = t
        c.leg_wait = t - c.offered_t
        c.total_wait += c.leg_wait
        self.stats["answered"] += 1
        cid, q = c.id, c.queue
        emit = self._emit
        emit(t, TOPIC_INTERACTIONS, cid, "interaction.answered", {
            "interaction_id": cid, "channel": ch, "queue": q, "agent_id": a.id})
        self._set_state(a, t)

        factor = self._spike(c, t)
        talk = rng.lognormvariate(self._talk_mu[ch], cfg.talk_sigma) * factor
        transfer = (c.transfers < cfg.max_transfers and len(self._queues) > 1
                    and rng.random() < cfg.transfer_rate)
        if transfer:
            talk *= 0.5
            c.disposition = None
        else:
            c.disposition = _pick(rng.random, self._disp_names, self._disp_cum)
        talk = max(talk, 5.0)
        # holds (voice): positions in talk time, durations lognormal
        holds: list[tuple[float, float]] = []
        if ch == "voice":
            r = rng.random()
            p1, p2 = cfg.hold_probs
            nh = 1 if r < p1 else (2 if r < p1 + p2 else 0)
            if nh:
                pos = sorted(rng.uniform(0.1, 0.9) * talk for _ in range(nh))
                holds = [(p, max(3.0, rng.lognormvariate(self._hold_mu, 0.6))) for p in pos]
        hold_total = 0.0
        for p, d in holds:
            hs = t + p + hold_total
            emit(hs, TOPIC_INTERACTIONS, cid, "interaction.hold_started", {
                "interaction_id": cid, "channel": ch, "queue": q, "agent_id": a.id})
            emit(hs + d, TOPIC_INTERACTIONS, cid, "interaction.hold_ended", {
                "interaction_id": cid, "channel": ch, "queue": q, "agent_id": a.id})
            hold_total += d
            self.stats["holds"] += 1
        te = t + talk + hold_total
        c.ended_t = te
        if cfg.messages:
            self._messages(c, a, t, talk, holds, transfer)
        if transfer:
            others = [x for x in self._queues if x != q]
            to_q = others[rng.randrange(len(others))]
            emit(te, TOPIC_INTERACTIONS, cid, "interaction.transferred", {
                "interaction_id": cid, "channel": ch, "queue": q, "agent_id": a.id,
                "to_queue": to_q})
            self._schedule(te, self._transfer_done, (c, to_q))
        else:
            emit(te, TOPIC_INTERACTIONS, cid, "interaction.ended", {
                "interaction_id": cid, "channel": ch, "queue": q, "agent_id": a.id})
            self._schedule(te, self._ended, c)

    def _messages(self, c: _Contact, a: _Agent, t: float, talk: float,
                  holds: list[tuple[float, float]], transfer: bool) -> None:
        rng = self._rng
        ch = c.channel
        if ch == "voice" and rng.random() >= self.config.voice_transcribed_share:
            return
        lo, hi = _MSG_BOUNDS[ch]
        n = int(talk / _MSG_SPACING_S[ch]) + rng.randrange(3)
        n = min(max(n, lo), hi)
        xs = sorted(rng.uniform(0.02, 0.98) * talk for _ in range(n))
        sour = c.transfers > 0 or c.leg_wait > _LONG_WAIT_S[ch]
        start_tbl = _TONE_START_SOUR if sour else _TONE_START_CALM
        end_tbl = _TONE_END["transfer" if transfer else (c.disposition or "resolved")]
        closing = AGENT_CLOSING["transfer" if transfer else (c.disposition or "resolved")]
        n_cust = (n + 1) // 2
        third = max(1, n_cust // 3)
        cid, q, lang = c.id, c.queue, self.config.language
        emit = self._emit
        ci = 0
        rnd = rng.random
        for i, x in enumerate(xs):
            wall = t + x
            for p, d in holds:
                if p <= x:
                    wall += d
            if i % 2 == 0:
                if ci < third:
                    tone = _pick_tone(rnd(), start_tbl)
                elif ci >= n_cust - third:
                    tone = _pick_tone(rnd(), end_tbl)
                else:
                    tone = "neutral" if rnd() < 0.7 else _pick_tone(rnd(), start_tbl)
                phrases = CUSTOMER_PHRASES[tone]
                text = phrases[int(rnd() * len(phrases))]
                ci += 1
                fields = {"interaction_id": cid, "channel": ch, "queue": q,
                          "direction": "customer", "text": text, "language": lang}
            else:
                if i >= n - 2:
                    text = closing[int(rnd() * len(closing))]
                else:
                    text = AGENT_PHRASES[int(rnd() * len(AGENT_PHRASES))]
                fields = {"interaction_id": cid, "channel": ch, "queue": q,
                          "direction": "agent", "text": text, "language": lang,
                          "agent_id": a.id}
            emit(wall, TOPIC_INTERACTIONS, cid, "interaction.message", fields)
        self.stats["messages"] += n

    def _transfer_done(self, arg: tuple[_Contact, str]) -> None:
        c, to_q = arg
        t = self._now
        a = c.agent
        assert a is not None
        a.n_talk -= 1
        a.load -= self._w[c.channel]
        c.transfers += 1
        self.stats["transferred"] += 1
        c.queue = to_q
        self._agent_freed(a, t)
        self._offer(c, t, avoid=a)  # not straight back to the agent who transferred it

    def _ended(self, c: _Contact) -> None:
        t = self._now
        a = c.agent
        assert a is not None
        cfg = self.config
        rng = self._rng
        a.n_talk -= 1
        a.n_acw += 1
        c.state = _ACW
        self.stats["ended"] += 1
        self._set_state(a, t)
        if rng.random() < cfg.missing_wrapup_rate:
            self._schedule(t + cfg.acw_timeout_s, self._wrapup, (c, False))
        else:
            acw = rng.lognormvariate(self._acw_mu[c.channel], cfg.acw_sigma) * self._spike(c, c.answered_t)
            self._schedule(t + max(acw, 1.0), self._wrapup, (c, True))

    def _wrapup(self, arg: tuple[_Contact, bool]) -> None:
        c, sent = arg
        t = self._now
        a = c.agent
        assert a is not None
        cfg = self.config
        rng = self._rng
        disp = c.disposition or "resolved"
        if sent:
            fields: dict[str, Any] = {"interaction_id": c.id, "channel": c.channel, "queue": c.queue,
                                      "agent_id": a.id, "disposition": disp}
            reasons = WRAPUP_REASONS.get(disp)
            if reasons and rng.random() < 0.5:
                fields["reason"] = reasons[rng.randrange(len(reasons))]
            self._emit(t, TOPIC_INTERACTIONS, c.id, "interaction.wrapup_completed", fields)
            self.stats["wrapups"] += 1
        else:
            self.stats["missing_wrapups"] += 1
        c.state = _DONE
        a.n_acw -= 1
        a.load -= self._w[c.channel]
        self._active -= 1
        if sent and rng.random() < cfg.survey_rate:
            delay = 60.0 + rng.lognormvariate(math.log(cfg.survey_delay_median_s), 0.8)
            self._active += 1
            self._schedule(t + delay, self._survey, c)
        if not self._draining and rng.random() < cfg.repeat_prob.get(disp, 0.0):
            delay = rng.lognormvariate(math.log(cfg.repeat_delay_median_s), 1.0)
            delay = min(max(delay, 600.0), 5 * 86400.0)
            self._seq += 1
            heapq.heappush(self._repeats, (t + delay, self._seq, c.customer, c.queue))
        self._agent_freed(a, t)

    def _survey(self, c: _Contact) -> None:
        t = self._now
        rng = self._rng
        self._active -= 1
        disp = c.disposition or "resolved"
        sat = 0.78 + {"resolved": 0.1, "follow_up": -0.1, "unresolved": -0.3, "escalated": -0.3}[disp]
        slow = _LONG_WAIT_S[c.channel]
        sat -= min(0.35, 0.35 * c.total_wait / (3.0 * slow))
        sat -= 0.1 * c.transfers
        sat += rng.gauss(0.0, 0.12)
        sat = min(1.0, max(0.0, sat))
        fields: dict[str, Any] = {"interaction_id": c.id, "customer_id": c.customer}
        want = [rng.random() < 0.85, rng.random() < 0.8, rng.random() < 0.6]
        if not any(want):
            want[0] = True
        if want[0]:
            fields["nps"] = min(10, max(0, round(sat * 10 + rng.gauss(0, 0.8))))
        if want[1]:
            fields["csat"] = min(5, max(1, 1 + round(sat * 4 + rng.gauss(0, 0.4))))
        if want[2]:
            fields["ces"] = min(7, max(1, 7 - round(sat * 6 + rng.gauss(0, 0.6))))
        self.stats["surveys"] += 1
        self._emit(t, TOPIC_SURVEYS, c.id, "survey.responded", fields)

    # ------------------------------------------------------------------ bad input
    def _make_bad(self, ev: dict[str, Any], value: bytes, key: bytes, dt: datetime) -> SimRecord:
        rng = self._bad_rng
        kinds = self.config.bad_kinds
        kind = kinds[rng.randrange(len(kinds))]
        self._n_bad += 1
        if kind == "duplicate":
            return SimRecord(TOPIC_INTERACTIONS, key, value, dt, kind)
        iid = f"bad-{self._tag}-{self._n_bad}"
        d = dict(ev)
        d["event_id"] = f"ev-{self._tag}-bad-{self._n_bad}"
        d["interaction_id"] = iid
        out: bytes
        if kind == "truncated_json":
            full = orjson.dumps(d)
            out = full[: max(1, len(full) // 2)]
        elif kind == "invalid_utf8":
            d["queue"] = "\x00MARK\x00"
            out = orjson.dumps(d).replace(b"\\u0000MARK\\u0000", b"bil\xff\xfeling")
        elif kind == "not_object":
            out = rng.choice((b"[1,2,3]", b'"interaction.offered"', b"null", b"42",
                              orjson.dumps([d])))
        elif kind == "wrong_type":
            options: list[tuple[str, Any]] = [
                ("schema_version", "1"), ("ts", 1763892902123), ("interaction_id", 12345),
                ("queue", [d.get("queue", "billing")]), ("channel", None), ("event_id", {"id": 1}),
                ("type", 7)]
            if "agent_id" in d:
                options.append(("agent_id", 42))
            if "customer_id" in d:
                options.append(("customer_id", ["x"]))
            if "text" in d:
                options.append(("text", 3.5))
            f, v = options[rng.randrange(len(options))]
            d[f] = v
            out = orjson.dumps(d)
        elif kind == "unknown_type":
            d["type"] = rng.choice(("interaction.teleported", "customer.mood_swung",
                                    "agent.state_changed", "interaction.OFFERED", ""))
            out = orjson.dumps(d)
        elif kind == "missing_field":
            required = ["event_id", "type", "ts", "schema_version", "interaction_id", "channel", "queue"]
            typ = d.get("type")
            if typ == "interaction.offered":
                required.append("customer_id")
            elif typ == "interaction.message":
                required += ["direction", "text"]
            elif typ == "interaction.wrapup_completed":
                required += ["agent_id", "disposition"]
            elif typ == "interaction.transferred":
                required += ["agent_id", "to_queue"]
            elif typ != "interaction.abandoned":
                required.append("agent_id")
            d.pop(required[rng.randrange(len(required))], None)
            out = orjson.dumps(d)
        elif kind == "bad_timestamp":
            iso = d["ts"]
            d["ts"] = rng.choice((
                iso[:-1],                       # no offset
                iso.replace("T", "X"),
                "2026-13-45T25:61:00Z",
                "yesterday",
                "",
                "1763892902",
                iso[:10],                       # date only
            ))
            out = orjson.dumps(d)
        elif kind == "bad_name":
            bad = rng.choice((
                "bad queue", "<script>alert(1)</script>", "", "x" * 65, "-dash", "_under",
                "qüeue", "a:b", "../../etc/passwd", "q\nnewline", "cc:kpi:*", "name}{",
                "billing\u202e", "drop table;",
            ))
            fields = ["queue", "channel"] + [f for f in ("agent_id", "to_queue") if f in d]
            d[rng.choice(fields)] = bad
            out = orjson.dumps(d)
        elif kind == "bad_value":
            choices: list[tuple[str, Any]] = [("channel", "fax"), ("schema_version", 2),
                                              ("schema_version", 0), ("event_id", "e" * 129)]
            if d.get("type") == "interaction.wrapup_completed":
                choices.append(("disposition", "maybe"))
            if d.get("type") == "interaction.message":
                choices.append(("direction", "bot"))
            f, v = rng.choice(choices)
            d[f] = v
            out = orjson.dumps(d)
        elif kind == "text_too_long":
            d = {"event_id": d["event_id"], "type": "interaction.message", "ts": d["ts"],
                 "schema_version": 1, "interaction_id": iid, "channel": d.get("channel", "chat"),
                 "queue": d.get("queue", self._queues[0]), "direction": "customer",
                 "text": ("This is far too long. " * 200)[: 4001 + rng.randrange(500)],
                 "language": self.config.language}
            out = orjson.dumps(d)
        elif kind == "orphan_answered":
            agent = self._agents[rng.randrange(len(self._agents))].id if self._agents else "agent-001"
            d = {"event_id": d["event_id"], "type": "interaction.answered", "ts": d["ts"],
                 "schema_version": 1, "interaction_id": f"orphan-{self._tag}-{self._n_bad}",
                 "channel": d.get("channel", "voice"), "queue": d.get("queue", self._queues[0]),
                 "agent_id": agent}
            iid = d["interaction_id"]
            out = orjson.dumps(d)
        else:  # pragma: no cover - guarded by validated()
            raise ValueError(kind)
        return SimRecord(TOPIC_INTERACTIONS, iid.encode(), out, dt, kind)



def generate(config: Optional[SimConfig] = None, **overrides: Any) -> Iterator[SimRecord]:
    """Shorthand: ``iter(Simulator(config, **overrides))``."""
    return iter(Simulator(config, **overrides))


# --------------------------------------------------------------------------------------
# JSONL dump / load
# --------------------------------------------------------------------------------------

def write_jsonl(records: Iterable[SimRecord], path: str | os.PathLike[str]) -> int:
    """Write one JSON line per record: ``topic``, ``key``, ``value`` (text; ``value_b64``
    instead when the bytes are not UTF-8), ``ts`` and ``bad_kind``. Returns the count."""
    n = 0
    with open(path, "wb") as f:
        for r in records:
            line: dict[str, Any] = {"topic": r.topic, "key": r.key.decode("utf-8", "replace")}
            try:
                line["value"] = r.value.decode("utf-8")
            except UnicodeDecodeError:
                line["value_b64"] = base64.b64encode(r.value).decode()
            line["ts"] = r.ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            if r.bad_kind is not None:
                line["bad_kind"] = r.bad_kind
            f.write(orjson.dumps(line))
            f.write(b"\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[SimRecord]:
    """Read back what :func:`write_jsonl` wrote."""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            d = orjson.loads(raw)
            value = (base64.b64decode(d["value_b64"]) if "value_b64" in d
                     else d["value"].encode("utf-8"))
            ts = datetime.fromisoformat(d["ts"].replace("Z", "+00:00"))
            yield SimRecord(d["topic"], d["key"].encode("utf-8"), value, ts, d.get("bad_kind"))


# --------------------------------------------------------------------------------------
# producing to Kafka
# --------------------------------------------------------------------------------------

@dataclass
class ProduceStats:
    """What :func:`produce` sent."""

    by_topic: dict[str, int] = field(default_factory=dict)
    bad: int = 0
    bad_by_kind: dict[str, int] = field(default_factory=dict)
    total: int = 0
    elapsed_s: float = 0.0
    first_ts: Optional[datetime] = None
    last_ts: Optional[datetime] = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "by_topic": dict(self.by_topic), "bad": self.bad, "bad_by_kind": dict(self.bad_by_kind),
            "total": self.total, "elapsed_s": round(self.elapsed_s, 3),
            "events_per_s": round(self.total / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
        }


def parse_broker(url: str) -> str:
    """``kafka://h:p``, ``tcp://h:p``, ``h:p`` or a comma list of those → ``h:p[,h:p]``."""
    hosts = []
    for part in url.split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        part = part.split("/", 1)[0]
        if part:
            hosts.append(part if ":" in part else f"{part}:9092")
    if not hosts:
        raise ValueError(f"no broker in {url!r}")
    return ",".join(hosts)


async def produce(
    records: Iterable[SimRecord],
    bootstrap: str,
    speedup: Optional[float] = None,
    *,
    live: bool = False,
    topics: Optional[dict[str, str]] = None,
    linger_ms: int = 5,
    flush_every: int = 5000,
    stats: Optional[ProduceStats] = None,
    producer_kwargs: Optional[dict[str, Any]] = None,
    producer: Any = None,
) -> ProduceStats:
    """Send ``records`` to Kafka and return counts by topic and of bad records.

    ``speedup=None``: as fast as possible. ``speedup=s``: event time advances s× wall time
    (60 = one simulated minute per second). ``live=True``: each record is sent when the wall
    clock reaches its ``ts`` (use a Simulator whose ``start`` is now); ``speedup`` is ignored.
    ``topics`` renames topics (``{"cc.interactions": "x.interactions"}``). Sends are not
    awaited one by one: delivery futures are gathered every ``flush_every`` records and
    before each pause. On cancellation (Ctrl-C) everything queued is flushed and the
    producer closed; ``stats`` (pass your own to read it after a cancel) holds what was sent.
    """
    if speedup is not None and speedup <= 0:
        raise ValueError("speedup must be > 0")
    stats = stats if stats is not None else ProduceStats()
    own = producer is None
    if own:
        from aiokafka import AIOKafkaProducer

        from .partitioning import DefaultPartitioner

        kwargs: dict[str, Any] = dict(
            bootstrap_servers=parse_broker(bootstrap), acks="all", enable_idempotence=False,
            linger_ms=linger_ms, client_id="ccpulse-simulate",
            max_batch_size=256 * 1024, request_timeout_ms=30000,
            partitioner=DefaultPartitioner())
        kwargs.update(producer_kwargs or {})
        producer = AIOKafkaProducer(**kwargs)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
    topics = topics or {}
    pending: list[asyncio.Future[Any]] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    wall0 = _time.time()
    ts0: Optional[float] = None
    by_topic = stats.by_topic
    try:
        for rec in records:
            if live or speedup is not None:
                ets = rec.ts.timestamp()
                if live:
                    delay = ets - _time.time()
                else:
                    if ts0 is None:
                        ts0 = ets
                    delay = wall0 + (ets - ts0) / speedup - _time.time()  # type: ignore[operator]
                if delay > 0.002:
                    if pending and delay > 0.05:
                        await asyncio.gather(*pending)
                        pending.clear()
                    await asyncio.sleep(delay)
            topic = topics.get(rec.topic, rec.topic)
            pending.append(await producer.send(topic, rec.value, key=rec.key))
            by_topic[rec.topic] = by_topic.get(rec.topic, 0) + 1
            stats.total += 1
            if rec.bad_kind is not None:
                stats.bad += 1
                stats.bad_by_kind[rec.bad_kind] = stats.bad_by_kind.get(rec.bad_kind, 0) + 1
            if stats.first_ts is None:
                stats.first_ts = rec.ts
            stats.last_ts = rec.ts
            if len(pending) >= flush_every:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
            pending.clear()
    finally:
        # also on CancelledError / KeyboardInterrupt: deliver what is queued, then close
        try:
            if own:
                await asyncio.shield(_close(producer))
            elif pending:
                await asyncio.shield(producer.flush())
        finally:
            stats.elapsed_s = loop.time() - t0
    return stats


async def _close(producer: Any) -> None:
    try:
        await producer.flush()
    finally:
        await producer.stop()


# --------------------------------------------------------------------------------------
# CLI command (registered by stream.cli as `ccpulse simulate`)
# --------------------------------------------------------------------------------------

def _parse_start(value: Optional[str], tz: str) -> Optional[datetime]:
    if not value:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=ZoneInfo(tz))
    return dt


def simulate(
    broker: str = "kafka://127.0.0.1:9092",
    rate: float = 2.0,
    queues: str = "billing,support,sales,retention",
    agents: int = 24,
    duration: Optional[float] = None,
    speedup: Optional[float] = None,
    seed: Optional[int] = None,
    bad_rate: float = 0.0,
    start: Optional[str] = None,
    live: bool = True,
    timezone_name: str = "UTC",
    flat: bool = False,
    out: Optional[Path] = None,
) -> None:
    """Generate simulated contact-center traffic and send it to Kafka (or to a JSONL file).

    Live (default): events carry the wall-clock time as they are sent, in real time, until
    --duration seconds or Ctrl-C. --no-live: events from --start (default now) for --duration
    seconds (default 3600), sent as fast as possible or at --speedup × event time.
    """
    import typer

    if seed is None:
        seed = random.SystemRandom().randrange(1_000_000)
    qs = tuple(q.strip() for q in queues.split(",") if q.strip())
    if live:
        if start:
            raise typer.BadParameter("--start needs --no-live", param_hint="--start")
        if speedup not in (None, 1, 1.0):
            raise typer.BadParameter("--speedup needs --no-live (live runs in real time)",
                                     param_hint="--speedup")
        start_dt: Optional[datetime] = datetime.now(timezone.utc)
        dur: Optional[float] = duration
    else:
        start_dt = _parse_start(start, timezone_name)
        dur = 3600.0 if duration is None else duration
    try:
        cfg = SimConfig(seed=seed, rate=rate, queues=qs, agents=agents or None, start=start_dt,
                        duration_s=dur, bad_rate=bad_rate, timezone=timezone_name,
                        profile=(1.0,) * 24 if flat else DEFAULT_PROFILE).validated()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    sim = Simulator(cfg)
    typer.echo(f"simulate: seed={seed} agents={sim.n_agents} rate={rate}/s queues={','.join(qs)} "
               f"start={sim.start.isoformat()} duration={'forever' if dur is None else f'{dur:g}s'} "
               f"{'live' if live else ('as fast as possible' if speedup is None else f'speedup {speedup:g}x')}",
               err=True)
    if out is not None:
        if dur is None:
            raise typer.BadParameter("--out needs --duration", param_hint="--out")
        n = write_jsonl(sim, out)
        typer.echo(orjson.dumps({"written": n, "path": str(out), "sim": sim.stats}).decode())
        return
    stats = ProduceStats()
    interrupted = False

    async def run() -> None:
        # Ctrl-C: asyncio.run cancels this task; SIGTERM does the same here. Either way
        # produce() flushes what it queued and closes the producer before we return.
        import signal

        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)  # type: ignore[union-attr]
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on this platform
            pass
        await produce(sim, broker, None if live else speedup, live=live, stats=stats)

    try:
        asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    except (OSError, ConnectionError) as exc:
        typer.echo(f"simulate: broker {broker}: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # aiokafka's KafkaError and friends: no stack trace for a CLI user
        if type(exc).__module__.startswith("aiokafka") or "Kafka" in type(exc).__name__:
            typer.echo(f"simulate: broker {broker}: {type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None
        raise
    summary = stats.as_dict()
    summary["interrupted"] = interrupted
    typer.echo(orjson.dumps(summary).decode())


def _typer_signature() -> None:
    """Attach typer Option metadata to ``simulate`` without importing typer at module import."""
    try:
        import typer
    except ImportError:  # pragma: no cover
        return
    import inspect

    opts = {
        "broker": typer.Option("kafka://127.0.0.1:9092", "--broker", envvar="CCPULSE_BROKER",
                               help="kafka://host:port, host:port, or a comma list"),
        "rate": typer.Option(2.0, "--rate", help="fresh contacts per second at peak (profile 1.0)"),
        "queues": typer.Option("billing,support,sales,retention", "--queues", help="comma list"),
        "agents": typer.Option(24, "--agents", help="number of agents; 0 = sized from --rate"),
        "duration": typer.Option(None, "--duration", help="event-time seconds (default: live forever, else 3600)"),
        "speedup": typer.Option(None, "--speedup", help="--no-live: event time per wall time (default: as fast as possible)"),
        "seed": typer.Option(None, "--seed", help="random seed (default: random)"),
        "bad_rate": typer.Option(0.0, "--bad-rate", help="extra bad records per cc.interactions record"),
        "start": typer.Option(None, "--start", help="--no-live: event-time start, ISO 8601 (default now)"),
        "live": typer.Option(True, "--live/--no-live", help="live: event time = wall clock, real time"),
        "timezone_name": typer.Option("UTC", "--timezone", help="IANA zone for the daily profile and shifts"),
        "flat": typer.Option(False, "--flat/--daily", help="constant rate all day instead of the daily profile"),
        "out": typer.Option(None, "--out", help="write JSONL to this file instead of Kafka"),
    }
    sig = inspect.signature(simulate)
    params = [p.replace(default=opts[p.name]) for p in sig.parameters.values()]
    simulate.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]


_typer_signature()
