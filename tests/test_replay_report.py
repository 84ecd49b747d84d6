"""`ccpulse replay` (DESIGN §2 call logs) and `ccpulse report` (§5 interval history).

Three parts:
- row parsing of `stream/replay.py`: the events of valid rows, bad rows reported with their
  line and reason without stopping the replay, naive timestamps in `--timezone`, unknown
  columns and any column order;
- `stream/report.py` against a real redis-server holding hand-written interval hashes: range
  totals re-add counts and sums and recompute ratios (never average them), `--by interval`,
  json/csv/table, bad ranges;
- end to end: a two-day call log (with the Berlin fall-back day) replayed by the real CLI
  through tansu and an event-clock worker; `ccpulse report` equals the independent oracle
  computed from the same CSV (tests/calllog.py reads it under the replay rule).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis as redis_sync
from typer.testing import CliRunner

import calllog
import eventgen
import oracle
from conftest import wait_for
from stream import events as E
from stream.cli import app
from stream.replay import ReplaySummary, RowError, read_call_log, row_events
from stream.report import ReportError, read_range, render
from stream.sinks.redis_sink import connect

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc

OFFERED, ANSWERED, ABANDONED = "interaction.offered", "interaction.answered", "interaction.abandoned"
HOLD_STARTED, HOLD_ENDED = "interaction.hold_started", "interaction.hold_ended"
ENDED, WRAPUP = "interaction.ended", "interaction.wrapup_completed"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def answered_row(**over) -> dict:
    row = {"interaction_id": "c1", "queue": "billing", "channel": "chat",
           "customer_id": "cust-1", "agent_id": "a1", "disposition": "resolved",
           "offered_at": "2026-10-24T10:00:00+02:00", "answered_at": "2026-10-24T10:00:15+02:00",
           "abandoned_at": "", "ended_at": "2026-10-24T10:05:15+02:00",
           "wrapup_completed_at": "2026-10-24T10:06:00+02:00", "hold_s": "30"}
    row.update(over)
    return row


def abandoned_row(**over) -> dict:
    row = {"interaction_id": "c2", "queue": "sales-2", "offered_at": "2026-10-24T08:00:00Z",
           "abandoned_at": "2026-10-24T08:00:42.5Z"}
    row.update(over)
    return row


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def assert_valid_for_worker(events: list[dict]) -> None:
    """Every produced event passes the worker's own validator (schemas/)."""
    for ev in events:
        E.decode(orjson.dumps(ev), "interactions")  # raises E.Rejected


# ---------------------------------------------------------------------------- replay rows


def test_answered_row_becomes_offered_answered_hold_ended_wrapup():
    out = row_events(answered_row(), BERLIN, 2)
    evs = [e for _, e in out]
    assert [e["type"] for e in evs] == [OFFERED, ANSWERED, HOLD_STARTED, HOLD_ENDED, ENDED, WRAPUP]
    assert [utc(e["ts"]) for e in evs] == [
        datetime(2026, 10, 24, 8, 0, 0, tzinfo=UTC), datetime(2026, 10, 24, 8, 0, 15, tzinfo=UTC),
        datetime(2026, 10, 24, 8, 0, 15, tzinfo=UTC), datetime(2026, 10, 24, 8, 0, 45, tzinfo=UTC),
        datetime(2026, 10, 24, 8, 5, 15, tzinfo=UTC), datetime(2026, 10, 24, 8, 6, 0, tzinfo=UTC)]
    assert [ts for ts, _ in out] == [utc(e["ts"]).timestamp() for e in evs]
    for e in evs:
        assert (e["interaction_id"], e["queue"], e["channel"], e["schema_version"]) == (
            "c1", "billing", "chat", 1)
        assert e["ts"].endswith("Z")
    assert evs[0]["customer_id"] == "cust-1" and "agent_id" not in evs[0]
    assert all(e["agent_id"] == "a1" for e in evs[1:])
    assert evs[-1]["disposition"] == "resolved"
    assert len({e["event_id"] for e in evs}) == 6
    # deterministic ids: replaying the same file twice is deduplicated by the worker
    assert [e["event_id"] for e in evs] == [e["event_id"] for _, e in row_events(answered_row(), BERLIN, 9)]
    assert_valid_for_worker(evs)


def test_abandoned_row_defaults_to_voice_and_has_two_events():
    evs = [e for _, e in row_events(abandoned_row(), BERLIN, 3)]
    assert [e["type"] for e in evs] == [OFFERED, ABANDONED]
    assert all(e["channel"] == "voice" for e in evs)
    assert "customer_id" not in evs[0]
    assert utc(evs[1]["ts"]) - utc(evs[0]["ts"]) == timedelta(seconds=42.5)
    assert_valid_for_worker(evs)


def test_missing_wrapup_means_acw_zero_and_no_hold_without_hold_s():
    evs = [e for _, e in row_events(answered_row(wrapup_completed_at="", disposition="", hold_s=""),
                                    BERLIN, 2)]
    assert [e["type"] for e in evs] == [OFFERED, ANSWERED, ENDED, WRAPUP]
    assert evs[-1]["ts"] == evs[-2]["ts"]  # wrap-up at ended: ACW = 0, not the 600 s timeout
    assert "disposition" not in evs[-1]
    assert_valid_for_worker(evs)


@pytest.mark.parametrize("text,zone,expected", [
    ("2026-10-24 10:00:00", "Europe/Berlin", "2026-10-24T08:00:00+00:00"),
    ("2026-10-24T10:00:00", "UTC", "2026-10-24T10:00:00+00:00"),
    ("2026-10-24T10:00:00", "America/New_York", "2026-10-24T14:00:00+00:00"),
    ("2026-10-24T10:00:00.250", "Europe/Berlin", "2026-10-24T08:00:00.250000+00:00"),
    # an offset (or Z) wins over --timezone
    ("2026-10-24T10:00:00+05:30", "Europe/Berlin", "2026-10-24T04:30:00+00:00"),
    ("2026-10-24T10:00:00Z", "Europe/Berlin", "2026-10-24T10:00:00+00:00"),
    # DST: the spring-forward day, and the repeated hour of the fall-back day (first reading)
    ("2026-03-29T03:30:00", "Europe/Berlin", "2026-03-29T01:30:00+00:00"),
    ("2026-10-25T02:30:00", "Europe/Berlin", "2026-10-25T00:30:00+00:00"),
    ("2026-10-25T03:30:00", "Europe/Berlin", "2026-10-25T02:30:00+00:00"),
])
def test_timestamps_without_offset_are_read_in_the_timezone(text, zone, expected):
    row = abandoned_row(offered_at=text, abandoned_at="2026-10-25T12:00:00Z")
    offered = row_events(row, ZoneInfo(zone), 2)[0][1]
    assert utc(offered["ts"]) == datetime.fromisoformat(expected)


def test_sub_millisecond_times_are_kept():
    # a 20.0003 s wait is not within T = 20 s; truncating both times to ms would make it 20.000
    row = answered_row(offered_at="2026-10-24T08:00:00.000600Z",
                       answered_at="2026-10-24T08:00:20.000900Z", hold_s="12.3")
    evs = [e for _, e in row_events(row, BERLIN, 2)]
    wait = utc(evs[1]["ts"]) - utc(evs[0]["ts"])
    assert wait == timedelta(seconds=20, microseconds=300)
    assert utc(evs[3]["ts"]) - utc(evs[2]["ts"]) == timedelta(seconds=12.3)
    assert_valid_for_worker(evs)


def test_long_ids_still_make_valid_events_and_too_long_customer_is_a_bad_row():
    iid = "x" * 128  # the longest interaction_id the envelope allows
    evs = [e for _, e in row_events(answered_row(interaction_id=iid), BERLIN, 2)]
    assert all(len(e["event_id"]) <= 128 for e in evs) and len({e["event_id"] for e in evs}) == 6
    other = [e for _, e in row_events(answered_row(interaction_id="x" * 127 + "y"), BERLIN, 2)]
    assert not {e["event_id"] for e in evs} & {e["event_id"] for e in other}
    assert_valid_for_worker(evs)
    with pytest.raises(RowError, match="customer_id"):
        row_events(answered_row(customer_id="c" * 129), BERLIN, 2)
    with pytest.raises(RowError, match="interaction_id"):
        row_events(answered_row(interaction_id="x" * 129), BERLIN, 2)


BAD_ROWS = [  # (row, reason fragment)
    (answered_row(interaction_id="b1", offered_at=""), "missing offered_at"),
    (answered_row(interaction_id="b2", abandoned_at="2026-10-24T08:01:00Z"),
     "exactly one of answered_at / abandoned_at"),
    (answered_row(interaction_id="b3", answered_at=""), "exactly one of answered_at / abandoned_at"),
    (answered_row(interaction_id="b4", ended_at="2026-10-24T10:00:10+02:00"),
     "ended_at before answered_at"),
    (answered_row(interaction_id="b5", answered_at="yesterday noon"), "bad timestamp in answered_at"),
    (answered_row(interaction_id="b6", offered_at="2026-13-40T10:00:00"), "bad timestamp in offered_at"),
    (answered_row(interaction_id="b7", queue="<b>x</b>"), "invalid queue"),
    (answered_row(interaction_id="b8", queue="bad queue"), "invalid queue"),
    (answered_row(interaction_id="b9", queue=""), "invalid queue"),
    (answered_row(interaction_id="b10", hold_s="abc"), "bad hold_s"),
    (answered_row(interaction_id="b11", hold_s="-5"), "hold_s outside the talk time"),
    (answered_row(interaction_id="b12", hold_s="301"), "hold_s outside the talk time"),
    (answered_row(interaction_id="b13", channel="fax"), "bad channel"),
    (answered_row(interaction_id="b14", ended_at=""), "ended_at is required"),
    (answered_row(interaction_id="b15", wrapup_completed_at="2026-10-24T10:05:00+02:00"),
     "wrapup_completed_at before ended_at"),
    (answered_row(interaction_id="b16", answered_at="2026-10-24T09:59:00+02:00"),
     "answered_at before offered_at"),
    (abandoned_row(interaction_id="b17", abandoned_at="2026-10-24T07:59:59Z"),
     "abandoned_at before offered_at"),
    (answered_row(interaction_id="b18", agent_id="a 1"), "agent_id"),
    (answered_row(interaction_id="b19", disposition="happy"), "bad disposition"),
    (answered_row(interaction_id="", queue="q1"), "interaction_id"),
]


def test_bad_rows_are_reported_with_line_and_reason_and_never_stop_the_replay(tmp_path):
    rows = [answered_row(interaction_id="good-1")]
    rows += [row for row, _ in BAD_ROWS]
    rows += [abandoned_row(interaction_id="good-2"),
             answered_row(interaction_id="good-1", queue="q1")]  # a second row with the same id
    path = write_csv(tmp_path / "log.csv", rows, columns=list(answered_row()))
    summary = ReplaySummary()
    events = read_call_log(str(path), BERLIN, summary)
    assert summary.rows == len(rows)
    lines = [line for line, _ in summary.rejected]
    # header is line 1, the first row line 2
    assert lines == list(range(3, 3 + len(BAD_ROWS))) + [len(rows) + 1]
    for (line, reason), (_, fragment) in zip(summary.rejected, BAD_ROWS):
        assert fragment in reason, (line, reason, fragment)
    assert summary.rejected[-1][1] == "duplicate interaction_id (first at line 2)"
    # the good rows before and after the bad ones are all there, in event-time order
    got = [e for _, _, e in events]
    assert sorted({e["interaction_id"] for e in got}) == ["good-1", "good-2"]
    assert len(got) == 6 + 2
    assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)
    assert {e["queue"] for e in got if e["interaction_id"] == "good-1"} == {"billing"}


def test_unknown_columns_are_ignored_and_columns_may_come_in_any_order(tmp_path):
    rows = [answered_row(), abandoned_row(), answered_row(interaction_id="c3", customer_id="",
                                                          hold_s="", wrapup_completed_at="")]
    canonical = list(answered_row())
    plain = write_csv(tmp_path / "plain.csv", rows, canonical)
    shuffled = canonical + ["notes", "Queue Name", "talk_s"]
    random.Random(7).shuffle(shuffled)
    extra = [dict(r, notes='said "hi", then left', **{"Queue Name": "ignored", "talk_s": "x"})
             for r in rows]
    other = write_csv(tmp_path / "shuffled.csv", extra, shuffled)
    assert shuffled[:3] != canonical[:3]
    a, b = ReplaySummary(), ReplaySummary()
    assert read_call_log(str(plain), BERLIN, a) == read_call_log(str(other), BERLIN, b)
    assert a.rejected == b.rejected == []
    # only the required columns are needed at all
    minimal = write_csv(tmp_path / "min.csv", [abandoned_row()],
                        ["offered_at", "queue", "abandoned_at", "interaction_id"])
    s = ReplaySummary()
    assert [e["type"] for _, _, e in read_call_log(str(minimal), BERLIN, s)] == [OFFERED, ABANDONED]


def test_header_with_bom_and_spaces_is_read(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffinteraction_id, queue ,offered_at,abandoned_at\r\n"
                     "c9,q1,2026-10-24 10:00:00,2026-10-24 10:00:30\r\n".encode())
    s = ReplaySummary()
    events = read_call_log(str(path), BERLIN, s)
    assert s.rejected == [] and [e["queue"] for _, _, e in events] == ["q1", "q1"]


def test_a_file_without_the_required_header_is_an_error(tmp_path):
    path = write_csv(tmp_path / "no-queue.csv", [{"interaction_id": "c1", "offered_at": "x"}])
    with pytest.raises(RowError, match="missing: queue"):
        read_call_log(str(path), BERLIN, ReplaySummary())
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(RowError):
        read_call_log(str(empty), BERLIN, ReplaySummary())


def test_cli_replay_prints_bad_rows_and_needs_no_broker_without_valid_rows(tmp_path):
    path = write_csv(tmp_path / "bad.csv", [row for row, _ in BAD_ROWS[:3]],
                     columns=list(answered_row()))
    env = {"CCPULSE_BROKER_URL": "kafka://127.0.0.1:1", "CCPULSE_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = CliRunner().invoke(app, ["replay", str(path), "--timezone", "Europe/Berlin"], env=env)
    assert result.exit_code == 0, result.output
    assert "rows read        3" in result.output and "rows rejected    3" in result.output
    assert "  line 2: missing offered_at" in result.output
    assert "  line 4: exactly one of answered_at / abandoned_at is required" in result.output
    assert "events produced  0" in result.output
    missing = CliRunner().invoke(app, ["replay", str(tmp_path / "nope.csv")], env=env)
    assert missing.exit_code == 2 and "error:" in missing.output
    bad_zone = CliRunner().invoke(app, ["replay", str(path), "--timezone", "Mars/Base"], env=env)
    assert bad_zone.exit_code == 2


# ---------------------------------------------------------------------------- report


@pytest.fixture()
def history(stack):
    """A private key prefix on the session's redis-server, with a writer of interval hashes."""
    prefix = f"r{uuid.uuid4().hex[:8]}:"
    client = redis_sync.Redis.from_url(stack.redis_url)

    def put(scope: str, start_iso: str, write_index: bool = True, write_hash: bool = True,
            **fields) -> None:
        if write_hash:
            client.hset(f"{prefix}interval:{scope}:{start_iso}",
                        mapping={"start": start_iso, **{k: str(v) for k, v in fields.items()}})
        if write_index:
            client.zadd(f"{prefix}intervals:{scope}",
                        {start_iso: datetime.fromisoformat(start_iso).timestamp()})

    put.prefix = prefix
    put.url = stack.redis_url
    yield put
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


def read(history, scope: str, start: str | None, end: str | None, tz: ZoneInfo = BERLIN):
    async def go():
        client = connect(history.url)
        try:
            return await read_range(client, history.prefix, scope, start, end, tz)
        finally:
            await client.aclose()

    return asyncio.run(go())


# Five center intervals around the Berlin fall-back (2026-10-25 03:00 CEST → 02:00 CET): the
# labels 02:00+02:00 and 02:00+01:00 are an hour apart.
I1 = "2026-10-25T01:45:00+02:00"  # 23:45Z
I2 = "2026-10-25T02:00:00+02:00"  # 00:00Z
I3 = "2026-10-25T02:15:00+02:00"  # 00:15Z
I4 = "2026-10-25T02:00:00+01:00"  # 01:00Z
I5 = "2026-10-25T03:00:00+01:00"  # 02:00Z


def fill(history) -> None:
    # I1: AHT (400+40+60)/4 = 125; the stored aht_s is wrong on purpose: ratios are recomputed
    history("center", I1, offered=10, answered=8, abandoned=2, short_abandons=1, handled=4,
            transferred=1, aht_s=999, service_level=0.01, sum_talk_sum=400, sum_hold_sum=40,
            sum_acw_sum=60, sum_answer_wait_sum=80, sum_sl_answered_within=6,
            sum_sl_abandoned_within=1, sum_sl_abandoned_counted=1, sum_nps_n=3,
            sum_nps_promoters=2, sum_nps_detractors=0, sum_disp_n=4, sum_disp_resolved=3)
    # I2: AHT (1000+0+500)/1 = 1500
    history("center", I2, offered=2, answered=1, handled=1, sum_talk_sum=1000, sum_hold_sum=0,
            sum_acw_sum=500, sum_answer_wait_sum=30, sum_sl_answered_within=0, sum_nps_n=1,
            sum_nps_promoters=0, sum_nps_detractors=1, surveys=1)
    history("center", I3, offered=3, abandoned=3, short_abandons=3)
    history("center", I4, offered=5)
    history("center", I5, offered=7, answered=2, sum_answer_wait_sum=10,
            sum_sl_answered_within=2)
    # an index entry whose hash has expired is skipped; so is an interval whose facts were
    # all retracted again (all zero); another scope is not mixed in
    history("center", "2026-10-25T02:30:00+02:00", write_hash=False)
    history("center", "2026-10-25T02:45:00+02:00", offered=0, handled=0, sum_acw_sum=0.0,
            sum_talk_sum=-0.0)
    history("queue:billing", I1, offered=100, answered=100)


def test_range_totals_re_add_counts_and_sums_and_recompute_ratios(history):
    fill(history)
    rows, total = read(history, "center", I1, I3)  # [I1, I3): I1 + I2
    assert [r["start"] for r in rows] == [I1, I2]
    assert total["intervals"] == 2
    assert (total["offered"], total["answered"], total["abandoned"], total["handled"]) == (12, 9, 2, 5)
    assert total["transferred"] == 1 and total["short_abandons"] == 1 and total["surveys"] == 1
    # AHT: Σ(talk+hold+acw)/Σhandled = 2000/5 = 400 — the mean of 125 and 1500 would be 812.5
    assert total["aht_s"] == pytest.approx(400.0, rel=1e-12)
    assert total["talk_s"] == pytest.approx(280.0) and total["acw_s"] == pytest.approx(112.0)
    assert total["hold_s"] == pytest.approx(8.0)
    assert total["asa_s"] == pytest.approx(110 / 9)
    # SL: A = 6, B = 1, N = answered 9 + counted abandons 1 = 10
    assert total["service_level"] == pytest.approx(6 / 9)
    assert total["sl_abandons_negative"] == pytest.approx(0.6)
    assert total["sl_abandons_positive"] == pytest.approx(0.7)
    assert total["abandon_rate"] == pytest.approx(0.1)
    assert total["transfer_rate"] == pytest.approx(1 / 9)
    assert total["nps"] == pytest.approx((2 - 1) / 4 * 100)
    assert total["fcr_disposition_rate"] == pytest.approx(0.75)
    assert rows[0]["aht_s"] == pytest.approx(125.0) and rows[1]["aht_s"] == pytest.approx(1500.0)
    assert rows[0]["nps"] == pytest.approx(200 / 3) and rows[1]["nps"] == pytest.approx(-100.0)


def test_range_is_half_open_and_dst_labels_are_distinct(history):
    fill(history)
    # [00:00Z, 01:00Z): I2 and I3 (and the expired entry); I4 starts exactly at --to
    rows, total = read(history, "center", "2026-10-25T02:00:00+02:00", "2026-10-25T01:00:00Z")
    assert [r["start"] for r in rows] == [I2, I3]
    assert total["offered"] == 5
    # a naive time is local in the timezone (the first of the two 02:00s on this day)
    rows2, _ = read(history, "center", "2026-10-25T02:00:00", "2026-10-25T03:00:00+01:00")
    assert [r["start"] for r in rows2] == [I2, I3, I4]
    # no bounds: all of it, in time order (not the expired and the all-zero intervals)
    rows3, total3 = read(history, "center", None, None)
    assert [r["start"] for r in rows3] == [I1, I2, I3, I4, I5]
    assert total3["offered"] == 27 and total3["intervals"] == 5
    # the other scope is its own history
    _, q = read(history, "queue:billing", None, None)
    assert q["offered"] == 100 and q["intervals"] == 1
    _, none = read(history, "queue:nothing", None, None)
    assert none["intervals"] == 0 and none["offered"] == 0 and "aht_s" not in none


def test_ratios_with_zero_denominators_are_absent(history):
    fill(history)
    rows, total = read(history, "center", I3, "2026-10-25T03:15:00+01:00")  # I3, I4, I5
    for name in ("aht_s", "talk_s", "hold_s", "acw_s", "nps", "csat", "ces", "transfer_rate"):
        assert name not in rows[1], name
    assert rows[1]["offered"] == 5 and "service_level" not in rows[1]
    # I3 only short abandons (excluded from N): N = 0 → no service level and no abandon rate
    assert "service_level" not in rows[0] and "abandon_rate" not in rows[0]
    assert total["service_level"] == pytest.approx(1.0) and total["asa_s"] == pytest.approx(5.0)
    assert "aht_s" not in total


def test_agent_scopes_leave_out_queue_side_ratios_and_unknown_p90(history):
    history("agent:a1", I1, answered=4, handled=2, sum_answer_wait_sum=40,
            sum_sl_answered_within=3, sum_talk_sum=100, sum_acw_sum=20,
            sum_ttr_n=2, sum_ttr_sum=7200)
    _, total = read(history, "agent:a1", None, None)
    assert total["asa_s"] == pytest.approx(10.0) and total["aht_s"] == pytest.approx(60.0)
    for name in ("service_level", "sl_abandons_negative", "sl_abandons_positive", "abandon_rate"):
        assert name not in total
    assert total["ttr_s"] == pytest.approx(3600.0)
    assert "ttr_p90_s" not in total  # the history has no TTR histogram: unknown, not +inf


def test_bad_ranges_are_errors(history):
    fill(history)
    with pytest.raises(ReportError):
        read(history, "center", I2, I2)
    with pytest.raises(ReportError):
        read(history, "center", I3, I1)
    with pytest.raises(ValueError):
        read(history, "center", "last tuesday", None)


def test_render_json_csv_and_table(history):
    fill(history)
    rows, total = read(history, "center", I1, I3)
    doc = json.loads(render(rows, total, "json", False))
    assert doc == json.loads(orjson.dumps(total))
    by = json.loads(render(rows, total, "json", True))
    assert by["total"]["offered"] == 12 and [r["start"] for r in by["intervals"]] == [I1, I2]
    assert by["intervals"][0]["aht_s"] == pytest.approx(125.0)

    parsed = list(csv.DictReader(io.StringIO(render(rows, total, "csv", True))))
    assert [r["start"] for r in parsed] == [I1, I2]
    assert [int(r["offered"]) for r in parsed] == [10, 2]
    assert float(parsed[1]["aht_s"]) == pytest.approx(1500.0)
    one = list(csv.DictReader(io.StringIO(render(rows, total, "csv", False))))
    assert len(one) == 1 and float(one[0]["aht_s"]) == pytest.approx(400.0)
    assert one[0]["intervals"] == "2"

    table = render(rows, total, "table", False)
    assert table.splitlines()[0] == "== total"
    assert any(line.split() == ["offered", "12"] for line in table.splitlines())
    assert any(line.split() == ["aht_s", "400.0000"] for line in table.splitlines())
    table_by = render(rows, total, "table", True)
    assert [line for line in table_by.splitlines() if line.startswith("==")] == [
        f"== {I1}", f"== {I2}"]


def test_cli_report_reads_the_history_and_rejects_bad_arguments(history):
    fill(history)
    env = {"CCPULSE_REDIS_URL": history.url, "CCPULSE_REDIS_PREFIX": history.prefix,
           "CCPULSE_TIMEZONE": "Europe/Berlin"}
    runner = CliRunner()
    ok = runner.invoke(app, ["report", "--scope", "center", "--from", I1, "--to", I3,
                             "--format", "json"], env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["aht_s"] == pytest.approx(400.0)
    by = runner.invoke(app, ["report", "--from", "2026-10-25T02:00:00", "--to", I5,
                             "--by", "interval", "--format", "csv"], env=env)
    assert by.exit_code == 0, by.output
    assert [r["start"] for r in csv.DictReader(io.StringIO(by.output))] == [I2, I3, I4]
    for args in (["--from", I3, "--to", I1], ["--from", "soon"], ["--format", "xml"],
                 ["--by", "day"]):
        bad = runner.invoke(app, ["report", *args], env=env)
        assert bad.exit_code == 2 and "error:" in bad.output, (args, bad.output)
        assert "Traceback" not in bad.output
    down = runner.invoke(app, ["report", "--redis", "redis://127.0.0.1:1/0"], env=env)
    assert down.exit_code == 1 and "error: cannot read the interval history" in down.output


# ---------------------------------------------------------------------------- end to end

E2E_TZ = "Europe/Berlin"
E2E_BAD = [  # (row, reason printed by the replay)
    (dict(interaction_id="bad-1", queue="q1", offered_at="", abandoned_at="2026-10-24T10:00:00"),
     "missing offered_at"),
    (dict(interaction_id="bad-2", queue="q1", offered_at="2026-10-24T10:00:00",
          answered_at="2026-10-24T10:00:05", abandoned_at="2026-10-24T10:00:06",
          agent_id="a1", ended_at="2026-10-24T10:01:00"),
     "exactly one of answered_at / abandoned_at is required"),
    (dict(interaction_id="bad-3", queue="q1", offered_at="2026-10-24T10:00:00",
          answered_at="2026-10-24T10:00:05", agent_id="a1", ended_at="2026-10-24T10:00:01"),
     "ended_at before answered_at"),
    (dict(interaction_id="bad-4", queue="q1", offered_at="24/10/2026 10:00",
          abandoned_at="2026-10-24T10:00:06"),
     "bad timestamp in offered_at: '24/10/2026 10:00'"),
    (dict(interaction_id="bad-5", queue="q1;DROP", offered_at="2026-10-24T10:00:00",
          abandoned_at="2026-10-24T10:00:06"),
     "missing or invalid queue"),
    (dict(interaction_id="bad-6", queue="q1", offered_at="2026-10-24T10:00:00",
          answered_at="2026-10-24T10:00:05", agent_id="a1", ended_at="2026-10-24T10:01:00",
          hold_s="1m"),
     "bad hold_s '1m'"),
]


def _naive_local(value: str, zone: ZoneInfo) -> str | None:
    """The same instant as local time without offset, when that reading is unambiguous."""
    t = datetime.fromisoformat(value)
    naive = t.astimezone(zone).replace(tzinfo=None, fold=0)  # a reader sees no fold
    if naive.replace(tzinfo=zone).timestamp() != t.timestamp():
        return None  # the repeated hour of the fall-back day
    return naive.isoformat(sep=" ")


def make_call_log(seeds: tuple[int, ...], calls_per_day: int, first_day: datetime, tz: str
                  ) -> tuple[str, list[str]]:
    """A call log of len(seeds) consecutive days: the CSV text and its column order.

    Columns are shuffled, an unknown `notes` column is added, and every third row gives its
    timestamps as local time without offset (except in the repeated fall-back hour).
    """
    zone = ZoneInfo(tz)
    events = []
    for k, seed in enumerate(seeds):
        day = eventgen.random_day(seed, calls_per_day, first_day + timedelta(days=k), tz=tz)
        events += [e for e in day if e["type"] not in ("interaction.message", "survey.responded")]
    text = eventgen.to_call_log_csv(events)
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = list(eventgen.CSV_COLUMNS) + ["notes"]
    random.Random(seeds[0]).shuffle(columns)
    stamp_cols = ("offered_at", "answered_at", "abandoned_at", "ended_at", "wrapup_completed_at")
    for i, row in enumerate(rows):
        row["notes"] = f'call {i}, "as logged"' if i % 5 == 0 else ""
        if i % 3 == 0:
            local = {c: _naive_local(row[c], zone) for c in stamp_cols if row[c]}
            if all(v is not None for v in local.values()):
                row.update(local)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue(), columns


def with_bad_rows(good: str, columns: list[str], bad: list[tuple[dict, str]]
                  ) -> tuple[str, list[tuple[int, str]], str]:
    """Insert bad rows (and a duplicate of the first row) into the file at spread positions.

    Returns the file text, the expected (line, reason) list and the duplicated id.
    """
    lines = good.splitlines()
    header, body = lines[0], lines[1:]
    first = next(csv.DictReader(io.StringIO(good)))
    bad = bad + [(dict(first), "duplicate interaction_id (first at line 2)")]
    step = max(1, len(body) // (len(bad) + 1))
    for k, (row, _) in reversed(list(enumerate(bad))):
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=columns, lineterminator="\n").writerow(
            {c: row.get(c, "") for c in columns})
        body.insert((k + 1) * step, buf.getvalue().rstrip("\n"))
    expected, shift = [], 0
    for k, (_, reason) in enumerate(bad):
        expected.append(((k + 1) * step + 2 + shift, reason))
        shift += 1
    return "\n".join([header, *body]) + "\n", expected, first["interaction_id"]


def _ready(worker) -> bool:
    try:
        return urllib.request.urlopen(worker.url("/readyz"), timeout=2).status == 200
    except OSError:
        return False


def run_cli(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env={**os.environ, **env},
                          cwd=str(ROOT), capture_output=True, text=True, timeout=timeout)


def oracle_range(all_facts, cfg, scope: str, lo: str, hi: str) -> dict:
    return calllog.range_kpis(all_facts, cfg, scope, calllog.read_ts(lo, ZoneInfo(cfg.timezone)),
                              calllog.read_ts(hi, ZoneInfo(cfg.timezone)))


@pytest.mark.slow
def test_two_day_call_log_replays_into_the_oracles_interval_history(stack, unique, worker_factory,
                                                                   tmp_path):
    started = time.monotonic()
    zone = ZoneInfo(E2E_TZ)
    # Saturday 2026-10-24 and the 25-hour fall-back Sunday, local midnight to midnight
    good, columns = make_call_log((301, 302), 1700, datetime(2026, 10, 24, 0, 0), E2E_TZ)
    text, expected_bad, dup_id = with_bad_rows(good, columns, E2E_BAD)
    path = tmp_path / "calls.csv"
    path.write_text(text, encoding="utf-8")
    n_good = good.count("\n") - 1
    assert n_good > 2500

    # the oracle reads the same (good) rows under the replay rule
    events = calllog.events_from_call_log(good, E2E_TZ)
    cfg = oracle.OracleConfig(timezone=E2E_TZ)
    now = max(oracle.parse_ts(e["ts"]) for e in events) + timedelta(days=1)  # every interval closed
    all_facts = oracle.facts(events, cfg, now)
    by_interval = oracle.intervals(events, cfg, now)

    worker = worker_factory(CCPULSE_CLOCK="event", CCPULSE_TIMEZONE=E2E_TZ)
    # as an operator would: the worker is up (partitions assigned, idle) before the replay
    wait_for(lambda: _ready(worker), 60, what="worker /readyz")
    env = unique.env(stack)  # broker, redis, topics, group, prefix — no timezone: --timezone
    replay = run_cli(["replay", str(path), "--timezone", E2E_TZ, "--wait", "40"], env, 55)
    assert replay.returncode == 0, (replay.stdout, replay.stderr[-3000:])
    out = replay.stdout
    assert f"rows read        {n_good + len(expected_bad)}\n" in out
    assert f"rows rejected    {len(expected_bad)}\n" in out
    for line, reason in expected_bad:
        assert f"  line {line}: {reason}\n" in out, (line, reason, out)
    assert f"events produced  {len(events)} in " in out
    assert "processed        in " in out
    # the worker took every replayed event (none too late, none out of order)
    metrics = urllib.request.urlopen(worker.url("/metrics"), timeout=5).read().decode()
    rejected = [line for line in metrics.splitlines()
                if line.startswith("cc_events_rejected_total{") and not line.endswith(" 0.0")]
    assert rejected == []

    renv = {**env, "CCPULSE_TIMEZONE": E2E_TZ}
    checks = [  # (scope, from, to): the two days; a queue over the 25-hour day; an agent
        ("center", "2026-10-24T00:00:00+02:00", "2026-10-27T00:00:00"),
        ("queue:support.en", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"),
        ("channel:chat", "2026-10-24 12:00", "2026-10-25T12:00:00+01:00"),
        ("agent:a3", "2026-10-24T00:00:00", "2026-10-27T00:00:00"),
    ]
    for scope, lo, hi in checks:
        rep = run_cli(["report", "--scope", scope, "--from", lo, "--to", hi, "--format", "json"],
                      renv, 20)
        assert rep.returncode == 0, rep.stderr
        got = json.loads(rep.stdout)
        expected = oracle_range(all_facts, cfg, scope, lo, hi)
        calllog.compare(expected, got, f"{scope} [{lo}, {hi})")
        lo_t, hi_t = calllog.read_ts(lo, zone), calllog.read_ts(hi, zone)
        n_iv = sum(1 for (s, start) in by_interval
                   if s == scope and lo_t <= datetime.fromisoformat(start) < hi_t)
        assert got["intervals"] == n_iv, (scope, got["intervals"], n_iv)
    totals = json.loads(run_cli(["report", "--format", "json"], renv, 20).stdout)
    assert totals["offered"] == n_good  # no leg lost, none counted twice

    # every 15-minute interval of the fall-back day (100 of them), one by one
    day_lo, day_hi = "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"
    for scope in ("center", "queue:billing"):
        rep = run_cli(["report", "--scope", scope, "--from", day_lo, "--to", day_hi,
                       "--by", "interval", "--format", "json"], renv, 20)
        assert rep.returncode == 0, rep.stderr
        doc = json.loads(rep.stdout)
        lo_t, hi_t = calllog.read_ts(day_lo, zone), calllog.read_ts(day_hi, zone)
        wanted = {start: kpis for (s, start), kpis in by_interval.items()
                  if s == scope and lo_t <= datetime.fromisoformat(start) < hi_t}
        assert [r["start"] for r in doc["intervals"]] == sorted(
            wanted, key=lambda s: datetime.fromisoformat(s))
        for row in doc["intervals"]:
            calllog.compare(wanted[row["start"]], row, f"{scope} {row['start']}")
        calllog.compare(oracle_range(all_facts, cfg, scope, day_lo, day_hi), doc["total"], scope)
        if scope == "center":
            # 25 hours: more than the 96 intervals a day can have otherwise, and the hour
            # 02:00–03:00 twice, under distinct labels
            assert len(wanted) > 96
            summer = {s[:19] for s in wanted if s[11:13] == "02" and s.endswith("+02:00")}
            winter = {s[:19] for s in wanted if s[11:13] == "02" and s.endswith("+01:00")}
            assert summer & winter
    assert dup_id  # reported above as a duplicate; its first row counted once (offered total)
    assert time.monotonic() - started < 60
