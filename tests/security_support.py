"""Small helpers shared by the tests/test_security_*.py files."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

from stream.kpi.windows import iso_utc


def interaction(iid: str, queue: str, channel: str, offered: float, answered: float | None = None,
                agent: str = "a1", ended: float | None = None, wrapup: float | None = None,
                abandoned: float | None = None, customer: str | None = None,
                messages: list[tuple[float, str, str]] = ()) -> list[dict]:
    """Events of one contact; `messages` are (ts, direction, text) chat messages."""
    base = {"interaction_id": iid, "channel": channel, "queue": queue, "schema_version": 1}
    out = [dict(base, event_id=f"{iid}-o", type="interaction.offered", ts=iso_utc(offered),
                **({"customer_id": customer} if customer else {}))]
    if abandoned is not None:
        out.append(dict(base, event_id=f"{iid}-x", type="interaction.abandoned",
                        ts=iso_utc(abandoned)))
        return out
    if answered is not None:
        out.append(dict(base, event_id=f"{iid}-a", type="interaction.answered",
                        ts=iso_utc(answered), agent_id=agent))
    for n, (ts, direction, text) in enumerate(messages):
        msg = dict(base, event_id=f"{iid}-m{n}", type="interaction.message", ts=iso_utc(ts),
                   direction=direction, text=text)
        if direction == "agent":
            msg["agent_id"] = agent
        out.append(msg)
    if ended is not None:
        out.append(dict(base, event_id=f"{iid}-e", type="interaction.ended", ts=iso_utc(ended),
                        agent_id=agent))
    if wrapup is not None:
        out.append(dict(base, event_id=f"{iid}-w", type="interaction.wrapup_completed",
                        ts=iso_utc(wrapup), agent_id=agent, disposition="resolved"))
    return out


def http(url: str, method: str = "GET", headers: dict | None = None, data: bytes | None = None,
         timeout: float = 10) -> tuple[int, dict, bytes]:
    """(status, headers, body) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def reachable(url: str, headers: dict | None = None, ok=(200,)) -> bool:
    """True when the URL answers with one of `ok` (a refused connection is False)."""
    try:
        return http(url, headers=headers, timeout=5)[0] in ok
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def scrape_text(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def read_topic(bootstrap: str, topic: str, min_count: int = 0, timeout: float = 20.0,
               **kafka_kw) -> list:
    """Every record of a topic from the beginning (waits for at least `min_count`)."""
    from aiokafka import AIOKafkaConsumer

    async def go():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    group_id=None, **kafka_kw)
        await consumer.start()
        try:
            got = []
            deadline = time.monotonic() + timeout
            idle = 0
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                n = sum(len(r) for r in batch.values())
                for records in batch.values():
                    got.extend(records)
                idle = idle + 1 if n == 0 else 0
                if len(got) >= min_count and idle >= 2:
                    break
            return got
        finally:
            await consumer.stop()

    return asyncio.run(go())
