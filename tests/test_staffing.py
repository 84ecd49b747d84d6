"""Staffing planner: scenarios, interval plans, CSV, what-if, live staffing and the CLI.

``--from-history`` runs against a real redis-server started here on a free port.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
import typer
from typer.testing import CliRunner

from stream.cli_staffing import staffing
from stream.kpi.erlang import QueueLoad, StaffingInputError, Targets, evaluate
from stream.staffing import (
    PLAN_CSV_COLUMNS,
    IntervalCsvError,
    IntervalRow,
    WhatIfError,
    live_queue_staffing,
    parse_intervals_csv,
    plan_intervals,
    plan_scenario,
    read_intervals_csv,
    whatif,
    write_plan_csv,
)

# ------------------------------------------------------------------------ scenario


def test_plan_scenario_rows_around_required():
    sc = plan_scenario(QueueLoad.per_interval(100, 30, 180), Targets(), span=2)
    assert (sc.required.agents, sc.required.positions) == (14, 20)
    assert [r.agents for r in sc.rows] == [12, 13, 14, 15, 16]
    assert [r.meets_target for r in sc.rows] == [False, False, True, True, True]
    row13 = sc.rows[1]
    assert round(row13.metrics.service_level, 4) == 0.7956 and round(row13.metrics.asa_s, 1) == 17.1
    sls = [r.metrics.service_level for r in sc.rows]
    assert sls == sorted(sls)


def test_plan_scenario_erlang_a_and_floor_at_one_agent():
    sc = plan_scenario(QueueLoad(20, 180, patience_s=300), Targets(), span=5)
    assert sc.rows[0].agents == 1
    assert all(r.metrics.model == "erlang_a" for r in sc.rows)
    assert all(0 <= r.metrics.p_abandon <= 1 for r in sc.rows)
    with pytest.raises(StaffingInputError, match="span"):
        plan_scenario(QueueLoad(20, 180), span=-1)


# ----------------------------------------------------------------------- intervals


def test_plan_intervals_from_tuples_and_rows():
    plans = plan_intervals(
        [
            ("2024-05-06T08:00:00+02:00", 100, 180),
            IntervalRow("2024-05-06T08:30:00+02:00", 0, None),
            ("2024-05-06T09:00:00+02:00", 150, None),
            ("2024-05-06T09:30:00+02:00", 100, 180),
        ],
        30,
        Targets(),
        fallback_aht_s=180,
    )
    assert [(p.agents, p.positions, p.model) for p in plans] == [
        (14, 20, "erlang_c"), (0, 0, "none"), (plans[2].agents, plans[2].positions, "erlang_c"), (14, 20, "erlang_c"),
    ]
    assert plans[2].agents > 14 and plans[2].aht_s == 180
    assert plans[1].service_level is None and plans[1].offered_erlangs == 0
    assert plans[0].offered_per_h == 200 and plans[0].offered_erlangs == pytest.approx(10)


def test_plan_intervals_missing_aht_without_fallback_names_the_interval():
    with pytest.raises(StaffingInputError, match=r"interval 2024-05-06T09:00.*aht_s is missing"):
        plan_intervals([("2024-05-06T09:00:00+02:00", 10, None)], 15)


def test_plan_intervals_erlang_a_and_concurrency():
    plans = plan_intervals([("2024-05-06T08:00:00Z", 60, 600)], 15, Targets(0.8, 60, 0.85, 0.2),
                           concurrency=3, patience_s=240)
    p = plans[0]
    assert p.model == "erlang_a"
    m = evaluate(QueueLoad(240, 600, 3, 240), p.agents, 60)
    assert m.service_level == pytest.approx(p.service_level) and m.service_level >= 0.8


# ---------------------------------------------------------------------------- CSV

GOOD_CSV = """\ufeffnote,aht_s,interval_start,contacts
x,180,2024-05-06T08:00:00+02:00,100

y,200,2024-05-06T08:30:00+02:00,120
z,,2024-05-06T09:00:00+02:00,0
"""


def test_read_csv_columns_any_order_bom_blank_lines():
    rows = read_intervals_csv(io.StringIO(GOOD_CSV.lstrip("\ufeff")))
    assert [(r.start, r.contacts, r.aht_s, r.line) for r in rows] == [
        ("2024-05-06T08:00:00+02:00", 100, 180, 2),
        ("2024-05-06T08:30:00+02:00", 120, 200, 4),
        ("2024-05-06T09:00:00+02:00", 0, None, 5),
    ]


def test_read_csv_file_with_bom(tmp_path):
    f = tmp_path / "in.csv"
    f.write_text(GOOD_CSV, encoding="utf-8")
    assert len(read_intervals_csv(f)) == 3


def test_bad_csv_rows_reported_with_line_numbers():
    text = (
        "interval_start,contacts,aht_s\n"
        "2024-05-06T08:00:00+02:00,100,180\n"
        "yesterday,100,180\n"
        "2024-05-06T09:00:00+02:00,-4,180\n"
        "2024-05-06T09:30:00+02:00,ten,180\n"
        "2024-05-06T10:00:00+02:00,10,0\n"
        "2024-05-06T10:30:00+02:00,10\n"
        "2024-05-06T11:00:00+02:00,10,nan\n"
    )
    rows, problems = parse_intervals_csv(io.StringIO(text))
    assert [r.line for r in rows] == [2]
    assert [n for n, _ in problems] == [3, 4, 5, 6, 7, 8]
    with pytest.raises(IntervalCsvError) as exc:
        read_intervals_csv(io.StringIO(text))
    msg = str(exc.value)
    assert "6 bad rows" in msg and "line 3: interval_start" in msg and "line 5: contacts is not a number" in msg
    assert isinstance(exc.value, StaffingInputError)


def test_csv_header_must_name_columns():
    with pytest.raises(IntervalCsvError, match="line 1: header lacks column"):
        read_intervals_csv(io.StringIO("start,contacts,aht\n2024-05-06T08:00:00,1,2\n"))
    with pytest.raises(IntervalCsvError, match="empty file"):
        read_intervals_csv(io.StringIO(""))


def test_write_plan_csv_round_trip(tmp_path):
    plans = plan_intervals(read_intervals_csv(io.StringIO(GOOD_CSV)), 30, Targets())
    out = tmp_path / "plan.csv"
    assert write_plan_csv(plans, out) == 3
    with open(out, newline="") as fh:
        recs = list(csv.DictReader(fh))
    assert tuple(recs[0]) == PLAN_CSV_COLUMNS
    assert recs[0]["required_agents"] == "14" and recs[0]["required_positions"] == "20"
    assert recs[0]["contacts"] == "100" and recs[0]["model"] == "erlang_c"
    assert float(recs[0]["service_level"]) == pytest.approx(0.88835, abs=1e-6)
    assert recs[2]["model"] == "none" and recs[2]["service_level"] == "" and recs[2]["required_agents"] == "0"


# ------------------------------------------------------------------------ what-if


def test_whatif_vector_is_json_able():
    out = whatif({"contacts": 100, "interval_min": 30, "aht_s": 180, "span": 5})
    json.dumps(out, allow_nan=False)
    assert out["model"] == "erlang_c"
    assert (out["required_agents"], out["required_positions"]) == (14, 20)
    assert out["offered_erlangs"] == pytest.approx(10)
    assert round(out["required"]["service_level"], 3) == 0.888
    unstable = [r for r in out["rows"] if not r["stable"]]
    assert unstable and all(r["asa_s"] is None and r["service_level"] == 0 for r in unstable)


def test_whatif_erlang_a_with_agents():
    out = whatif({"offered_per_h": 200, "aht_s": 180, "patience_s": 300, "agents": 14})
    assert out["model"] == "erlang_a"
    at = out["at_agents"]
    assert round(at["p_abandon"], 6) == 0.013984 and round(at["service_level"], 6) == 0.916792
    assert round(at["asa_s"], 3) == 3.878
    json.dumps(out, allow_nan=False)


def test_whatif_no_load():
    out = whatif({"contacts": 0, "aht_s": 180})
    assert out["model"] == "none" and out["required_agents"] == 0 and out["rows"] == []


def test_whatif_lists_every_bad_field():
    with pytest.raises(WhatIfError) as exc:
        whatif({"contacts": -1, "aht_s": 0, "sl_target": 1, "shrinkage": True, "concurrency": 2.5,
                "max_occupancy": "0.8", "patience_s": -3, "bogus": 1})
    errors = exc.value.errors
    assert set(errors) == {"contacts", "aht_s", "sl_target", "shrinkage", "concurrency", "max_occupancy",
                           "patience_s", "bogus"}
    assert errors["bogus"] == "unknown field"
    for field in errors:
        assert field in str(exc.value)
    assert isinstance(exc.value, StaffingInputError)


@pytest.mark.parametrize("payload,field", [
    ([], "payload"),
    ({"aht_s": 180}, "contacts"),
    ({"contacts": 5}, "aht_s"),
    ({"contacts": 5, "offered_per_h": 5, "aht_s": 180}, "offered_per_h"),
    ({"contacts": 5, "aht_s": 180, "sl_target": None}, "sl_target"),
    ({"contacts": 5, "aht_s": math.inf}, "aht_s"),
    ({"offered_per_h": 1e8, "aht_s": 86400}, "offered_per_h"),
    ({"contacts": 5, "aht_s": 180, "span": 1000}, "span"),
    ({"offered_per_h": 600_000, "aht_s": 600, "patience_s": 600_000}, "patience_s"),  # Erlang A impractical
])
def test_whatif_bad_payloads(payload, field):
    with pytest.raises(WhatIfError) as exc:
        whatif(payload)
    assert field in exc.value.errors


# --------------------------------------------------------------------------- live


def test_live_queue_staffing_vector_and_gap():
    out = live_queue_staffing(50, 180.0, 300.0, 0.8, 20.0, 0.85, 0.3, 1, None, 12)
    assert out == {"required_agents": 14, "required_positions": 20, "staffing_gap": 2,
                   "offered_per_h": 200.0, "model": "erlang_c"}
    a = live_queue_staffing(50, 180.0, 300.0, 0.8, 20.0, 0.85, 0.3, 1, 300.0, 16)
    assert a["model"] == "erlang_a" and a["required_agents"] == 13 and a["staffing_gap"] == -3


def test_live_queue_staffing_falls_back_to_default_aht():
    for missing in (None, 0.0, math.nan):
        out = live_queue_staffing(50, missing, 180.0, 0.8, 20.0, 0.85, 0.3, 1, None, 0)
        assert out["required_agents"] == 14


def test_live_queue_staffing_no_load_and_long_patience():
    assert live_queue_staffing(0, None, 180.0, 0.8, 20.0, 0.85, 0.3, 1, None, 5) == {
        "required_agents": 0, "required_positions": 0, "staffing_gap": -5, "offered_per_h": 0.0, "model": "none"}
    # patience so long that Erlang A is impractical: Erlang C answers, and says so
    out = live_queue_staffing(50, 1.0, 180.0, 0.8, 20.0, 0.85, 0.3, 1, 1e12, 0)
    assert out["model"] == "erlang_c"


def test_live_queue_staffing_bad_inputs():
    with pytest.raises(StaffingInputError, match="offered_15m"):
        live_queue_staffing(-1, 180.0, 180.0, 0.8, 20.0, 0.85, 0.3, 1, None, 0)
    with pytest.raises(StaffingInputError, match="sl_target"):
        live_queue_staffing(5, 180.0, 180.0, 1.5, 20.0, 0.85, 0.3, 1, None, 0)
    with pytest.raises(StaffingInputError, match="aht_s"):
        live_queue_staffing(5, None, 0.0, 0.8, 20.0, 0.85, 0.3, 1, None, 0)
    with pytest.raises(StaffingInputError, match="staffed"):
        live_queue_staffing(5, 180.0, 180.0, 0.8, 20.0, 0.85, 0.3, 1, None, -2)


def test_live_queue_staffing_is_fast_enough_for_every_publish():
    start = time.perf_counter()
    for tick in range(20):
        for q in range(50):
            live_queue_staffing(20 + q * 7, 170.0 + tick * 0.37 + q, 300.0, 0.8, 20.0, 0.85, 0.3,
                                1 + q % 3, None if q % 2 else 240.0, 10)
    assert time.perf_counter() - start < 5.0  # 1,000 uncached calls; typically ~0.1 s


# ---------------------------------------------------------------------------- CLI


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """ccpulse (test shell)."""

    app.command("staffing")(staffing)
    return app


runner = CliRunner()


def run(*args: str):
    return runner.invoke(_app(), ["staffing", *args])


def test_cli_scenario_table():
    res = run("--contacts", "100", "--aht", "180")
    assert res.exit_code == 0, res.output
    assert "required: 14 agents, 20 positions" in res.output
    assert "10.00 Erlangs" in res.output
    line14 = next(line for line in res.output.splitlines() if line.startswith("*"))
    assert line14.split()[1:4] == ["14", "20", "88.8%"]
    assert any(line.split()[:3] == ["13", "19", "79.6%"] for line in res.output.splitlines())


def test_cli_scenario_erlang_a_and_options():
    res = run("--contacts", "100", "--interval-min", "30", "--aht", "180", "--patience", "300",
              "--threshold", "20", "--sl-target", "0.8", "--max-occupancy", "0.85", "--shrinkage", "0.3",
              "--span", "1")
    assert res.exit_code == 0, res.output
    assert "Erlang A (patience 300 s)" in res.output and "P(abandon)" in res.output
    assert "required: 13 agents, 19 positions" in res.output
    assert any(line.split()[:3] == ["14", "20", "91.7%"] for line in res.output.splitlines())


def test_cli_csv_in_and_out(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text(GOOD_CSV, encoding="utf-8")
    dst = tmp_path / "out.csv"
    res = run("--csv", str(src), "--out", str(dst))
    assert res.exit_code == 0, res.output
    assert "2024-05-06T08:00:00+02:00" in res.output and "wrote 3 intervals" in res.output
    recs = list(csv.DictReader(dst.open(newline="")))
    assert [r["required_agents"] for r in recs][::2] == ["14", "0"]


def test_cli_bad_csv_row_exit_2_without_traceback(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("interval_start,contacts,aht_s\n2024-05-06T08:00:00Z,100,180\n2024-05-06T08:30:00Z,lots,180\n")
    res = run("--csv", str(src))
    assert res.exit_code == 2
    assert "line 3: contacts is not a number" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("args,message", [
    ((), "exactly one of"),
    (("--contacts", "10"), "needs --aht"),
    (("--contacts", "10", "--aht", "180", "--csv", "x.csv"), "exactly one of"),
    (("--contacts", "10", "--aht", "0"), "aht_s must be > 0"),
    (("--contacts", "10", "--aht", "180", "--shrinkage", "1"), "shrinkage"),
    (("--contacts", "10", "--aht", "180", "--max-occupancy", "0"), "max_occupancy"),
    (("--contacts", "-10", "--aht", "180"), "contacts must be >= 0"),
    (("--contacts", "10", "--aht", "180", "--out", "x.csv"), "--out goes with"),
    (("--csv", "/nonexistent/in.csv"), "No such file"),
    (("--from-history",), "needs --scope"),
    (("--from-history", "--scope", "bad scope!"), "--scope"),
])
def test_cli_errors_exit_2(args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


# ------------------------------------------------------------ --from-history (real Redis)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = _free_port()
    assert port != 6379
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _store_history(url: str, prefix: str, scope: str, intervals: list[tuple[datetime, dict[str, str] | None]]):
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        for start, fields in intervals:
            member = start.isoformat()
            client.zadd(f"{prefix}intervals:{scope}", {member: start.timestamp()})
            if fields is not None:
                client.hset(f"{prefix}interval:{scope}:{member}", mapping=fields)
    finally:
        client.close()


T0 = datetime(2024, 5, 6, 8, 0, tzinfo=timezone(timedelta(hours=2)))


def test_cli_from_history_reads_range_and_writes_csv(redis_url, tmp_path):
    _store_history(redis_url, "cc:", "queue:sales", [
        (T0 - timedelta(minutes=15), {"offered": "999", "aht_s": "180"}),  # before --from
        (T0, {"offered": "50", "aht_s": "180.0", "answered": "48"}),
        (T0 + timedelta(minutes=15), {"offered": "0"}),
        (T0 + timedelta(minutes=30), {"offered": "75", "aht_s": "240.5"}),
        (T0 + timedelta(minutes=45), None),  # hash expired
        (T0 + timedelta(minutes=60), {"offered": "999", "aht_s": "180"}),  # at --to: excluded
    ])
    out = tmp_path / "hist.csv"
    res = run("--from-history", "--scope", "queue:sales", "--redis", redis_url,
              "--from", T0.isoformat(), "--to", (T0 + timedelta(minutes=60)).isoformat(), "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "15-minute intervals" in res.output
    assert "hash is gone" in res.output
    recs = list(csv.DictReader(out.open(newline="")))
    assert [r["interval_start"] for r in recs] == [
        T0.isoformat(), (T0 + timedelta(minutes=15)).isoformat(), (T0 + timedelta(minutes=30)).isoformat()]
    # 50 per 15 min = 200/h at 180 s: the DESIGN load
    assert (recs[0]["offered_per_h"], recs[0]["required_agents"], recs[0]["required_positions"]) == ("200", "14", "20")
    assert recs[1]["model"] == "none"
    assert int(recs[2]["required_agents"]) > 14


def test_cli_from_history_prefix_timezone_fallback_aht_and_erlang_a(redis_url):
    _store_history(redis_url, "t1:", "center", [
        (T0, {"offered": "50"}),  # no aht_s (nothing handled yet): needs --aht fallback
    ])
    args = ("--from-history", "--scope", "center", "--redis", redis_url, "--prefix", "t1:",
            "--from", "2024-05-06T08:00", "--to", "2024-05-06T08:15", "--timezone", "Europe/Paris")
    res = run(*args)
    assert res.exit_code == 2 and "aht_s is missing" in res.output
    res = run(*args, "--aht", "180", "--patience", "300")
    assert res.exit_code == 0, res.output
    assert "Erlang A" in res.output
    row = next(line for line in res.output.splitlines() if line.startswith(T0.isoformat()))
    assert row.split()[4:6] == ["13", "19"]


def test_cli_from_history_bad_values_and_empty_range(redis_url):
    _store_history(redis_url, "t2:", "queue:bad", [(T0, {"offered": "many", "aht_s": "180"})])
    res = run("--from-history", "--scope", "queue:bad", "--redis", redis_url, "--prefix", "t2:")
    assert res.exit_code == 2 and "offered is not a count" in res.output
    res = run("--from-history", "--scope", "queue:none", "--redis", redis_url, "--prefix", "t2:")
    assert res.exit_code == 2 and "no interval history" in res.output
    res = run("--from-history", "--scope", "queue:bad", "--redis", redis_url, "--from", "not-a-date")
    assert res.exit_code == 2 and "--from is not an ISO 8601" in res.output
    res = run("--from-history", "--scope", "queue:bad", "--redis", redis_url, "--interval-min", "30")
    assert res.exit_code == 2 and "15 minutes" in res.output


def test_cli_from_history_unreachable_redis_exit_2():
    port = _free_port()  # nothing listens there
    res = run("--from-history", "--scope", "queue:x", "--redis", f"redis://127.0.0.1:{port}/0")
    assert res.exit_code == 2
    assert "cannot read history from Redis" in res.output and "Traceback" not in res.output
    res = run("--from-history", "--scope", "queue:x", "--redis", "http://example.invalid/")
    assert res.exit_code == 2 and "not a Redis URL" in res.output
