"""Privacy (DESIGN §8): a customer id and the words of chat messages never leave the worker.

Contacts carry the marker customer id CUST-MARKER-7731 and customer messages the marker word
zebrafruit. After the worker has processed them, every Redis key and value (all types, read
without DUMP), the worker log (at debug level), /metrics, the JSON API and every topic the
worker writes (dead letters, internal topics) are scanned: neither marker appears, nor the
hash key. The customer id is in state only as its keyed hash (HMAC), which still matches a
repeat contact of the same customer.
"""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from conftest import decoded, produce, wait_for
from security_support import http, interaction, read_topic, reachable, scrape_text
from stream.kpi.engine import customer_hasher
from stream.kpi.windows import iso_utc

CUSTOMER = "CUST-MARKER-7731"
WORD = "zebrafruit"
SECRET = "hmac-key-for-the-privacy-test-5521"
MARKERS = (CUSTOMER.encode(), WORD.encode(), SECRET.encode())
TEST_TOPIC = re.compile(r"^t[0-9a-f]{8}\.")


def leaks(data: bytes) -> list[bytes]:
    low = data.lower()
    return [m for m in MARKERS if m.lower() in low]


def redis_dump(client, prefix: str) -> dict[str, list[bytes]]:
    """Every key under the prefix with every piece of its value, by type, without DUMP."""
    out: dict[str, list[bytes]] = {}
    for raw in client.scan_iter(match=prefix + "*", count=1000):
        kind = client.type(raw).decode()
        parts: list[bytes] = [raw]
        if kind == "string":
            parts.append(client.get(raw) or b"")
        elif kind == "hash":
            for f, v in client.hgetall(raw).items():
                parts += [f, v]
        elif kind == "list":
            parts += client.lrange(raw, 0, -1)
        elif kind == "set":
            parts += list(client.smembers(raw))
        elif kind == "zset":
            parts += [m for m, _ in client.zrange(raw, 0, -1, withscores=True)]
        elif kind == "stream":
            for _id, fields in client.xrange(raw):
                for f, v in fields.items():
                    parts += [f, v]
        elif kind != "none":
            pytest.fail(f"unexpected Redis type {kind} for {raw!r}")
        out[raw.decode(errors="replace")] = parts
    return out


def test_customer_id_and_message_text_never_leave_the_worker(stack, unique, worker_factory,
                                                             redis_client):
    worker = worker_factory(CCPULSE_CUSTOMER_HASH_SECRET=SECRET, CCPULSE_LOG_LEVEL="debug")
    now = time.time()
    t0 = now - 1200
    angry = [(t0 + 20 + i, "customer", f"{WORD} {text}")
             for i, text in enumerate(("this is terrible and I hate it",
                                       "awful service, worst ever, I am furious",
                                       "horrible, useless, disgusting"))]
    events = []
    # two handled contacts of the marked customer (a repeat within the FCR horizon) ...
    events += interaction("p1", "billing", "chat", t0, t0 + 10, ended=t0 + 100, wrapup=t0 + 110,
                          customer=CUSTOMER, messages=angry + [(t0 + 30, "agent", f"sorry {WORD}")])
    events += interaction("p2", "billing", "chat", t0 + 400, t0 + 405, ended=t0 + 500,
                          wrapup=t0 + 510, customer=CUSTOMER,
                          messages=[(t0 + 420, "customer", f"{WORD} again, still broken, awful")])
    # ... another customer's single handled contact (not repeated) ...
    events += interaction("p4", "billing", "voice", t0 + 700, t0 + 710, ended=t0 + 800,
                          wrapup=t0 + 810, customer="CUST-OTHER-0001")
    # ... one still talking with angry messages (an at-risk contact) and a survey
    events += interaction("p3", "support", "chat", now - 120, now - 110, customer=CUSTOMER,
                          messages=[(now - 100 + i, "customer", f"{WORD} terrible awful hate")
                                    for i in range(3)])
    produce(stack, unique.interactions, events)
    produce(stack, unique.surveys, [{
        "event_id": "sv1", "type": "survey.responded", "ts": iso_utc(t0 + 600),
        "schema_version": 1, "interaction_id": "p1", "customer_id": CUSTOMER, "nps": 3,
        "csat": 2}], key_field="interaction_id")
    p = unique.prefix

    def published():
        h = decoded(redis_client.hgetall(f"{p}kpi:center:1h"))
        return h if h.get("handled") == "3" and h.get("surveys") == "1" else None

    h = wait_for(published, 90, what="the contacts and the survey published")
    # the messages were scored (so the text did reach the scorer) ...
    assert int(h["sentiment_samples"]) == 2 and float(h["sentiment"]) < 0
    # ... and the keyed hash still matches repeat contacts: p1 is repeated by p2 and p2 by
    # p3 (same customer), p4 (another customer) is not: FCR = 1/3. FCR records travel over
    # the internal customers topic, so this may take a cycle more.
    def fcr_settled():
        got = decoded(redis_client.hgetall(f"{p}kpi:center:1h")).get("fcr_rate")
        return got if got is not None and float(got) == pytest.approx(1 / 3) else None

    fcr = wait_for(fcr_settled, 30, what="fcr_rate 1/3")
    wait_for(lambda: redis_client.hlen(f"{p}atrisk:center") or None, 30, what="at-risk entry")
    time.sleep(2)  # a couple more publish cycles and checkpoints

    # Redis: no marker anywhere; the customer appears only as its keyed hash
    dump = redis_dump(redis_client, p)
    assert dump, "nothing in Redis"
    for key, parts in dump.items():
        for part in parts:
            assert not leaks(part), f"{leaks(part)} in Redis key {key}"
    everything = b"\0".join(b"\0".join(parts) for parts in dump.values())
    hashed = customer_hasher(SECRET)(CUSTOMER).encode()
    assert hashed in everything, "the customer's keyed hash is what state keeps"
    assert hashlib.sha256(CUSTOMER.encode()).hexdigest()[:32].encode() not in everything

    # /metrics and the JSON API
    for path in ("/metrics", "/api/kpi?scope=center", "/api/kpi?scope=queue:billing",
                 "/api/load", "/api/intervals?scope=center&by=interval"):
        assert reachable(worker.url(path)), path
        _, _, body = http(worker.url(path))
        assert not leaks(body), (path, leaks(body))
    assert not leaks(scrape_text(worker.url("/metrics")).encode())

    # every topic the worker writes: dead letters (none of these events is bad) and any
    # internal topic; the input topics are the producers' and hold the markers by design
    dead = read_topic(stack.bootstrap, unique.deadletter, timeout=5)
    assert dead == [], [dict(r.headers) for r in dead]
    topics = written_topics(stack, unique)
    scanned = 0
    for topic in topics:
        for rec in read_topic(stack.bootstrap, topic, timeout=5):
            scanned += 1
            blob = (rec.key or b"") + (rec.value or b"") + b"".join(
                k.encode() + v for k, v in (rec.headers or ()))
            assert not leaks(blob), (topic, leaks(blob))

    # the worker log, at debug level
    worker.stop()
    log = worker.log.read_bytes()
    assert log, "empty worker log"
    assert not leaks(log), leaks(log)
    print(f"\nscanned {len(dump)} Redis keys, {len(topics)} topics ({scanned} records), "
          f"{len(log)} bytes of debug log; fcr_rate={fcr}")


def written_topics(stack, unique) -> list[str]:
    """Topics other than test input topics: this test's dead letters plus non-test topics
    (Faust's internal ones, any internal topic of the pipeline)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    mine = {unique.interactions, unique.agents, unique.surveys}
    return sorted(t for t in asyncio.run(go())
                  if t not in mine and (t.startswith(f"t{unique.tag}.") or not TEST_TOPIC.match(t))
                  and t not in ("cc.interactions", "cc.agent-states", "cc.surveys"))
