"""A customer who keeps calling does not keep every contact forever.

Contacts past horizon + retention + 1 h are dropped when the customer next changes; the
buckets that can still change (within the retention) are the same as with a store that
keeps everything.
"""

from __future__ import annotations

import pytest

from stream.kpi import buckets as b
from stream.kpi.customers import Contact, CustomerShard

HOUR = 3600.0
T0 = 1_790_000_000.0 // 900 * 900


def feed(shard: CustomerShard, days: int) -> float:
    t = T0
    for i in range(days * 2):  # a contact every 12 h, each resolved after 10 min
        t = T0 + i * 12 * HOUR
        shard.advance(t)
        shard.upsert("cust-1", f"c{i}", Contact(t, t + 600, ("billing", "voice", "a1"),
                                                "resolved" if i % 3 else None))
    shard.advance(t + 700)
    return t + 700


def test_a_frequent_caller_keeps_a_bounded_number_of_contacts():
    pruned = CustomerShard(48 * HOUR, 75 * 60.0, 72 * HOUR)
    keep_all = CustomerShard(10_000 * HOUR, 75 * 60.0, 72 * HOUR)
    now = feed(pruned, 30)
    feed(keep_all, 30)
    assert len(keep_all.customers["cust-1"].contacts) == 60
    assert len(pruned.customers["cust-1"].contacts) <= (72 + 48 + 1) / 12 + 2
    # every interval the pruned store still keeps holds the same numbers
    recent = {k: v for k, v in pruned.intervals.items() if k[3] >= now - 48 * HOUR}
    assert recent
    for key, acc in recent.items():
        assert keep_all.intervals[key] == pytest.approx(acc, abs=1e-9), key
        assert not b.is_zero(acc) or b.is_zero(keep_all.intervals[key])


def test_the_deadline_heap_keeps_live_entries_and_settles_every_due_customer():
    """Each settle pushed an entry, superseded or not, and each popped one re-derived the
    customer: the heap grew with every contact (1 M-call replay). Now one live entry per
    customer (`Customer.due`), stale ones skipped, and the heap rebuilt past 2× the live."""
    from stream.kpi.customers import derive

    shard = CustomerShard(48 * HOUR, 75 * 60.0, 72 * HOUR)
    t = T0
    biggest = 0
    for i in range(30 * 24):  # 30 days, a contact an hour, for 40 customers in turn
        t = T0 + i * HOUR
        shard.advance(t)
        for c in range(i % 4, 40, 4):
            shard.upsert(f"cust-{c}", f"c{i}-{c}", Contact(t, t + 600, ("billing", "voice", "a1"),
                                                           "resolved" if (i + c) % 3 else None))
        biggest = max(biggest, len(shard.deadlines))
    shard.advance(t + 700)
    assert biggest <= 2 * 40 + 1024
    live = set(shard.deadlines)
    for name, cust in shard.customers.items():
        facts, due = derive(cust.contacts, shard.clock, shard.horizon)
        assert cust.facts == facts, name  # settled at every due time, none missed
        assert cust.due == due
        if due is not None:
            assert (due, name) in live


def test_forgetting_pops_exactly_the_customers_a_scan_of_all_finds():
    """`advance` forgets customers from a queue ordered by last activity instead of scanning
    every customer on every cycle. Against that scan, at every step: customers active again
    (stale entries), late contacts that bring back a forgotten customer, removed contacts,
    and the queues rebuilt as after a restore."""
    import random

    rng = random.Random(11)
    shard = CustomerShard(6 * HOUR, 75 * 60.0, 12 * HOUR)
    t = T0
    forgotten = 0
    for step in range(4000):
        t += rng.uniform(0.0, 0.4 * HOUR)
        cutoff = shard._forget_before(t)
        expected = {n for n, c in shard.customers.items() if c.last_activity >= cutoff}
        gone = set(shard.customers) - expected
        shard.dirty_customers.clear()
        shard.advance(t)
        assert set(shard.customers) == expected, step
        assert gone <= shard.dirty_customers
        forgotten += len(gone)
        for _ in range(rng.randrange(4)):
            name = f"cust-{rng.randrange(150)}"
            iid = f"c{rng.randrange(40)}"
            if rng.random() < 0.1:
                shard.upsert(name, iid, None)
                continue
            offered = t - rng.choice((0.0, rng.uniform(0, 3 * HOUR), rng.uniform(0, 40 * HOUR)))
            handled = offered + 300 if rng.random() < 0.7 else None
            shard.upsert(name, iid, Contact(offered, handled, ("billing", "voice", "a1"),
                                            rng.choice((None, "resolved"))))
        if step == 2000:
            shard.rebuild_deadlines()  # as after a restore from a checkpoint
        assert len(shard.forget_queue) <= 2 * len(shard.customers) + 1024
        live = {n for _, n in shard.forget_queue}
        assert set(shard.customers) <= live  # every customer can still be forgotten
    assert forgotten > 200  # the run forgot customers many times over
