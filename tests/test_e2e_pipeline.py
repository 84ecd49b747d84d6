"""End to end: a known event stream through real tansu, a real worker and a real Redis."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import pytest
from aiokafka import AIOKafkaConsumer

from conftest import decoded, produce, wait_for
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


def scrape(worker) -> dict[str, float]:
    text = urllib.request.urlopen(worker.url("/metrics"), timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
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
