"""The Redis sink's two tiers: queue scopes every cycle, agent scopes a slice at a time.

Against a real redis-server: a cycle that refreshes one slice of agents leaves the other
slices' hashes alone, an agent that left its slice loses its hash when that slice is next
written, queue-side cycles never delete agent hashes, and the whole batch lands atomically
through the Lua writer.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis as redis_sync

from stream import config
from stream.kpi import buckets as b
from stream.kpi.rollup import agent_slice
from stream.sinks.redis_sink import AgentView, RedisSink
from stream.view import LiveMerged, build_view, scope_kpis

SLICES = 4


def agents_by_slice(n: int = 40) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {s: [] for s in range(SLICES)}
    for i in range(n):
        name = f"agent-{i:03d}"
        out[agent_slice(name, SLICES)].append(name)
    assert all(out.values())
    return out


def acc(offered: float) -> list[float]:
    a = b.new()
    a[b.OFFERED] = offered
    a[b.ANSWERED] = offered
    return a


def agent_view(cfg, slices: list[int], agents: list[str]) -> AgentView:
    docs = {f"agent:{a}": {w: scope_kpis(f"agent:{a}", acc(3), cfg, {})
                           for w in ("15m", "1h", "today")} for a in agents}
    return AgentView(slices, SLICES, docs, {})


def test_agent_slices_and_queue_cycles_keep_each_others_keys(stack):
    prefix = f"tier{uuid.uuid4().hex[:6]}:"
    cfg = config.load(environ={"CCPULSE_REDIS_URL": stack.redis_url,
                               "CCPULSE_REDIS_PREFIX": prefix})
    by_slice = agents_by_slice()
    client = redis_sync.Redis.from_url(stack.redis_url)

    def kpi_keys() -> set[str]:
        return {k.decode() for k in client.scan_iter(f"{prefix}kpi:agent:*:15m")}

    async def go() -> None:
        sink = RedisSink(cfg)
        try:
            now = time.time()
            view = build_view({("center", "15m"): acc(5), ("queue:billing", "15m"): acc(5)},
                              LiveMerged(), cfg, now, now)
            # every slice once (a full cycle), then slice 1 alone without one of its agents
            await sink.write_view(view, {}, ["center"], sole_writer=True,
                                  agents=agent_view(cfg, list(range(SLICES)),
                                                    sum(by_slice.values(), [])))
            assert kpi_keys() == {f"{prefix}kpi:agent:{a}:15m" for s in by_slice
                                  for a in by_slice[s]}
            assert client.hget(f"{prefix}kpi:agent:{by_slice[2][0]}:1h", "offered") == b"3"
            gone = by_slice[1][0]
            await sink.write_view(view, {}, ["center"], sole_writer=True,
                                  agents=agent_view(cfg, [1], by_slice[1][1:]))
            expected = {f"{prefix}kpi:agent:{a}:15m" for s in by_slice for a in by_slice[s]
                        if a != gone}
            assert kpi_keys() == expected
            # queue-side cycles (no agent slice) and a fresh writer that must re-read the
            # indexes keep every agent hash
            await sink.write_view(view, {}, ["center"], sole_writer=True)
            other = RedisSink(cfg)
            try:
                await other.write_view(view, {}, ["center"], sole_writer=False)
            finally:
                await other.close()
            assert kpi_keys() == expected
            assert client.hget(f"{prefix}kpi:center:15m", "offered") == b"5"
            members = {m.decode() for m in client.smembers(f"{prefix}index:agents:1")}
            assert f"{prefix}kpi:agent:{gone}:15m" not in members
            assert f"{prefix}kpi:agent:{by_slice[1][1]}:today" in members
        finally:
            await sink.close()

    asyncio.run(go())


def test_lua_batches_are_binary_safe_and_the_save_checks_the_marker(stack):
    """Checkpoint values are msgpack (any byte); Redis's Lua msgpack knows no bin type, so
    they travel as str frames of every length class. A save whose marker Redis no longer
    holds (flushed, restarted empty) is refused whole, so the caller saves everything."""
    import pytest

    from stream.sinks.redis_sink import RedisReset, ScriptBatch

    prefix = f"lua{uuid.uuid4().hex[:6]}:"
    cfg = config.load(environ={"CCPULSE_REDIS_URL": stack.redis_url,
                               "CCPULSE_REDIS_PREFIX": prefix})
    client = redis_sync.Redis.from_url(stack.redis_url)
    values = [b"", b"\x00", bytes(range(256)), b"\xc1" * 31, b"\xff" * 32, b"\x80" * 255,
              b"\xd9" * 256, bytes(range(256)) * 256, b"z" * 65536]

    async def go() -> None:
        sink = RedisSink(cfg)
        try:
            batch = ScriptBatch()
            batch.hset(f"{prefix}bin", mapping={f"f{i}": v for i, v in enumerate(values)})
            batch.hdel(f"{prefix}bin", "never-there")
            await batch.execute(sink._apply)
            stored = client.hgetall(f"{prefix}bin")
            assert [stored[f"f{i}".encode()] for i in range(len(values))] == values

            # many chunks, one call: applied in order (each write overrides the one before)
            batch = ScriptBatch()
            batch.CHUNK_BYTES = 64
            for i in range(300):
                batch.delete(f"{prefix}seq")
                batch.hset(f"{prefix}seq", mapping={"n": str(i)})
                batch.sadd(f"{prefix}all", str(i))
            assert len(batch.chunks()) > 50 and batch.count == 900
            await batch.execute(sink._apply)
            assert client.hgetall(f"{prefix}seq") == {b"n": b"299"}
            assert client.scard(f"{prefix}all") == 300

            await sink.save_shards({}, {}, {}, {}, time.time(), full=True)
            mark = sink._saved_mark
            assert client.get(sink.marker) == mark
            await sink.save_shards({}, {}, {}, {}, time.time())  # marker held: accepted
            assert client.get(sink.marker) != mark
            client.delete(sink.marker)  # Redis lost it
            with pytest.raises(RedisReset):
                await sink.save_shards({}, {}, {}, {}, time.time())
            assert client.get(sink.marker) is None  # nothing of the refused save landed
            assert await sink.needs_full_save()
        finally:
            await sink.close()

    asyncio.run(go())


def _view_setup(stack, tag: str):
    """A fresh prefix on the test Redis: (prefix, settings, a sync client to read it)."""
    prefix = f"{tag}{uuid.uuid4().hex[:6]}:"
    cfg = config.load(environ={"CCPULSE_REDIS_URL": stack.redis_url,
                               "CCPULSE_REDIS_PREFIX": prefix})
    return prefix, cfg, redis_sync.Redis.from_url(stack.redis_url)


def _view_of(cfg, offered: float, *scopes: str):
    """A view whose `today` window of each scope counts `offered` contacts."""
    now = time.time()
    return build_view({(scope, "today"): acc(offered) for scope in scopes}, LiveMerged(), cfg,
                      now, now)


def test_a_sole_writer_rewrites_what_another_writer_changed(stack):
    """A sole writer sends only timestamps for hashes whose numbers it already wrote. Another
    worker may still write the view meanwhile (one joining the group before its first
    assignment, one that has just lost its partitions), from partials a cycle older; the
    sole writer must notice and write its numbers again, or the older picture stays up
    with fresh timestamps until the next whole rewrite."""
    prefix, cfg, client = _view_setup(stack, "sole")

    def view_of(offered: float):
        return _view_of(cfg, offered, "center", "queue:billing")

    async def go() -> None:
        sink, other = RedisSink(cfg), RedisSink(cfg)
        try:
            await sink.write_view(view_of(7), {}, ["center"], sole_writer=True)
            await sink.write_view(view_of(7), {}, ["center"], sole_writer=True)
            await other.write_view(view_of(5), {}, ["center"], sole_writer=False)
            assert client.hget(f"{prefix}kpi:center:today", "offered") == b"5"
            await sink.write_view(view_of(7), {}, ["center"], sole_writer=True)
            assert client.hget(f"{prefix}kpi:center:today", "offered") == b"7"
            assert client.hget(f"{prefix}kpi:queue:billing:today", "offered") == b"7"
            # and the cache still saves work when nobody else wrote
            await sink.write_view(view_of(7), {}, ["center"], sole_writer=True)
            assert client.hget(f"{prefix}kpi:center:today", "offered") == b"7"
        finally:
            await sink.close()
            await other.close()

    asyncio.run(go())


def test_a_write_that_fails_before_redis_leaves_no_cache_claiming_its_numbers(stack):
    """The view cache is filled while a cycle packs its commands. If the cycle fails before
    Redis takes them, no entry may say the new numbers are there: the next write would send
    only timestamps and leave the old numbers up."""
    prefix, cfg, client = _view_setup(stack, "fail")

    def view_of(offered: float):
        return _view_of(cfg, offered, "center")

    async def go() -> None:
        sink = RedisSink(cfg)
        try:
            await sink.write_view(view_of(3), {}, ["center"], sole_writer=True)
            failing = view_of(4)

            def broken(*args, **kwargs):
                raise RuntimeError("snapshot failed")

            failing.snapshot = broken  # fails after the KPI hashes were packed
            with pytest.raises(RuntimeError):
                await sink.write_view(failing, {}, ["center"], sole_writer=True)
            assert client.hget(f"{prefix}kpi:center:today", "offered") == b"3"
            await sink.write_view(view_of(4), {}, ["center"], sole_writer=True)
            assert client.hget(f"{prefix}kpi:center:today", "offered") == b"4"
        finally:
            await sink.close()

    asyncio.run(go())



class _ReplayRig:
    """A sole worker in event-clock mode over real Redis, owning interactions shards whose
    records the test applies by hand, and choosing which agent slices each cycle refreshes."""

    def __init__(self, stack, shards: int, prefix: str | None = None,
                 first: int = 0) -> None:
        from stream.pipeline import Pipeline

        self.prefix = prefix or f"prune{uuid.uuid4().hex[:6]}:"
        self.cfg = config.load(environ={
            "CCPULSE_REDIS_URL": stack.redis_url, "CCPULSE_REDIS_PREFIX": self.prefix,
            "CCPULSE_CLOCK": "event", "CCPULSE_AGENT_PUBLISH_INTERVAL_S": "1"})
        self.client = redis_sync.Redis.from_url(stack.redis_url)
        self.p = p = Pipeline(self.cfg)
        self.turns: list[list[int]] = []
        self.n = 0
        for i in range(first, first + shards):
            p.owned[f"i{i}"] = p.engine.shard(i)
            p.offsets[f"i{i}"] = {}
        p.all_shard_names = lambda: sorted(p.owned)
        p._agent_turns = lambda: self.turns.pop(0)

        async def start_sending():
            async def acked():
                pass
            return acked

        p._start_sending = start_sending

    def handled(self, iid: str, ts: float, agent: str = "ann", partition: int = 0) -> None:
        """One answered call of 2 minutes' talk and 30 s' wrap-up."""
        import orjson

        from stream.kpi.windows import iso_utc

        for kind, at in (("offered", ts), ("answered", ts + 10), ("ended", ts + 130),
                         ("wrapup_completed", ts + 160)):
            self.n += 1
            raw = orjson.dumps({"event_id": f"{iid}-{self.n}", "type": f"interaction.{kind}",
                                "ts": iso_utc(at),
                                "schema_version": 1, "interaction_id": iid, "channel": "voice",
                                "queue": "billing", "agent_id": agent})
            self.p.engine.ingest("interactions", raw, partition)

    async def cycle(self, slices: list[int] | None) -> None:
        """One publish cycle refreshing `slices` (None: a full save, which refreshes all)."""
        if slices is not None:
            self.turns.append(slices)
        assert await self.p._run_cycle()
        assert not self.turns

    def history(self, scope: str, ts: float) -> dict[bytes, bytes]:
        from stream.kpi.windows import INTERVAL, iso_local

        start = iso_local(ts // INTERVAL * INTERVAL, self.cfg.tz)
        return self.client.hgetall(f"{self.prefix}interval:{scope}:{start}")


T_REPLAY = 1_793_613_600.0  # 2026-11-02T10:00Z, an interval start
DAY = 86400.0


def test_an_agents_interval_history_survives_the_shard_pruning_it_before_its_slice_turn(stack):
    """A fast replay moves a shard's clock past an interval's retention between the cycle
    that changed the interval and the turn of the agent's slice (a rotation is 15 s of wall
    time, days of event time): the interval is kept in memory until its slice was
    published. (Before: the agent's history of that interval was never written.)"""
    rig = _ReplayRig(stack, 1)
    every = list(range(rig.p.agent_slices))

    async def go() -> None:
        try:
            rig.handled("first", T_REPLAY - 3600, agent="bob")
            await rig.cycle(None)  # the first save is full: every slice published
            rig.handled("a", T_REPLAY)
            await rig.cycle([])  # the queue side publishes; the agent slices wait
            rig.handled("b", T_REPLAY + 4 * DAY)  # days later: t0's interval past retention
            await rig.cycle([])
            rig.handled("c", T_REPLAY + 8 * DAY)
            await rig.cycle(every)
        finally:
            await rig.p.sink.close()

    asyncio.run(go())
    assert rig.history("agent:ann", T_REPLAY).get(b"handled") == b"1"
    assert rig.history("queue:billing", T_REPLAY).get(b"handled") == b"1"
    assert rig.history("agent:ann", T_REPLAY + 4 * DAY).get(b"handled") == b"1"


def test_a_slice_rewrite_keeps_the_part_of_an_interval_its_shard_pruned(stack):
    """Shard i1 changes an interval that shard i0 pruned long ago (its clock is days ahead):
    the slice's rewrite of that interval must keep i0's part in Redis, which the history
    sums with i1's. (Before: i0's part was deleted after the view that read it, so the
    next change counted i1's alone.)"""
    rig = _ReplayRig(stack, 2)
    every = list(range(rig.p.agent_slices))

    async def go() -> None:
        try:
            rig.handled("first", T_REPLAY - 3600, agent="bob", partition=1)
            rig.handled("a", T_REPLAY, partition=0)
            await rig.cycle(None)  # full: i0's part of the interval published
            rig.handled("b", T_REPLAY + 4 * DAY, partition=0)  # i0 prunes it
            await rig.cycle(every)
            assert rig.p.owned["i0"].complete_from() > T_REPLAY
            for i, iid in enumerate("cd"):  # i1 is still at that day: twice, a cycle apart
                rig.handled(iid, T_REPLAY + 600 + 60 * i, partition=1)
                await rig.cycle(every)
                assert rig.history("agent:ann", T_REPLAY).get(b"handled") == b"%d" % (2 + i)
        finally:
            await rig.p.sink.close()

    asyncio.run(go())
    assert rig.history("queue:billing", T_REPLAY).get(b"handled") == b"3"


def test_a_shard_taken_over_republishes_what_its_last_owner_had_not(stack):
    """A revoked worker saves its shards but writes no view, and its agent slices may not
    have had their turn: a restored shard's intervals count as changed, so the new owner
    publishes them again, the queue side next cycle and every agent slice in its turn."""
    old = _ReplayRig(stack, 1)
    new = _ReplayRig(stack, 1, prefix=old.prefix, first=1)
    every = list(range(new.p.agent_slices))

    async def go() -> None:
        try:
            old.handled("first", T_REPLAY - 3600, agent="bob")
            await old.cycle(None)
            old.handled("a", T_REPLAY)
            old.turns.append([])  # no agent slice due
            await old.p._save(T_REPLAY + 3600)  # revoked: state saved, no view written
            new.handled("other", T_REPLAY - 3600, agent="bob", partition=1)
            await new.cycle(None)  # its own first (full) save
            shard = new.p.engine.shard(0)
            saved = await new.p.sink.restore_shard("i0", shard)
            new.p.owned["i0"], new.p.offsets["i0"] = shard, dict(saved)
            new.p.engine.seed_names(shard)  # as on_assigned does
            await new.cycle(every)
        finally:
            await old.p.sink.close()
            await new.p.sink.close()

    asyncio.run(go())
    assert new.history("queue:billing", T_REPLAY).get(b"handled") == b"1"
    assert new.history("agent:ann", T_REPLAY).get(b"handled") == b"1"
    assert new.history("queue:billing", T_REPLAY - 3600).get(b"handled") == b"2"
