"""Independent reading of the replay call log (DESIGN §2 "Historical call logs") for the oracle.

Shares no code with ``stream/``. ``events_from_call_log(text, tz)`` turns a *valid* call log
into the interaction events the replay rule describes, so ``oracle.intervals`` sees exactly
what the replay is meant to mean:

- ``offered`` at ``offered_at`` (with ``customer_id`` when given);
- ``abandoned`` at ``abandoned_at``, or ``answered`` at ``answered_at`` (with ``agent_id``);
- when ``hold_s`` > 0, one hold of that length inside the talk time;
- ``ended`` at ``ended_at``;
- ``wrapup_completed`` at ``wrapup_completed_at`` — or at ``ended_at`` when that column is
  empty: the replay rule reads a missing wrap-up as ACW = 0, not as the live ACW timeout.

Timestamps are ISO 8601; one without an offset is local time in ``tz`` (the first of the two
readings on a fall-back day). Unknown columns are ignored. Rows are assumed valid: the tests
add their bad rows to the file only, never to what they give this module.

Also: ``range_kpis`` (the oracle's totals over a range of whole intervals, re-added from
facts), ``compare`` (report output against the oracle: counts exactly, ratios to 1e-9).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import oracle

UTC = timezone.utc

# Not computed by the engine yet, or shaped differently by design (as in test_engine_oracle),
# plus FCR, which depends on "now" (a replay's event clock vs. the oracle's now).
SKIP = {"fcr_rate", "fcr_pending", "ttr_s", "ttr_p90_s", "fcr_excluded", "sl_threshold_s",
        "surveys_unjoined", "occupancy"}
COUNTS = {"offered", "answered", "abandoned", "short_abandons", "handled", "transferred",
          "surveys", "sentiment_samples"}
REPORT_ONLY = {"start", "intervals"}


def read_ts(value: str, tz: ZoneInfo) -> datetime:
    t = datetime.fromisoformat(value.strip())
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.astimezone(UTC)


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat()


def row_to_events(row: dict, tz: ZoneInfo) -> list[dict]:
    """The events of one valid call-log row under the replay rule."""
    iid = row["interaction_id"].strip()
    base = {"interaction_id": iid, "channel": (row.get("channel") or "").strip() or "voice",
            "queue": row["queue"].strip(), "schema_version": 1}
    out: list[dict] = []

    def add(kind: str, t: datetime, **extra) -> None:
        out.append(dict(base, event_id=f"log-{iid}-{len(out)}", type=kind, ts=_rfc3339(t),
                        **extra))

    def col(name: str) -> str:
        return (row.get(name) or "").strip()

    offered = read_ts(col("offered_at"), tz)
    add(oracle.OFFERED, offered, **({"customer_id": col("customer_id")} if col("customer_id") else {}))
    if col("abandoned_at"):
        add(oracle.ABANDONED, read_ts(col("abandoned_at"), tz))
        return out
    agent = col("agent_id")
    answered = read_ts(col("answered_at"), tz)
    ended = read_ts(col("ended_at"), tz)
    add(oracle.ANSWERED, answered, agent_id=agent)
    hold = float(col("hold_s") or 0)
    if hold > 0:
        add(oracle.HOLD_STARTED, answered, agent_id=agent)
        add(oracle.HOLD_ENDED, answered + timedelta(seconds=hold), agent_id=agent)
    add(oracle.ENDED, ended, agent_id=agent)
    wrapup = read_ts(col("wrapup_completed_at"), tz) if col("wrapup_completed_at") else ended
    extra = {"agent_id": agent}
    if col("disposition"):
        extra["disposition"] = col("disposition")
    add(oracle.WRAPUP, wrapup, **extra)
    return out


def events_from_call_log(text: str, tz: str | ZoneInfo) -> list[dict]:
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    events: list[dict] = []
    for row in csv.DictReader(io.StringIO(text)):
        events.extend(row_to_events(row, zone))
    return events


def range_kpis(all_facts: list, cfg: oracle.OracleConfig, scope: str, lo: datetime,
               hi: datetime) -> dict:
    """The oracle's KPIs of `scope` over the intervals starting in [lo, hi): sums re-added."""
    selected = [f for f in all_facts if lo <= oracle.interval_start(f.t) < hi]
    return oracle.kpis(scope, oracle._accumulate(selected).get(scope), cfg)


def compare(expected: dict, got: dict, context: str = "") -> None:
    """Counts exactly, ratios to 1e-9; a ratio absent on one side must be absent on the other."""
    exp = {k: v for k, v in expected.items() if k not in SKIP}
    act = {k: v for k, v in got.items() if k not in SKIP and k not in REPORT_ONLY}
    assert set(exp) == set(act), (context, sorted(set(exp) ^ set(act)), exp, act)
    for name, value in exp.items():
        if name in COUNTS:
            assert act[name] == value, (context, name, value, act[name])
        else:
            assert abs(act[name] - value) <= 1e-9 * max(1.0, abs(value)), (
                context, name, value, act[name])


def mismatches(expected: dict, got: dict) -> list[str]:
    """Like `compare`, but returns the differences (for scripts)."""
    try:
        compare(expected, got)
    except AssertionError as exc:
        return [repr(exc.args[0])[:400]]
    return []
