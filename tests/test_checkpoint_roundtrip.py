"""A shard saved to a real Redis and restored into a fresh engine is the same shard.

Every kind of shard (interactions with holds, transfers, messages and surveys; agents;
FCR customers) is checkpointed with `stage_shard` and read back with `restore`; the restored
state, its derived indexes and the windows computed from it must equal the original's.
"""

from __future__ import annotations

import asyncio
import uuid
import zlib
from datetime import datetime, timezone

import pytest
import redis.asyncio as aioredis

from stream import checkpoint as ck
from stream import config
from stream.kpi import buckets as b
from stream.kpi.engine import Engine
from stream.kpi.rollup import window_partials
from stream.simulate import SimConfig, Simulator

KIND = {"cc.interactions": "interactions", "cc.agent-states": "agents", "cc.surveys": "surveys"}


def fed_engine() -> tuple[Engine, float]:
    start = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
    sim = Simulator(SimConfig(seed=7, rate=1.0, agents=20, start=start, duration_s=1800))
    engine = Engine(config.load())
    engine.future_limit = None
    last = start.timestamp()
    for rec in sim:
        engine.ingest(KIND[rec.topic], rec.value, zlib.crc32(rec.key or b"") % 2)
        last = rec.ts.timestamp()
    engine.route_customer_records(partitions=2)
    return engine, last


def nonzero(buckets: dict) -> dict:
    """Buckets with something in them (all-zero buckets are not saved), rounded: the derived
    sums add the same numbers in another order."""
    return {k: [round(v, 6) for v in acc] for k, acc in buckets.items() if not b.is_zero(acc)}


def shard_state(shard) -> dict:
    out = {"minutes": nonzero(shard.minutes), "intervals": nonzero(shard.intervals),
           "qminutes": nonzero(shard.qminutes), "qintervals": nonzero(shard.qintervals),
           "agent_minutes": {a: {k for k in keys if not b.is_zero(shard.minutes[k])}
                             for a, keys in shard.agent_minutes.items()},
           "clock": shard.clock}
    if hasattr(shard, "ix"):
        out["ix"] = {iid: (ix.events, ix.facts, ix.pending_raw, ix.customer_sent, ix.done)
                     for iid, ix in shard.ix.items()}
        out["handled_index"] = shard.handled_index
    elif hasattr(shard, "customers"):
        out["customers"] = {c: (x.contacts, x.facts, x.last_activity)
                            for c, x in shard.customers.items()}
        # the forget queue is derived, rebuilt on restore: one live entry per customer
        live = {(t, n) for t, n in shard.forget_queue
                if n in shard.customers and shard.customers[n].last_activity == t}
        assert {n for _, n in live} == set(shard.customers)
        out["forget_queue"] = live
    else:
        out["agents"] = {a: (tl.changes, tl.facts) for a, tl in shard.agents.items()}
    return out


@pytest.mark.parametrize("via", ["pipeline", "chunked save script"])
def test_every_shard_kind_round_trips_through_redis(stack, via):
    """Staged into a redis-py pipeline, or into the worker's ScriptBatch cut into many small
    chunks and applied by the checkpoint's Lua script (the chunks in order, one call)."""
    from stream.sinks.redis_sink import _SAVE, ScriptBatch

    engine, last = fed_engine()
    prefix = f"rt{uuid.uuid4().hex[:6]}:"
    shards = {f"i{p}": s for p, s in engine.shards.items()}
    shards.update({f"a{p}": s for p, s in engine.agent_shards.items()})
    shards.update({f"c{p}": s for p, s in engine.customer_shards.items()})
    assert {n[0] for n in shards} == {"i", "a", "c"}
    assert any(ix.facts for s in engine.shards.values() for ix in s.ix.values())

    async def go() -> Engine:
        client = aioredis.from_url(stack.redis_url)
        try:
            pipe = client.pipeline(transaction=True) if via == "pipeline" else ScriptBatch()
            if via != "pipeline":
                pipe.CHUNK_BYTES = 4096
            for name, shard in shards.items():
                ck.mark_all_dirty(shard)
                ck.stage_shard(pipe, ck.ShardKeys(prefix, name), shard, {"t:0": 41})
            if via == "pipeline":
                await pipe.execute()
            else:
                chunks = pipe.chunks()
                assert len(chunks) > 5
                marker = f"{prefix}marker"
                applied = await client.register_script(_SAVE)(
                    keys=[marker], args=["0", "", "m1", "60", *chunks])
                assert applied == pipe.count and await client.get(marker) == b"m1"
            fresh = Engine(config.load())
            for name in shards:
                p = int(name[1:])
                target = {"i": fresh.shard, "a": fresh.agent_shard, "c": fresh.customer_shard}[
                    name[0]](p)
                offsets = await ck.restore(client, ck.ShardKeys(prefix, name), target)
                assert offsets == {"t:0": 41}
            return fresh
        finally:
            await client.aclose()

    fresh = asyncio.run(go())
    pairs = [(engine.shards, fresh.shards), (engine.agent_shards, fresh.agent_shards),
             (engine.customer_shards, fresh.customer_shards)]
    for before, after in pairs:
        for p, shard in before.items():
            assert shard_state(after[p]) == shard_state(shard), p
    now = last + 30
    before = window_partials(engine.stores(), now, engine.cfg.tz)
    after = window_partials(fresh.stores(), now, fresh.cfg.tz)
    assert set(before) == set(after)
    for key, acc in before.items():
        assert after[key] == pytest.approx(acc, abs=1e-9), key
