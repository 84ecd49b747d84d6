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


def test_a_sole_writer_rewrites_what_another_writer_changed(stack):
    """A sole writer sends only timestamps for hashes whose numbers it already wrote. Another
    worker may still write the view meanwhile (one joining the group before its first
    assignment, one that has just lost its partitions), from partials a cycle older; the
    sole writer must notice and write its numbers again, or the older picture stays up
    with fresh timestamps until the next whole rewrite."""
    prefix = f"sole{uuid.uuid4().hex[:6]}:"
    cfg = config.load(environ={"CCPULSE_REDIS_URL": stack.redis_url,
                               "CCPULSE_REDIS_PREFIX": prefix})
    client = redis_sync.Redis.from_url(stack.redis_url)

    def view_of(offered: float):
        now = time.time()
        return build_view({("center", "today"): acc(offered),
                           ("queue:billing", "today"): acc(offered)}, LiveMerged(), cfg, now, now)

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
