"""Redis: checkpoints in, the public contract of DESIGN §5 out — each cycle atomic.

Two transactions per cycle. The first saves every owned shard's dirty state with its input
offsets and the shard's published partials (`part:<shard>`, `ivpart:<shard>:<start>`). The
second, under a short lock shared by all workers, reads the partials of shards this worker
does not own, merges them with its own, and writes the combined KPI, load, interval and
snapshot keys plus the `updates` message in one MULTI/EXEC. Values are absolute, so a retry
or a second worker writing the same cycle converges to the same picture.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec
import orjson
import redis.asyncio as aioredis
import redis.exceptions

from .. import checkpoint as ck
from ..config import Settings
from ..kpi import buckets as b
from ..kpi.rollup import Partial, agent_slice
from ..kpi.windows import iso_local
from ..view import LiveMerged, View, interval_doc

INTERVAL_TTL_S = 8 * 86400
LOCK_TTL_MS = 5000
MARKER_TTL_S = 86400  # refreshed by every save; gone after a Redis restart or flush
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def _num(value: Any) -> str:
    if value.__class__ is float:  # nearly every field: tested first
        if value.is_integer() and -1e15 < value < 1e15:
            return str(int(value))
        return repr(round(value, 9))
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _num(float(value))
    return str(value)


def hash_fields(doc: dict, stamp: dict[str, str]) -> dict[str, str]:
    out = {k: _num(v) for k, v in doc.items()
           if v is not None and v.__class__ is not list and v.__class__ is not dict}
    out.update(stamp)
    return out


def tls_options(cfg: Settings) -> dict[str, str]:
    """redis-py TLS arguments of cfg (used with rediss:// URLs only; config checks that)."""
    out = {}
    if cfg.redis_ssl_ca:
        out["ssl_ca_certs"] = cfg.redis_ssl_ca
    if cfg.redis_ssl_cert:
        out["ssl_certfile"] = cfg.redis_ssl_cert
    if cfg.redis_ssl_key:
        out["ssl_keyfile"] = cfg.redis_ssl_key
    return out


def connect(target: str | Settings, **kw: Any) -> aioredis.Redis:
    """A client for a URL, or for Settings (its redis_url plus the redis_ssl_* TLS options).

    `rediss://` verifies the server certificate (redis-py default `ssl_cert_reqs=required`)
    against redis_ssl_ca, else the system CAs; ACL credentials come in the URL
    (`rediss://user:password@host:port/0`).
    """
    if isinstance(target, Settings):
        url = target.redis_url
        if url.startswith("rediss://"):
            kw = {**tls_options(target), **kw}
    else:
        url = target
    return aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=3,
                             health_check_interval=10, **kw)


def _run_chunks(first: int) -> str:
    """Lua: run the commands of ARGV[first..] in order, each argument a msgpack array of
    commands (a ScriptBatch's chunks); `n` counts them."""
    return f"""
local n = 0
for a = {first}, #ARGV do
  local ops = cmsgpack.unpack(ARGV[a])
  for i = 1, #ops do
    redis.call(unpack(ops[i]))
  end
  n = n + #ops
end
"""


_APPLY = _run_chunks(1) + "return n\n"


# The checkpoint: this worker's marker must still hold its last save (else Redis lost data
# and the caller saves everything: RESET), then the ops, then the new marker, atomically.
# ARGV: check the marker ('1'/'0'), the marker expected, the new marker, its TTL, then the
# chunks of commands.
_SAVE = """
if ARGV[1] == '1' then
  local cur = redis.call('GET', KEYS[1])
  if (cur or '') ~= ARGV[2] then
    return redis.error_reply('CCPULSE_RESET marker changed')
  end
end
""" + _run_chunks(5) + """
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
return n
"""


_MSGPACK = msgspec.msgpack.Encoder()


def _text(value):
    """Redis's Lua msgpack reads str, not bin, so bytes (JSON from orjson, msgpack of the
    checkpoint) go as a msgpack str frame around the raw bytes: Lua strings are byte
    strings, so this is binary-safe (tests/test_redis_tiers.py round-trips all 256 bytes)."""
    if not isinstance(value, bytes):
        return value
    n = len(value)
    if n < 32:
        head = bytes((0xA0 | n,))
    elif n < 0x100:
        head = b"\xd9" + bytes((n,))
    elif n < 0x10000:
        head = b"\xda" + n.to_bytes(2, "big")
    else:
        head = b"\xdb" + n.to_bytes(4, "big")
    return msgspec.Raw(head + value)


class ScriptBatch:
    """Write commands collected in Python and applied by one Lua call.

    Atomic like MULTI/EXEC (a script runs alone), but redis-py packs one msgpack argument
    instead of packing and parsing every command — for a cycle of a thousand hashes that
    Python work was most of the publish cost (bench: py-spy). Same method names as the
    pipeline calls it replaces; long argument lists go in chunks (Lua's unpack limit).

    Each command is packed as it is added, so its strings die with it: holding them all
    until the end made a replay's cycle (thousands of interval hashes, agents' history
    included) peak at millions of live objects, and the worker's RSS followed the peaks.
    The packed commands go in chunks of about CHUNK_BYTES, each its own msgpack array and
    its own script argument (the scripts loop over them; still one atomic call): one buffer
    grown to a replay cycle's 25 MB was reallocated all the way up, held up to 1.5× its
    size, and each growth step copied it — the largest transient of a cycle (tracemalloc:
    +37 MB at the call, phase peaks up to +83 MB).
    """

    CHUNK = 256  # arguments per command (Lua's unpack limit)
    CHUNK_BYTES = 1 << 20

    def __init__(self) -> None:
        self._chunks: list[bytearray] = []
        self._counts: list[int] = []
        self._new_chunk()

    def _new_chunk(self) -> None:
        # a msgpack array32 header, its count filled in by `chunks`; the buffers are the
        # script's arguments themselves, never copied
        self._chunks.append(bytearray(b"\xdd\0\0\0\0"))
        self._counts.append(0)

    @property
    def count(self) -> int:
        return sum(self._counts)

    def _add(self, op: list) -> None:
        if len(self._chunks[-1]) >= self.CHUNK_BYTES:
            self._new_chunk()
        _MSGPACK.encode_into(op, self._chunks[-1], -1)
        self._counts[-1] += 1

    def _chunked(self, head: list, items: list) -> None:
        for i in range(0, len(items), self.CHUNK):
            self._add([*head, *items[i:i + self.CHUNK]])

    def delete(self, *keys: str) -> None:
        self._chunked(["DEL"], list(keys))

    def hset(self, key: str, mapping: dict) -> None:
        pairs = list(mapping.items())
        for i in range(0, len(pairs), self.CHUNK):
            flat = ["HSET", key]
            for field, value in pairs[i:i + self.CHUNK]:
                # str (KPI fields) as they are; bytes framed by _text
                flat += (field if field.__class__ is str else _text(field),
                         value if value.__class__ is str else _text(value))
            self._add(flat)

    def hdel(self, key: str, *fields: str) -> None:
        self._chunked(["HDEL", key], list(fields))

    def expire(self, key: str, seconds: int) -> None:
        self._add(["EXPIRE", key, str(int(seconds))])

    def zadd(self, key: str, mapping: dict) -> None:
        flat: list = []
        for member, score in mapping.items():
            flat += (repr(float(score)), member)
        self._chunked(["ZADD", key], flat)

    def sadd(self, key: str, *members: str) -> None:
        self._chunked(["SADD", key], list(members))

    def set(self, key: str, value) -> None:
        self._add(["SET", key, _text(value)])

    def publish(self, channel: str, message) -> None:
        self._add(["PUBLISH", channel, _text(message)])

    def chunks(self) -> list[bytearray]:
        """The commands as msgpack arrays, in order (array32 headers whatever the count:
        msgpack readers, Redis's cmsgpack included, take a longer header than needed)."""
        for chunk, n in zip(self._chunks, self._counts):
            chunk[1:5] = n.to_bytes(4, "big")
        return [c for c, n in zip(self._chunks, self._counts) if n]

    async def execute(self, script) -> None:
        chunks = self.chunks()
        if chunks:
            await script(keys=[], args=chunks)


@dataclass
class AgentParts:
    """One cycle's agent-side partials, to be saved per shard: the refreshed slices, each
    slice's changed interval starts, and per shard and slice the window and interval sums."""

    slices: list[int]
    starts: dict[int, set[int]]
    rotated: int | None = None  # the first this many slices were due in turn (None: all)
    offsets: dict[str, int] = field(default_factory=dict)  # "topic:partition" -> next, applied
    windows: dict[str, dict[int, Partial]] = field(default_factory=dict)
    intervals: dict[str, dict[int, Partial]] = field(default_factory=dict)


@dataclass
class AgentView:
    """The merged agent scopes of the refreshed slices, to be written with the view."""

    slices: list[int]
    slice_count: int
    docs: dict[str, dict[str, dict]]  # agent:<id> -> window -> KPI fields
    intervals: Partial  # (agent:<id>, start) -> sums
    # "topic:partition" -> offset below which every slice's scopes and history are written
    through: dict[str, int] = field(default_factory=dict)


@dataclass
class StagedSave:
    """A checkpoint encoded by `RedisSink.stage_save`, not sent yet."""

    ops: list  # the script's commands: msgpack arrays (ScriptBatch.chunks)
    full: bool  # a whole-state save after Redis lost data: no marker check
    tokens: list  # (shard, token) to put the dirty markers back if it is not applied

    def undo(self) -> None:
        """Mark what this save held dirty again (it failed or was never sent)."""
        for shard, token in self.tokens:
            ck.unstage(shard, token)
        self.tokens = []


class RedisReset(RuntimeError):
    """Redis no longer holds this worker's saves (restarted empty or flushed)."""




class RedisSink:
    def __init__(self, cfg: Settings, client: aioredis.Redis | None = None) -> None:
        self.cfg = cfg
        self.prefix = cfg.redis_prefix
        self.redis = client or connect(cfg)
        self.worker_id = uuid.uuid4().hex
        self._saves = 0
        self._saved_mark: bytes | None = None  # marker value written by the last save
        self.seq = 0
        self.interval_cache: dict[tuple[str, int], dict] = {}
        self.index_scopes: set[str] = set()  # scopes whose interval index this worker wrote
        # what this worker last wrote to each KPI/load hash (timestamps aside) and the key
        # index: a hash whose numbers did not change only gets its timestamps rewritten.
        # Per hash its fields packed (msgpack) and their names: compact, since it holds
        # every agent's windows (a dict of ~80 str fields was about 6× the size, and a
        # replay's cycle held the old and the new side by side)
        self._view_cache: dict[str, tuple[bytes, frozenset]] = {}
        self._field_sets: dict[frozenset, frozenset] = {}  # one copy of each set of names
        self._index: set[str] | None = None
        self._agent_index: dict[int, set[str]] = {}  # slice -> agent hash keys written
        self._wrote_last: bytes | None = None  # this worker's `view:writer` token, if it wrote
        self._through_cleared = False
        self._release = self.redis.register_script(_RELEASE)
        self._apply = self.redis.register_script(_APPLY)
        self._save_script = self.redis.register_script(_SAVE)

    def k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # -- checkpoint -----------------------------------------------------------------

    @property
    def marker(self) -> str:
        """This worker's key; its value is the number of this worker's last save."""
        return self.k("worker", self.worker_id)

    async def needs_full_save(self) -> bool:
        """True when Redis does not hold exactly this worker's last save: a memory-only
        Redis restarted empty, was flushed, or came back from an older snapshot (the marker
        is missing or older), or this worker has not saved yet. Then dirty keys alone would
        leave an incomplete checkpoint and history: the next save must be full."""
        return self._saved_mark is None or await self.redis.get(self.marker) != self._saved_mark

    async def save_shards(self, shards: dict[str, Any], offsets: dict[str, dict[str, int]],
                          partials: dict[str, tuple[Partial, LiveMerged]],
                          ivpartials: dict[str, Partial], as_of: float,
                          full: bool = False, agents: "AgentParts | None" = None,
                          state: set[str] | None = None) -> None:
        """Save state + offsets + partials of every owned shard in one transaction
        (`stage_save`, then `send_save`)."""
        await self.send_save(self.stage_save(shards, offsets, partials, ivpartials, as_of, full,
                                             agents, state))

    def stage_save(self, shards: dict[str, Any], offsets: dict[str, dict[str, int]],
                   partials: dict[str, tuple[Partial, LiveMerged]],
                   ivpartials: dict[str, Partial], as_of: float,
                   full: bool = False, agents: "AgentParts | None" = None,
                   state: set[str] | None = None) -> StagedSave:
        """Encode a checkpoint now, to send later: the shards may change meanwhile.

        `full` rewrites each shard's whole state (after `needs_full_save`). `agents` adds the
        agent-scope partials of the slices this cycle refreshes. `state` names the shards
        whose state and offsets are checkpointed (None: all); the others only publish their
        partials, which may run ahead of their checkpoint — a restart re-derives them from
        the saved offsets, so they come back the same. Staging clears the shards' dirty
        markers; a save that is not sent must be `undo`ne.
        """
        pipe = ScriptBatch()
        tokens: list = []
        try:
            if full:  # Redis lost data: the view is written whole again too
                self._view_cache.clear()
                self._index = None
            for name, shard in shards.items():
                keys = ck.ShardKeys(self.prefix, name)
                if full:
                    ck.mark_all_dirty(shard)
                    pipe.delete(*keys.all())
                if full or state is None or name in state:
                    tokens.append((shard, ck.stage_shard(pipe, keys, shard,
                                                         offsets.get(name, {}))))
                windows, live = partials[name]
                mapping = {f"{s}|{w}": ck.encode(b.pack(acc)) for (s, w), acc in windows.items()}
                mapping["__live"] = ck.encode(live.to_wire())
                mapping["__as_of"] = repr(as_of)
                pipe.delete(keys.partial)
                pipe.hset(keys.partial, mapping=mapping)
                by_start: dict[int, dict] = {}
                for (scope, start), acc in ivpartials.get(name, {}).items():
                    by_start.setdefault(start, {})[scope] = ck.encode(b.pack(acc))
                for start, fields in by_start.items():
                    # one hash per (shard, interval): the merge reads exactly what changed
                    key = self.k("ivpart", name, str(start))
                    pipe.hset(key, mapping=fields)
                    pipe.expire(key, INTERVAL_TTL_S + 86400)
                if agents is not None:
                    self._stage_agent_parts(pipe, keys, agents, as_of, shard.complete_from())
            return StagedSave(pipe.chunks(), full, tokens)
        except BaseException:
            StagedSave([], full, tokens).undo()
            raise

    async def send_save(self, staged: StagedSave) -> None:
        """Apply a staged checkpoint with one Lua call (atomic like MULTI/EXEC: redis-py's
        packing of every command and parsing of every reply was a quarter of a replay's
        cycle). The script checks this worker's marker first, so a Redis that lost its data
        since the last save refuses the whole save (`RedisReset`) instead of holding a
        partial checkpoint. On any failure the shards are marked dirty again."""
        mark = str(self._saves + 1).encode()
        try:
            await self._save_script(keys=[self.marker], args=[
                "0" if staged.full else "1", self._saved_mark or b"", mark, str(MARKER_TTL_S),
                *staged.ops])
        except BaseException as exc:
            staged.undo()
            if isinstance(exc, redis.exceptions.ResponseError) and "CCPULSE_RESET" in str(exc):
                raise RedisReset("Redis lost this worker's checkpoints: full save next "
                                 "cycle") from exc
            raise
        staged.tokens = []  # applied: nothing to put back any more
        self._saves += 1
        self._saved_mark = mark

    def _stage_agent_parts(self, pipe, keys: ck.ShardKeys, agents: "AgentParts",
                           as_of: float, complete_from: float) -> None:
        """Replace the shard's partials of each refreshed slice: windows, then intervals;
        not the intervals it may have pruned (before `complete_from`): it cannot have changed
        them since, and its earlier part in Redis still counts."""
        windows = agents.windows.get(keys.shard, {})
        intervals = agents.intervals.get(keys.shard, {})
        for s in agents.slices:
            key = keys.agent_partial(s)
            mapping = {f"{scope}|{w}": ck.encode(b.pack(acc))
                       for (scope, w), acc in windows.get(s, {}).items()}
            mapping["__as_of"] = repr(as_of)
            pipe.delete(key)
            pipe.hset(key, mapping=mapping)
            by_start: dict[int, dict] = {start: {} for start in agents.starts[s]
                                         if start >= complete_from}
            for (scope, start), acc in intervals.get(s, {}).items():
                by_start.setdefault(start, {})[scope] = ck.encode(b.pack(acc))
            for start, fields in by_start.items():
                ikey = self.k("ivapart", keys.shard, str(s), str(start))
                pipe.delete(ikey)
                if fields:
                    pipe.hset(ikey, mapping=fields)
                    pipe.expire(ikey, INTERVAL_TTL_S + 86400)

    async def restore_shard(self, name: str, shard: Any) -> dict[str, int]:
        return await ck.restore(self.redis, ck.ShardKeys(self.prefix, name), shard)

    # -- the combined picture -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(self, wait_s: float = 2.0):
        """A short lock so that concurrent workers publish whole cycles one at a time."""
        import asyncio

        key = self.k("lock", "publish")
        token = self.worker_id + ":" + str(self.seq)
        deadline = asyncio.get_running_loop().time() + wait_s
        while not await self.redis.set(key, token, nx=True, px=LOCK_TTL_MS):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("publish lock busy")
            await asyncio.sleep(0.02)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await self._release(keys=[key], args=[token])

    async def foreign_partials(self, names: Iterable[str], slices: Iterable[int] | None = None
                               ) -> tuple[list[Partial], list[LiveMerged], float | None]:
        """Other shards' window partials: the queue side, or with `slices` those agent slices."""
        names = list(names)
        if not names:
            return [], [], None
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            keys = ck.ShardKeys(self.prefix, name)
            if slices is None:
                pipe.hgetall(keys.partial)
            else:
                for s in slices:
                    pipe.hgetall(keys.agent_partial(s))
        partials, lives, oldest = [], [], None
        for raw in await pipe.execute():
            if not raw:
                continue
            part: Partial = {}
            for field, value in raw.items():
                f = field.decode()
                if f == "__live":
                    lives.append(LiveMerged.from_wire(ck.decode(value)))
                elif f == "__as_of":
                    t = float(value)
                    oldest = t if oldest is None else min(oldest, t)
                else:
                    scope, window = f.rsplit("|", 1)
                    part[(scope, window)] = b.unpack(ck.decode(value))
            partials.append(part)
        return partials, lives, oldest

    async def read_intervals(self, pairs: Iterable[tuple[str, int]], slice_: int | None = None,
                             into: Partial | None = None) -> Partial:
        """Add the saved interval partials of the given (shard, interval start) pairs into
        `into` (a new Partial by default): the queue side, or with `slice_` that slice of
        agents."""
        out: Partial = {} if into is None else into
        pairs = sorted(set(pairs))
        if not pairs:
            return out
        pipe = self.redis.pipeline(transaction=False)
        for name, start in pairs:
            if slice_ is None:
                pipe.hgetall(self.k("ivpart", name, str(start)))
            else:
                pipe.hgetall(self.k("ivapart", name, str(slice_), str(start)))
        for (_, start), raw in zip(pairs, await pipe.execute()):
            for field, value in raw.items():
                acc = b.unpack(ck.decode(value))
                cur = out.get((field.decode(), start))
                if cur is None:
                    out[(field.decode(), start)] = acc
                else:
                    b.add_into(cur, acc)
        return out

    async def write_view(self, view: View, intervals: Partial, snapshot_scopes: Iterable[str],
                         sole_writer: bool = False, agents: "AgentView | None" = None) -> None:
        """Write KPI, load, interval history, snapshot and the updates message atomically.

        `view.kpi`'s center, queue and channel scopes are written every cycle; agent scopes
        only for the slices in `agents` (each slice has its own key index, so the hashes of
        the other slices stay as they were). A `sole_writer` (a worker that owns every
        partition) remembers what it wrote: a hash whose numbers are unchanged gets only its
        timestamps, as long as `view:writer` still holds the token of its own last write.
        With several writers every hash is rewritten whole, because another worker may have
        written it in between.
        """
        cfg, tz = self.cfg, self.cfg.tz
        stamp = {"updated_at": _iso(view.updated_at), "as_of": _iso(view.as_of)}
        load_stamp = {"updated_at": stamp["updated_at"]}
        writer_key = self.k("view", "writer")
        if (not sole_writer or self.seq % 60 == 0  # and a whole rewrite once a minute anyway
                or (self._view_cache
                    and await self.redis.get(writer_key) != self._wrote_last)):
            # another worker wrote the view since this one did (under the same publish lock:
            # one joining the group before its first assignment, or one that has just lost
            # its partitions), from partials that may be a cycle older: its numbers must not
            # stay up under this worker's fresh timestamps
            self._view_cache.clear()
            self._index = None
            self._agent_index.clear()
        slices = agents.slices if agents is not None else []
        groups = {self.k("index"): self._index,
                  **{self.k("index", "agents", str(s)): self._agent_index.get(s) for s in slices}}
        unknown = [key for key, members in groups.items() if members is None]
        if unknown:
            pipe = self.redis.pipeline(transaction=False)
            for key in unknown:
                pipe.smembers(key)
            for key, members in zip(unknown, await pipe.execute()):
                groups[key] = {m.decode() for m in members}
        pipe = ScriptBatch()
        written: dict[str, set[str]] = {key: set() for key in groups}
        # updated in place and taken out until the write succeeds: if anything fails before
        # (here or in Redis), no entry may claim numbers Redis does not hold
        cache, self._view_cache = self._view_cache, {}
        field_sets = self._field_sets

        def put(group: set[str], key: str, doc: dict, key_stamp: dict[str, str]) -> None:
            fields = hash_fields(doc, {})
            group.add(key)
            packed = _MSGPACK.encode(fields)
            before = cache.get(key)
            if before is not None and before[0] == packed:
                pipe.hset(key, mapping=key_stamp)
                return
            names = frozenset(fields)
            names = field_sets.setdefault(names, names)
            if before is None or not before[1] <= names:
                pipe.delete(key)  # a field may have gone (a ratio without denominator)
            pipe.hset(key, mapping={**fields, **key_stamp})
            cache[key] = (packed, names)

        queue_side = written[self.k("index")]
        for scope, per in view.kpi.items():
            if not scope.startswith("agent:"):
                for window, doc in per.items():
                    put(queue_side, self.k("kpi", scope, window), doc, stamp)
        for scope, doc in view.load.items():
            put(queue_side, self.k("load", scope), doc, load_stamp)
        for scope, rows in view.at_risk.items():
            key = self.k("atrisk", scope)
            queue_side.add(key)
            pipe.delete(key)
            if rows:
                pipe.hset(key, mapping={r["interaction_id"]: orjson.dumps(r) for r in rows})
        history = dict(intervals)
        if agents is not None:
            for scope, per in agents.docs.items():
                group = written[self.k("index", "agents",
                                       str(agent_slice(scope[6:], agents.slice_count)))]
                for window, doc in per.items():
                    put(group, self.k("kpi", scope, window), doc, stamp)
            history.update(agents.intervals)
            if agents.through:
                pipe.hset(self.k("agents", "through"), mapping={
                    key: str(offset) for key, offset in agents.through.items()})
        elif not cfg.per_agent_kpis and not self._through_cleared:
            # no agent scopes here: a marker left by an earlier run must not hold a replay
            pipe.delete(self.k("agents", "through"))
            self._through_cleared = True
        # the snapshot's today needs today's and yesterday's docs (`today_intervals` keeps
        # no more): a replay's cycle writes days of history, and caching all of it first
        # held thousands of documents until then
        cache_from = _cache_from(view.as_of, tz)
        for (scope, start), acc in sorted(history.items(), key=lambda kv: kv[0][1]):
            start_iso = iso_local(start, tz)
            doc = interval_doc(scope, start_iso, acc)
            if start >= cache_from and not scope.startswith("agent:"):
                self.interval_cache[(scope, start)] = doc
            key = self.k("interval", scope, start_iso)
            pipe.delete(key)
            pipe.hset(key, mapping=hash_fields(doc, {"updated_at": stamp["updated_at"]}))
            pipe.expire(key, INTERVAL_TTL_S)
            pipe.zadd(self.k("intervals", scope), {start_iso: start})
            self.index_scopes.add(scope)
        stale_all: set[str] = set()
        every = set().union(*written.values())  # a key may move between indexes (upgrade)
        for index_key, previous in groups.items():
            now_written = written[index_key]
            stale = previous - every
            if stale:
                pipe.delete(*stale)
                stale_all |= stale
            if now_written != previous:
                pipe.delete(index_key)
                if now_written:
                    pipe.sadd(index_key, *now_written)
        snapshot = view.snapshot(cfg, self.today_intervals(view.as_of, snapshot_scopes))
        pipe.set(self.k("snapshot"), orjson.dumps(snapshot))
        self.seq += 1
        token = f"{self.worker_id}:{self.seq}".encode()
        pipe.set(writer_key, token)
        pipe.publish(self.k("updates"), orjson.dumps(
            {"as_of": stamp["as_of"], "updated_at": stamp["updated_at"], "seq": self.seq}))
        kept, self._view_cache, self._index = cache, {}, None  # unknown until this succeeds
        agent_index, self._agent_index = self._agent_index, {}
        self._wrote_last = None
        await pipe.execute(self._apply)
        self._wrote_last = token
        if sole_writer:
            for key in stale_all:
                kept.pop(key, None)
            self._view_cache, self._index = kept, written[self.k("index")]
            agent_index.update({s: written[self.k("index", "agents", str(s))] for s in slices})
            self._agent_index = agent_index

    async def prune_interval_index(self) -> int:
        """Drop index members whose interval hash has expired (TTL counts from the write, so
        a replayed month stays listed as long as its hashes live; trimming by event time
        would hide it). Run now and then, not every cycle; returns how many were dropped."""
        dropped = 0
        for scope in list(self.index_scopes):
            zkey = self.k("intervals", scope)
            members = [m.decode() for m in await self.redis.zrange(zkey, 0, -1)]
            if not members:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for m in members:
                pipe.exists(self.k("interval", scope, m))
            gone = [m for m, alive in zip(members, await pipe.execute()) if not alive]
            if gone:
                dropped += await self.redis.zrem(zkey, *gone)
        return dropped

    def today_intervals(self, as_of: float, scopes: Iterable[str]) -> dict[str, list[dict]]:
        from ..kpi.windows import local_midnight

        midnight = local_midnight(as_of, self.cfg.tz)
        cache_from = _cache_from(as_of, self.cfg.tz)
        wanted = set(scopes)
        out: dict[str, list[dict]] = {s: [] for s in wanted}
        for (scope, start), doc in sorted(self.interval_cache.items(), key=lambda kv: kv[0][1]):
            if scope in wanted and start >= midnight:
                out[scope].append({k: v for k, v in doc.items() if not k.startswith("sum_")})
        # keep the cache to today and yesterday
        for key in [k for k in self.interval_cache if k[1] < cache_from]:
            del self.interval_cache[key]
        return out

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()


def _cache_from(as_of: float, tz) -> float:
    """Start of yesterday (local): the interval documents the snapshot's today can need."""
    from ..kpi.windows import local_midnight

    return local_midnight(as_of, tz) - 86400


def _iso(epoch: float) -> str:
    from ..kpi.windows import iso_utc

    return iso_utc(epoch)
