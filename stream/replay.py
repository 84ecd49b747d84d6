"""`ccpulse replay FILE.csv`: a historical call log through the real broker and pipeline.

Each row becomes the events of one contact (offered, answered/abandoned, hold, ended,
wrap-up) with the row's own timestamps; events are produced in event-time order so the
worker's event-time clock moves as if the day were live. Bad rows are reported with their
line number and reason and never stop the replay.
"""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass, field
from typing import Iterator
from zoneinfo import ZoneInfo

import orjson

from .events import NAME_PATTERN
from .kpi.windows import iso_utc, parse_iso

import re

_NAME = re.compile(NAME_PATTERN)
DISPOSITIONS = {"resolved", "unresolved", "follow_up", "escalated"}


@dataclass
class ReplaySummary:
    rows: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    events: int = 0
    end_offsets: dict[int, int] = field(default_factory=dict)


class RowError(ValueError):
    pass


def _ts(row: dict, col: str, tz: ZoneInfo, required: bool = False) -> float | None:
    value = (row.get(col) or "").strip()
    if not value:
        if required:
            raise RowError(f"missing {col}")
        return None
    try:
        return parse_iso(value, tz)
    except ValueError:
        raise RowError(f"bad timestamp in {col}: {value[:40]!r}") from None


def row_events(row: dict, tz: ZoneInfo, line: int) -> list[tuple[float, dict]]:
    """The events of one call-log row, validated against DESIGN §2."""
    iid = (row.get("interaction_id") or "").strip()
    queue = (row.get("queue") or "").strip()
    channel = (row.get("channel") or "voice").strip() or "voice"
    if not iid or len(iid) > 128:
        raise RowError("missing or too long interaction_id")
    if not _NAME.match(queue):
        raise RowError("missing or invalid queue")
    if channel not in ("voice", "chat", "sms"):
        raise RowError(f"bad channel {channel[:20]!r}")
    agent = (row.get("agent_id") or "").strip()
    customer = (row.get("customer_id") or "").strip() or None
    disposition = (row.get("disposition") or "").strip() or None
    if disposition is not None and disposition not in DISPOSITIONS:
        raise RowError(f"bad disposition {disposition[:20]!r}")
    offered = _ts(row, "offered_at", tz, True)
    answered = _ts(row, "answered_at", tz)
    abandoned = _ts(row, "abandoned_at", tz)
    ended = _ts(row, "ended_at", tz)
    wrapup = _ts(row, "wrapup_completed_at", tz)
    if (answered is None) == (abandoned is None):
        raise RowError("exactly one of answered_at / abandoned_at is required")
    base = {"interaction_id": iid, "channel": channel, "queue": queue}
    n = 0

    def ev(kind: str, ts: float, **extra) -> tuple[float, dict]:
        nonlocal n
        n += 1
        return ts, {"event_id": f"replay-{iid}-{n}", "type": kind, "ts": iso_utc(ts),
                    "schema_version": 1, **base, **extra}

    out = [ev("interaction.offered", offered, **({"customer_id": customer} if customer else {}))]
    if abandoned is not None:
        if abandoned < offered:
            raise RowError("abandoned_at before offered_at")
        out.append(ev("interaction.abandoned", abandoned))
        return out
    if not _NAME.match(agent):
        raise RowError("answered rows need a valid agent_id")
    if answered < offered:
        raise RowError("answered_at before offered_at")
    if ended is None:
        raise RowError("ended_at is required with answered_at")
    if ended < answered:
        raise RowError("ended_at before answered_at")
    hold_text = (row.get("hold_s") or "").strip()
    hold = 0.0
    if hold_text:
        try:
            hold = float(hold_text)
        except ValueError:
            raise RowError(f"bad hold_s {hold_text[:20]!r}") from None
        if not 0 <= hold <= ended - answered:
            raise RowError("hold_s outside the talk time")
    out.append(ev("interaction.answered", answered, agent_id=agent))
    if hold > 0:
        out.append(ev("interaction.hold_started", answered, agent_id=agent))
        out.append(ev("interaction.hold_ended", answered + hold, agent_id=agent))
    out.append(ev("interaction.ended", ended, agent_id=agent))
    if wrapup is None:
        wrapup = ended  # DESIGN §2: a missing wrap-up means ACW = 0, not the timeout
    if wrapup < ended:
        raise RowError("wrapup_completed_at before ended_at")
    extra = {"agent_id": agent}
    if disposition:
        extra["disposition"] = disposition
    out.append(ev("interaction.wrapup_completed", wrapup, **extra))
    return out


def read_call_log(path: str, tz: ZoneInfo, summary: ReplaySummary) -> list[tuple[float, int, dict]]:
    """All events of the file, as a heap-ordered list (ts, seq, event)."""
    events: list[tuple[float, int, dict]] = []
    seq = 0
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "interaction_id" not in reader.fieldnames:
            raise RowError("the file needs a header row with interaction_id, queue, offered_at, …")
        for row in reader:
            summary.rows += 1
            line = reader.line_num
            try:
                for ts, event in row_events(row, tz, line):
                    events.append((ts, seq, event))
                    seq += 1
            except RowError as exc:
                summary.rejected.append((line, str(exc)))
    events.sort(key=lambda t: (t[0], t[1]))
    return events


def ordered(events: list[tuple[float, int, dict]]) -> Iterator[dict]:
    for _, _, event in events:
        yield event


async def produce_events(events: list[tuple[float, int, dict]], bootstrap: str, topic: str,
                         summary: ReplaySummary, kafka_kwargs: dict | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=20, max_batch_size=1 << 20, **(kafka_kwargs or {}))
    await producer.start()
    try:
        pending = []
        for _, _, event in events:
            fut = await producer.send(topic, key=event["interaction_id"].encode(),
                                      value=orjson.dumps(event))
            pending.append(fut)
            if len(pending) >= 20000:
                for md in await asyncio.gather(*pending):
                    summary.end_offsets[md.partition] = max(summary.end_offsets.get(md.partition, -1),
                                                            md.offset)
                pending = []
        for md in await asyncio.gather(*pending):
            summary.end_offsets[md.partition] = max(summary.end_offsets.get(md.partition, -1),
                                                    md.offset)
        summary.events = len(events)
    finally:
        await producer.stop()


async def wait_processed(redis_url: str, prefix: str, topic: str, end_offsets: dict[int, int],
                         timeout_s: float) -> bool:
    """True once every partition's checkpoint is past the replay's last offset and published."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            done = True
            for partition, last in end_offsets.items():
                raw = await client.hget(f"{prefix}state:i{partition}:meta", f"offset:{topic}:{partition}")
                if raw is None or int(raw) <= last:
                    done = False
                    break
            if done:
                # the combined picture is written right after the checkpoint, in the same cycle
                before = await client.get(f"{prefix}snapshot")
                for _ in range(100):
                    await asyncio.sleep(0.1)
                    if await client.get(f"{prefix}snapshot") != before:
                        return True
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await client.aclose()


__all__ = ["read_call_log", "produce_events", "wait_processed", "ReplaySummary"]
