"""How the worker paces its publish cycles and checkpoints when cycles are slow.

A replay (or a backlog after an outage) makes cycles cost seconds. These tests pin the three
rules that keep a slow cycle from feeding on itself (stream/pipeline.py): consuming between
two cycles is capped, a shard never goes much longer than its interval without a checkpoint,
and an owned shard's interval parts come from memory instead of being read back from Redis
where that is exact. No broker or Redis: the pipeline's collaborators are stubbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import msgspec
import pytest

from stream import config, memory
from stream.kpi import buckets as b
from stream.kpi.windows import INTERVAL
from stream.pipeline import BACKLOG_GAP_MAX_S, OVERDUE_INTERVALS, Pipeline


def _pipeline(**env) -> Pipeline:
    return Pipeline(config.load(environ=env, timezone="Europe/Berlin"))


def _own_shards(p: Pipeline, n: int = 4) -> list[str]:
    for i in range(n):
        p.owned[f"i{i}"] = p.engine.shard(i)
        p.owned[f"a{i}"] = p.engine.agent_shard(i)
        p.owned[f"c{i}"] = p.engine.customer_shard(i)
    return sorted(p.owned)


def test_checkpoint_rotation_saves_each_shard_once_per_interval():
    for publish, n in ((0.5, 10), (0.25, 20)):  # checkpoint 5 s: ten turns, twenty turns
        p = _pipeline(CCPULSE_PUBLISH_INTERVAL_S=str(publish))
        names = _own_shards(p)
        now = time.monotonic()
        p._saved_at = dict.fromkeys(names, now)
        turns = [p._checkpoint_turn() for _ in range(n)]
        seen = [name for turn in turns for name in turn]
        assert sorted(seen) == names  # every shard exactly once in n cycles
        assert max(len(t) for t in turns) <= max(1, round(len(names) / n) + 1)  # spread


def test_an_overdue_shard_is_saved_whatever_the_rotation_says():
    """Slow cycles: ten turns may take a minute; a shard whose checkpoint is 3 intervals
    old is saved in the next cycle."""
    p = _pipeline()
    names = _own_shards(p)
    now = time.monotonic()
    p._saved_at = dict.fromkeys(names, now)
    first = p._checkpoint_turn()
    late = next(n for n in names if n not in first and n not in p._checkpoint_turn())
    p._saved_at[late] = now - OVERDUE_INTERVALS * p.cfg.checkpoint_interval_s - 0.1
    assert late in p._checkpoint_turn()
    # a shard never saved (just assigned) is due at once
    del p._saved_at[names[0]]
    assert names[0] in p._checkpoint_turn()


def test_consuming_between_cycles_is_capped_under_a_backlog():
    p = _pipeline()
    ran: list[float] = []

    async def cycle_locked() -> bool:
        ran.append(time.monotonic())
        return True

    p._run_cycle = cycle_locked
    p.backlog = lambda: 10**6

    def publishes(cost: float, ended_ago: float) -> bool:
        """Whether a tick runs a cycle when the last one cost `cost` and ended that long ago."""
        before = len(ran)
        p._cycle_cost, p._cycle_end = cost, time.monotonic() - ended_ago
        asyncio.run(p.cycle())
        return len(ran) > before

    assert not publishes(20.0, 0.1)  # the last cycle was very slow: consuming goes first
    assert publishes(20.0, BACKLOG_GAP_MAX_S + 0.05)  # not 20 s of consuming: the cap
    # a cycle of 0.2 s: three times that of consuming first, so cycles take at most a
    # quarter of a worker that is behind
    assert not publishes(0.2, 0.55) and publishes(0.2, 0.65)
    # a cheap cycle: still two publish intervals of consuming first (0.25 s each)
    assert not publishes(0.01, 0.45) and publishes(0.01, 0.55)
    p.backlog = lambda: 0
    assert publishes(20.0, 0.0)  # no backlog: every tick publishes


def test_interval_sums_read_redis_only_where_memory_may_be_incomplete():
    p = _pipeline()
    shard = p.engine.shard(0)
    p.owned["i0"] = shard
    shard.clock = 1_790_000_100.0
    shard.rebuild_index()  # as after a restore: what it pruned before is not known
    complete = shard.complete_from()
    new = (int(complete) // INTERVAL + 2) * INTERVAL  # held whole in memory
    old = (int(complete) // INTERVAL - 1) * INTERVAL  # may have been pruned: Redis
    p.all_shard_names = lambda: ["i0", "i1"]  # i1 belongs to another worker
    asked: list = []

    async def read_intervals(pairs, slice_=None, into=None):
        asked.append((sorted(pairs), slice_))
        acc = b.new()
        acc[b.OFFERED] = 100.0  # what Redis holds for each part read
        for name, start in pairs:
            cur = into.setdefault(("center", start), b.new())
            b.add_into(cur, acc)
        return into

    p.sink.read_intervals = read_intervals
    mine = b.new()
    mine[b.OFFERED] = 7.0
    own = {"i0": {("center", new): mine, ("center", old): list(mine)}}
    out = asyncio.run(p._interval_sums(own, {new, old}))
    assert asked == [(sorted([("i0", old), ("i1", old), ("i1", new)]), None)]
    assert out[("center", new)][b.OFFERED] == 107.0  # own from memory + i1 from Redis
    assert out[("center", old)][b.OFFERED] == 200.0  # both from Redis, memory not used
    assert mine[b.OFFERED] == 7.0  # the shard's own partial is not modified


def test_heap_trim_runs_here():
    assert memory.can_trim()  # glibc (Debian, the production image)
    assert memory.trim_heap() >= 0.0


def test_heap_usage_follows_live_allocations_and_is_exported():
    """cc_worker_heap_bytes: `in_use` rises by what is allocated and falls when it is freed
    (what tells a leak from memory the allocator keeps); the collector renders both states."""
    from stream.sinks.prometheus_sink import HeapCollector

    before = memory.heap_usage()
    assert before is not None and before["in_use"] > 0  # glibc 2.33+ here and in the image
    block = bytearray(64 << 20)
    during = memory.heap_usage()
    assert during["in_use"] - before["in_use"] >= 64 << 20
    del block
    after = memory.heap_usage()
    assert after["in_use"] < during["in_use"] - (60 << 20)
    family = next(iter(HeapCollector(lambda: {"in_use": 5, "free": 7}).collect()))
    assert family.name == "cc_worker_heap_bytes"
    assert {s.labels["state"]: s.value for s in family.samples} == {"in_use": 5, "free": 7}
    assert list(HeapCollector(lambda: None).collect()) == []  # no glibc: no series


def test_pymalloc_usage_follows_small_objects_and_is_exported():
    """cc_worker_pymalloc_bytes: Python's small-object arenas, which the C heap's figures do
    not count. Small objects raise `in_use` by their size; freed, their blocks leave
    `in_use`, and arenas still holding any live block are counted `free`."""
    from stream.sinks.prometheus_sink import HeapCollector, Metrics

    import gc

    gc.collect()  # earlier tests' garbage, freed now rather than while this one measures
    collecting = gc.isenabled()
    gc.disable()
    try:
        before = memory.pymalloc_usage()
        assert before is not None and before["in_use"] > 0 and before["free"] >= 0
        small = [(i, i + 1) for i in range(200_000)]  # tuples of two ints: 56 + 2 x 32 bytes
        during = memory.pymalloc_usage()
        assert during["in_use"] - before["in_use"] >= 200_000 * 80  # of 120: other threads free too
        keep = small[::64]  # one object in 64 stays: its arenas cannot go back to the OS
        del small
        after = memory.pymalloc_usage()
    finally:
        if collecting:
            gc.enable()
    assert after["in_use"] < during["in_use"] - 200_000 * 70
    # what was freed stays in the arenas `keep` pins (new tuples may have filled free blocks
    # of earlier tests' arenas, so this is measured from `during`, not from `before`)
    assert after["free"] > during["free"] + 200_000 * 60
    assert after["in_use"] + after["free"] > during["in_use"] + during["free"] - (4 << 20)
    assert len(keep) == 3125
    family = next(iter(HeapCollector(lambda: {"in_use": 5, "free": 7}, "cc_worker_pymalloc_bytes",
                                     "pymalloc").collect()))
    assert family.name == "cc_worker_pymalloc_bytes"
    assert {s.labels["state"]: s.value for s in family.samples} == {"in_use": 5, "free": 7}
    text = Metrics(lambda: None, dict).render().decode()
    assert 'cc_worker_pymalloc_bytes{state="in_use"}' in text
    assert 'cc_worker_heap_bytes{state="in_use"}' in text
    rss = float(next(line for line in text.splitlines()
                     if line.startswith("cc_worker_resident_bytes ")).split()[1])
    assert rss == pytest.approx(memory.resident_bytes(), rel=0.2)
    assert rss > after["in_use"]  # the RSS holds the live small objects, at least


def test_a_batch_grows_the_state_with_the_collector_off_and_leaves_it_frozen():
    """`memory.growing_state`, around every fetched batch the worker applies: young garbage
    from before is collected (not frozen), no collection runs inside, what the batch made is
    frozen after it, and a collector that was off stays off."""
    import gc
    import weakref

    class Node:
        pass

    frozen = gc.get_freeze_count()
    try:
        loop = Node()
        loop.me = loop  # a reference cycle: only the collector frees it
        dead = weakref.ref(loop)
        del loop
        with memory.growing_state():
            assert dead() is None and not gc.isenabled()
            kept = [[0.0] * 41 for _ in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
        gc.disable()
        with memory.growing_state():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_a_full_collection_comes_early_when_the_heap_grows(monkeypatch):
    """The heap is frozen after every cycle; garbage cycles frozen while alive wait for the
    full collection. It runs every GC_FULL_EVERY_S, or once the C heap in use (read every
    TRIM_EVERY_S, not per cycle) has grown by GC_HEAP_GROWTH, never twice within
    GC_HEAP_MIN_GAP_S."""
    import gc

    import stream.pipeline as pl

    clock, heap, collected, reads = [1000.0], [100 * 2**20], [], []

    def usage():
        reads.append(clock[0])
        return {"in_use": heap[0], "free": 0}

    monkeypatch.setattr(pl.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pl, "heap_usage", usage)
    monkeypatch.setattr(pl.gc, "collect", lambda *a: collected.append(clock[0]) or 0)
    monkeypatch.setattr(pl, "trim_heap", lambda: 0.0)
    p = _pipeline()
    try:
        heap[0] += pl.GC_HEAP_GROWTH - 1  # not grown enough
        clock[0] += pl.GC_HEAP_MIN_GAP_S + 1
        p._collect_garbage()
        assert collected == [] and p.heap["in_use"] == heap[0]
        heap[0] += 1  # grown by GC_HEAP_GROWTH, but the reading is the last one
        clock[0] += 1
        n = len(reads)
        p._collect_garbage()
        assert collected == [] and len(reads) == n  # no mallinfo2 per cycle
        clock[0] += pl.TRIM_EVERY_S  # read again: collect now
        p._collect_garbage()
        assert collected == [clock[0]] and p.full_collections == 1
        heap[0] += 2 * pl.GC_HEAP_GROWTH  # grown again, but too soon after the last one
        clock[0] += pl.GC_HEAP_MIN_GAP_S - 1
        p._collect_garbage()
        assert len(collected) == 1
        clock[0] += 2
        p._collect_garbage()
        assert len(collected) == 2
        clock[0] += pl.GC_FULL_EVERY_S  # the heap level: collected on time anyway
        p._collect_garbage()
        assert len(collected) == 3 and p.full_collections == 3
    finally:
        gc.unfreeze()


def _order_of_a_cycle(p: Pipeline, others: list[str], full: bool = False,
                      taken: dict[str, set] | None = None) -> list[str]:
    """The sink calls of one `_publish`, in order (Redis stubbed)."""
    order: list[str] = []

    async def needs_full_save():
        return full

    async def send_save(staged):
        order.append("checkpoint")

    async def foreign_partials(names, slices=None):
        return [], [], {}

    async def read_intervals(pairs, slice_=None, into=None):
        return into

    async def write_view(*args, **kw):
        order.append("view")

    @contextlib.asynccontextmanager
    async def lock():
        yield

    sink = p.sink
    sink.needs_full_save, sink.send_save = needs_full_save, send_save
    sink.foreign_partials, sink.read_intervals = foreign_partials, read_intervals
    sink.write_view, sink.lock = write_view, lock
    p.all_shard_names = lambda: [*sorted(p.owned), *others]
    async def start_sending():
        async def acked():
            order.append("acked")
        return acked

    p._start_sending = start_sending
    p._advance_clocks = p.now
    for name, starts in (taken or {}).items():
        p.owned[name].changed_intervals = set(starts)
    assert asyncio.run(p._run_cycle())
    return order


def test_a_sole_writer_writes_the_view_before_its_checkpoint():
    """The checkpoint was a third of a live cycle (bench phases): the sole writer takes it
    off the path to the wallboard. With another worker, that worker merges this one's
    partials, so they are saved first; after Redis lost data, too."""
    p = _pipeline()
    _own_shards(p, 1)
    assert _order_of_a_cycle(p, []) == ["view", "acked", "checkpoint"]
    assert _order_of_a_cycle(p, ["i1"]) == ["acked", "checkpoint", "view"]
    assert _order_of_a_cycle(p, [], full=True) == ["acked", "checkpoint", "view"]


def test_a_changed_interval_the_shard_may_have_pruned_is_saved_before_the_view():
    """Such an interval's sum reads the shard's own part back from Redis: this cycle's."""
    p = _pipeline()
    shard = p.engine.shard(0)
    p.owned["i0"] = shard
    p.offsets["i0"] = {}
    shard.clock = 1_790_000_100.0
    shard.rebuild_index()  # as after a restore: what it pruned before is not known
    old = (int(shard.complete_from()) // INTERVAL - 1) * INTERVAL
    acc = b.new()
    acc[b.OFFERED] = 1.0
    shard.qintervals[("q", "voice", old)] = acc
    assert _order_of_a_cycle(p, [], taken={"i0": {old}}) == ["acked", "checkpoint", "view"]
    new = (int(shard.complete_from()) // INTERVAL + 2) * INTERVAL
    shard.qintervals[("q", "voice", new)] = list(acc)
    assert _order_of_a_cycle(p, [], taken={"i0": {new}}) == ["view", "acked", "checkpoint"]


def test_records_applied_while_the_checkpoint_travels_are_the_next_cycles():
    """After the view, the checkpoint's round trip no longer holds consuming: what is
    applied meanwhile stays dirty (next checkpoint) and its interval changed (next view);
    the checkpoint in flight holds the state and offsets taken together before it."""
    import orjson

    from stream.kpi.windows import iso_utc

    p = _pipeline()
    shard = p.owned["i0"] = p.engine.shard(0)
    topic = p.cfg.topic_interactions
    p.offsets["i0"] = {}

    def apply(n: int) -> None:
        ev = {"event_id": f"e{n}", "type": "interaction.offered", "ts": iso_utc(time.time()),
              "schema_version": 1, "interaction_id": f"i{n}", "channel": "voice", "queue": "q"}
        p.engine.ingest("interactions", orjson.dumps(ev), 0, n, topic)
        p.offsets["i0"][f"{topic}:0"] = n + 1

    sent: list = []

    async def needs_full_save():
        return False

    async def send_save(staged):
        applied = asyncio.get_running_loop().create_task(apply_meanwhile())
        await asyncio.sleep(0.05)
        assert applied.done()  # the lock was free while the checkpoint travelled
        sent.append(staged.ops)

    async def apply_meanwhile():
        async with p.lock:
            apply(1)

    async def nothing(*args, **kw):
        return ([], [], {}) if args and isinstance(args[0], list) else kw.get("into", {})

    async def start_sending():
        async def acked():
            pass
        return acked

    @contextlib.asynccontextmanager
    async def lock():
        yield

    p.sink.needs_full_save, p.sink.send_save = needs_full_save, send_save
    p.sink.foreign_partials, p.sink.write_view, p.sink.lock = nothing, nothing, lock

    async def read_intervals(pairs, slice_=None, into=None):
        return into

    p.sink.read_intervals = read_intervals
    p._start_sending, p._advance_clocks = start_sending, p.now
    p.all_shard_names = lambda: ["i0"]
    apply(0)
    p._saved_at["i0"] = 0.0  # overdue: this cycle checkpoints it
    assert asyncio.run(p._run_cycle())
    # the meta hash's offset field, then its value "1" (a msgpack str of one byte): record
    # 0 only, staged before record 1 was applied
    field = msgspec.msgpack.encode(f"offset:{topic}:0")
    assert field + b"\xa11" in b"".join(sent[0])
    assert "i1" in shard.dirty_ix and "i0" not in shard.dirty_ix
    assert shard.changed_intervals  # the record applied meanwhile: the next view's


class _Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _rotate(p: Pipeline, clock: _Clock, cycle_s: float, cycles: int) -> dict[int, list[float]]:
    """Run `cycles` agent turns `cycle_s` apart; returns each slice's refresh times."""
    from stream.sinks.redis_sink import AgentParts

    refreshed: dict[int, list[float]] = {s: [] for s in range(p.agent_slices)}
    for _ in range(cycles):
        clock.t += cycle_s
        slices = p._agent_turns()
        assert len(set(slices)) == len(slices)
        for s in slices:
            refreshed[s].append(clock.t)
        p._agent_turn_done(AgentParts(slices, {s: set() for s in slices}))
    return refreshed


def test_agent_slices_rotate_on_time_whatever_the_cycles_take(monkeypatch):
    """Every slice of agents is refreshed within `agent_publish_interval_s` (plus the cycle
    that finds it due), whether cycles come on time (one slice each), are slow as in a
    replay (several slices each) or stall (all slices at once, then back to one)."""
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    p = _pipeline()  # publish 0.25 s, agents 15 s: 30 slices, one every 0.5 s
    k, promise = p.agent_slices, p.cfg.agent_publish_interval_s
    assert k == 30
    on_time = _rotate(p, clock, 0.25, 240)
    assert all(len(times) == 4 for times in on_time.values())  # a slice every other cycle
    for cycle_s in (0.1, 0.25, 0.6, 1.0, 2.7, 9.0):
        p = _pipeline()
        refreshed = _rotate(p, clock, cycle_s, int(4 * promise / cycle_s) + 4)
        for s, times in refreshed.items():
            assert times, (cycle_s, s)
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert max(gaps, default=0) <= promise + cycle_s + 1e-9, (cycle_s, s, max(gaps))
        per_cycle = sum(len(t) for t in refreshed.values()) / (int(4 * promise / cycle_s) + 4)
        assert per_cycle <= cycle_s / (promise / k) + 0.1  # no more than due
    # a stall of a minute: every slice in the next cycle, then one per cycle again
    p = _pipeline()
    _rotate(p, clock, 0.25, 10)
    stalled = _rotate(p, clock, 60.0, 1)
    assert all(len(times) == 1 for times in stalled.values())
    refreshed = _rotate(p, clock, 0.25, 4)
    assert sum(len(t) for t in refreshed.values()) == 2


def test_a_slice_whose_changed_interval_would_be_pruned_is_refreshed_out_of_turn(monkeypatch):
    """A replay moves days of event time per rotation: a slice holding a changed interval
    that the shards would prune by now is refreshed in this cycle, so the kept intervals stay
    within the retention; the rotation itself goes on where it was."""
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    p = _pipeline(CCPULSE_AGENT_PUBLISH_INTERVAL_S="2.0")  # 4 slices, one every 0.5 s
    shard = p.owned["i0"] = p.engine.shard(0)
    p.offsets["i0"] = {}
    shard.clock = 1_790_000_000.0
    horizon = shard.clock - shard.retention_s - INTERVAL
    recent, old = int(shard.clock // INTERVAL * INTERVAL), int(horizon // INTERVAL * INTERVAL)
    p._agent_starts = [{recent}, {recent, old}, set(), {old}]
    p._agent_held = {recent, old}
    parts = p._agent_parts(shard.clock, full=False)  # slice 0's turn, 1 and 3 overdue
    assert (parts.slices, parts.rotated) == ([0, 1, 3], 1)
    p._agent_turn_done(parts)
    assert p._agent_starts == [set(), set(), set(), set()] and p._agent_held == set()
    assert p._agent_turn == 1  # slice 1 is still next in turn
    p._agent_starts[1] = {recent}
    p._agent_held = {recent}
    clock.t += 0.5
    assert p._agent_parts(shard.clock, full=False).slices == [1]  # nothing overdue


def test_a_changed_agent_bucket_is_pending_in_its_agents_slice_only():
    """An interval changed for one agent (an FCR outcome settling days later) is rewritten
    by that agent's slice; a change without an agent (an abandon) by none."""
    from stream.kpi.rollup import agent_slice

    p = _pipeline(CCPULSE_AGENT_PUBLISH_INTERVAL_S="2.0")  # 4 slices
    shard = p.owned["i0"] = p.engine.shard(0)
    shard.clock = 1_790_000_000.0
    start = int(shard.clock // INTERVAL * INTERVAL)
    delta = ((b.HANDLED, 1.0),)
    shard.apply_fact((("q", "voice", "ann"), start + 60, delta), 1.0)
    shard.apply_fact((("q", "voice", ""), start + 120, delta), 1.0)
    p._agent_changes()
    mine = agent_slice("ann", 4)
    assert [bool(pending) for pending in p._agent_starts] == [s == mine for s in range(4)]
    assert p._agent_starts[mine] == {start} and p._agent_held == {start}
    assert not shard.changed_agent_keys and shard.changed_intervals == {start}


def test_agents_through_is_the_least_offset_every_slice_covers():
    """The replay waits on `agents:through`: a partition's offset counts only once every
    slice of agents has been published from state that includes it."""
    from stream.sinks.redis_sink import AgentParts

    p = _pipeline(CCPULSE_AGENT_PUBLISH_INTERVAL_S="2.0")  # 4 slices
    assert p.agent_slices == 4
    key = "cc.interactions:0"

    def publish(slices: list[int], offset: int) -> dict[str, int]:
        parts = AgentParts(slices, {s: set() for s in slices}, offsets={key: offset})
        through = p._agents_through(parts)
        p._agent_turn_done(parts)
        return through

    assert publish([0], 10) == {key: 0}  # slices 1-3 never published
    assert publish([1, 2], 20) == {key: 0}
    assert publish([3], 30) == {key: 10}  # slice 0 is the oldest
    assert publish([0], 40) == {key: 20}
    assert publish([0, 1, 2, 3], 50) == {key: 50}  # a full save covers everything


def test_wall_clock_timeouts_wait_for_a_quiet_partition():
    """Wall clock, partition caught up: timeouts (ACW, orphans) follow the partition's event
    watermark while records keep coming, the wall clock only once none came for
    WALL_TIMEOUTS_QUIET_S. Between two bursts of history a pending event must not be
    expired at wall time while its predecessor is in the next burst."""
    from stream.pipeline import WALL_TIMEOUTS_QUIET_S

    p = _pipeline()
    shard = p.owned["i0"] = p.engine.shard(0)
    p.offsets["i0"] = {"cc.interactions:0": 10}

    class Caught:
        def highwater(self, tp):
            return 10

    p.consumer = Caught()
    history = time.time() - 7200
    shard.max_ts = history
    p._fed_at["i0"] = time.monotonic()  # a burst was just applied
    p._advance_clocks()
    assert shard.timeout_clock == history
    p._fed_at["i0"] = time.monotonic() - WALL_TIMEOUTS_QUIET_S - 0.1
    before = time.time()
    p._advance_clocks()
    assert shard.timeout_clock >= before  # quiet: the wall clock rules


def test_a_partition_far_ahead_in_event_time_waits_for_the_slowest_with_a_backlog():
    """Reading in event-time step: a shard more than READ_AHEAD_MAX_S ahead of the slowest
    shard that still has records waiting is paused, and resumed once that one caught up to
    within the limit or has nothing left to read, or has not been fed for READ_STALL_S (a
    stuck partition must not stall the others). Shards within the limit, and shards with
    no event yet, are never paused."""
    from aiokafka import TopicPartition

    from stream.pipeline import READ_AHEAD_MAX_S, READ_STALL_S

    p = _pipeline()
    for i in range(3):
        p.owned[f"i{i}"] = p.engine.shard(i)
        p.offsets[f"i{i}"] = {f"cc.interactions:{i}": 100, f"cc.surveys:{i}": 5}
    p.owned["i3"] = p.engine.shard(3)  # nothing read yet: takes no part
    p.offsets["i3"] = {"cc.interactions:3": 0, "cc.surveys:3": 0}
    high = {f"cc.interactions:{i}": 1000 for i in range(4)}
    high.update({f"cc.surveys:{i}": 5 for i in range(4)})

    class Consumer:
        paused: set = set()

        def highwater(self, tp):
            return high[f"{tp.topic}:{tp.partition}"]

        def pause(self, *tps):
            self.paused |= set(tps)

        def resume(self, *tps):
            self.paused -= set(tps)

    p.consumer = c = Consumer()
    t0 = 1_800_000_000.0
    p.owned["i0"].max_ts = t0
    p.owned["i1"].max_ts = t0 + READ_AHEAD_MAX_S / 2  # within the limit
    p.owned["i2"].max_ts = t0 + 14 * 86400  # two weeks ahead
    p._fed_at = {f"i{i}": time.monotonic() for i in range(3)}
    p._align_reading()
    assert c.paused == {TopicPartition("cc.interactions", 2), TopicPartition("cc.surveys", 2)}
    p.owned["i0"].max_ts = t0 + 14 * 86400 - READ_AHEAD_MAX_S / 2  # caught up, but i1 not
    p._align_reading()
    assert c.paused == {TopicPartition(t, p_) for t in ("cc.interactions", "cc.surveys")
                        for p_ in (0, 2)}
    p.owned["i1"].max_ts = p.owned["i0"].max_ts
    p._align_reading()
    assert c.paused == set()
    p.owned["i0"].max_ts = t0
    p._align_reading()
    assert c.paused == {TopicPartition(t, p_) for t in ("cc.interactions", "cc.surveys")
                        for p_ in (1, 2)}
    p._fed_at["i0"] = time.monotonic() - READ_STALL_S - 1  # records waiting, none coming
    p._align_reading()
    assert c.paused == set()
    p._fed_at["i0"] = time.monotonic()
    p._align_reading()
    assert c.paused == {TopicPartition(t, p_) for t in ("cc.interactions", "cc.surveys")
                        for p_ in (1, 2)}
    high["cc.interactions:0"] = 100  # the slow one has nothing left to read
    p._align_reading()
    assert c.paused == set()
