"""The worker's HTTP API (docs/API.md) against a real `ccpulse worker` on tansu + redis-server:
probes, KPI/load/interval views agreeing with Redis, JSON errors, the staffing what-if, and
the live staffing of a queue fed a known steady load (Erlang C computed independently).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

import pytest
import redis as redis_sync

from conftest import Topics, WorkerProc, decoded, noon_zone, produce, scrape, wait_for
from stream._compiled import pure_requested
from stream import embedded
from stream.kpi.erlang import QueueLoad, Targets, positions_for, required_agents
from stream.kpi.windows import iso_utc
from test_e2e_pipeline import interaction

STAMPS = ("updated_at", "as_of")


def call(url: str, method: str = "GET", body: dict | bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, object]:
    """(status, headers, parsed JSON body) without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, method=method, headers={**hdrs, **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, head, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, head, raw = err.code, dict(err.headers), err.read()
    assert head.get("Content-Type", "").startswith("application/json"), (status, head, raw[:200])
    return status, head, json.loads(raw)


def answering(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5)
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def json_error(status: int, doc: dict, expected: int) -> dict:
    assert status == expected, doc
    assert doc["status"] == expected and isinstance(doc["error"], str) and doc["error"], doc
    return doc


def same_number(redis_value: str, api_value) -> bool:
    """Redis holds `_num()` text (floats rounded to 9 digits); the API the exact number."""
    if isinstance(api_value, bool) or not isinstance(api_value, (int, float)):
        return str(api_value) == redis_value
    return float(redis_value) == pytest.approx(float(api_value), rel=1e-9, abs=1e-9)


def assert_matches_redis(redis_hash: dict[str, str], api_doc: dict) -> None:
    fields = {k: v for k, v in redis_hash.items() if k not in STAMPS}
    assert set(fields) == set(api_doc), (sorted(set(fields) ^ set(api_doc)))
    for name, value in fields.items():
        assert same_number(value, api_doc[name]), (name, value, api_doc[name])


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def api_topics(stack):
    return Topics(uuid.uuid4().hex[:8]).create(stack)


@pytest.fixture(scope="module")
def api_worker(stack, api_topics, tmp_path_factory):
    """One loopback worker (no token needed on 127.0.0.1) for the module, with known data;
    its zone puts "now" near local noon, so `today` holds the data at any hour of the run."""
    worker = WorkerProc(api_topics.env(stack, CCPULSE_TIMEZONE=noon_zone()), tmp_path_factory.mktemp("api") / "worker.log").start()
    try:
        now = time.time()
        t0 = now - 600
        events = []
        # billing/voice: two handled, AHT (190+60 + 100+20)/2 = 185
        events += interaction("c1", "billing", "voice", t0, t0 + 10, "a1", t0 + 200, t0 + 260)
        events += interaction("c2", "billing", "voice", t0 + 5, t0 + 35, "a2", t0 + 135, t0 + 155)
        # sales/chat: one abandoned after 90 s, one still waiting
        events += interaction("c3", "sales", "chat", t0 + 20, abandoned=t0 + 110)
        events += interaction("c4", "sales", "chat", now - 30)
        produce(stack, api_topics.interactions, events)
        r = redis_sync.Redis.from_url(stack.redis_url)
        try:
            wait_for(lambda: r.hget(f"{api_topics.prefix}kpi:center:15m", "handled") == b"2"
                     and r.hget(f"{api_topics.prefix}kpi:center:15m", "abandoned") == b"1",
                     60, what="the module's data in Redis")
        finally:
            r.close()
        wait_for(lambda: answering(worker.url("/api/kpi")) and
                 call(worker.url("/api/kpi?scope=center&window=15m"))[2]
                 .get("windows", {}).get("15m", {}).get("handled") == 2, 30,
                 what="the module's data in the API")
        yield worker
    finally:
        worker.kill()


def test_noon_zone_is_noon_at_every_hour():
    """The module's worker zone keeps "now" 11 to 13 hours from local midnight, whatever
    the UTC hour the tests run at (a run across midnight once failed `today`)."""
    from zoneinfo import ZoneInfo
    day = datetime(2026, 12, 6, tzinfo=timezone.utc).timestamp()
    for minute in range(0, 24 * 60, 7):
        now = day + minute * 60
        local = datetime.fromtimestamp(now, ZoneInfo(noon_zone(now)))
        assert 11 <= local.hour + local.minute / 60 < 13, (minute, noon_zone(now), local)


def consistent_read(worker, redis_client, path: str, key: str, tries: int = 20):
    """API document and Redis hash of the same publish cycle (same `as_of`)."""
    for _ in range(tries):
        status, _, doc = call(worker.url(path))
        assert status == 200, doc
        h = decoded(redis_client.hgetall(key))
        if h.get("as_of") == iso_utc(doc["as_of"]):
            return doc, h
        time.sleep(0.1)
    raise AssertionError(f"no API answer and Redis hash of the same cycle for {path}")


# ------------------------------------------------------------------ probes


def test_readyz_is_503_until_partitions_are_restored(stack, unique, worker_factory, tmp_path):
    """Redis is down when the worker starts: the worker is alive (healthz 200) but cannot
    restore its partitions, so it is not ready (503) and serves no KPIs; once Redis is up it
    restores, and readyz says 200 with the shards it owns."""
    port = embedded.free_port()
    worker = worker_factory(CCPULSE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    redis_srv = None
    try:
        wait_for(lambda: answering(worker.url("/healthz")), 60, what="the worker's web server")
        status, _, health = call(worker.url("/healthz"))
        assert status == 200 and health["status"] == "ok", health
        assert {"events", "cycles", "redis"} <= set(health)
        # a worker says whether it runs the hot modules compiled (`make install` builds them)
        if not pure_requested():
            assert {"stream.kpi.engine", "stream.checkpoint"} <= set(health["compiled"]), health
        # give the consumer time to join the group and get its partitions: still not ready
        time.sleep(3)
        for _ in range(3):
            status, _, doc = call(worker.url("/readyz"))
            assert status == 503 and doc == {"status": "not ready"}, (status, doc)
            json_error(*call(worker.url("/api/kpi?scope=center"))[::2], 503)
            json_error(*call(worker.url("/api/load"))[::2], 503)
            # the history needs Redis too: a JSON 503, not a 500
            json_error(*call(worker.url("/api/intervals?scope=center"))[::2], 503)
            time.sleep(0.5)
        redis_srv = embedded.redis_server(port, log_path=tmp_path / "late-redis.log").start()

        def ready():
            status, _, doc = call(worker.url("/readyz"))
            return doc if status == 200 else None

        doc = wait_for(ready, 60, what="readyz 200 after Redis came up")
        assert doc["status"] == "ready"
        assert {f"i{p}" for p in range(unique.partitions)} <= set(doc["shards"]), doc
        assert {f"a{p}" for p in range(unique.partitions)} <= set(doc["shards"]), doc
        wait_for(lambda: call(worker.url("/api/kpi?scope=center"))[0] == 200, 30,
                 what="KPIs after the restore")
        status, _, health = call(worker.url("/healthz"))
        assert status == 200 and health["cycles"] > 0
        wait_for(lambda: call(worker.url("/healthz"))[2]["redis"] is True, 30,
                 what="healthz reporting Redis back")
    finally:
        worker.kill()
        if redis_srv is not None:
            redis_srv.stop()


# ------------------------------------------------------------------ KPI / load / intervals


def test_kpi_center_15m_is_the_redis_hash(api_worker, api_topics, redis_client):
    doc, h = consistent_read(api_worker, redis_client, "/api/kpi?scope=center&window=15m",
                             f"{api_topics.prefix}kpi:center:15m")
    assert doc["scope"] == "center" and list(doc["windows"]) == ["15m"]
    k = doc["windows"]["15m"]
    assert k["handled"] == 2 and k["offered"] == 4 and k["abandoned"] == 1
    assert k["aht_s"] == pytest.approx(185.0)
    assert_matches_redis(h, k)


def test_kpi_all_windows_of_a_queue_match_redis(api_worker, api_topics, redis_client):
    status, _, doc = call(api_worker.url("/api/kpi?scope=queue:billing"))
    assert status == 200 and doc["scope"] == "queue:billing"
    assert set(doc["windows"]) == {"15m", "1h", "today"}
    for window in ("15m", "1h", "today"):
        doc, h = consistent_read(api_worker, redis_client,
                                 f"/api/kpi?scope=queue:billing&window={window}",
                                 f"{api_topics.prefix}kpi:queue:billing:{window}")
        assert doc["windows"][window]["handled"] == 2
        assert_matches_redis(h, doc["windows"][window])
    # no scope given: the center
    status, _, doc = call(api_worker.url("/api/kpi"))
    assert status == 200 and doc["scope"] == "center"


def test_kpi_errors_are_json(api_worker):
    for scope in ("nope", "queue:unknown", "agent:nobody", "center:15m"):
        doc = json_error(*call(api_worker.url("/api/kpi?scope=" + urllib.parse.quote(scope)))[::2],
                         404)
        assert doc["error"] == "unknown scope"
    for window in ("2h", "15M", "", "today "):
        doc = json_error(*call(api_worker.url("/api/kpi?scope=center&window="
                                              + urllib.parse.quote(window)))[::2], 400)
        assert "window" in doc["error"]


def test_load_matches_redis(api_worker, api_topics, redis_client):
    status, _, doc = call(api_worker.url("/api/load"))
    assert status == 200 and {"center", "queue:billing", "queue:sales", "channel:chat"} <= set(doc["load"])
    # the load hash has no as_of: read until API and Redis show the same cycle (the
    # longest wait grows every second, so equal figures mean the same cycle)
    key = f"{api_topics.prefix}load:queue:sales"
    for _ in range(30):
        before = decoded(redis_client.hgetall(key))
        status, _, doc = call(api_worker.url("/api/load?scope=queue:sales"))
        after = decoded(redis_client.hgetall(key))
        assert status == 200, doc
        if before == after and all(same_number(v, doc["load"].get(k)) for k, v in after.items()
                                   if k != "updated_at"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"/api/load never matched {key}: {doc} vs {after}")
    load = doc["load"]
    assert doc["scope"] == "queue:sales" and load["waiting"] == 1
    assert 25 <= load["longest_wait_s"] <= 120
    assert load["offered_per_h"] == pytest.approx(8.0)  # 2 offered in 15 min
    assert set(after) - {"updated_at"} == set(load)
    json_error(*call(api_worker.url("/api/load?scope=queue:none"))[::2], 404)


def test_intervals_by_interval_and_total(api_worker, api_topics, redis_client):
    now = time.time()
    frm = datetime.fromtimestamp(now - 3 * 3600, timezone.utc).isoformat(timespec="seconds")
    to = datetime.fromtimestamp(now + 900, timezone.utc).isoformat(timespec="seconds")
    qs = urllib.parse.urlencode({"scope": "center", "from": frm, "to": to, "by": "interval"})

    def with_both():
        status, _, doc = call(api_worker.url(f"/api/intervals?{qs}"))
        assert status == 200, doc
        return doc if doc["total"].get("handled") == 2 and doc["total"].get("abandoned") == 1 else None

    doc = wait_for(with_both, 30, what="the contacts in the interval history")
    assert doc["scope"] == "center"
    rows = doc["intervals"]
    assert rows and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", r["start"])
                        for r in rows)
    assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)
    assert sum(r["handled"] for r in rows) == doc["total"]["handled"] == 2
    assert sum(r["offered"] for r in rows) == doc["total"]["offered"] == 4
    assert doc["total"]["intervals"] == len(rows)
    assert doc["total"]["aht_s"] == pytest.approx(185.0)
    # each row is the interval hash in Redis (recomputed from its counts and sums)
    for row in rows:
        h = decoded(redis_client.hgetall(f"{api_topics.prefix}interval:center:{row['start']}"))
        assert h and int(h["handled"]) == row["handled"] and int(h["offered"]) == row["offered"]
    # without by=interval: only the total
    qs_total = urllib.parse.urlencode({"scope": "center", "from": frm, "to": to})
    status, _, total = call(api_worker.url(f"/api/intervals?{qs_total}"))
    assert status == 200 and total["intervals"] is None and total["total"]["handled"] == 2
    # a range with nothing in it
    past = urllib.parse.urlencode({"scope": "center", "from": "2001-01-01T00:00:00Z",
                                   "to": "2001-01-02T00:00:00Z", "by": "interval"})
    status, _, empty = call(api_worker.url(f"/api/intervals?{past}"))
    assert status == 200 and empty["intervals"] == [] and empty["total"]["intervals"] == 0
    # bad parameters
    for bad in ({"from": "yesterday"}, {"from": to, "to": frm}, {"to": "2024-13-01T00:00:00"},
                {"by": "day"}):
        json_error(*call(api_worker.url("/api/intervals?" + urllib.parse.urlencode(
            {"scope": "center", **bad})))[::2], 400)


# ------------------------------------------------------------------ what-if


def test_whatif_valid_request(api_worker):
    url = api_worker.url("/api/staffing/whatif")
    status, _, doc = call(url, "POST", {"offered_per_h": 400, "aht_s": 180, "agents": 22})
    assert status == 200, doc
    expected = required_agents(QueueLoad(400.0, 180.0), Targets(0.8, 20.0, 0.85, 0.3))
    assert doc["model"] == "erlang_c"
    assert doc["required_agents"] == expected.agents
    assert doc["required_positions"] == expected.positions
    assert doc["offered_erlangs"] == pytest.approx(20.0)
    assert doc["required"]["agents"] == expected.agents
    assert doc["required"]["service_level"] == pytest.approx(expected.metrics.service_level)
    assert doc["required"]["meets_target"] is True
    assert [r["agents"] for r in doc["rows"]] == list(range(expected.agents - 3, expected.agents + 4))
    assert doc["at_agents"]["agents"] == 22 and doc["at_agents"]["meets_target"] is False
    # contacts per interval, and Erlang A with patience
    status, _, doc = call(url, "POST", {"contacts": 100, "interval_min": 30, "aht_s": 180})
    assert status == 200 and doc["required_agents"] == 14  # DESIGN §4 vector
    status, _, doc = call(url, "POST", {"offered_per_h": 400, "aht_s": 180, "patience_s": 120})
    assert status == 200 and doc["model"] == "erlang_a"
    assert doc["required_agents"] == required_agents(
        QueueLoad(400.0, 180.0, 1, 120.0), Targets()).agents
    # no load: nobody needed
    status, _, doc = call(url, "POST", {"offered_per_h": 0, "aht_s": 180})
    assert status == 200 and doc["required_agents"] == 0 and doc["model"] == "none"


def test_whatif_invalid_requests_name_the_fields(api_worker):
    url = api_worker.url("/api/staffing/whatif")
    doc = json_error(*call(url, "POST", {"contacts": -1, "sl_target": 1.5, "shrinkage": "x",
                                         "bogus": 1})[::2], 400)
    fields = doc["fields"]
    assert set(fields) == {"aht_s", "contacts", "sl_target", "shrinkage", "bogus"}, fields
    assert "required" in fields["aht_s"] and fields["bogus"] == "unknown field"
    assert fields["sl_target"] == "must be in (0, 1)" and fields["shrinkage"] == "must be a number"
    doc = json_error(*call(url, "POST", {"aht_s": 180})[::2], 400)
    assert set(doc["fields"]) == {"contacts"}
    doc = json_error(*call(url, "POST", {"aht_s": 180, "contacts": 10, "offered_per_h": 5})[::2], 400)
    assert set(doc["fields"]) == {"offered_per_h"}
    doc = json_error(*call(url, "POST", {"aht_s": 180, "offered_per_h": 1e8})[::2], 400)
    assert "offered_per_h" in doc["fields"]  # over the Erlang limit
    json_error(*call(url, "POST", b"{oops")[::2], 400)
    json_error(*call(url, "POST", b"[]")[::2], 400)
    json_error(*call(url)[::2], 405)


# ------------------------------------------------------------------ live staffing




def test_live_staffing_of_a_steady_queue(stack, api_worker, api_topics, redis_client):
    """100 voice contacts offered in the last 15 minutes (spread over minutes -12 … -3.5),
    all answered in 5 s and handled in 180 s (talk 150 + ACW 30): λ = 400/h, AHT 180 s.
    Staffed: 12 available + 4 busy + 2 in ACW = 18 (plus 2 in aux and 1 offline, who are not).
    The required agents are Erlang C for that load with the default targets (SL 80 % in
    20 s, occupancy ≤ 85 %, shrinkage 30 %), computed here from the erlang module."""
    queue = "steady"
    now = time.time()
    events = []
    for i in range(100):
        t = now - 720 + i * 5.2
        events += interaction(f"s{i}", queue, "voice", t, t + 5, f"st-{i % 12:02d}",
                              t + 5 + 150, t + 5 + 180)
    produce(stack, api_topics.interactions, events)
    states = ["available"] * 12 + ["busy"] * 4 + ["acw"] * 2 + ["aux"] * 2 + ["offline"]
    agents = [{"event_id": f"st-ev-{n}", "type": "agent.state_changed", "ts": iso_utc(now - 300 + n),
               "schema_version": 1, "agent_id": f"st-{n:02d}", "state": state,
               "queues": [queue], "capacity": {"voice": 1}}
              for n, state in enumerate(states)]
    produce(stack, api_topics.agents, agents, key_field="agent_id")
    staffed = 18

    expected = required_agents(QueueLoad(400.0, 180.0, 1, None),
                               Targets(sl_target=0.8, threshold_s=20.0, max_occupancy=0.85,
                                       shrinkage=0.3))
    assert expected.metrics.model == "erlang_c"
    assert 20 < expected.agents < 30  # 20 Erlangs: occupancy alone needs 24
    key = f"{api_topics.prefix}load:queue:{queue}"

    def settled():
        h = decoded(redis_client.hgetall(key))
        return h if h.get("offered_per_h") == "400" and h.get("staffed") == str(staffed) \
            and h.get("aht_1h_s") and "required_agents" in h else None

    h = wait_for(settled, 60, what=f"the steady load in {key}")
    assert float(h["offered_per_h"]) == 400.0
    assert float(h["aht_1h_s"]) == pytest.approx(180.0)
    assert int(h["required_agents"]) == expected.agents
    assert int(h["required_positions"]) == expected.positions == positions_for(expected.agents, 0.3)
    assert int(h["staffed"]) == staffed
    assert int(h["staffing_gap"]) == expected.agents - staffed
    assert (h["agents_available"], h["agents_busy"], h["agents_acw"], h["agents_aux"],
            h["agents_offline"]) == ("12", "4", "2", "2", "1")
    assert float(h["sl_target"]) == 0.8
    assert h["waiting"] == "0"
    kpi = decoded(redis_client.hgetall(f"{api_topics.prefix}kpi:queue:{queue}:15m"))
    assert kpi["offered"] == "100" and kpi["handled"] == "100" and float(kpi["aht_s"]) == pytest.approx(180.0)
    # the API serves the same load (its view is swapped in just after the Redis write)
    def api_load():
        status, _, doc = call(api_worker.url(f"/api/load?scope=queue:{queue}"))
        ok = status == 200 and doc["load"].get("staffed") == staffed \
            and doc["load"].get("offered_per_h") == 400
        return doc if ok else None

    doc = wait_for(api_load, 10, what="the steady queue in /api/load")
    assert doc["load"]["required_agents"] == expected.agents
    assert doc["load"]["staffing_gap"] == expected.agents - staffed
    # and /metrics the same gauges
    want = {f'cc_required_agents{{queue="{queue}"}}': expected.agents,
            f'cc_staffed_agents{{queue="{queue}"}}': staffed,
            f'cc_staffing_gap{{queue="{queue}"}}': expected.agents - staffed,
            f'cc_agents{{queue="{queue}",state="available"}}': 12,
            f'cc_agents{{queue="{queue}",state="aux"}}': 2}
    seen: dict = {}

    def gauges():
        m = scrape(api_worker)
        seen.update({k: m.get(k) for k in want})
        return seen == want

    try:
        wait_for(gauges, 10, what="the staffing gauges")
    except AssertionError:
        raise AssertionError(f"/metrics has {seen}, expected {want}") from None
