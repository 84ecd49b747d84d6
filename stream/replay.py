"""`ccpulse replay FILE.csv`: a historical call log through the real broker and pipeline.

Each row becomes the events of one contact (offered, answered/abandoned, hold, ended,
wrap-up) with the row's own timestamps; events are produced in event-time order so the
worker's event-time clock moves as if the day were live. Bad rows are reported with their
line number and reason and never stop the replay.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator
from zoneinfo import ZoneInfo

import orjson

from .events import NAME_PATTERN
from .kpi.windows import parse_iso

_NAME = re.compile(NAME_PATTERN)
DISPOSITIONS = {"resolved", "unresolved", "follow_up", "escalated"}
REQUIRED_COLUMNS = ("interaction_id", "queue", "offered_at")
MAX_ID = 128  # event_id, interaction_id and customer_id: 1–128 chars (DESIGN §2, schemas/)


def _iso(epoch: float) -> str:
    """RFC 3339 UTC with the precision the call log gave (ms, or µs when it has them).

    Truncating to milliseconds would move waits across a threshold: offered …00.0006 and
    answered …20.0009 is a 20.0003 s wait, not within T = 20 s.
    """
    dt = datetime.fromtimestamp(epoch, timezone.utc)
    spec = "milliseconds" if dt.microsecond % 1000 == 0 else "microseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def _event_id_base(iid: str) -> str:
    """`replay-<iid>`, or a digest of the id when that would pass the 128-char event_id limit.

    Deterministic, so replaying the same file twice is deduplicated by the worker.
    """
    base = f"replay-{iid}"
    if len(base) + 4 <= MAX_ID:
        return base
    return "replay-h" + hashlib.sha256(iid.encode()).hexdigest()[:40]


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
    if customer is not None and len(customer) > MAX_ID:
        raise RowError(f"customer_id longer than {MAX_ID} characters")
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
    id_base = _event_id_base(iid)
    n = 0

    def ev(kind: str, ts: float, **extra) -> tuple[float, dict]:
        nonlocal n
        n += 1
        return ts, {"event_id": f"{id_base}-{n}", "type": kind, "ts": _iso(ts),
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
    first_line: dict[str, int] = {}  # interaction_id -> line of the row that used it
    # utf-8-sig: spreadsheet exports often start with a byte-order mark
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is not None:
            reader.fieldnames = [(name or "").strip() for name in reader.fieldnames]
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise RowError("the file needs a header row with interaction_id, queue, offered_at, … "
                           f"(missing: {', '.join(missing)})")
        for row in reader:
            summary.rows += 1
            line = reader.line_num
            try:
                row_evs = row_events(row, tz, line)
                iid = row_evs[0][1]["interaction_id"]
                if iid in first_line:
                    # the same event ids: the worker would drop or mix this row silently
                    raise RowError(f"duplicate interaction_id (first at line {first_line[iid]})")
                first_line[iid] = line
                for ts, event in row_evs:
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

    from .partitioning import DefaultPartitioner

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=20, max_batch_size=1 << 20,
                                partitioner=DefaultPartitioner(), **(kafka_kwargs or {}))
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
    """True once every partition's checkpoint is past the replay's last offset and
    published, and, where the workers keep agent scopes (they write `agents:through`), once
    every slice of agents has been refreshed past it too (within `agent_publish_interval_s`)."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    deadline = time.monotonic() + timeout_s

    async def past(key, field_of) -> bool:
        for partition, last in end_offsets.items():
            raw = await client.hget(key(partition), field_of(partition))
            if raw is None or int(raw) <= last:
                return False
        return True

    through = f"{prefix}agents:through"
    try:
        while time.monotonic() < deadline:
            if not await past(lambda p: f"{prefix}state:i{p}:meta", lambda p: f"offset:{topic}:{p}"):
                await asyncio.sleep(0.2)
                continue
            # the combined picture is written right after the checkpoint, in the same cycle
            before = await client.get(f"{prefix}snapshot")
            for _ in range(100):
                await asyncio.sleep(0.1)
                if await client.get(f"{prefix}snapshot") != before:
                    break
            while time.monotonic() < deadline:
                if not await client.exists(through) or await past(lambda _: through,
                                                                  lambda p: f"{topic}:{p}"):
                    return True
                await asyncio.sleep(0.2)
        return False
    finally:
        await client.aclose()


__all__ = ["read_call_log", "produce_events", "wait_processed", "ReplaySummary"]
