"""Time arithmetic for buckets and windows: minutes, 15-minute intervals, local midnight.

Minute buckets and intervals are keyed by epoch seconds (UTC), so they never depend on the
timezone; only `today` and interval labels use the configured IANA zone. Local midnight is
always a 15-minute boundary in real zones, so `today` is a whole number of intervals, and a
DST day simply has 92 or 100 of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

MINUTE = 60
INTERVAL = 900
WINDOWS = ("15m", "1h", "today")
ROLLING_MINUTES = {"15m": 15, "1h": 60}


def minute_of(ts: float) -> int:
    """Start (epoch s) of the minute holding ts; [start, start+60) — a boundary belongs to the new minute."""
    return int(ts // MINUTE) * MINUTE


def interval_of(ts: float) -> int:
    return int(ts // INTERVAL) * INTERVAL


def local_midnight(now: float, tz: ZoneInfo) -> int:
    """Epoch seconds of the last local midnight at or before `now` (DST-correct)."""
    local = datetime.fromtimestamp(now, tz)
    midnight = datetime(local.year, local.month, local.day, tzinfo=tz)
    return int(midnight.timestamp())


def window_start(window: str, now: float, tz: ZoneInfo) -> int:
    """First bucket start included in `window` at `now`; the window ends with the current minute."""
    if window == "today":
        return local_midnight(now, tz)
    return minute_of(now) - (ROLLING_MINUTES[window] - 1) * MINUTE


def iso_local(epoch: float, tz: ZoneInfo) -> str:
    """RFC 3339 local time with offset, seconds precision (interval labels)."""
    return datetime.fromtimestamp(epoch, tz).isoformat(timespec="seconds")


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_iso(text: str, tz: ZoneInfo | None = None) -> float:
    """ISO 8601 → epoch seconds; a naive time is read in tz (UTC when tz is None)."""
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz or timezone.utc)
    return dt.timestamp()


def intervals_between(start: float, end: float) -> list[int]:
    first = interval_of(start)
    return list(range(first, int(end), INTERVAL))


def span_pieces(start: float, end: float, step: int):
    """Split [start, end) at multiples of `step`: yields (bucket_start, seconds)."""
    t = start
    while t < end:
        b = int(t // step) * step
        nxt = min(end, b + step)
        yield b, nxt - t
        t = nxt


def days(n: float) -> timedelta:
    return timedelta(days=n)
