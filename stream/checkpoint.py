"""Shard state and input offsets, saved together: the exactness guarantee without transactions.

A shard's checkpoint is a handful of Redis hashes (interactions, minute buckets, interval
buckets, index of handled interactions, agents) plus a `meta` hash with the next input
offset of each of its topic-partitions. Each save writes only what changed (dirty keys) and
the offsets in the same MULTI/EXEC, so state and position can never disagree: after a crash
the worker restores the state and seeks to the saved offsets, and every event after them is
applied exactly once. Kafka's committed offsets are only used for lag monitoring.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .kpi import buckets as b
from .kpi.agents import AgentShard, AgentTimeline, Change
from .kpi.customers import Contact, Customer, CustomerShard
from .kpi.interaction import Ev, derive
from .kpi.shard import InteractionShard, Ix

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def _bkey(key: tuple) -> str:
    return f"{key[0]}|{key[1]}|{key[2]}|{key[3]}"


def _parse_bkey(text: str) -> tuple:
    q, ch, agent, start = text.split("|")
    return (q, ch, agent, int(start))


def _unpack_fact(data: list) -> tuple:
    key, ts, delta = data
    return (tuple(key), ts, tuple((int(s), v) for s, v in delta))


def _unpack_ev(data: list) -> Ev:
    ts, kind, eid, q, ch, agent, extra = data
    if isinstance(extra, list):
        extra = tuple(extra)
    return Ev(ts, kind, eid, q, ch, agent, extra)


def pack_ix(ix: Ix) -> bytes:
    sent = ix.customer_sent
    # tuples encode as arrays in C: events and facts need no per-item conversion
    return _enc.encode([[e.as_tuple() for e in ix.events], ix.facts,
                        ix.pending_raw, ix.risk_since, ix.last_ts,
                        None if sent is None else [*sent[:3], list(sent[3]) if sent[3] else None,
                                                   sent[4]]])


def unpack_ix(data: bytes, shard: InteractionShard) -> Ix:
    events, facts, pending, risk_since, last_ts, sent = _dec.decode(data)
    ix = Ix(events=[_unpack_ev(e) for e in events], facts=[_unpack_fact(f) for f in facts],
            pending_raw=dict(pending), last_ts=last_ts)
    if sent is not None:
        ix.customer_sent = (sent[0], sent[1], sent[2], tuple(sent[3]) if sent[3] else None,
                            sent[4])
    d = derive(ix.events, shard.timeout_clock, shard.s.params)
    ix.waiting, ix.acw_deadline, ix.done = d.waiting, d.acw_deadline, d.done
    ix.handled_key, ix.risk, ix.risk_since = d.handled_key, d.risk, risk_since
    return ix


def pack_customer(cust: Customer) -> bytes:
    return _enc.encode([{iid: [c.first_offered, c.handled, list(c.key), c.disposition]
                         for iid, c in cust.contacts.items()},
                        cust.facts, cust.last_activity])


def unpack_customer(data: bytes) -> Customer:
    contacts, facts, last = _dec.decode(data)
    return Customer({iid: Contact(o, h, tuple(k), d) for iid, (o, h, k, d) in contacts.items()},
                    [_unpack_fact(f) for f in facts], last)


def pack_timeline(tl: AgentTimeline) -> bytes:
    return _enc.encode([[[c.ts, c.state, list(c.queues), [list(x) for x in c.capacity],
                          c.event_id] for c in tl.changes],
                        tl.facts, tl.final_before])


def unpack_timeline(data: bytes) -> AgentTimeline:
    changes, facts, final_before = _dec.decode(data)
    return AgentTimeline(
        changes=[Change(ts, st, tuple(qs), tuple(tuple(x) for x in cap), eid)
                 for ts, st, qs, cap, eid in changes],
        facts=[_unpack_fact(f) for f in facts], final_before=final_before)


class ShardKeys:
    """Redis key names of one shard's checkpoint and published partials."""

    def __init__(self, prefix: str, shard: str) -> None:
        base = f"{prefix}state:{shard}:"
        self.meta = base + "meta"
        self.items = base + "items"  # interactions or agents
        self.minutes = base + "m"
        self.intervals = base + "iv"
        self.index = base + "hx"
        self.partial = f"{prefix}part:{shard}"
        self.prefix, self.shard = prefix, shard

    def agent_partial(self, slice_: int) -> str:
        """The shard's agent-scope window partials of one slice of agents."""
        return f"{self.prefix}apart:{self.shard}:{slice_}"


    def all(self) -> list[str]:
        return [self.meta, self.items, self.minutes, self.intervals, self.index]


def stage_buckets(pipe: Any, keys: ShardKeys, store) -> tuple[set, set]:
    """Queue HSET/HDEL of the store's dirty buckets on a pipeline; returns what was staged."""
    minutes, intervals = store.dirty_minutes, store.dirty_intervals
    store.dirty_minutes, store.dirty_intervals = set(), set()
    for dirty, source, key in ((minutes, store.minutes, keys.minutes),
                               (intervals, store.intervals, keys.intervals)):
        sets, dels = {}, []
        for bk in dirty:
            acc = source.get(bk)
            if acc is None or b.is_zero(acc):
                dels.append(_bkey(bk))
            else:
                sets[_bkey(bk)] = _enc.encode(b.pack(acc))
        if sets:
            pipe.hset(key, mapping=sets)
        if dels:
            pipe.hdel(key, *dels)
    return minutes, intervals


def _item_kind(shard) -> tuple[str, dict, Any]:
    """(dirty-set attribute, the items dict, its packer) of a shard's per-key state."""
    if isinstance(shard, InteractionShard):
        return "dirty_ix", shard.ix, pack_ix
    if isinstance(shard, CustomerShard):
        return "dirty_customers", shard.customers, pack_customer
    return "dirty_agents", shard.agents, pack_timeline


def _stage_hash(pipe: Any, key: str, names: set, source: dict, pack) -> None:
    """HSET the named entries that exist, HDEL the ones that are gone."""
    sets, dels = {}, []
    for name in names:
        value = source.get(name)
        if value is None:
            dels.append(name)
        else:
            sets[name] = pack(value)
    if sets:
        pipe.hset(key, mapping=sets)
    if dels:
        pipe.hdel(key, *dels)


def stage_shard(pipe: Any, keys: ShardKeys, shard, offsets: dict[str, int]) -> tuple:
    """Queue a shard's dirty state and its offsets; returns a token to undo on failure."""
    minutes, intervals = stage_buckets(pipe, keys, shard)
    attr, source, pack = _item_kind(shard)
    items = getattr(shard, attr)
    setattr(shard, attr, set())
    _stage_hash(pipe, keys.items, items, source, pack)
    index: set = set()
    extra = b""
    if isinstance(shard, InteractionShard):
        index, shard.dirty_index = shard.dirty_index, set()
        _stage_hash(pipe, keys.index, index, shard.handled_index,
                    lambda entry: _enc.encode(list(entry)))
        extra = _enc.encode(shard.survey_ids)
    meta = {f"offset:{tp}": str(off) for tp, off in offsets.items()}
    meta["clock"] = repr(shard.clock)
    if isinstance(shard, InteractionShard):
        meta["timeout_clock"] = repr(shard.timeout_clock)
    meta["extra"] = extra
    pipe.hset(keys.meta, mapping=meta)
    return (minutes, intervals, items, index)


def unstage(shard, token: tuple) -> None:
    """Put dirty markers back after a failed save, so the next save writes them."""
    minutes, intervals, items, index = token
    shard.dirty_minutes |= minutes
    shard.dirty_intervals |= intervals
    attr = _item_kind(shard)[0]
    setattr(shard, attr, getattr(shard, attr) | items)
    if isinstance(shard, InteractionShard):
        shard.dirty_index |= index


def mark_all_dirty(shard) -> None:
    """Mark every key of the shard dirty: the next save writes its whole state (after Redis
    lost its data, e.g. a restart of a memory-only Redis, dirty keys alone are not enough)."""
    shard.dirty_minutes |= set(shard.minutes)
    shard.dirty_intervals |= set(shard.intervals)
    attr, source, _ = _item_kind(shard)
    setattr(shard, attr, getattr(shard, attr) | set(source))
    if isinstance(shard, InteractionShard):
        shard.dirty_index |= set(shard.handled_index)


async def restore(redis, keys: ShardKeys, shard) -> dict[str, int]:
    """Load a shard's state from Redis into `shard`; returns saved offsets by topic-partition."""
    pipe = redis.pipeline(transaction=True)
    for key in keys.all():
        pipe.hgetall(key)
    meta, items, minutes, intervals, index = await pipe.execute()
    meta = {k.decode(): v for k, v in meta.items()}
    if not meta:
        return {}
    shard.clock = float(meta.get("clock", b"0"))
    if isinstance(shard, InteractionShard):
        shard.timeout_clock = float(meta.get("timeout_clock", meta.get("clock", b"0")))
    for raw_key, raw in minutes.items():
        shard.minutes[_parse_bkey(raw_key.decode())] = b.unpack(_dec.decode(raw))
    for raw_key, raw in intervals.items():
        shard.intervals[_parse_bkey(raw_key.decode())] = b.unpack(_dec.decode(raw))
    shard.rebuild_index()
    if isinstance(shard, InteractionShard):
        for iid, raw in items.items():
            shard.ix[iid.decode()] = unpack_ix(raw, shard)
        for iid, raw in index.items():
            shard.handled_index[iid.decode()] = tuple(_dec.decode(raw))
        extra = meta.get("extra")
        if extra:
            shard.survey_ids = dict(_dec.decode(extra))
        shard.rebuild_deadlines()
    elif isinstance(shard, CustomerShard):
        for name, raw in items.items():
            shard.customers[name.decode()] = unpack_customer(raw)
        shard.rebuild_deadlines()
    else:
        for agent, raw in items.items():
            shard.agents[agent.decode()] = unpack_timeline(raw)
    # everything restored is already saved: nothing is dirty, but intervals may be unpublished
    shard.changed_intervals |= {k[3] for k in shard.intervals}
    shard.changed_agent_keys |= {k for k in shard.intervals if k[2]}
    return {k[len("offset:"):]: int(v) for k, v in meta.items() if k.startswith("offset:")}


def encode(obj: Any) -> bytes:
    return _enc.encode(obj)


def decode(data: bytes) -> Any:
    return _dec.decode(data)


__all__ = ["ShardKeys", "stage_shard", "unstage", "mark_all_dirty", "restore", "AgentShard"]
