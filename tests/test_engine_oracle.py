"""The engine against the independent oracle, over generated event streams.

Streams come with duplicates and shuffles within a lateness bound and are spread over four
partitions like the real topic; the engine's windows and interval history must equal the
oracle's: counts exactly, means and ratios to 1e-9.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventgen
import oracle
from stream import config
from stream.kpi.engine import Engine
from stream.kpi.rollup import interval_partials
from stream.kpi.windows import iso_local
from stream.view import scope_kpis

# Not yet computed by the engine, or shaped differently by design (see DESIGN notes).
# sl_threshold_s: the engine names one only for single-threshold scopes it can see live;
# ttr_p90_s: the engine keeps a fixed-size histogram (25 % bins), checked separately below.
SKIP = {"sl_threshold_s", "occupancy", "ttr_p90_s"}
COUNTS = {"offered", "answered", "abandoned", "short_abandons", "handled", "transferred",
          "surveys", "sentiment_samples", "fcr_pending", "fcr_excluded", "surveys_unjoined"}


def score_text(text: str) -> float:
    """A deterministic stand-in scorer shared by engine and oracle."""
    h = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return round((h % 2001) / 1000.0 - 1.0, 3)


def make_engine(tz: str) -> Engine:
    # generated streams span up to ~4 days (FCR repeats): keep every interval for the check
    cfg = config.load(environ={"CCPULSE_KPI__RETENTION_H": "240"}, timezone=tz)
    return Engine(cfg, scorer=lambda text, lang: score_text(text))


def feed(engine: Engine, events: list[dict], seed: int = 0) -> None:
    rnd = random.Random(seed)
    for ev in events:
        key = ev.get("interaction_id") or ev.get("agent_id")
        partition = int(hashlib.md5(key.encode()).hexdigest(), 16) % 4
        kind = "surveys" if ev["type"] == "survey.responded" else "interactions"
        status = engine.ingest(kind, orjson.dumps(ev), partition)
        assert status in ("ok", "duplicate", "pending"), (status, ev)
        if rnd.random() < 0.3:  # FCR records travel later than the events, in batches
            engine.route_customer_records()
    engine.route_customer_records()


def engine_view(engine: Engine, now: float) -> dict:
    engine.advance(now)
    engine.route_customer_records()  # ACW timeouts at `now` complete more contacts
    engine.advance(now)
    out = {}
    for (scope, window), acc in engine.windows(now).items():
        if not scope.startswith("mix:"):  # internal channel-mix scope, never published
            out[(scope, window)] = scope_kpis(scope, acc, engine.cfg, {})
    return out


def compare(expected: dict, got: dict, context: str) -> None:
    for key in sorted(set(expected) | set(got)):
        exp = {k: v for k, v in expected.get(key, {}).items() if k not in SKIP}
        act = {k: v for k, v in got.get(key, {}).items() if k not in SKIP}
        if not exp and all(act.get(c, 0) == 0 for c in COUNTS) and key not in expected:
            continue
        exp_nonzero = {k: v for k, v in exp.items() if not (k in COUNTS and v == 0)}
        act_nonzero = {k: v for k, v in act.items() if not (k in COUNTS and v == 0)}
        assert set(exp_nonzero) == set(act_nonzero), (context, key, sorted(set(exp_nonzero) ^ set(act_nonzero)), exp, act)
        for field, value in exp_nonzero.items():
            if field in COUNTS:
                assert act_nonzero[field] == value, (context, key, field, value, act_nonzero[field])
            else:
                assert act_nonzero[field] == pytest.approx(value, rel=1e-9, abs=1e-9), (
                    context, key, field, value, act_nonzero[field])


def run_case(events: list[dict], now: datetime, tz: str, seed: int) -> None:
    cfg = oracle.OracleConfig(timezone=tz, score_fn=score_text)
    stream = eventgen.with_duplicates_and_shuffle(events, random.Random(seed), 120)
    engine = make_engine(tz)
    feed(engine, stream, seed)
    now_s = now.timestamp()
    expected, got_windows = oracle.compute(events, cfg, now), engine_view(engine, now_s)
    compare(expected, got_windows, "windows")
    for key, fields in expected.items():  # p90 from the fixed histogram: the bin's upper bound
        if "ttr_p90_s" in fields:
            exact, got_p90 = fields["ttr_p90_s"], got_windows[key]["ttr_p90_s"]
            assert exact - 1e-9 <= got_p90 <= max(60.0, exact * 1.25) + 1e-9, (key, exact, got_p90)
    # interval history: every closed interval, per scope
    zone = engine.cfg.tz
    got = {}
    for (scope, start), acc in interval_partials(engine.stores(), None).items():
        if start + 900 <= now_s:
            got[(scope, iso_local(start, zone))] = scope_kpis(scope, acc, engine.cfg, {})
    compare(oracle.intervals(events, cfg, now), got, "intervals")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=eventgen.event_streams(), seed=st.integers(0, 10_000))
def test_engine_equals_oracle_on_generated_streams(case, seed):
    events, now = case
    run_case(events, now, "Europe/Berlin", seed)


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_equals_oracle_on_a_busy_day(seed):
    start = datetime(2026, 10, 24, 20, 0, tzinfo=timezone.utc)
    events = eventgen.random_day(seed, 1500, start, tz="Europe/Berlin")
    now = datetime.fromtimestamp(eventgen.latest_ts(events).timestamp(), timezone.utc) + timedelta(seconds=1)
    run_case(events, now, "Europe/Berlin", seed)
