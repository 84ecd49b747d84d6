"""The worker's hot path and publish cycle: Kafka batches → engine → checkpoint → Redis.

Consumption is batch-first: `getmany` hands over thousands of raw records per call, each
decoded with msgspec straight into the engine — no per-event Faust machinery, Redis,
Prometheus or log calls (DESIGN §7; issue 12 measured Faust's own per-event cost as the
limit). Exactness comes from the checkpoint design in `checkpoint.py`: on assignment a shard
is restored from Redis and the consumer seeks to the offsets saved with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from .config import ConfigError, Settings
from .kpi import buckets as b
from .kpi.agents import AgentShard
from .kpi.engine import Engine
from .kpi.rollup import (Partial, agent_interval_partials, agent_slice, agent_window_partials,
                         merge, queue_interval_partials, queue_window_partials)
from .kpi.windows import INTERVAL
from .fetch_buffers import free_dropped_fetches
from .memory import growing_state, heap_usage, pymalloc_usage, trim_heap
from .partitioning import DefaultPartitioner
from .sinks.prometheus_sink import Metrics
from .sinks.redis_sink import AgentParts, AgentView, RedisSink, StagedSave
from .view import LiveMerged, View, build_view, scope_kpis

log = logging.getLogger("ccpulse.pipeline")


def _scrub(text: str, *secrets: str | None) -> str:
    """First line of an error text with any secret replaced by ***."""
    line = text.splitlines()[0] if text else ""
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


def redis_fatal(exc: BaseException, cfg: Settings, tls: bool = False) -> str | None:
    """A one-line reason when a Redis error will not go away by waiting, else None.

    Wrong credentials and missing ACL permissions are fatal (and with `tls`, a server
    certificate that the configured CA does not trust); a Redis that is down is not. The
    message names host, port and user, never the password.
    """
    from redis.exceptions import AuthenticationError, NoPermissionError

    parts = urlsplit(cfg.redis_url)
    where = f"Redis at {parts.hostname}:{parts.port or 6379}"
    user = parts.username or "default"
    detail = _scrub(str(exc), parts.password) or type(exc).__name__
    if isinstance(exc, AuthenticationError):
        return (f"{where} refused user {user!r}: {detail} (check the password in "
                f"CCPULSE_REDIS_URL or CCPULSE_REDIS_URL_FILE and the ACL users)")
    if isinstance(exc, NoPermissionError):
        return f"{where}: user {user!r} lacks an ACL permission: {detail}"
    if tls and "CERTIFICATE_VERIFY_FAILED" in detail:
        return (f"{where}: TLS server certificate not trusted (redis_ssl_ca="
                f"{cfg.redis_ssl_ca or 'system CAs'}): {detail}")
    return None


def kafka_fatal(exc: BaseException, cfg: Settings, where: str) -> str | None:
    """A one-line reason when connecting to Kafka failed for a reason waiting won't fix."""
    import ssl

    from aiokafka import errors as kerr

    k = cfg.kafka
    detail = _scrub(str(exc), k.sasl_password) or type(exc).__name__
    if isinstance(exc, (kerr.SaslAuthenticationFailed, kerr.AuthenticationFailedError,
                        kerr.IllegalSaslStateError)) or (
            isinstance(exc, KeyError) and k.sasl_mechanism and "SCRAM" in k.sasl_mechanism):
        # (aiokafka's SCRAM client raises KeyError('v') when the server rejects the proof)
        return (f"Kafka at {where} refused SASL {k.sasl_mechanism} user {k.sasl_username!r}: "
                f"{detail} (check CCPULSE_KAFKA__SASL_PASSWORD or its _FILE)")
    if isinstance(exc, kerr.UnsupportedSaslMechanismError):
        return f"Kafka at {where}: {detail}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"Kafka at {where}: TLS server certificate not trusted (kafka.ssl_cafile="
                f"{k.ssl_cafile or 'system CAs'}): {detail}")
    return None


def preflight(cfg: Settings) -> None:
    """Checks before a worker starts; raises ConfigError with a one-line reason.

    Kafka security settings must be complete and accepted by the first bootstrap broker,
    data_dir must exist or be creatable, and Redis must accept the worker's credentials
    and a write under its key prefix.
    A broker or Redis that is merely down is not an error here: Redis is waited for
    (DESIGN §5), and Faust reports a broker it cannot reach.
    """
    from aiokafka.conn import create_conn

    from .kafka_security import client_kwargs
    from .sinks.redis_sink import connect

    kafka_kw = client_kwargs(cfg)
    try:  # Faust creates only the last level; the default is per user, private (0700)
        os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"invalid setting: data_dir {cfg.data_dir}: {exc.strerror}") from None

    async def ping() -> None:
        client = connect(cfg)
        try:
            await client.ping()
            # a write under the prefix, as the publish lock does: a read-only user or a
            # prefix outside the user's ACL keys fails here, not silently at every cycle
            await client.set(f"{cfg.redis_prefix}preflight", b"1", px=1000)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def kafka() -> None:
        host, _, port = cfg.bootstrap.split(",")[0].rpartition(":")
        conn = await asyncio.wait_for(create_conn(host, int(port), request_timeout_ms=10000,
                                                  **kafka_kw), 15)
        conn.close()

    where = cfg.bootstrap.split(",")[0]
    if cfg.kafka.security_protocol != "PLAINTEXT":
        try:
            asyncio.run(kafka())
        except Exception as exc:
            problem = kafka_fatal(exc, cfg, where)
            if problem:
                raise ConfigError(problem) from None
            log.warning("Kafka check at %s failed (%s); starting anyway", where,
                        _scrub(str(exc), cfg.kafka.sasl_password) or type(exc).__name__)
    try:
        asyncio.run(ping())
    except Exception as exc:
        problem = redis_fatal(exc, cfg, tls=True)
        if problem:
            raise ConfigError(problem) from None
        log.warning("Redis not reachable at start (%s); the worker will wait for it",
                    _scrub(str(exc), urlsplit(cfg.redis_url).password) or type(exc).__name__)


def _terminate_process(reason: str) -> None:  # noqa: ARG001 - logged by the caller
    """Stop this worker the way an operator would (SIGTERM: Faust shuts down cleanly)."""
    os.kill(os.getpid(), signal.SIGTERM)


BACKLOG_RECORDS = 5000  # more records than one fetch waiting: consuming has a backlog
OVERDUE_INTERVALS = 3.0  # a shard this many checkpoint intervals old is saved regardless
# wall clock: a caught-up interactions shard applies timeouts at wall time only once it has
# had no record for this long (see `_advance_clocks`)
WALL_TIMEOUTS_QUIET_S = 5.0
# agent scopes: one slice of agents every this many seconds (`_agent_turns`), not one per
# publish interval: the per-agent work per second stays what it was at 0.5 s cycles when the
# timer is faster (whether it limits throughput was not shown: docs/BENCHMARKS.md)
AGENT_SLICE_EVERY_S = 0.5
# reading in event-time step: a partition whose events are this far ahead of the slowest
# partition that still has records waiting is paused until that one catches up (see
# `_align_reading`)
READ_AHEAD_MAX_S = 3600.0
# ...but a shard that got no records for this long, records waiting or not, holds nobody
# back: a watermark that stays ahead of what can be fetched must not stall the others
READ_STALL_S = 10.0
BACKLOG_GAP_MAX_S = 1.0  # with a backlog, at most this much consuming between two cycles
# with a backlog, consuming between two cycles lasts this many times the last cycle's cost,
# and at least BACKLOG_GAP_TICKS publish intervals (up to BACKLOG_GAP_MAX_S): a worker that
# is behind is not fresh anyway, and cycles take at most a quarter of it
BACKLOG_GAP_PER_CYCLE = 3.0
BACKLOG_GAP_TICKS = 2
GC_FULL_EVERY_S = 600.0  # a full garbage collection at least this often (see _collect_garbage)
# ... and sooner once the C heap in use has grown this much since the last one (garbage
# cycles frozen while alive), but not more often than GC_HEAP_MIN_GAP_S
GC_HEAP_GROWTH = 128 * 1024 * 1024
GC_HEAP_MIN_GAP_S = 60.0
TRIM_EVERY_S = 10.0  # free heap pages returned to the OS at most this often (stream/memory.py)

SHARD_PREFIX = {"interactions": "i", "surveys": "i", "agents": "a", "customers": "c"}
SHARD_KIND = {"i": "interactions", "a": "agents", "c": "customers"}


@dataclass
class CycleParts:
    """What a publish cycle computed from the owned shards, for its merge and checkpoint."""

    partials: dict[str, tuple[Partial, LiveMerged]]  # shard -> (window partials, live)
    ivpartials: dict[str, Partial]  # shard -> (scope, interval start) parts
    starts: set[int]  # the interval starts to rewrite
    agents: AgentParts | None  # the agent slices this cycle refreshes
    state: set[str]  # the shards whose state and offsets this cycle checkpoints
    full: bool  # Redis lost data: everything is saved again
    staged: StagedSave | None = None  # the checkpoint, encoded under the lock


def shard_name(kind: str, partition: int) -> str:
    """i<p>: interactions+surveys partition p (co-partitioned), a<p>: agents, c<p>: customers."""
    return f"{SHARD_PREFIX[kind]}{partition}"


class _Listener(ConsumerRebalanceListener):
    def __init__(self, pipeline: "Pipeline") -> None:
        self.p = pipeline

    async def on_partitions_revoked(self, revoked):
        await self.p.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned):
        await self.p.on_assigned(assigned)


class Pipeline:
    # wall time of the last publish cycle and when it ended (see `cycle`)
    _cycle_cost = 0.0
    _cycle_end = 0.0

    def __init__(self, cfg: Settings, scorer=None, staffing=None) -> None:
        self.cfg = cfg
        self.engine = Engine(cfg, scorer)
        self.staffing = staffing
        self.sink = RedisSink(cfg)
        self.metrics = Metrics(lambda: self.view, self.lag, self.state_sizes,
                               lambda: self.heap, lambda: self.pymalloc)
        self.kinds = {cfg.topic_interactions: "interactions", cfg.topic_agents: "agents",
                      cfg.topic_surveys: "surveys", cfg.topic_customers: "customers"}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.offsets: dict[str, dict[str, int]] = {}  # shard -> {"topic:partition": next}
        self.owned: dict[str, Any] = {}  # shard name -> shard
        self.view: View | None = None
        self.ready = False
        # `lock`: applying a batch and a cycle's computing exclude each other. `cycle_lock`:
        # one cycle at a time, whole, and never during a revocation, assignment or stop
        self.lock = asyncio.Lock()
        self.cycle_lock = asyncio.Lock()
        self.cycle_count = 0
        self.full_collections = 0  # full garbage collections (_collect_garbage), on /healthz
        self.events_seen = 0
        self.last_publish_ok: float | None = None
        self.redis_ok = True
        self._stop = asyncio.Event()
        self._pending_dead: list = []
        self._pending_customers: list = []
        self.fatal: str | None = None
        self.on_fatal = _terminate_process  # replaced in tests
        # agent scopes: refreshed a slice of agents at a time, on a clock of their own
        # (`_agent_turns`), every slice within agent_publish_interval_s, so a cycle's cost
        # does not grow with the agents
        self.agent_slices = max(1, round(cfg.agent_publish_interval_s / AGENT_SLICE_EVERY_S))
        self._agent_turn = 0
        self._agent_due: float | None = None  # monotonic time the next slice is due
        self._agent_starts: list[set[int]] = [set() for _ in range(self.agent_slices)]
        # their union: the owned shards keep these intervals in memory until every slice has
        # published them (`BucketStore.keep_intervals`)
        self._agent_held: set[int] = set()
        # per slice: the offsets its last published history covers (see `_agents_through`)
        self._agent_through: list[dict[str, int]] = [{} for _ in range(self.agent_slices)]
        self.agent_kpi: dict[str, dict[str, dict]] = {}  # agent:<id> -> window -> KPIs
        self._members: list[list[str]] | None = None
        self._checkpoint_n = 0
        self._saved_at: dict[str, float] = {}  # shard -> monotonic time of its last checkpoint
        self._fed_at: dict[str, float] = {}  # shard -> monotonic time it last got records
        self._paused: set[str] = set()  # shards paused for reading ahead (`_align_reading`)
        self._gc_full_at = self._trim_at = time.monotonic()
        # C heap bytes (memory.heap_usage), read every TRIM_EVERY_S: /metrics, /healthz
        self.heap: dict[str, int] | None = heap_usage()
        self._gc_heap_base = self.heap["in_use"] if self.heap else 0
        # pymalloc's arenas (memory.pymalloc_usage), read with each trim: /metrics, /healthz
        self.pymalloc: dict[str, int] | None = pymalloc_usage()
        self._members_n = 0
        self._lap_at: float | None = None  # set while a publish cycle runs (see _lap)

    # -- lifecycle ------------------------------------------------------------------

    def kafka_kwargs(self) -> dict:
        from .kafka_security import client_kwargs

        return {"bootstrap_servers": self.cfg.bootstrap, **client_kwargs(self.cfg)}

    async def ensure_topics(self) -> None:
        """Create missing topics (a fresh cluster), and refuse a broken co-partitioning."""
        from .embedded import create_topics
        from .kafka_security import client_kwargs

        cfg = self.cfg
        topics = (cfg.topic_interactions, cfg.topic_agents, cfg.topic_surveys,
                  cfg.topic_deadletter, cfg.topic_customers)
        try:
            await create_topics(cfg.bootstrap, cfg.partitions, topics, timeout=15,
                                **client_kwargs(cfg))
        except Exception as exc:  # no rights to create topics: they must exist already
            log.warning("could not create topics (%s); expecting them to exist", exc)

    def check_copartitioning(self) -> None:
        """Surveys join interactions inside one shard: both topics need the same partitions."""
        assert self.consumer is not None
        a = self.consumer.partitions_for_topic(self.cfg.topic_interactions) or set()
        b = self.consumer.partitions_for_topic(self.cfg.topic_surveys) or set()
        if a and b and a != b:
            raise ConfigError(f"{self.cfg.topic_surveys} has {len(b)} partitions but "
                              f"{self.cfg.topic_interactions} has {len(a)}: they must be equal "
                              "(surveys are joined to interactions by key, per partition)")

    async def start(self) -> None:
        free_dropped_fetches()
        await self.ensure_topics()
        self.producer = AIOKafkaProducer(acks="all", enable_idempotence=False, linger_ms=5,
                                         partitioner=DefaultPartitioner(),
                                         **self.kafka_kwargs())
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            group_id=self.cfg.group_id, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_interval_ms=60000,
            # 1 MiB per partition and fetch: partitions progress together (a replay would
            # otherwise read a month of one partition before the next)
            max_partition_fetch_bytes=1024 * 1024, fetch_max_bytes=32 * 1024 * 1024,
            fetch_max_wait_ms=self.cfg.fetch_max_wait_ms,
            rebalance_timeout_ms=20000, **self.kafka_kwargs())
        await self.consumer.start()
        self.consumer.subscribe(list(self.kinds), listener=_Listener(self))

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Save what can be saved and close; bounded, so a dead broker or Redis cannot keep
        the worker from exiting (what was not saved is re-read from Kafka by the next owner)."""
        self._stop.set()

        async def final_save() -> None:
            async with self.cycle_lock, self.lock:
                if self.owned and await self._flush_dead_letters():
                    await self._save(time.time())

        with contextlib.suppress(Exception):
            await asyncio.wait_for(final_save(), timeout_s)
        for client in (self.consumer, self.producer):
            if client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), timeout_s / 2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sink.close(), 2)

    # -- rebalancing ----------------------------------------------------------------

    async def on_revoked(self, revoked) -> None:
        names = {shard_name(self.kinds[tp.topic], tp.partition) for tp in revoked}
        log.info("partitions revoked: %s", sorted(names))
        async with self.cycle_lock, self.lock:
            self.ready = False
            if self.owned and await self._flush_dead_letters():
                with contextlib.suppress(Exception):
                    await self._save(self.now())
            for name in names:
                self.owned.pop(name, None)
                self._paused.discard(name)  # a new assignment starts unpaused
                self._saved_at.pop(name, None)
                self.offsets.pop(name, None)
                self._shard_map(name).pop(int(name[1:]), None)

    async def on_assigned(self, assigned) -> None:
        """Restore each new shard from its checkpoint, then seek to the saved offsets."""
        async with self.cycle_lock, self.lock:
            assert self.consumer is not None
            try:
                self.check_copartitioning()
            except ConfigError as exc:
                self.fatal = str(exc)
                log.error("%s; stopping the worker", exc)
                self.on_fatal(str(exc))
                return
            by_shard: dict[str, list[TopicPartition]] = {}
            for tp in assigned:
                by_shard.setdefault(shard_name(self.kinds[tp.topic], tp.partition), []).append(tp)
            for name, tps in sorted(by_shard.items()):
                if name not in self.owned:
                    p = int(name[1:])
                    shard = self._new_shard(name)
                    saved = await self._restore(name, shard)
                    log.info("restored %s at offsets %s", name, saved)
                    if saved is None:  # fatal Redis error: the worker is stopping; the
                        # shard's records are skipped (run() ignores unowned shards)
                        self._shard_map(name).pop(p, None)
                        continue
                    self.owned[name] = shard
                    self.offsets[name] = dict(saved)
                    self.engine.seed_names(shard)
                    if self.cfg.clock == "wall":
                        # a new shard's clock is 0 until the first cycle: move it to now first,
                        # or records older than the retention are taken instead of `too_late`;
                        # ACW timeouts stay where they were (the backlog moves them, see
                        # _advance_clocks), or every timeout of a backlog would fire at once
                        if name[0] == "i":
                            shard.advance(time.time(), timeouts_at=shard.timeout_clock)
                        else:
                            shard.advance(time.time())
                for tp in tps:
                    key = f"{tp.topic}:{tp.partition}"
                    offset = self.offsets[name].get(key)
                    if offset is None:
                        # offset 0 is the beginning (auto_offset_reset=earliest covers a log
                        # trimmed by retention); known from now on, so run() can drop records
                        # fetched before the seek. seek_to_beginning + position cost a broker
                        # round trip per partition (~0.5 s each here).
                        offset = self.offsets[name][key] = 0
                    self.consumer.seek(tp, offset)
            self.ready = self.fatal is None

    def _shard_map(self, name: str) -> dict:
        return {"a": self.engine.agent_shards, "c": self.engine.customer_shards}.get(
            name[0], self.engine.shards)

    def _new_shard(self, name: str):
        p = int(name[1:])
        if name[0] == "a":
            return self.engine.agent_shard(p)
        if name[0] == "c":
            return self.engine.customer_shard(p)
        return self.engine.shard(p)

    async def _restore(self, name: str, shard) -> dict[str, int] | None:
        """Redis must answer before consuming: starting blind could count events twice.

        Waits while Redis is down; returns None (and stops the worker) when Redis refuses
        the credentials or a permission, which no amount of waiting fixes.
        """
        delay = 0.2
        while True:
            if self.fatal is not None:
                return None
            try:
                return await self.sink.restore_shard(name, shard)
            except Exception as exc:  # Redis down at assignment: wait for it
                problem = redis_fatal(exc, self.cfg)
                if problem is not None:
                    self.fatal = problem
                    log.error("%s; stopping the worker", problem)
                    self.on_fatal(problem)
                    return None
                self.metrics.publish_failures.labels("redis").inc()
                log.warning("restore of %s waiting for Redis: %s", name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- consuming ------------------------------------------------------------------

    def now(self) -> float:
        if self.cfg.clock == "event":
            marks = [max(s.max_ts, s.clock) for s in self.engine.stores()]
            return max(marks, default=0.0)
        return time.time()

    def _unread(self, names: Iterable[str] | None = None
                ) -> Iterator[tuple[str, str, int, int | None]]:
        """(shard, topic, partition, records waiting to be read) of the owned partitions:
        high watermark − position as last fetched; None while the watermark is unknown."""
        consumer = self.consumer
        if consumer is None:
            return
        for name in (self.offsets if names is None else names):
            for key, position in self.offsets.get(name, {}).items():
                topic, _, partition = key.rpartition(":")
                p = int(partition)
                high = consumer.highwater(TopicPartition(topic, p))
                yield name, topic, p, None if high is None else max(0, high - position)

    def _caught_up(self, name: str) -> bool:
        """No records of this shard's partitions are waiting to be read."""
        return all(waiting == 0 for *_, waiting in self._unread([name]))

    def backlog(self) -> int:
        """Records waiting in the owned partitions."""
        return sum(waiting or 0 for *_, waiting in self._unread())

    def _advance_clocks(self) -> float | None:
        """Move every owned shard's clock; returns the view's as-of time, or None in event
        mode before any event (an idle replay worker must not jump to the wall clock).

        Wall time: an interactions shard applies ACW timeouts and orphan expiry at its
        event watermark while records wait for it or came in the last
        WALL_TIMEOUTS_QUIET_S, at wall time only once it is quiet. A producer that sends
        history in bursts leaves the partition caught up between two of them; at wall time
        there, an event whose predecessor is in the next burst was expired as an orphan
        (dead-lettered, left out of the KPIs). A live shard's watermark is the wall clock
        give or take its latency, so only an idle shard needs the wall clock.

        Event time: each partition follows its own watermark, so a partition fetched far
        ahead of the others (a replay reads unevenly) cannot make their events `too_late`
        or time out their ACW early. Customer shards follow the slowest interactions
        partition this worker owns: FCR records arrive from all of them.
        """
        for shard in self.owned.values():  # restored or assigned since: keep these too
            shard.keep_intervals = self._agent_held
        if self.cfg.clock != "event":
            now = time.time()
            fed_after = time.monotonic() - WALL_TIMEOUTS_QUIET_S
            for name, shard in self.owned.items():
                if name[0] == "i" and (self._fed_at.get(name, 0.0) > fed_after
                                       or not self._caught_up(name)):
                    shard.advance(now, timeouts_at=shard.max_ts)
                else:
                    shard.advance(now)
            return now
        marks = {name: max(shard.max_ts, shard.clock) for name, shard in self.owned.items()}
        slowest = min((m for n, m in marks.items() if n[0] == "i" and m > 0), default=0.0)
        for name, shard in self.owned.items():
            target = slowest if name[0] == "c" else marks[name]
            if target > 0:
                shard.advance(target)
        as_of = max(marks.values(), default=0.0)
        return as_of if as_of > 0 else None

    async def run(self) -> None:
        assert self.consumer is not None
        while not self._stop.is_set():
            try:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=5000)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker hiccup: back off, keep the worker alive
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if not batches:
                continue
            # A batch is applied under the lock a cycle holds up to its view: when every
            # await of a cycle (a dozen Redis round trips) let the consumer apply a whole
            # batch first, one cycle took 10-20 s of wall time under load (bench: freshness
            # p50 > 5 s, rebalances with two workers). Only a checkpoint sent after the view
            # travels while consuming goes on (see _run_cycle).
            async with self.lock:
                self.engine.future_limit = time.time() + 3600.0
                fed_at = time.monotonic()
                with growing_state():  # no young collections scanning the new state
                    self._apply(batches, fed_at)
            await asyncio.sleep(0)

    def _apply(self, batches: dict, fed_at: float) -> None:
        """Feed a fetched batch to the engine (under the lock), and move the offsets."""
        ingest = self.engine.ingest
        kinds = self.kinds
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            kind = kinds[topic]
            name = shard_name(kind, partition)
            if name not in self.owned:
                continue  # revoked while the batch was in flight
            key = f"{topic}:{partition}"
            expected = self.offsets[name].get(key)
            if expected is not None and records[0].offset < expected:
                # fetched from the old position before the seek of an assignment
                # (getmany returned while on_assigned held the lock): skip what
                # the shard has already absorbed, or it would be applied twice
                records = [r for r in records if r.offset >= expected]
                if not records:
                    continue
            for rec in records:
                try:
                    ingest(kind, rec.value, partition, rec.offset, topic)
                except Exception as exc:  # a record the validation missed must not
                    # become a poison pill that crashes every worker that reads it
                    log.error("record %s:%s@%s failed: %r", topic, partition,
                              rec.offset, exc)
                    self.engine.reject("internal_error", repr(exc)[:200],
                                       rec.value or b"", topic, partition, rec.offset)
            self.offsets[name][key] = records[-1].offset + 1
            self.events_seen += len(records)
            self._fed_at[name] = fed_at
        self._align_reading()

    def _align_reading(self) -> None:
        """Pause the partitions of a shard whose event time is more than READ_AHEAD_MAX_S
        ahead of the slowest shard with records still waiting; resume them once it is not.

        The consumer fetches partitions unevenly: in a replay of a month, one interactions
        partition was read 14 days of event time ahead of another. Each cycle then changed
        intervals across those 14 days, and every shard's part of an interval it had already
        pruned was read back from Redis (a slice of agents: 13 k hashes, 0.35 s; 40 % of the
        replay's time). Interactions and agent shards take part; customer shards are fed by
        the workers' own FCR records and follow the interactions. Only shards with a backlog
        hold the others back, so a live worker (partitions within seconds) never pauses; and
        only while they are being fed (READ_STALL_S), so a stuck partition stalls nobody.
        """
        marks = {name: shard.max_ts for name, shard in self.owned.items()
                 if name[0] in "ia" and shard.max_ts > 0}
        if len(marks) < 2 and not self._paused:
            return
        waiting: dict[str, int] = {}
        for name, _, _, n in self._unread(marks):
            waiting[name] = waiting.get(name, 0) + (n or 0)
        fed_since = time.monotonic() - READ_STALL_S
        behind = [ts for name, ts in marks.items()
                  if waiting.get(name, 0) > 0 and self._fed_at.get(name, -math.inf) > fed_since]
        limit = min(behind) + READ_AHEAD_MAX_S if behind else math.inf
        ahead = {name for name, ts in marks.items() if ts > limit}
        if ahead == self._paused:
            return
        assert self.consumer is not None
        if ahead - self._paused:
            self.consumer.pause(*self._partitions(ahead - self._paused))
        if self._paused - ahead:
            self.consumer.resume(*self._partitions(self._paused - ahead))
        self._paused = ahead

    def _partitions(self, names: Iterable[str]) -> list[TopicPartition]:
        """The topic-partitions the named owned shards read."""
        out = []
        for name in names:
            for key in self.offsets.get(name, ()):
                topic, _, partition = key.rpartition(":")
                out.append(TopicPartition(topic, int(partition)))
        return out

    # -- publishing -----------------------------------------------------------------

    async def publish_loop(self) -> None:
        """Publish cycles on a fixed schedule, one every `publish_interval_s`.

        Not Faust's timer: it sleeps the interval after each run, so the period was the
        interval plus the cycle (bench: 59 cycles in 37 s at 0.5 s), and every event's
        freshness with it. A tick that is late is not made up, the schedule restarts.
        """
        interval = self.cfg.publish_interval_s
        due = time.monotonic()
        while not self._stop.is_set():
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                due = time.monotonic()
            try:
                await self.cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # a cycle's own failures are counted inside; never stop here
                log.exception("publish cycle raised")

    async def cycle(self) -> bool:
        """One publish cycle; returns True when Redis holds the new picture.

        While a backlog waits, a cycle is followed by at least BACKLOG_GAP_PER_CYCLE times
        as much consuming before the next one, and by BACKLOG_GAP_TICKS publish intervals:
        consuming waits for a whole cycle (the lock), so back-to-back cycles would starve it
        (bench: a replay's cycles cost over a second, and the timer fires again at once), and
        a worker that is behind is not fresh anyway. (Behind, one worker at the 0.25 s timer
        still does ~20 % fewer events/s than at 0.5 s, with or without this rule: bench,
        docs/BENCHMARKS.md; the cause is not found.) Without a backlog every tick publishes:
        skipping one doubles the freshness of everything that arrived meanwhile.

        The consuming in between is capped at BACKLOG_GAP_MAX_S: a cycle's cost grows with
        what was consumed since the last one (a replay: every event-time hour changes
        intervals, buckets and FCR records to write), so "consume as long as the last cycle
        took" fed on itself (replay: cycles of 3.7, 5.3, 10.4, 14.6 s, RSS rising with each).
        """
        gap = min(max(BACKLOG_GAP_PER_CYCLE * self._cycle_cost,
                      BACKLOG_GAP_TICKS * self.cfg.publish_interval_s), BACKLOG_GAP_MAX_S)
        if (time.monotonic() - self._cycle_end < gap
                and self.backlog() > BACKLOG_RECORDS):
            return self.redis_ok
        async with self.cycle_lock:
            started = self._lap_at = time.monotonic()
            try:
                return await self._run_cycle()
            finally:
                self._lap_at = None
                self._cycle_end = time.monotonic()
                self._cycle_cost = self._cycle_end - started
                self.metrics.cycle_time.observe(self._cycle_cost)

    def _lap(self, phase: str) -> None:
        """Time since the previous lap, observed as this cycle's `phase` (CYCLE_PHASES);
        nothing outside a publish cycle (the saves of a shutdown or a revocation)."""
        if self._lap_at is None:
            return
        now = time.monotonic()
        self.metrics.cycle_phase.labels(phase).observe(now - self._lap_at)
        self._lap_at = now

    async def _run_cycle(self) -> bool:
        """Everything up to the view under the lock; a checkpoint that follows the view is
        sent after it, while consuming goes on.

        Under the lock: the clocks, the engine's outputs (sent now, acknowledged just before
        the checkpoint, so the broker's round trip overlaps the cycle), the partials, the
        merge, the view, and the checkpoint encoded (its state and offsets taken together).
        Records applied while the checkpoint travels are the next cycle's: their changed
        intervals and dirty keys are marked again. Consuming is held up to the view: records
        applied between the partials and the view would not be in this view anyway, and
        their CPU would delay it (bench: freshness p50 +60 ms when the merge and the view
        were written unlocked).
        """
        async with self.lock:
            now = self._advance_clocks()
            if now is None:  # event clock, no event yet: nothing to publish
                return await self._flush_dead_letters()
            self._take_engine_outputs()
            taken: dict[str, set] = {}
            parts = None
            try:
                acked = await self._start_sending()
                taken = self._take_changed()
                parts = await self._prepare(now, taken, every_shard=False)
                owed = await self._publish(now, parts, acked)
                if owed:  # the view went first
                    self._stage(parts, now)
            except Exception as exc:
                self._put_back(taken, parts)
                return self._cycle_failed(exc)
        try:
            if owed:
                await self._checkpoint(parts, acked)
        except Exception as exc:
            self._put_back(taken, parts)
            return self._cycle_failed(exc)
        self.redis_ok = True
        self.cycle_count += 1
        self._collect_garbage()
        if self.cycle_count % 600 == 0:
            with contextlib.suppress(Exception):
                await self.sink.prune_interval_index()
        self._lap("housekeeping")
        return True

    def _take_engine_outputs(self) -> None:
        """The engine's outputs since the last take: counted, dead letters queued to send."""
        dead, obs, counts, dups = self.engine.take_outputs()
        self.metrics.record(dead, obs, counts, dups)
        self._pending_dead.extend(dead)

    def _take_changed(self) -> dict[str, set]:
        """The intervals changed since the last cycle, taken from the shards: records applied
        while this cycle waits for Redis mark theirs again for the next one (clearing them
        after the publish lost those updates). Put back on failure (`_put_back`)."""
        taken = {name: shard.changed_intervals for name, shard in self.owned.items()}
        for shard in self.owned.values():
            shard.changed_intervals = set()
        return taken

    def _put_back(self, taken: dict[str, set], parts: CycleParts | None) -> None:
        """A cycle failed: its changed intervals and its checkpoint's dirty keys are the
        next cycle's."""
        if parts is not None and parts.staged is not None:
            parts.staged.undo()
        for name, starts in taken.items():
            shard = self.owned.get(name)
            if shard is not None:
                shard.changed_intervals |= starts

    def _cycle_failed(self, exc: Exception) -> bool:
        self.metrics.publish_failures.labels("kafka" if self._pending_dead else "redis").inc()
        if self.redis_ok:
            log.warning("publish cycle failed: %s", exc)
        self.redis_ok = False
        return False

    def _collect_garbage(self) -> None:
        """Keep Python's full garbage collections off the hot path.

        The engine's state is hundreds of thousands of long-lived lists and dicts; a full
        collection scans all of them (measured: up to 0.8 s for the bench's state, 25 % of
        ingest time), pausing consuming and publishing at random. After each cycle the heap
        is frozen (O(1): survivors leave the collector's generations; refcounting still frees
        them), and every GC_FULL_EVERY_S it is unfrozen and collected once, so reference
        cycles among frozen objects cannot accumulate. That collection comes sooner when the C
        heap in use (read every TRIM_EVERY_S) has grown by GC_HEAP_GROWTH since the last one:
        an object frozen while alive that dies in a cycle stays until then, whatever it holds
        (dropped Kafka fetches did, `fetch_buffers`). Every TRIM_EVERY_S the free pages inside
        the C heap go back to the OS (`memory.trim_heap`: a few ms).
        """
        now = time.monotonic()
        trim = now - self._trim_at >= TRIM_EVERY_S
        if trim:  # glibc's mallinfo2 walks the free lists (ms on a fragmented heap): not per cycle
            self.heap = heap_usage()
        since = now - self._gc_full_at
        if since >= GC_FULL_EVERY_S or (
                since >= GC_HEAP_MIN_GAP_S and self.heap is not None
                and self.heap["in_use"] - self._gc_heap_base >= GC_HEAP_GROWTH):
            gc.unfreeze()
            gc.collect()
            self._gc_full_at = now
            self.full_collections += 1
            self.heap = heap_usage()
            self._gc_heap_base = self.heap["in_use"] if self.heap else 0
        gc.freeze()
        if trim:
            trim_heap()  # inside the cycle: cc_publish_cycle_seconds includes it
            self.pymalloc = pymalloc_usage()  # 1-2 ms for 1.1 GiB of small objects
            self._trim_at = now

    async def _flush_dead_letters(self) -> bool:
        """Send the dead letters of every record consumed so far, before a checkpoint that
        moves past those records (shutdown, revocation); False when Kafka refused them —
        then the caller must not checkpoint, so the next owner re-derives them."""
        self._take_engine_outputs()
        try:
            await self._send_dead_letters()
        except Exception as exc:
            log.warning("dead letters not sent, checkpoint skipped: %s", exc)
            return False
        return True

    async def _send_dead_letters(self) -> None:
        """Dead letters and FCR records reach Kafka before the checkpoint that moves past
        the records that produced them (FCR records are upserts: a resend changes nothing)."""
        await (await self._start_sending())()

    async def _start_sending(self):
        """Hand the pending dead letters and FCR records to the producer; returns the
        coroutine function that waits for their acknowledgements (and only then forgets
        them: a failed send is retried whole by the next cycle)."""
        self._pending_customers.extend(self.engine.take_customer_records())
        assert self.producer is not None
        customers, dead = list(self._pending_customers), list(self._pending_dead)
        futures = []
        if customers:
            from .kpi.engine import encode_customer_record

            for c, iid, rec in customers:
                futures.append(await self.producer.send(
                    self.cfg.topic_customers, key=c.encode(),
                    value=encode_customer_record(c, iid, rec)))
        for letter in dead:
            headers = [("reason", letter.reason.encode()), ("detail", letter.detail.encode()[:500]),
                       ("source_topic", letter.topic.encode()),
                       ("source_partition", str(letter.partition).encode()),
                       ("source_offset", str(letter.offset).encode())]
            futures.append(await self.producer.send(self.cfg.topic_deadletter, value=letter.raw,
                                                    headers=headers))

        async def acked() -> None:
            if futures:
                await asyncio.gather(*futures)
            del self._pending_customers[:len(customers)]
            del self._pending_dead[:len(dead)]

        return acked

    def _agent_changes(self) -> None:
        """Move the agent buckets the shards changed to the pending starts of their agents'
        slices. Before, every changed interval was pending in every slice: in a replay most
        changes are FCR outcomes settling 5–9 days after the contact, a few agents each, and
        every slice re-read and rewrote those intervals."""
        k, pending, held = self.agent_slices, self._agent_starts, self._agent_held
        for shard in self.owned.values():
            changed = shard.changed_agent_keys
            if not changed:
                continue
            shard.changed_agent_keys = set()
            if not self.cfg.per_agent_kpis:
                continue
            for key in changed:
                pending[agent_slice(key[2], k)].add(key[3])
                held.add(key[3])

    def _agent_parts(self, now: float, full: bool) -> AgentParts | None:
        """The agent side of this cycle: the next slice of agents (all slices after a full
        save), with every interval changed since that slice was last published."""
        if not self.cfg.per_agent_kpis:
            return None
        k = self.agent_slices
        if full:
            every = {key[3] for shard in self.owned.values() for key in shard.intervals}
            for pending in self._agent_starts:
                pending |= every
        slices = list(range(k)) if full else self._agent_turns()
        rotated = len(slices)
        slices += self._agent_overdue(slices)
        parts = AgentParts(slices, {s: set(self._agent_starts[s]) for s in slices}, rotated)
        parts.offsets = {key: offset for name in self.owned
                         for key, offset in self.offsets.get(name, {}).items()}
        tz = self.cfg.tz
        members = self._slice_members()
        for name, shard in self.owned.items():
            parts.windows[name], parts.intervals[name] = {}, {}
            for s in slices:
                parts.windows[name][s] = agent_window_partials([shard], now, tz, members[s])
                parts.intervals[name][s] = agent_interval_partials([shard], parts.starts[s],
                                                                   members[s])
        return parts

    def _agent_clock(self) -> tuple[int, float, float, float]:
        """(slices, seconds between two slices, monotonic now, when the next is due)."""
        k = self.agent_slices
        now = time.monotonic()
        return (k, self.cfg.agent_publish_interval_s / k, now,
                now if self._agent_due is None else self._agent_due)

    def _agent_turns(self) -> list[int]:
        """The slices this cycle refreshes: one per `agent_publish_interval_s / slices` of
        time since the oldest was due, none before that, at most all. Counting cycles
        instead would stretch the rotation whenever cycles are slower than the timer (a
        replay, a backlog), so agent scopes and their history would lag by many times the
        promise."""
        k, period, now, due = self._agent_clock()
        n = 0 if now < due else min(k, 1 + int((now - due) / period))
        return [(self._agent_turn + i) % k for i in range(n)]

    def _agent_overdue(self, turns: list[int]) -> list[int]:
        """Slices out of turn: those with a changed interval the owned shards would have
        pruned by now. They keep it in memory for the slice (`keep_intervals`); a replay
        moves days of event time per rotation (15 s), and holding all of it grew the month
        replay's worker to 565 MiB. A live worker's changes are recent: never out of turn."""
        horizon = max((shard.clock - shard.retention_s - INTERVAL
                       for shard in self.owned.values()), default=-math.inf)
        if not self._agent_held or min(self._agent_held) >= horizon:
            return []
        return [s for s, pending in enumerate(self._agent_starts)
                if s not in turns and pending and min(pending) < horizon]

    def _agent_turn_done(self, parts: AgentParts) -> None:
        """After a publish: the refreshed slices are done until their next turn, and their
        history covers the offsets they were computed at. Only the slices whose turn it was
        move the rotation on; those refreshed out of turn (`_agent_overdue`) keep theirs."""
        k, period, now, due = self._agent_clock()
        n = len(parts.slices) if parts.rotated is None else parts.rotated
        # the n slices just refreshed owe nothing: at most the other k - n can be overdue,
        # so after all k the next is due a period from now
        self._agent_due = max(due + n * period, now - (k - n - 1) * period)
        self._agent_turn = (self._agent_turn + n) % k
        for s in parts.slices:
            self._agent_starts[s] -= parts.starts[s]
            self._agent_through[s] = parts.offsets
        self._agent_held.clear()
        self._agent_held.update(*self._agent_starts)

    def _agents_through(self, parts: AgentParts) -> dict[str, int]:
        """Per owned topic-partition, the offset up to which EVERY agent slice's published
        KPIs and interval history include the records (the least over slices, counting the
        slices refreshed now). A replay waits for it: the queue side is complete after one
        cycle, the agent side only after a whole rotation."""
        fresh = set(parts.slices)
        covered = [parts.offsets if s in fresh else self._agent_through[s]
                   for s in range(self.agent_slices)]
        return {key: min(c.get(key, 0) for c in covered) for key in parts.offsets}

    def _slice_members(self) -> list[list[str]]:
        """Agent names by slice: every name the engine admitted (a superset of the agents
        in the buckets), re-sorted only when new names arrived."""
        names = self.engine.agents
        if self._members is None or self._members_n != len(names):
            members: list[list[str]] = [[] for _ in range(self.agent_slices)]
            for agent in names:
                members[agent_slice(agent, self.agent_slices)].append(agent)
            self._members, self._members_n = members, len(names)
        return self._members

    def _checkpoint_turn(self) -> set[str]:
        """The owned shards whose state this cycle checkpoints: each shard every
        `checkpoint_interval_s`, the shards spread evenly over the cycles in between, so no
        cycle carries every shard's dirty state at once (a cycle holds consuming).

        The rotation counts cycles; when cycles are slower than `publish_interval_s` (a
        replay, a backlog after an outage) it would space a shard's checkpoints by many
        intervals, and its dirty state and the records to re-read after a crash would pile
        up (replay: 50 s without a checkpoint, RSS doubling). So a shard whose last
        checkpoint is OVERDUE_INTERVALS old is saved whatever the rotation says; so many that
        a live worker's rotation (cycles 0.25 s give or take) never trips it.
        """
        interval = self.cfg.checkpoint_interval_s
        n = max(1, round(interval / self.cfg.publish_interval_s))
        turn, self._checkpoint_n = self._checkpoint_n, self._checkpoint_n + 1
        overdue = time.monotonic() - OVERDUE_INTERVALS * interval
        return {name for i, name in enumerate(sorted(self.owned))
                if (i + turn) % n == 0 or self._saved_at.get(name, 0.0) <= overdue}

    async def _save(self, now: float, closed: dict[str, set] | None = None) -> None:
        """Save every owned shard's state and partials (shutdown, revocation)."""
        parts = await self._prepare(now, closed, every_shard=True)
        self._stage(parts, now)
        await self._checkpoint(parts)

    async def _prepare(self, now: float, closed: dict[str, set] | None,
                       every_shard: bool) -> CycleParts:
        """Own partials of every owned shard, the intervals to rewrite, the agent side of
        this cycle, and the shards whose state to checkpoint: every shard (shutdown,
        revocation, a Redis that lost its data) or those whose turn it is."""
        partials, ivpartials = {}, {}
        if closed is None:
            closed = {name: set(shard.changed_intervals) for name, shard in self.owned.items()}
        full = await self.sink.needs_full_save()
        if full:  # Redis came back empty (or this worker never saved): everything again
            for name, shard in self.owned.items():
                closed.setdefault(name, set()).update(k[3] for k in shard.intervals)
        # an interval changed in any owned shard is rewritten from ALL owned shards: the
        # published hash is their sum (plus foreign shards' ivparts), never one shard's part
        starts = set().union(*closed.values()) if closed else set()
        self._agent_changes()
        tz = self.cfg.tz
        for name, shard in self.owned.items():
            windows = queue_window_partials([shard], now, tz)
            live = self.engine.live(now, stores=[shard])
            partials[name] = (windows, LiveMerged(live.waiting, live.agents, live.capacity,
                                                  live.at_risk))
            # every changed interval is (re)written, the open one included, so a replay's
            # last interval reaches the history too; it is rewritten while it still changes
            ivpartials[name] = queue_interval_partials([shard], starts)
        agents = self._agent_parts(now, full)
        state = set(self.owned) if every_shard or full else self._checkpoint_turn()
        self._lap("prepare")
        return CycleParts(partials, ivpartials, starts, agents, state, full)

    def _stage(self, parts: CycleParts, now: float) -> None:
        """Encode the checkpoint: the shards' dirty state and their offsets, together."""
        parts.staged = self.sink.stage_save(self.owned, self.offsets, parts.partials,
                                            parts.ivpartials, now, parts.full, parts.agents,
                                            parts.state)
        self._lap("stage")

    async def _checkpoint(self, parts: CycleParts, acked=None) -> None:
        """One Lua call: the partials of every owned shard, and the state and offsets of
        the shards in `parts.state`, after the outputs of the records it moves past."""
        assert parts.staged is not None
        if acked is not None:
            await acked()
        await self.sink.send_save(parts.staged)
        self._lap("checkpoint")
        saved_at = time.monotonic()
        for name in parts.state:
            self._saved_at[name] = saved_at

    def _view_first(self, parts: CycleParts, others: list[str]) -> bool:
        """Whether this cycle may write the view before its checkpoint, taking the
        checkpoint (a third of a live cycle) off every event's freshness.

        Only as the sole writer: another worker merges this one's partials under the view
        lock, so they must be in Redis before this worker's view, or the two views would
        step back and forth. Not after Redis lost data (the full save resets what the view
        writer believes is written). Not when an owned shard changed an interval it may
        already have pruned: that interval's sum reads the shard's part back from Redis,
        which must be this cycle's.
        """
        if others or parts.full:
            return False
        for name, shard in self.owned.items():
            complete = shard.complete_from()
            if any(start < complete for _, start in parts.ivpartials.get(name, ())):
                return False
        return True

    def all_shard_names(self) -> list[str]:
        assert self.consumer is not None
        names = []
        for topic, kind in self.kinds.items():
            if kind == "surveys":
                continue
            for p in sorted(self.consumer.partitions_for_topic(topic) or ()):
                names.append(shard_name(kind, p))
        return names

    async def _publish(self, now: float, parts: CycleParts, acked) -> bool:
        """Merge with other workers' partials and write the view; the checkpoint first
        unless the view may go first (`_view_first`). True when the checkpoint is still
        owed: the caller stages and sends it after the view."""
        others = [n for n in self.all_shard_names() if n not in self.owned]
        view_first = self._view_first(parts, others)
        if not view_first:
            self._stage(parts, now)
            await self._checkpoint(parts, acked)
        own_windows = [w for w, _ in parts.partials.values()]
        own_live = [lv for _, lv in parts.partials.values()]
        async with self.sink.lock():
            f_windows, f_live, _ = await self.sink.foreign_partials(others)
            # every shard's part of a changed interval: own ones from memory where the shard
            # holds the whole interval, the rest from Redis (a shard that already dropped an
            # old interval still contributes the part it published before)
            intervals = await self._interval_sums(parts.ivpartials, parts.starts)
            windows = merge([*own_windows, *f_windows])
            live = LiveMerged()
            for part in [*own_live, *f_live]:
                live.add(part)
            view = build_view(windows, live, self.cfg, now, time.time(), self.staffing)
            agents = None
            if parts.agents is not None:
                agents = await self._merge_agents(parts.agents, others)
                docs = self._agent_docs(agents)
                view.kpi.update(docs)
            scopes = ["center", *[f"queue:{q}" for q in view.queues]]
            self._lap("merge")
            await self.sink.write_view(view, intervals, scopes, sole_writer=not others,
                                       agents=agents)
            self._lap("write")
        if parts.agents is not None:
            self._agent_turn_done(parts.agents)
            self.agent_kpi = docs
        self.view = view
        self.last_publish_ok = time.time()
        return view_first

    async def _merge_agents(self, parts: AgentParts, others: list[str]) -> AgentView:
        """Own and other shards' partials of the refreshed agent slices, merged and turned
        into KPI documents; interval sums re-added from every shard's saved part."""
        f_windows, _, _ = await self.sink.foreign_partials(others, parts.slices)
        own = [w for per_slice in parts.windows.values() for w in per_slice.values()]
        windows = merge([*own, *f_windows])
        docs: dict[str, dict[str, dict]] = {}
        for (scope, window), acc in windows.items():
            docs.setdefault(scope, {})[window] = scope_kpis(scope, acc, self.cfg, {})
        intervals: Partial = {}
        for s in parts.slices:
            own = {name: per_slice[s] for name, per_slice in parts.intervals.items()}
            intervals.update(await self._interval_sums(own, parts.starts[s], s))
        return AgentView(parts.slices, self.agent_slices, docs, intervals,
                         self._agents_through(parts))

    async def _interval_sums(self, own: dict[str, Partial], starts: set[int],
                             slice_: int | None = None) -> Partial:
        """Every shard's part of the given intervals, summed: an owned shard's part from
        memory (`own`, just saved) where the shard still holds the whole interval, and from
        Redis where it may have pruned it (its earlier part still counts) or where the shard
        is another worker's. Reading the own parts back from Redis was most of a replay's
        cycle: every changed interval × every shard."""
        out: Partial = {}
        if not starts:
            return out
        pairs = []
        for name in self.all_shard_names():
            shard = self.owned.get(name)
            if shard is None:
                pairs.extend((name, start) for start in starts)
                continue
            complete = shard.complete_from()
            pairs.extend((name, start) for start in starts if start < complete)
            for key, acc in own.get(name, {}).items():
                if key[1] >= complete and key[1] in starts:
                    cur = out.get(key)
                    if cur is None:
                        out[key] = list(acc)
                    else:
                        b.add_into(cur, acc)
        return await self.sink.read_intervals(pairs, slice_, into=out)

    def _agent_docs(self, agents: AgentView) -> dict[str, dict[str, dict]]:
        """Every agent scope as last published: the refreshed slices replace theirs."""
        fresh = set(agents.slices)
        out = {scope: per for scope, per in self.agent_kpi.items()
               if agent_slice(scope[6:], self.agent_slices) not in fresh}
        out.update(agents.docs)
        return out

    # -- monitoring -----------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """"topic:partition" → the next offset to apply, for the owned shards' partitions:
        with the cycle count, tells when every record up to an offset is in Redis."""
        return {key: off for name in list(self.owned)
                for key, off in self.offsets.get(name, {}).items()}

    def state_sizes(self) -> dict[tuple[str, str], int]:
        """(shard kind, part) → entries held by the owned shards: what bounds the memory."""
        out: dict[tuple[str, str], int] = {}
        for name, shard in list(self.owned.items()):
            kind = SHARD_KIND[name[0]]
            for part, n in shard.state_sizes().items():
                out[(kind, part)] = out.get((kind, part), 0) + n
        return out

    def lag(self):
        """(topic, partition, event-time lag s, records waiting) of every owned partition."""
        wall = time.time()
        out = []
        for name, topic, partition, waiting in self._unread():
            shard = self.owned.get(name)
            if shard is None:
                continue
            seconds = max(0.0, wall - shard.max_ts) if shard.max_ts else 0.0
            out.append((topic, partition, seconds, waiting or 0))
        return out

    def owns_agents(self) -> bool:
        return any(isinstance(s, AgentShard) for s in self.owned.values())
