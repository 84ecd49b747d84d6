"""Cardinality caps (DESIGN §8): a flood of valid but ever-new queue and agent names cannot
grow /metrics, Redis or memory past the configured caps; the excess goes to the dead-letter
topic as `scope_limit`, and the known queues keep exact counts.

Bounded mode sends ~20,000 hostile events; CCPULSE_CHAOS_FULL=1 sends 100,000.
The caps live in each worker process (the engine's sets of names), so one worker is used
here and the bound checked is exactly the cap.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid

import pytest

from conftest import decoded, produce, wait_for
from security_support import interaction, read_topic, scrape_text
from stream.kpi.windows import iso_utc

MAX_QUEUES, MAX_AGENTS = 20, 50
KNOWN = ("billing", "support.en", "sales-2")
KNOWN_AGENTS = ("a1", "a2", "a3")
FULL = os.environ.get("CCPULSE_CHAOS_FULL") == "1"
HOSTILE = 100_000 if FULL else 20_000
QUEUE_IN_KEY = re.compile(r"(?:^|[:|])queue:([A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?=[:|]|$)")
AGENT_IN_KEY = re.compile(r"(?:^|[:|])agent:([A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?=[:|]|$)")
QUEUE_LABEL = re.compile(r'queue="([^"]*)"')


def known_traffic(tag: str, base: float, per_queue: int) -> list[dict]:
    events = []
    for qi, queue in enumerate(KNOWN):
        for n in range(per_queue):
            t = base + n
            events += interaction(f"{tag}-{queue}-{n}", queue, "voice", t, t + 5,
                                  agent=KNOWN_AGENTS[qi], ended=t + 65, wrapup=t + 75)
    return events


def hostile_name(rnd: random.Random, n: int, prefix: str) -> str:
    """A valid name (DESIGN §2 pattern) that is new every time."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
    tail = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
    return f"{prefix}{n}{tail}"[:64]


def scan_all(redis_client, prefix: str) -> list[str]:
    return [k.decode() for k in redis_client.scan_iter(match=prefix + "*", count=1000)]


def test_flood_of_new_names_is_capped(stack, unique, worker_factory, redis_client):
    worker = worker_factory(CCPULSE_LIMITS__MAX_QUEUES=str(MAX_QUEUES),
                            CCPULSE_LIMITS__MAX_AGENTS=str(MAX_AGENTS))
    p = unique.prefix
    now = time.time()
    # 1. the known queues first (the cap admits names first come, first served)
    produce(stack, unique.interactions, known_traffic("k", now - 1500, 10))

    def handled(n):
        def check():
            got = {q: decoded(redis_client.hgetall(f"{p}kpi:queue:{q}:1h")).get("handled")
                   for q in KNOWN}
            return got if all(v == str(n) for v in got.values()) else None
        return check

    wait_for(handled(10), 90, what="known traffic before the flood")

    # 2. the flood: every event names a new queue (interactions) or a new agent (agent states)
    rnd = random.Random(7731)
    n_agents = HOSTILE // 10
    n_queues = HOSTILE - n_agents
    flood_q = []
    for n in range(n_queues):
        iid = f"h{n}-{uuid.uuid4().hex[:6]}"
        flood_q.append({"event_id": f"{iid}-o", "type": "interaction.offered",
                        "ts": iso_utc(now - rnd.uniform(30, 900)), "schema_version": 1,
                        "interaction_id": iid, "channel": rnd.choice(("voice", "chat", "sms")),
                        "queue": hostile_name(rnd, n, "hq")})
    flood_a = []
    for n in range(n_agents):
        agent = hostile_name(rnd, n, "ha")
        flood_a.append({"event_id": f"as{n}-{uuid.uuid4().hex[:6]}", "type": "agent.state_changed",
                        "ts": iso_utc(now - rnd.uniform(30, 900)), "schema_version": 1,
                        "agent_id": agent, "state": rnd.choice(("available", "busy", "aux")),
                        "queues": [rnd.choice(KNOWN)], "capacity": {"voice": 1}})
    started = time.monotonic()
    produce(stack, unique.interactions, flood_q)
    produce(stack, unique.agents, flood_a, key_field="agent_id")
    # 3. more known traffic after the flood: still counted exactly
    produce(stack, unique.interactions, known_traffic("k2", now - 600, 5))

    admitted_q = MAX_QUEUES - len(KNOWN)        # each hostile queue name is new: 17 get in
    admitted_a = MAX_AGENTS - len(KNOWN_AGENTS)  # 47 hostile agents get in
    expected_rejects = (n_queues - admitted_q) + (n_agents - admitted_a)

    def rejected_metric():
        text = scrape_text(worker.url("/metrics"))
        m = re.search(r'^cc_events_rejected_total\{reason="scope_limit"\} (\S+)$', text, re.M)
        return text if m and float(m.group(1)) == expected_rejects else None

    metrics = wait_for(rejected_metric, 180 if FULL else 90,
                       what=f"{expected_rejects} scope_limit rejections")
    wait_for(handled(15), 60, what="known traffic after the flood")
    elapsed = time.monotonic() - started

    # /metrics: at most MAX_QUEUES queue label values (plus "all"), series count bounded
    queues_in_metrics = set(QUEUE_LABEL.findall(metrics)) - {"all"}
    assert set(KNOWN) <= queues_in_metrics
    assert len(queues_in_metrics) <= MAX_QUEUES
    series = [ln for ln in metrics.splitlines() if ln and not ln.startswith("#")]
    assert len(series) < 10_000, len(series)  # unbounded would be ~100 series per name

    # Redis: keys and the names inside them are bounded by the caps
    wait_for(lambda: len({q for k in scan_all(redis_client, p) for q in QUEUE_IN_KEY.findall(k)})
             == MAX_QUEUES, 30, what="every admitted queue published")
    keys = scan_all(redis_client, p)
    queues_in_redis = {q for k in keys for q in QUEUE_IN_KEY.findall(k)}
    agents_in_redis = {a for k in keys for a in AGENT_IN_KEY.findall(k)}
    assert set(KNOWN) <= queues_in_redis and len(queues_in_redis) == MAX_QUEUES
    assert len(agents_in_redis) <= MAX_AGENTS
    assert len(keys) < 2_000, len(keys)
    snapshot = json.loads(redis_client.get(f"{p}snapshot"))
    assert len(snapshot.get("queues", [])) <= MAX_QUEUES
    # the state checkpoint and the partial hashes hold no rejected name either
    for key in keys:
        if redis_client.type(key) == b"hash" and (":part:" in key or ":state:" in key
                                                  or key.startswith(p + "part")):
            fields = [f.decode(errors="replace") for f in redis_client.hkeys(key)]
            names = {q for f in fields for q in QUEUE_IN_KEY.findall(f)}
            assert names <= queues_in_redis, key

    # the known queues' counts are exact (15 handled each, 1 contact per second)
    for queue in KNOWN:
        h = decoded(redis_client.hgetall(f"{p}kpi:queue:{queue}:1h"))
        assert h["handled"] == "15" and h["answered"] == "15", (queue, h)
        assert float(h["aht_s"]) == pytest.approx(70.0)

    # every rejected event is in the dead-letter topic with reason scope_limit
    dead = read_topic(stack.bootstrap, unique.deadletter, min_count=expected_rejects,
                      timeout=120 if FULL else 60)
    reasons = [dict(r.headers).get("reason", b"").decode() for r in dead]
    assert reasons.count("scope_limit") == expected_rejects
    print(f"\n{HOSTILE} hostile events, {expected_rejects} rejected as scope_limit, "
          f"{len(series)} metric series, {len(keys)} Redis keys, {elapsed:.1f}s")


def test_cap_holds_across_a_worker_restart(stack, unique, worker_factory, redis_client):
    env = {"CCPULSE_LIMITS__MAX_QUEUES": str(MAX_QUEUES), "CCPULSE_LIMITS__MAX_AGENTS": "50"}
    p = unique.prefix
    now = time.time()
    rnd = random.Random(4242)

    def flood(tag: str, n: int) -> list[dict]:
        return [{"event_id": f"{tag}{i}-o", "type": "interaction.offered",
                 "ts": iso_utc(now - rnd.uniform(30, 600)), "schema_version": 1,
                 "interaction_id": f"{tag}{i}", "channel": "voice",
                 "queue": hostile_name(rnd, i, tag)} for i in range(n)]

    def queues_in_redis() -> set[str]:
        return {q for k in scan_all(redis_client, p) for q in QUEUE_IN_KEY.findall(k)}

    worker = worker_factory(**env)
    produce(stack, unique.interactions, flood("fa", 200))
    wait_for(lambda: len(queues_in_redis()) == MAX_QUEUES, 90, what="first flood published")
    worker.stop()
    worker = worker_factory(**env)
    produce(stack, unique.interactions, flood("fb", 200))

    def settled():
        text = scrape_text(worker.url("/metrics")) if worker.proc.poll() is None else ""
        m = re.search(r'^cc_events_rejected_total\{reason="scope_limit"\} (\S+)$', text, re.M)
        return m and float(m.group(1)) > 0

    wait_for(lambda: _quiet(settled), 90, what="second flood processed")
    time.sleep(3)  # a few publish cycles
    assert len(queues_in_redis()) <= MAX_QUEUES


def _quiet(predicate):
    try:
        return predicate()
    except OSError:
        return False
