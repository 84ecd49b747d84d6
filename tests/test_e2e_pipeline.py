"""End to end: a known event stream through real tansu, a real worker and a real Redis."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaConsumer

from conftest import decoded, produce, scrape, wait_for
from stream.kpi.windows import iso_utc


def interaction(iid, queue, channel, offered, answered=None, agent="a1", ended=None, wrapup=None,
                abandoned=None, disposition="resolved", customer=None):
    base = {"interaction_id": iid, "channel": channel, "queue": queue, "schema_version": 1}
    out = [dict(base, event_id=f"{iid}-o", type="interaction.offered", ts=iso_utc(offered),
                **({"customer_id": customer} if customer else {}))]
    if abandoned is not None:
        out.append(dict(base, event_id=f"{iid}-x", type="interaction.abandoned", ts=iso_utc(abandoned)))
        return out
    if answered is not None:
        out.append(dict(base, event_id=f"{iid}-a", type="interaction.answered", ts=iso_utc(answered),
                        agent_id=agent))
    if ended is not None:
        out.append(dict(base, event_id=f"{iid}-e", type="interaction.ended", ts=iso_utc(ended),
                        agent_id=agent))
    if wrapup is not None:
        out.append(dict(base, event_id=f"{iid}-w", type="interaction.wrapup_completed",
                        ts=iso_utc(wrapup), agent_id=agent, disposition=disposition))
    return out




def test_known_stream_lands_exactly_in_redis_and_metrics(stack, unique, worker_factory, redis_client):
    now = time.time()
    t0 = now - 600
    events = []
    # billing/voice: two handled (AHT (190+60 + 100+20)/2 = 185), waits 10 s and 30 s
    events += interaction("c1", "billing", "voice", t0, t0 + 10, "a1", t0 + 200, t0 + 260)
    events += interaction("c2", "billing", "voice", t0 + 5, t0 + 35, "a2", t0 + 135, t0 + 155)
    # sales/chat: one abandoned after 90 s (counted), one short abandon (2 s), one waiting
    events += interaction("c3", "sales", "chat", t0 + 20, abandoned=t0 + 110)
    events += interaction("c4", "sales", "chat", t0 + 30, abandoned=t0 + 32)
    events += interaction("c5", "sales", "sms", now - 45)
    # a duplicate and two bad records
    events.append(dict(events[0]))
    events.append(b"{not json")
    events.append({**events[1], "event_id": "bad-q", "queue": "<b>x</b>"})
    worker = worker_factory()
    produce(stack, unique.interactions, events)
    p = unique.prefix

    def center():
        h = decoded(redis_client.hgetall(f"{p}kpi:center:15m"))
        return h if h.get("handled") == "2" and h.get("abandoned") == "2" else None

    h = wait_for(center, 60, what="center KPIs")
    assert h["offered"] == "5"
    assert h["answered"] == "2"
    assert h["short_abandons"] == "1"
    assert float(h["aht_s"]) == pytest.approx(185.0)
    assert float(h["asa_s"]) == pytest.approx(20.0)
    # SL voice T=20: one of two answered within; counted abandon (90 s > 60 s chat T): N-B = 3
    assert float(h["service_level"]) == pytest.approx(1 / 3)
    assert float(h["abandon_rate"]) == pytest.approx(1 / 3)
    q = decoded(redis_client.hgetall(f"{p}kpi:queue:billing:15m"))
    assert q["handled"] == "2" and float(q["aht_s"]) == pytest.approx(185.0)
    s = decoded(redis_client.hgetall(f"{p}kpi:queue:sales:15m"))
    assert s["offered"] == "3" and "aht_s" not in s  # no handled contact: AHT is absent, not 0
    load = decoded(redis_client.hgetall(f"{p}load:queue:sales"))
    assert load["waiting"] == "1"
    assert 40 <= float(load["longest_wait_s"]) <= 120
    snapshot = redis_client.get(f"{p}snapshot")
    assert snapshot and b'"queue:billing"' in snapshot

    def metrics_ready():
        m = scrape(worker)
        return m if m.get('cc_events_rejected_total{reason="bad_name"}') == 1.0 else None

    m = wait_for(metrics_ready, 30, what="metrics")
    assert m['cc_events_rejected_total{reason="invalid_json"}'] == 1.0
    assert m["cc_events_duplicate_total"] == 1.0
    assert m['cc_aht_seconds{channel="all",queue="billing",window="15m"}'] == pytest.approx(185.0)
    assert m['cc_handle_time_seconds_count{channel="voice",queue="billing"}'] == 2.0
    assert m['cc_handle_time_seconds_sum{channel="voice",queue="billing"}'] == pytest.approx(370.0)
    assert m['cc_contacts_waiting{channel="sms",queue="all"}'] == 1.0

    # the bad records are in the dead-letter topic with their reason and source position
    async def read_dead():
        consumer = AIOKafkaConsumer(unique.deadletter, bootstrap_servers=stack.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None)
        await consumer.start()
        try:
            got = []
            deadline = time.monotonic() + 20
            while len(got) < 2 and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got.extend(records)
            return got
        finally:
            await consumer.stop()

    dead = asyncio.run(read_dead())
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    assert reasons == ["bad_name", "invalid_json"]
    for rec in dead:
        headers = dict(rec.headers)
        assert headers["source_topic"].decode() == unique.interactions
        assert int(headers["source_offset"]) >= 0
    assert any(r.value == b"{not json" for r in dead)
    health = urllib.request.urlopen(worker.url("/readyz"), timeout=5).read()
    assert b"ready" in health


def test_fcr_surveys_and_sentiment_end_to_end(stack, unique, worker_factory, redis_client):
    """FCR corrected by a repeat on another partition, surveys joined, text never stored."""
    now = time.time()
    t0 = now - 700
    events = []
    events += interaction("f1", "billing", "voice", t0, t0 + 5, "a1", t0 + 65, t0 + 75,
                          customer="CUST-RAW-001", disposition="unresolved")
    events += interaction("f2", "support", "chat", t0 + 300, t0 + 310, "a2", t0 + 400, t0 + 410,
                          customer="CUST-RAW-001", disposition="resolved")
    events += interaction("f3", "billing", "voice", t0 + 20, t0 + 25, "a1", t0 + 85, t0 + 95,
                          customer="CUST-RAW-002")
    chat = {"interaction_id": "f2", "channel": "chat", "queue": "support", "schema_version": 1}
    texts = ["this is terrible zebrafruit, I am angry", "awful, still broken", "I hate waiting",
             "ok that helps", "great, thank you so much", "wonderful help, thanks"]
    for i, text in enumerate(texts):  # sours then lifts: start < end
        events.insert(-1, dict(chat, event_id=f"m{i}", type="interaction.message",
                               ts=iso_utc(t0 + 320 + 10 * i), direction="customer", text=text))
    surveys = [{"event_id": "s1", "type": "survey.responded", "ts": iso_utc(t0 + 500),
                "schema_version": 1, "interaction_id": "f1", "customer_id": "CUST-RAW-001",
                "nps": 10, "csat": 5, "ces": 2},
               {"event_id": "s2", "type": "survey.responded", "ts": iso_utc(t0 + 510),
                "schema_version": 1, "interaction_id": "f3", "nps": 3, "csat": 2, "ces": 6}]
    worker_factory()
    produce(stack, unique.interactions, events)
    produce(stack, unique.surveys, surveys)
    p = unique.prefix

    def center():
        h = decoded(redis_client.hgetall(f"{p}kpi:center:15m"))
        ok = h.get("handled") == "3" and h.get("surveys") == "2" and "fcr_rate" in h
        return h if ok and float(h["fcr_rate"]) < 1 else None

    h = wait_for(center, 60, what="FCR and survey KPIs")
    # f1 repeated by f2 (another queue and channel); f2 and f3 not (yet): (3 − 1) / 3
    assert float(h["fcr_rate"]) == pytest.approx(2 / 3)
    assert h["fcr_pending"] == "2"
    assert float(h["fcr_disposition_rate"]) == pytest.approx(2 / 3)  # f1 unresolved; f2, f3 resolved
    assert float(h["nps"]) == pytest.approx(0.0)  # one promoter, one detractor
    assert float(h["csat"]) == pytest.approx(0.5)
    assert float(h["ces"]) == pytest.approx(4.0)
    assert float(h["ces_high_effort"]) == pytest.approx(0.5)
    assert h["sentiment_samples"] == "1" and float(h["sentiment_improved"]) == 1.0
    assert float(h["sentiment"]) > 0.3 and float(h["sentiment_negative"]) == 0.0
    billing = decoded(redis_client.hgetall(f"{p}kpi:queue:billing:15m"))
    assert float(billing["fcr_rate"]) == pytest.approx(0.5)  # f1 repeated, f3 not
    # privacy: neither the raw customer id nor message text is anywhere in Redis
    for key in redis_client.scan_iter(f"{p}*"):
        kind = redis_client.type(key)
        blobs = [redis_client.get(key) or b""] if kind == b"string" else []
        if kind == b"hash":
            blobs = [k + b"=" + v for k, v in redis_client.hgetall(key).items()]
        for blob in blobs:
            assert b"CUST-RAW" not in blob and b"zebrafruit" not in blob, key
