"""The engine: raw records of owned partitions in, shard state and a publishable view out.

Pure and synchronous (no Kafka, Redis or wall clock): the Faust/aiokafka runtime feeds it
batches and asks it for partials on a timer; the tests feed it lists of events and compare
its numbers with the independent oracle.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import msgspec

from .. import events as E
from ..config import Settings
from . import metrics
from .agents import STATES, AgentShard, Change
from .customers import Contact, CustomerShard
from .interaction import Ev, Params
from .rollup import Partial, interval_partials, window_partials
from .shard import DeadLetter, InteractionShard, ShardSettings

Scorer = Callable[[str, str], float | None]
RESERVED = "all"  # the label value of a rolled-up dimension in Prometheus

# internal FCR record: [customer hash, interaction id, [first_offered, handled, key, disposition] | None]
CustomerRecord = tuple[str, str, tuple[float, float | None, list[str] | None, str | None] | None]
_customer_decoder = msgspec.msgpack.Decoder(CustomerRecord)
_customer_encoder = msgspec.msgpack.Encoder()


def encode_customer_record(customer: str, iid: str, rec) -> bytes:
    return _customer_encoder.encode([customer, iid, None if rec is None else
                                     [rec[0], rec[1], list(rec[2]) if rec[2] else None, rec[3]]])


def customer_hasher(secret: str) -> Callable[[str], str]:
    """Keyed hash of a customer id: repeats still match, the raw id never enters state."""
    key = secret.encode()

    def hash_customer(customer_id: str) -> str:
        return hmac.new(key, customer_id.encode(), hashlib.sha256).hexdigest()[:32]

    return hash_customer


def shard_settings(cfg: Settings) -> ShardSettings:
    k = cfg.kpi
    params = Params(sl_threshold=cfg.sl_threshold, short_abandon_s=k.short_abandon_s,
                    exclude_short_abandons=k.exclude_short_abandons, acw_timeout_s=k.acw_timeout_s,
                    sentiment_span=k.sentiment_span, at_risk_threshold=k.at_risk_threshold)
    return ShardSettings(params=params, retention_s=k.retention_h * 3600,
                         minute_retention_s=k.minute_retention_min * 60.0,
                         closed_keep_s=k.closed_keep_s,
                         survey_join_s=k.survey_join_days * 86400,
                         max_inflight=cfg.limits.max_inflight_interactions)


@dataclass
class Live:
    """Figures that are not windowed: contacts waiting now, agents by state now."""

    waiting: dict  # (queue, channel) -> [count, oldest_offered_ts]
    agents: dict  # (queue, state) -> count ; queue "" = center (each agent once)
    capacity: dict  # (queue, channel) -> staffed concurrency sum
    at_risk: list  # (iid, queue, agent, score, since)


class Engine:
    """All shards a worker owns, plus the caps on distinct names."""

    def __init__(self, cfg: Settings, scorer: Scorer | None = None) -> None:
        self.cfg = cfg
        self.shard_cfg = shard_settings(cfg)
        self.scorer = scorer
        self.hash_customer = customer_hasher(cfg.customer_hash_secret)
        self.shards: dict[int, InteractionShard] = {}
        self.agent_shards: dict[int, AgentShard] = {}
        self.customer_shards: dict[int, CustomerShard] = {}
        self.queues: set[str] = set()
        self.agents: set[str] = set()
        self.rejected: Counter = Counter()
        self.pending_deadletters: list[DeadLetter] = []
        self.future_limit: float | None = None  # events after this are bad timestamps

    # -- shards -------------------------------------------------------------------------

    def shard(self, partition: int) -> InteractionShard:
        s = self.shards.get(partition)
        if s is None:
            s = self.shards[partition] = InteractionShard(self.shard_cfg, f"i{partition}")
        return s

    def agent_shard(self, partition: int) -> AgentShard:
        s = self.agent_shards.get(partition)
        if s is None:
            k = self.cfg.kpi
            s = self.agent_shards[partition] = AgentShard(
                k.retention_h * 3600, k.minute_retention_min * 60.0, f"a{partition}")
        return s

    def customer_shard(self, partition: int) -> CustomerShard:
        s = self.customer_shards.get(partition)
        if s is None:
            k = self.cfg.kpi
            s = self.customer_shards[partition] = CustomerShard(
                k.retention_h * 3600, k.minute_retention_min * 60.0, k.fcr_horizon_h * 3600,
                f"c{partition}")
        return s

    def stores(self):
        return [*self.shards.values(), *self.agent_shards.values(),
                *self.customer_shards.values()]

    def take_customer_records(self) -> list[tuple]:
        """FCR records the interaction shards produced since the last call: (customer, iid, rec)."""
        out: list[tuple] = []
        for shard in self.shards.values():
            out.extend(shard.customer_outbox)
            shard.customer_outbox = []
        return out

    def route_customer_records(self, partitions: int = 4) -> None:
        """In-process delivery of FCR records (tests, single process); the worker uses Kafka."""
        for customer, iid, rec in self.take_customer_records():
            p = int(customer[:8], 16) % partitions
            self.apply_customer_record(p, customer, iid, rec)

    def apply_customer_record(self, partition: int, customer: str, iid: str, rec) -> str:
        contact = None if rec is None else Contact(rec[0], rec[1], tuple(rec[2] or ("", "", "")),
                                                   rec[3])
        if contact is not None and contact.key[2]:
            # admitted by the interaction shard that sent it (maybe another worker's): known
            # here too, so the agent slices of this worker include its FCR buckets
            self.agents.add(contact.key[2])
        return self.customer_shard(partition).upsert(customer, iid, contact)

    # -- records ------------------------------------------------------------------------

    def seed_names(self, store) -> None:
        """After a restore, count the names the shard already holds against the caps, so a
        restart cannot admit a second cap's worth of new names."""
        for buckets in (store.minutes, store.intervals):
            for q, _ch, agent, _start in buckets:
                if q:
                    self.queues.add(q)
                if agent:
                    self.agents.add(agent)
        if isinstance(store, InteractionShard):
            for ix in store.ix.values():
                for e in ix.events:
                    if e.queue:
                        self.queues.add(e.queue)
                    if e.agent:
                        self.agents.add(e.agent)
        elif isinstance(store, AgentShard):
            for agent, tl in store.agents.items():
                self.agents.add(agent)
                for change in tl.changes:
                    self.queues.update(change.queues)

    def reject(self, reason: str, detail: str, raw: bytes, topic: str, partition: int,
               offset: int) -> str:
        self.rejected[reason] += 1
        self.pending_deadletters.append(DeadLetter(reason, detail, raw, topic, partition, offset))
        return reason

    def _names_ok(self, queues: tuple, agent: str | None) -> str | None:
        if RESERVED in queues:
            return "reserved"
        limits = self.cfg.limits
        new_q = [q for q in queues if q and q not in self.queues]
        if new_q and len(self.queues) + len(new_q) > limits.max_queues:
            return "queue"
        if agent and agent not in self.agents and len(self.agents) >= limits.max_agents:
            return "agent"
        self.queues.update(new_q)
        if agent:
            self.agents.add(agent)
        return None

    def ingest(self, kind: str, raw: bytes | None, partition: int, offset: int = -1,
               topic: str = "") -> str:
        """Decode, validate and apply one record of topic kind 'interactions', 'agents' or 'surveys'."""
        raw = raw if raw is not None else b""
        if kind == "customers":
            try:
                customer, iid, rec = _customer_decoder.decode(raw)
            except msgspec.MsgspecError as exc:
                return self.reject("invalid_field", f"customer record: {exc}"[:200], raw, topic,
                                   partition, offset)
            return self.apply_customer_record(partition, customer, iid, rec)
        try:
            event = E.decode(raw, kind)
        except E.Rejected as rej:
            return self.reject(rej.reason, rej.detail, raw, topic, partition, offset)
        ts = event.ts.timestamp()
        if self.future_limit is not None and ts > self.future_limit:
            return self.reject("bad_timestamp", "event time is in the future", raw, topic,
                               partition, offset)
        if kind == "agents":
            over = self._names_ok(tuple(event.queues), event.agent_id)
            if over == "reserved":
                return self.reject("bad_name", f"queue name {RESERVED!r} is reserved for "
                                   "roll-ups", raw, topic, partition, offset)
            if over:
                return self.reject("scope_limit", f"too many distinct {over} names", raw, topic,
                                   partition, offset)
            change = Change(ts, event.state, tuple(event.queues),
                            tuple(sorted(event.capacity.items())), event.event_id)
            return self.agent_shard(partition).apply_change(event.agent_id, change, raw, topic,
                                                            partition, offset)
        if kind == "surveys":
            ev = Ev(ts, "survey.responded", event.event_id,
                    extra=(event.nps, event.csat, event.ces))
            return self.shard(partition).apply_interaction(event.interaction_id, ev, raw, topic,
                                                           partition, offset)
        etype = E.type_name(event)
        agent = getattr(event, "agent_id", None) or ""
        to_queue = getattr(event, "to_queue", None)
        over = self._names_ok((event.queue, to_queue or ""), agent)
        if over == "reserved":
            return self.reject("bad_name", f"queue name {RESERVED!r} is reserved for roll-ups",
                               raw, topic, partition, offset)
        if over:
            return self.reject("scope_limit", f"too many distinct {over} names", raw, topic,
                               partition, offset)
        extra: object = None
        if etype == "interaction.offered":
            extra = self.hash_customer(event.customer_id) if event.customer_id else None
        elif etype == "interaction.transferred":
            extra = to_queue
        elif etype == "interaction.wrapup_completed":
            extra = event.disposition
        elif etype == "interaction.message":
            score = None
            if event.direction == "customer" and self.scorer is not None:
                score = self.scorer(event.text, event.language or self.cfg.kpi.default_language)
            extra = (event.direction, score)
        ev = Ev(ts, etype, event.event_id, event.queue, event.channel, agent, extra)
        return self.shard(partition).apply_interaction(event.interaction_id, ev, raw, topic,
                                                       partition, offset)

    def advance(self, now: float) -> None:
        for store in self.stores():
            store.advance(now)

    def take_outputs(self):
        """Dead letters, histogram observations, event counts, duplicates since the last call."""
        dead = self.pending_deadletters
        self.pending_deadletters = []
        obs: list = []
        counts: Counter = Counter()
        dups = 0
        for store in self.stores():
            d, o, c, n = store.take_outputs()
            for letter in d:
                self.rejected[letter.reason] += 1
            dead.extend(d)
            obs.extend(o)
            counts.update(c)
            dups += n
        return dead, obs, counts, dups

    # -- views --------------------------------------------------------------------------

    def windows(self, now: float, stores=None) -> Partial:
        return window_partials(stores if stores is not None else self.stores(), now,
                               self.cfg.tz, self.cfg.per_agent_kpis)

    def intervals(self, starts: set[int] | None, stores=None) -> Partial:
        return interval_partials(stores if stores is not None else self.stores(), starts,
                                 self.cfg.per_agent_kpis)

    def live(self, now: float, stores=None) -> Live:
        shards = [s for s in (stores or self.stores()) if isinstance(s, InteractionShard)]
        agent_shards = [s for s in (stores or self.stores()) if isinstance(s, AgentShard)]
        waiting: dict = {}
        for shard in shards:
            for q, ch, offered in shard.waiting():
                if offered > now:
                    continue
                cur = waiting.get((q, ch))
                if cur is None:
                    waiting[(q, ch)] = [1, offered]
                else:
                    cur[0] += 1
                    cur[1] = min(cur[1], offered)
        # agents counted by (state, queues, capacity) first: a few hundred distinct
        # combinations, so the per-agent work is one tuple counted in C
        same: Counter = Counter()
        for shard in agent_shards:
            same.update((c.state, c.queues, c.capacity) for c in shard.current_changes(now))
        agents: Counter = Counter()
        capacity: Counter = Counter()
        for (state, queues, staffed), n in same.items():
            agents[("", state)] += n
            for q in queues:
                agents[(q, state)] += n
                if state in ("available", "busy", "acw"):
                    for ch, k in staffed:
                        capacity[(q, ch)] += k * n
        risky = []
        for shard in shards:
            risky.extend(shard.at_risk(self.cfg.kpi.at_risk_threshold))
        return Live(waiting, dict(agents), dict(capacity), risky)


def kpi_view(partial: Partial) -> dict[tuple[str, str], dict]:
    """(scope, window) → KPI dict of DESIGN §5."""
    return {key: metrics.kpis(acc) for key, acc in partial.items()}


__all__ = ["Engine", "Live", "kpi_view", "STATES", "customer_hasher"]
