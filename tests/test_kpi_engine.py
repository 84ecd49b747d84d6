"""Hand-computed vectors for the pure KPI core (no Kafka, no Redis)."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from stream import config
from stream.kpi import buckets as b
from stream.kpi import metrics
from stream.kpi.engine import Engine
from stream.kpi.windows import INTERVAL, iso_utc, local_midnight, parse_iso, window_start

T0 = parse_iso("2026-11-23T10:00:00Z")


def ev(iid, kind, ts, n=[0], queue="billing", channel="voice", **extra):
    n[0] += 1
    return orjson.dumps({"event_id": f"{iid}-{kind}-{n[0]}", "type": f"interaction.{kind}",
                         "ts": iso_utc(ts), "schema_version": 1, "interaction_id": iid,
                         "channel": channel, "queue": queue, **extra})


def engine(**env) -> Engine:
    return Engine(config.load(environ={f"CCPULSE_{k.upper()}": str(v) for k, v in env.items()}))


def view(e: Engine, now: float, scope="center", window="15m"):
    e.advance(now)
    return metrics.kpis(e.windows(now)[(scope, window)])


def test_service_level_check_vector_from_design():
    acc = b.new()
    acc[b.ANSWERED], acc[b.SL_ANS_WITHIN] = 90, 70
    acc[b.SL_ABN_COUNTED], acc[b.SL_ABN_WITHIN] = 10, 10  # A=70, B=10, 20 over, N=100
    assert metrics.service_level(acc) == pytest.approx(0.7778, abs=1e-4)
    assert metrics.service_level(acc, "abandons_negative") == pytest.approx(0.70)
    assert metrics.service_level(acc, "abandons_positive") == pytest.approx(0.80)


def test_ratio_with_zero_denominator_is_absent():
    k = metrics.kpis(b.new())
    assert k["handled"] == 0 and "aht_s" not in k and "service_level" not in k


def test_wait_exactly_t_is_within_and_one_ms_more_is_not():
    e = engine()
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 20, agent_id="x"), 0)
    e.ingest("interactions", ev("b", "offered", T0), 0)
    e.ingest("interactions", ev("b", "answered", T0 + 20.001, agent_id="x"), 0)
    k = view(e, T0 + 60)
    assert k["answered"] == 2 and k["service_level"] == pytest.approx(0.5)
    assert k["asa_s"] == pytest.approx(20.0005)


def test_contact_leaving_exactly_at_interval_start_belongs_to_that_interval():
    e = engine()
    start = T0 + INTERVAL
    e.ingest("interactions", ev("a", "offered", start - 30), 0)
    e.ingest("interactions", ev("a", "abandoned", start), 0)
    e.advance(start + INTERVAL + 1)
    parts = e.intervals(None)
    assert parts[("center", start)][b.ABANDONED] == 1
    assert parts[("center", start - INTERVAL)][b.OFFERED] == 1
    assert parts[("center", start - INTERVAL)][b.ABANDONED] == 0


def test_handle_time_hold_and_acw_timeout():
    e = engine()
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 10, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "hold_started", T0 + 40, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "hold_ended", T0 + 70, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "ended", T0 + 110, agent_id="x"), 0)
    assert view(e, T0 + 600)["handled"] == 0  # ACW still open
    k = view(e, T0 + 110 + 600)  # timeout closes ACW at exactly ended + 600 s
    assert k["handled"] == 1
    assert k["talk_s"] == pytest.approx(70) and k["hold_s"] == pytest.approx(30)
    assert k["acw_s"] == pytest.approx(600) and k["aht_s"] == pytest.approx(700)
    assert "fcr_disposition_rate" not in k  # timed-out ACW has no disposition


def test_transfer_closes_the_leg_and_opens_the_next_queue():
    e = engine()
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 5, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "transferred", T0 + 60, agent_id="x", to_queue="sales"), 0)
    e.ingest("interactions", ev("a", "offered", T0 + 60, queue="sales"), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 90, queue="sales", agent_id="y"), 0)
    e.ingest("interactions", ev("a", "ended", T0 + 190, queue="sales", agent_id="y"), 0)
    e.ingest("interactions", ev("a", "wrapup_completed", T0 + 200, queue="sales", agent_id="y",
                                disposition="resolved"), 0)
    billing = view(e, T0 + 300, "queue:billing")
    sales = view(e, T0 + 300, "queue:sales")
    assert billing["transferred"] == 1 and billing["handled"] == 0 and billing["transfer_rate"] == 1
    assert sales["offered"] == 1 and sales["handled"] == 1 and sales["aht_s"] == pytest.approx(110)
    assert sales["asa_s"] == pytest.approx(30)


def test_out_of_order_events_land_in_the_right_buckets_and_duplicates_count_once():
    e = engine()
    raws = [ev("a", "offered", T0), ev("a", "answered", T0 + 30, agent_id="x"),
            ev("a", "ended", T0 + 90, agent_id="x"),
            ev("a", "wrapup_completed", T0 + 100, agent_id="x", disposition="resolved")]
    for raw in [raws[3], raws[1], raws[1], raws[2], raws[0]]:
        e.ingest("interactions", raw, 0)
    k = view(e, T0 + 200)
    assert (k["offered"], k["answered"], k["handled"]) == (1, 1, 1)
    assert k["aht_s"] == pytest.approx(70)
    assert e.take_outputs()[3] == 1  # one duplicate counted


def test_too_late_and_orphans_go_to_the_dead_letter_topic():
    e = engine(kpi__retention_h=1)
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.advance(T0 + 7200)
    assert e.ingest("interactions", ev("b", "offered", T0), 0) == "too_late"
    assert e.ingest("interactions", ev("c", "answered", T0 + 7000, agent_id="x"), 0) == "pending"
    e.advance(T0 + 7000 + 901)  # orphan timeout: never offered
    dead = e.take_outputs()[0]
    assert sorted(d.reason for d in dead) == ["impossible_transition", "too_late"]
    assert all(d.raw for d in dead)


def test_today_window_on_a_dst_day():
    tz = config.load(environ={}, timezone="Europe/Berlin").tz
    now = parse_iso("2026-10-25T12:00:00+01:00")
    midnight = local_midnight(now, tz)
    assert datetime.fromtimestamp(midnight, timezone.utc).isoformat() == "2026-10-24T22:00:00+00:00"
    assert window_start("today", now, tz) == midnight
    e = engine(timezone="Europe/Berlin")
    e.ingest("interactions", ev("early", "offered", midnight - 1), 0)
    e.ingest("interactions", ev("late", "offered", midnight), 0)
    assert view(e, now, window="today")["offered"] == 1


def test_buckets_are_bounded_whatever_runs():
    e = engine(kpi__retention_h=2)
    for i in range(400):
        t = T0 + i * 60
        e.ingest("interactions", ev(f"x{i}", "offered", t), 0)
        e.ingest("interactions", ev(f"x{i}", "abandoned", t + 10), 0)
        e.shards[0].changed_intervals.clear()  # what a successful publish cycle does
        e.advance(t + 11)
    shard = e.shards[0]
    assert len(shard.minutes) <= 80  # minute retention 75 min + the current
    assert len(shard.intervals) <= 2 * 4 + 3  # 2 h of intervals, plus unpublished ones
    assert len(shard.ix) <= 61  # finished contacts forgotten after closed_keep_s (1 h)


def test_state_entries_count_what_the_shards_hold_and_level_off():
    """cc_state_entries: per part, the entries the shards hold; under a steady stream they
    stop growing once the retention is full (what the bench's long replay watches)."""
    from stream.sinks.prometheus_sink import StateCollector

    e = engine(kpi__retention_h=2)
    sizes = []
    for i in range(400):
        t = T0 + i * 60
        e.ingest("interactions", ev(f"s{i}", "offered", t), 0)
        e.ingest("interactions", ev(f"s{i}", "abandoned", t + 10), 0)
        shard = e.shards[0]
        shard.changed_intervals.clear()
        e.advance(t + 11)
        sizes.append(shard.state_sizes())
    last = sizes[-1]
    assert last == {"minute_buckets": len(shard.minutes), "interval_buckets": len(shard.intervals),
                    "interactions": len(shard.ix), "handled_index": len(shard.handled_index),
                    "survey_ids": len(shard.survey_ids)}
    assert last["minute_buckets"] > 0 and last["interactions"] > 0
    # level after the first 3 h (retention 2 h, forgotten after 1 h): the last 100 minutes
    # never hold more than the 100 minutes before them
    for part in last:
        assert max(s[part] for s in sizes[300:]) <= max(s[part] for s in sizes[200:300]), part
    family = next(iter(StateCollector(lambda: {("interactions", k): v for k, v in last.items()})
                       .collect()))
    assert family.name == "cc_state_entries"
    assert {(x.labels["shard"], x.labels["part"]): x.value for x in family.samples} == {
        ("interactions", k): v for k, v in last.items()}


def test_unpublished_intervals_are_kept_until_published():
    e = engine(kpi__retention_h=1)
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.advance(T0 + 3 * 3600)
    assert any(k[3] <= T0 for k in e.shards[0].intervals)  # Redis was never reached: keep it
    e.shards[0].changed_intervals.clear()
    e.advance(T0 + 3 * 3600 + 1)
    assert not e.shards[0].intervals


def test_queue_named_all_is_reserved_for_roll_ups():
    e = engine()
    assert e.ingest("interactions", ev("a", "offered", T0, queue="all"), 0) == "bad_name"
    assert e.take_outputs()[0][0].detail.startswith("queue name 'all' is reserved")


def test_backlog_does_not_time_out_acw_ahead_of_its_wrapup():
    """While a partition has a backlog, ACW timeouts follow its event watermark: a wrap-up
    not read yet must not be pre-empted (its histogram observation would count twice)."""
    e = engine()
    e.ingest("interactions", ev("a", "offered", T0), 0)
    e.ingest("interactions", ev("a", "answered", T0 + 10, agent_id="x"), 0)
    e.ingest("interactions", ev("a", "ended", T0 + 100, agent_id="x"), 0)
    shard = e.shards[0]
    shard.advance(T0 + 3600, timeouts_at=shard.max_ts)  # wall clock an hour on, backlog left
    e.ingest("interactions", ev("a", "wrapup_completed", T0 + 160, agent_id="x",
                                disposition="resolved"), 0)
    shard.advance(T0 + 3601)  # caught up
    _, observations, _, _ = e.take_outputs()
    handle = [o for o in observations if o[0] == "handle_time"]
    assert handle == [("handle_time", "billing", "voice", 150.0)]


def test_redeliveries_of_a_long_chat_are_duplicates_before_and_after_an_orphan_expires():
    """A long interaction checks redeliveries against a set of its event ids (a scan per
    event was quadratic in a chat's messages): still exact once an event was removed."""
    e = engine()
    chat = dict(channel="chat", queue="support")
    sent = [ev("long", "offered", T0, **chat), ev("long", "answered", T0 + 5, agent_id="x", **chat)]
    sent += [ev("long", "message", T0 + 10 + i, agent_id="x", direction="agent", text="hi", **chat)
             for i in range(20)]
    for raw in sent:
        assert e.ingest("interactions", raw, 0) == "ok"
    orphan = ev("long", "hold_ended", T0 + 40, agent_id="x", **chat)  # no hold_started
    assert e.ingest("interactions", orphan, 0) == "pending"
    assert [e.ingest("interactions", raw, 0) for raw in (*sent, orphan)] == ["duplicate"] * 23
    e.advance(T0 + 40 + 901)  # the orphan expires: removed from the interaction
    assert [d.reason for d in e.take_outputs()[0]] == ["impossible_transition"]
    assert [e.ingest("interactions", raw, 0) for raw in sent] == ["duplicate"] * 22
    assert e.ingest("interactions", orphan, 0) == "pending"  # gone, so new again
    late = ev("long", "message", T0 + 50, agent_id="x", direction="agent", text="hi", **chat)
    assert e.ingest("interactions", late, 0) == "ok"
    assert e.ingest("interactions", late, 0) == "duplicate"
    assert e.shard(0).duplicates == 23  # counted since take_outputs


def test_the_fast_path_risk_is_derives_with_messages_out_of_order_and_events_removed():
    """A scored customer message of an ongoing contact updates the risk from the contact's
    kept, sorted scores instead of re-sorting all of them: it must equal a full `derive` of
    the same events whatever the order they came in, and after an orphan was removed."""
    import random

    from stream.kpi.interaction import derive

    scores = iter([(-1) ** i * (i % 7) / 7 for i in range(100)])
    e = Engine(config.load(), scorer=lambda text, lang: next(scores))
    shard = e.shard(0)
    chat = dict(channel="chat", queue="support")
    msgs = [ev("r", "message", T0 + 10 + i, direction="customer" if i % 3 else "agent",
               text=f"m{i}", **chat) for i in range(30)]
    random.Random(3).shuffle(msgs)
    e.ingest("interactions", ev("r", "offered", T0, **chat), 0)
    e.ingest("interactions", ev("r", "answered", T0 + 5, agent_id="x", **chat), 0)

    def same_as_derive():
        ix = shard.ix["r"]
        assert ix.risk == derive(ix.events, shard.timeout_clock, shard.s.params).risk

    for raw in msgs[:20]:
        assert e.ingest("interactions", raw, 0) == "ok"
        same_as_derive()
    assert shard.ix["r"].scores is not None  # the kept scores were used
    orphan = ev("r", "hold_ended", T0 + 12, agent_id="x", **chat)
    assert e.ingest("interactions", orphan, 0) == "pending"
    shard.advance(T0 + 12 + 901, timeouts_at=T0 + 12 + 901)  # the orphan expires
    assert shard.ix["r"].scores is None  # dropped with the removed event, rebuilt below
    for raw in msgs[20:]:
        assert e.ingest("interactions", raw, 0) == "ok"
        same_as_derive()


def test_advance_during_a_backlog_looks_only_at_what_the_timeout_clock_made_due():
    """While a backlog waits, ACW timeouts, orphans and forgetting follow the partition's
    event watermark, hours behind the wall clock: a cycle must not look at every
    interaction whose deadline the wall clock has passed (it re-queued all of them on each
    cycle once). Falling out of retention still follows the wall clock."""
    e = engine()
    shard = e.shard(0)
    for i in range(20):  # calls ended without a wrap-up; ACW times out at ended + 600 s
        t = T0 + 60 * i
        e.ingest("interactions", ev(f"c{i}", "offered", t), 0)
        e.ingest("interactions", ev(f"c{i}", "answered", t + 5, agent_id="x"), 0)
        e.ingest("interactions", ev(f"c{i}", "ended", t + 65, agent_id="x"), 0)
    e.ingest("interactions", ev("open", "offered", T0), 0)  # never answered
    wall = T0 + 6 * 3600
    shard.advance(wall, timeouts_at=T0 + 60)
    looked = []
    deadline = shard._deadline
    shard._deadline = lambda ix: looked.append(ix) or deadline(ix)
    for k in range(1, 4):  # three cycles, the watermark before any ACW timeout
        shard.advance(wall + k, timeouts_at=T0 + 60 + k)
    def handled() -> float:
        return sum(acc[b.HANDLED] for acc in shard.qintervals.values())

    assert looked == [] and handled() == 0
    shard.advance(wall + 4, timeouts_at=T0 + 665)  # c0's ACW timeout, and only c0's
    assert len(looked) == 1 and handled() == 1
    shard.advance(T0 + 48 * 3600 + 1, timeouts_at=T0 + 700)
    assert "open" not in shard.ix  # unfinished and out of retention by the wall clock
    assert "c5" in shard.ix  # its ACW has not timed out on the watermark: kept


def test_advance_handles_what_is_due_and_only_that():
    """`advance` works from a deadline queue, not a scan of every interaction: ACW timeouts,
    forgetting (closed_keep_s), the handled index (survey_join_days) and the survey ids all
    happen at their time, and a cycle with nothing due looks at nothing."""
    e = engine(kpi__closed_keep_s=600)
    shard = e.shard(0)
    for i in range(50):  # 50 calls ended without a wrap-up, a minute apart
        t = T0 + 60 * i
        e.ingest("interactions", ev(f"c{i}", "offered", t), 0)
        e.ingest("interactions", ev(f"c{i}", "answered", t + 5, agent_id="x"), 0)
        e.ingest("interactions", ev(f"c{i}", "ended", t + 65, agent_id="x"), 0)
    e.ingest("interactions", ev("open", "offered", T0), 0)  # never answered
    e.advance(T0 + 3000)
    looked = []
    deadline = shard._deadline
    shard._deadline = lambda ix: looked.append(ix) or deadline(ix)
    e.advance(T0 + 3004)  # nothing is due: c39's ACW times out at 3005, c29 is forgotten then
    assert looked == []
    # ACW timeouts at exactly ended + 600 s, one call at a time
    for i in (39, 40):
        end = T0 + 60 * i + 65 + 600
        assert view(e, end - 0.001, window="today")["handled"] == i
        assert view(e, end, window="today")["handled"] == i + 1
    assert len(looked) == 2  # each timed-out call queued again for its forgetting; no other
    # forgotten closed_keep_s after the timeout, into the handled index
    e.advance(T0 + 665 + 600)
    assert "c0" not in shard.ix and "c0" in shard.handled_index
    assert "open" in shard.ix  # open contacts stay for retention_h (48 h)
    # a survey of a forgotten contact joins within survey_join_days, its id is kept as long
    assert e.ingest("surveys", orjson.dumps({
        "event_id": "s0", "type": "survey.responded", "ts": iso_utc(T0 + 86400),
        "schema_version": 1, "interaction_id": "c0", "customer_id": "k", "csat": 5}), 0) == "ok"
    assert "s0" in shard.survey_ids
    e.advance(T0 + 48 * 3600 + 1)
    assert "open" not in shard.ix
    e.advance(T0 + 665 + 7 * 86400 - 1)
    assert "c0" in shard.handled_index
    e.advance(T0 + 665 + 7 * 86400 + 1)
    assert "c0" not in shard.handled_index and "c49" in shard.handled_index
    e.advance(T0 + 86400 + 7 * 86400 + 1)
    assert not shard.handled_index and not shard.survey_ids and not shard.ix
    assert not shard._due and not shard._sched and not shard._index_expiry
    assert not shard._stale_due and not shard._stale_sched


def agent_ev(agent, state, ts, queues=("billing", "sales"), eid=None):
    return orjson.dumps({"event_id": eid or f"{agent}-{state}-{ts}", "type": "agent.state_changed",
                         "ts": iso_utc(ts), "schema_version": 1, "agent_id": agent,
                         "state": state, "queues": list(queues),
                         "capacity": {"voice": 1}})


def occupancy_of(e: Engine, now: float, scope: str, window: str = "today"):
    e.advance(now)
    return metrics.kpis(e.windows(now)[(scope, window)])["occupancy"]


def test_occupancy_check_vector_split_over_queues_in_any_order():
    """DESIGN §3: occupancy = (busy + acw) / (busy + acw + available) time in the window, an
    agent's time split evenly over the queues it serves. By hand: available 30 s, busy 180 s,
    acw 30 s, available 120 s, then offline (not counted): 210 / 360 = 0.58333, for the
    agent, each of its two queues and the center; aux and offline time count nowhere."""
    changes = [("available", 0), ("busy", 30), ("acw", 210), ("available", 240), ("offline", 360),
               ("aux", 400), ("offline", 500)]
    expected = 210 / 360
    for order in (changes, changes[::-1], changes[3:] + changes[:3]):
        e = engine()
        for state, dt in order:
            assert e.ingest("agents", agent_ev("a1", state, T0 + dt), 0) == "ok"
        assert e.ingest("agents", agent_ev("a1", "busy", T0 + 30), 0) == "duplicate"
        now = T0 + 600
        for scope in ("agent:a1", "queue:billing", "queue:sales", "center"):
            assert occupancy_of(e, now, scope) == pytest.approx(expected, abs=1e-9), scope
        assert occupancy_of(e, now, "agent:a1", "15m") == pytest.approx(expected, abs=1e-9)


def test_occupancy_equals_a_plain_count_of_generated_timelines():
    """Random agents, states, queues and times, delivered shuffled with redeliveries: the
    engine's occupancy per agent, queue and the center equals a plain-Python count of the
    same timelines (each span's seconds by state, split evenly over the agent's queues; the
    span still open counts up to now)."""
    import random

    rnd = random.Random(12)
    states = ("available", "busy", "acw", "aux", "offline")
    queues_pool = ("billing", "sales", "support")
    timelines = {}
    for n in range(12):
        t, changes = T0 + rnd.uniform(0, 60), []
        for _ in range(rnd.randrange(2, 25)):
            qs = tuple(sorted(rnd.sample(queues_pool, rnd.randrange(1, 4))))
            changes.append((t, rnd.choice(states), qs))
            t += rnd.choice((rnd.uniform(1, 50), rnd.uniform(50, 400)))
        timelines[f"a{n}"] = changes
    # the oracle: every span, the last one still open at `now` (the view counts it so far)
    now = max(t for changes in timelines.values() for t, _, _ in changes) + 30
    busy, total = {}, {}
    for agent, changes in timelines.items():
        for (t0, state, qs), (t1, _, _) in zip(changes, [*changes[1:], (now, "", ())]):
            if state not in ("available", "busy", "acw"):
                continue
            for scope in ("center", f"agent:{agent}", *(f"queue:{q}" for q in qs)):
                share = (t1 - t0) / len(qs) if scope.startswith("queue") else t1 - t0
                total[scope] = total.get(scope, 0.0) + share
                if state != "available":
                    busy[scope] = busy.get(scope, 0.0) + share
    records = [(agent, agent_ev(agent, state, t, qs, eid=f"{agent}-{i}"))
               for agent, changes in timelines.items() for i, (t, state, qs) in enumerate(changes)]
    records += rnd.sample(records, len(records) // 5)  # redeliveries
    rnd.shuffle(records)
    e = engine()
    for agent, raw in records:
        assert e.ingest("agents", raw, int(agent[1:]) % 4) in ("ok", "duplicate")
    assert local_midnight(now, e.cfg.tz) <= T0  # one day: "today" holds every span
    for scope in total:
        assert occupancy_of(e, now, scope) == pytest.approx(busy.get(scope, 0.0) / total[scope],
                                                            abs=1e-6), scope
