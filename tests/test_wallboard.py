"""The wallboard: HTTP routes, security headers, token, errors, the SSE stream across a Redis
outage, and one end-to-end run in a real (headless) Chromium against a private redis-server.

Why a real browser: the promises that matter to a supervisor (numbers equal to Redis, window
switch, live update without reload, stale and source-down states, hostile names shown as
text under a strict CSP) only exist in the page's JavaScript.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream.config import WallboardSettings
from stream.embedded import free_port, redis_server
from stream.web import wallboard as wb
from stream.web.wallboard import CSP, SOURCE_KEY, STATIC_DIR, create_app

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TZ = "Europe/Berlin"
HOSTILE_AGENT = "<b>x</b>"
HOSTILE_QUEUE = "<img src=x onerror=alert(1)>"

# --- test data: one snapshot document and the matching hashes --------------------------------

KPI_BASE = {
    # scope: (offered, service_level, aht_s, asa_s, abandon_rate, fcr_rate|None, csat|None)
    "center": (118, 0.8421, 312.4, 14.2, 0.0312, 0.7734, 0.8612),
    "queue:billing": (64, 0.7613, 356.8, 22.7, 0.0531, 0.7143, None),
    "queue:sales": (54, 0.9262, 259.6, 6.3, 0.0104, None, 0.9132),
    "channel:voice": (90, 0.8333, 300.0, 12.0, 0.02, None, None),
    "agent:a1": (9, 0.9, 280.0, 5.0, 0.0, 0.8, 0.9),
}
WINDOW_SCALE = {"15m": 1.0, "1h": 3.7, "today": 11.3}
LOAD = {
    "center": dict(waiting=6, longest_wait_s=95.4, agents_available=5, agents_busy=21, agents_acw=4,
                   agents_aux=3, agents_offline=7, staffed=30, occupancy_15m=0.8143, offered_per_h=472.0,
                   aht_1h_s=318.2, required_agents=32, required_positions=46, staffing_gap=2, sl_target=0.8),
    "queue:billing": dict(waiting=4, longest_wait_s=95.4, agents_available=1, agents_busy=12, agents_acw=3,
                          agents_aux=2, agents_offline=4, staffed=16, occupancy_15m=0.8712,
                          offered_per_h=256.0, aht_1h_s=349.1, required_agents=19, required_positions=28,
                          staffing_gap=3, sl_target=0.8),
    "queue:sales": dict(waiting=2, longest_wait_s=12.6, agents_available=4, agents_busy=9, agents_acw=1,
                        agents_aux=1, agents_offline=3, staffed=14, occupancy_15m=0.7514,
                        offered_per_h=216.0, aht_1h_s=262.3, required_agents=13, required_positions=19,
                        staffing_gap=-1, sl_target=0.85),
}


def kpi_for(scope: str, window: str) -> dict:
    offered, sl, aht, asa, abandon, fcr, csat = KPI_BASE[scope]
    k = WINDOW_SCALE[window]
    n = round(offered * k)
    shift = {"15m": 0.0, "1h": 0.0137, "today": 0.0279}[window]
    out = {"offered": n, "answered": round(n * (1 - abandon)), "abandoned": round(n * abandon),
           "short_abandons": 1, "handled": round(n * 0.93), "transferred": round(n * 0.05),
           "aht_s": round(aht + 11.3 * (k - 1), 1), "talk_s": round(aht * 0.7, 1), "hold_s": 12.1,
           "acw_s": round(aht * 0.25, 1), "asa_s": round(asa + 1.7 * (k - 1), 1),
           "service_level": round(min(0.9999, sl + shift), 4), "sl_threshold_s": 20.0,
           "abandon_rate": round(abandon + shift / 10, 4), "transfer_rate": 0.0513, "nps": 31.0,
           "occupancy": 0.8132}
    if fcr is not None:
        out["fcr_rate"] = round(fcr + shift, 4)
    if csat is not None:
        out["csat"] = round(csat - shift / 2, 4)
    return out


def intervals_for(scope: str, today: datetime, scale: float) -> list[dict]:
    """Today's closed 15-minute intervals from 08:00 local, as the worker writes them."""
    rows = []
    for i in range(10):
        start = today.replace(hour=8, minute=0) + timedelta(minutes=15 * i)
        offered = round(scale * (18 + 30 * math.sin(i / 3.2) ** 2 + 3 * (i % 3)))
        rows.append({"start": start.isoformat(), "offered": offered, "handled": max(0, offered - 2),
                     "aht_s": round(280 + 45 * math.cos(i / 2.1) + 4 * i, 1),
                     "service_level": 0.81})
    return rows


def iso_z(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_document(*, billing_waiting: int = 4, billing_sl: float | None = None) -> dict:
    now = datetime.now(timezone.utc)
    today = now.astimezone(ZoneInfo(TZ)).replace(second=0, microsecond=0)
    kpi = {scope: {w: kpi_for(scope, w) for w in WINDOW_SCALE} for scope in KPI_BASE}
    load = {scope: dict(v) for scope, v in LOAD.items()}
    load["queue:billing"]["waiting"] = billing_waiting
    load["center"]["waiting"] = billing_waiting + load["queue:sales"]["waiting"]
    if billing_sl is not None:
        kpi["queue:billing"]["15m"]["service_level"] = billing_sl
    since = [now - timedelta(seconds=s) for s in (312, 95, 47)]
    atrisk = [
        {"interaction_id": "i9", "queue": "billing", "agent_id": HOSTILE_AGENT, "score": -0.71,
         "since": iso_z(since[0])},
        {"interaction_id": "i12", "queue": HOSTILE_QUEUE, "agent_id": "a17", "score": -0.58,
         "since": iso_z(since[1])},
        {"interaction_id": "i31", "queue": "sales", "agent_id": "a4", "score": -0.93, "since": iso_z(since[2])},
    ] + [{"interaction_id": f"i{40 + n}", "queue": q, "agent_id": a, "score": sc,
          "since": iso_z(now - timedelta(seconds=s))}
         for n, (q, a, sc, s) in enumerate((("sales", "a23", -0.55, 640), ("billing", "a8", -0.66, 158),
                                             ("billing", "a31", -0.52, 23)))]
    return {
        "version": 1, "as_of": iso_z(now.replace(microsecond=0)), "updated_at": iso_z(now), "timezone": TZ,
        "queues": ["billing", "sales"],
        "kpi": kpi, "load": load,
        "intervals": {"center": intervals_for("center", today, 2.0),
                      "queue:billing": intervals_for("queue:billing", today, 1.1),
                      "queue:sales": intervals_for("queue:sales", today, 0.9)},
        "atrisk": {"center": atrisk, "queue:billing": [atrisk[0]]},
    }


def write_document(client: redis.Redis, doc: dict, prefix: str = "cc:", seq: int = 1) -> None:
    """What the worker does each cycle: hashes + snapshot atomically, then the update message."""
    pipe = client.pipeline(transaction=True)
    for scope, windows in doc["kpi"].items():
        for window, fields in windows.items():
            key = f"{prefix}kpi:{scope}:{window}"
            pipe.delete(key)
            pipe.hset(key, mapping={**{k: str(v) for k, v in fields.items()},
                                    "updated_at": doc["updated_at"], "as_of": doc["as_of"]})
    for scope, fields in doc["load"].items():
        key = f"{prefix}load:{scope}"
        pipe.delete(key)
        pipe.hset(key, mapping={**{k: str(v) for k, v in fields.items()}, "updated_at": doc["updated_at"]})
    pipe.set(f"{prefix}snapshot", orjson.dumps(doc))
    pipe.execute()
    client.publish(f"{prefix}updates", orjson.dumps({"as_of": doc["as_of"], "updated_at": doc["updated_at"],
                                                    "seq": seq}))


# --- the page's number formats, mirrored (values in the data avoid rounding ties) ------------

def js_round(v: float) -> int:
    return math.floor(v + 0.5)


def fmt(kind: str, v: float | None) -> str:
    if v is None:
        return "—"
    if kind == "count":
        return str(js_round(v))
    if kind == "signed":
        return ("+" if js_round(v) > 0 else "") + str(js_round(v))
    if kind == "ratio":
        text = f"{v * 100:.1f}"
        return ("100" if text == "100.0" else text) + "%"
    if kind == "ratio0":
        return f"{js_round(v * 100)}%"
    if kind == "duration":
        s = js_round(abs(v))
        h, m, sec = s // 3600, s % 3600 // 60, s % 60
        return ("-" if v < 0 and s else "") + (f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}")
    raise AssertionError(kind)


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def redis_srv():
    srv = redis_server().start()
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.asynccontextmanager
async def client_for(app: web.Application):
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def fast(app: web.Application) -> web.Application:
    """Shorter Redis liveness checks and retries, so outage tests take seconds."""
    src = app[SOURCE_KEY]
    src.poll_s, src.refresh_s, src.retry_max_s = 0.3, 2.0, 0.5
    return app


# --- HTTP ---------------------------------------------------------------------------------------

async def test_routes_headers_and_snapshot(redis_srv):
    doc = build_document()
    write_document(redis.Redis(port=redis_srv.port), doc)
    settings = WallboardSettings(stale_after_s=7.5, sl_amber=0.85)
    async with client_for(create_app(f"redis://127.0.0.1:{redis_srv.port}/0", "cc:", settings)) as c:
        r = await c.get("/")
        assert r.status == 200 and r.content_type == "text/html"
        assert r.headers["Content-Security-Policy"] == CSP
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        html = await r.text()
        assert '<script src="/static/wallboard.js"' in html

        for name, ctype in (("wallboard.js", "text/javascript"), ("wallboard.css", "text/css")):
            r = await c.get(f"/static/{name}")
            assert r.status == 200 and r.content_type == ctype
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            r2 = await c.get(f"/static/{name}", headers={"If-None-Match": r.headers["ETag"]})
            assert r2.status == 304

        r = await c.get("/api/snapshot")
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        body = await r.json()
        assert body["queues"] == ["billing", "sales"]
        assert body["kpi"]["queue:billing"]["15m"] == doc["kpi"]["queue:billing"]["15m"]
        assert "agent:a1" not in body["kpi"], "per-agent scopes are not sent to the wall"
        assert set(body["intervals"]["center"][0]) <= set(wb.INTERVAL_FIELDS)
        assert body["wallboard"]["stale_after_s"] == 7.5 and body["wallboard"]["sl_amber"] == 0.85
        assert "host" not in body["wallboard"] and body["source"] == "up" and body["server_time"]

        r = await c.get("/healthz")
        assert r.status == 200 and (await r.json())["redis"] == "up"


def test_page_has_no_inline_code_or_remote_assets():
    html = (STATIC_DIR / "index.html").read_text()
    js = (STATIC_DIR / "wallboard.js").read_text()
    css = (STATIC_DIR / "wallboard.css").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline <script>"
    assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son\w+=", html)
    for text in (html, js, css):
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), "remote asset or CDN"
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink


async def test_token_required_unless_public(redis_srv):
    url = f"redis://127.0.0.1:{redis_srv.port}/0"
    async with client_for(create_app(url, token="s3cr3t-token", public=False)) as c:
        for path in ("/", "/api/snapshot", "/events"):
            r = await c.get(path)
            assert r.status == 401, path
            assert r.content_type == "application/json"
            assert (await r.json())["error"] and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await c.get("/", headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await c.get("/", headers={"Authorization": "Basic czNjcjN0LXRva2Vu"})).status == 401
        assert (await c.get("/api/snapshot?token=s3cr3t-tokeN")).status == 401
        assert (await c.get("/api/snapshot?token=ü")).status == 401  # non-ASCII must not raise
        assert (await c.get("/", headers={"Authorization": "Bearer s3cr3t-token"})).status == 200
        assert (await c.get("/api/snapshot?token=s3cr3t-token")).status == 200
        # assets and health hold no data
        assert (await c.get("/static/wallboard.js")).status == 200
        assert (await c.get("/healthz")).status == 200
    async with client_for(create_app(url, token="s3cr3t-token", public=True)) as c:
        assert (await c.get("/api/snapshot")).status == 200


async def test_errors_are_json_without_traces(redis_srv):
    async with client_for(create_app(f"redis://127.0.0.1:{redis_srv.port}/0")) as c:
        for path in ("/nope", "/static/missing.js", "/static/..%2Fwallboard.py", "/static/",
                     "/api/snapshot/extra"):
            r = await c.get(path)
            assert r.status == 404, path
            assert r.content_type == "application/json"
            assert (await r.json()) == {"error": "not found", "status": 404}
        r = await c.post("/", data=b"x" * 5000)
        assert r.status == 413 and (await r.json())["status"] == 413
        r = await c.post("/api/snapshot")
        assert r.status == 405 and (await r.json())["error"] == "method not allowed"
        r = await c.get("/api/snapshot?x=" + "a" * 3000)
        assert r.status == 414 and r.content_type == "application/json"
        r = await c.get("/", headers={"Host": "evil.example:80"})
        assert r.status == 421, "DNS rebinding: a loopback board answers loopback names only"
        text = await (await c.get("/nope")).text()
        assert "Traceback" not in text and "File " not in text


async def test_internal_error_is_json(redis_srv, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret detail")
    monkeypatch.setattr(wb, "_with_extras", boom)
    async with client_for(create_app(f"redis://127.0.0.1:{redis_srv.port}/0")) as c:
        r = await c.get("/api/snapshot")
        assert r.status == 500
        assert await r.json() == {"error": "internal error", "status": 500}


# --- SSE across a Redis outage ----------------------------------------------------------------

async def read_event(resp, timeout: float = 8.0) -> tuple[str, str]:
    """Next SSE event as (name, data); comments come back as ("comment", text)."""
    name, data = "message", []
    async with asyncio.timeout(timeout):
        while True:
            line = (await resp.content.readline()).decode().rstrip("\n")
            if line == "":
                if data:
                    return name, "\n".join(data)
                continue
            if line.startswith(":"):
                return "comment", line[1:].strip()
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def next_event(resp, wanted: str, timeout: float = 8.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        name, data = await read_event(resp, max(0.1, deadline - time.monotonic()))
        if name == wanted:
            return data


async def test_events_stream_survives_redis_outage(redis_srv, monkeypatch):
    monkeypatch.setattr(wb, "HEARTBEAT_S", 0.4)
    port = redis_srv.port
    doc = build_document()
    write_document(redis.Redis(port=port), doc, prefix="wb:")
    app = fast(create_app(f"redis://127.0.0.1:{port}/0", prefix="wb:"))
    async with client_for(app) as c:
        resp = await c.get("/events")
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert resp.headers["Content-Security-Policy"] == CSP
        assert orjson.loads(await next_event(resp, "status")) == {"redis": "up"}
        first = orjson.loads(await next_event(resp, "snapshot"))
        assert first["updated_at"] == doc["updated_at"] and first["wallboard"]["stale_after_s"] == 10.0
        assert await next_event(resp, "comment") == "ping"

        changed = build_document(billing_waiting=17)
        write_document(redis.Redis(port=port), changed, prefix="wb:", seq=2)
        got = orjson.loads(await next_event(resp, "snapshot"))
        assert got["load"]["queue:billing"]["waiting"] == 17

        redis_srv.stop()
        assert orjson.loads(await next_event(resp, "status")) == {"redis": "down"}
        assert (await (await c.get("/healthz")).json())["redis"] == "down"
        body = await (await c.get("/api/snapshot")).json()
        assert body["source"] == "down" and body["load"]["queue:billing"]["waiting"] == 17
        await next_event(resp, "comment")  # the stream stays open meanwhile

        again = redis_server(port=port).start()
        try:
            back = build_document(billing_waiting=2)
            write_document(redis.Redis(port=port), back, prefix="wb:", seq=3)
            assert orjson.loads(await next_event(resp, "status")) == {"redis": "up"}
            got = orjson.loads(await next_event(resp, "snapshot"))
            assert got["load"]["queue:billing"]["waiting"] == 2 and got["source"] == "up"
        finally:
            resp.close()
            again.stop()


async def test_missing_or_bad_snapshot(redis_srv):
    r = redis.Redis(port=redis_srv.port)
    async with client_for(fast(create_app(f"redis://127.0.0.1:{redis_srv.port}/0"))) as c:
        body = await (await c.get("/api/snapshot")).json()
        assert body["updated_at"] is None and body["queues"] == [] and body["source"] == "up"
    r.set("cc:snapshot", b"[1, 2")
    async with client_for(fast(create_app(f"redis://127.0.0.1:{redis_srv.port}/0"))) as c:
        body = await (await c.get("/api/snapshot")).json()
        assert body["queues"] == [] and c.app[SOURCE_KEY].bad_snapshots == 1
    r.delete("cc:snapshot")
    r.rpush("cc:snapshot", b"x")  # WRONGTYPE: bad data, but the source is up
    async with client_for(fast(create_app(f"redis://127.0.0.1:{redis_srv.port}/0"))) as c:
        body = await (await c.get("/api/snapshot")).json()
        assert body["source"] == "up" and c.app[SOURCE_KEY].bad_snapshots == 1


# --- CLI guard --------------------------------------------------------------------------------

def test_cli_refuses_open_bind_without_token(monkeypatch):
    import typer
    from typer.testing import CliRunner

    for name in list(os.environ):
        if name.startswith("CCPULSE_"):
            monkeypatch.delenv(name)
    app = typer.Typer()
    app.command("wallboard")(wb.wallboard)
    app.command("other")(lambda: None)
    result = CliRunner().invoke(app, ["wallboard", "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 2 and "needs a token" in result.output
    result = CliRunner().invoke(app, ["wallboard", "--token-env", "CCPULSE_TEST_NO_SUCH_VAR"])
    assert result.exit_code == 2 and "not set" in result.output


# --- end to end in Chromium ----------------------------------------------------------------------

READ_VALUES_JS = """
() => Array.from(document.querySelectorAll('[data-scope] [data-field]')).map(el => ({
  scope: el.closest('[data-scope]').getAttribute('data-scope'),
  field: el.getAttribute('data-field'), source: el.getAttribute('data-source'),
  format: el.getAttribute('data-format'), value: el.getAttribute('data-value'),
  text: el.textContent,
  hidden: !!el.closest('[hidden]'),
}))
"""


def assert_page_matches_redis(values: list[dict], r: redis.Redis, window: str) -> int:
    """Every number on every tile equals its Redis hash field, formatted; absent shows —."""
    checked = 0
    scopes = {v["scope"] for v in values}
    assert scopes == {"center", "queue:billing", "queue:sales"}, scopes
    for v in values:
        key = f"cc:load:{v['scope']}" if v["source"] == "load" else f"cc:kpi:{v['scope']}:{window}"
        raw = r.hget(key, v["field"])
        where = f"{key} {v['field']}"
        if raw is None:
            assert v["text"] == "—" and v["value"] == "", where
            if v["field"] in ("fcr_rate", "csat"):
                assert v["hidden"], f"{where}: absent optional KPI should be hidden"
            continue
        expected = float(raw)
        assert float(v["value"]) == expected, where
        assert v["text"] == fmt(v["format"], expected), f"{where}: {v['text']!r} != {fmt(v['format'], expected)!r}"
        checked += 1
    return checked


@pytest.mark.slow
async def test_wallboard_in_browser(redis_srv, tmp_path):
    from playwright.async_api import async_playwright

    t_start = time.monotonic()
    port = redis_srv.port
    r = redis.Redis(port=port)
    state = {"doc": build_document(), "seq": 1, "run": True}

    async def worker():
        """Publishes like the worker: a fresh cycle every 0.5 s until told to stop."""
        while state["run"]:
            doc = state["doc"]
            doc["updated_at"] = iso_z(datetime.now(timezone.utc))
            await asyncio.to_thread(write_document, r, doc, "cc:", state["seq"])
            state["seq"] += 1
            await asyncio.sleep(0.5)

    write_document(r, state["doc"])
    publisher = asyncio.create_task(worker())
    settings = WallboardSettings(stale_after_s=2.0, sl_amber=0.8, sl_red=0.7, waiting_amber=5,
                                 waiting_red=15, longest_wait_amber_s=60, longest_wait_red_s=180)
    app = fast(create_app(f"redis://127.0.0.1:{port}/0", "cc:", settings, token="tok-123", public=False))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    web_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()
    base = f"http://127.0.0.1:{web_port}"
    dialogs, errors = [], []
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1600, "height": 900})
                page.on("dialog", lambda d: (dialogs.append(d.message), asyncio.ensure_future(d.dismiss())))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await page.goto(f"{base}/?token=tok-123")
                sl = page.locator('[data-scope="queue:billing"] [data-field="service_level"]')
                await page.wait_for_function(
                    "() => document.querySelectorAll('[data-scope]').length === 3 && "
                    "document.querySelector('[data-scope=\"queue:billing\"] [data-field=\"service_level\"]')"
                    ".textContent !== '—'")
                await page.evaluate("() => { window.__noReload = 42; }")

                # numbers = Redis hashes, formatted
                assert assert_page_matches_redis(await page.evaluate(READ_VALUES_JS), r, "15m") > 40
                assert await page.get_attribute('[data-scope="queue:billing"]', "data-state") == "amber"
                assert await page.get_attribute('[data-scope="queue:sales"]', "data-state") == "ok"
                sl_15m = await sl.text_content()

                # window switch
                await page.click('[data-window="1h"]')
                await page.wait_for_function(
                    "() => document.querySelector('[data-window=\"1h\"]').getAttribute('aria-pressed') === 'true'")
                assert await sl.text_content() != sl_15m
                assert assert_page_matches_redis(await page.evaluate(READ_VALUES_JS), r, "1h") > 40
                await page.click('[data-window="today"]')
                assert assert_page_matches_redis(await page.evaluate(READ_VALUES_JS), r, "today") > 40
                await page.click('[data-window="15m"]')

                # hostile strings from events render as text
                cells = await page.eval_on_selector_all(
                    '[data-role="atrisk-row"]',
                    "rows => rows.map(r => [r.querySelector('[data-field=queue]').textContent, "
                    "r.querySelector('[data-field=agent_id]').textContent, "
                    "r.querySelector('[data-field=score]').textContent])")
                assert cells[0] == ["sales", "a4", "-0.93"], "worst score first"
                assert ["billing", HOSTILE_AGENT, "-0.71"] in cells
                assert [HOSTILE_QUEUE, "a17", "-0.58"] in cells
                assert await page.locator(".atrisk b, .atrisk img, [data-scope] img").count() == 0
                since = await page.text_content('[data-role="atrisk-row"] [data-field="since"]')
                assert re.fullmatch(r"0:(4[6-9]|5\d)", since), since

                # live update without reload
                state["doc"] = build_document(billing_waiting=12, billing_sl=0.6512)
                waiting = page.locator('[data-scope="queue:billing"] [data-field="waiting"]')
                await page.wait_for_function(
                    "() => document.querySelector('[data-scope=\"queue:billing\"] [data-field=\"waiting\"]')"
                    ".textContent === '12'", timeout=5000)
                assert await waiting.get_attribute("data-state") == "amber"
                assert await sl.text_content() == "65.1%"
                assert await sl.get_attribute("data-state") == "red"
                assert await page.get_attribute('[data-scope="queue:billing"]', "data-state") == "red"
                assert await page.get_attribute('[data-scope="center"]', "data-state") == "amber"
                assert await page.evaluate("() => window.__noReload") == 42
                assert assert_page_matches_redis(await page.evaluate(READ_VALUES_JS), r, "15m") > 40
                updated = await page.get_attribute('[data-role="updated"]', "data-value")
                assert updated and (await page.text_content('[data-role="updated"]')).startswith("Updated ")
                assert not await page.evaluate("() => document.body.classList.contains('stale')")
                assert await page.locator('[data-role="source-down"]').is_hidden()
                assert await page.locator('[data-role="chart"] rect.bar').count() == 30

                # The README's picture: refreshed when missing or on request, so a plain test
                # run does not rewrite a tracked file with new timestamps.
                out = REPO / "docs" / "wallboard.png"
                if not out.exists() or os.environ.get("CCPULSE_UPDATE_SCREENSHOT") == "1":
                    out.parent.mkdir(exist_ok=True)
                    await page.screenshot(path=str(out))
                else:
                    await page.screenshot(path=str(tmp_path / "wallboard.png"))

                # the worker stops: stale after stale_after_s
                state["run"] = False
                await publisher
                t_stop = time.monotonic()
                await page.wait_for_function("() => document.body.classList.contains('stale')", timeout=6000)
                assert time.monotonic() - t_stop >= 1.5
                assert await page.locator('[data-role="stale-badge"]').is_visible()

                # Redis goes away: banner, grey tiles; and comes back
                redis_srv.stop()
                banner = page.locator('[data-role="source-down"]')
                await banner.wait_for(state="visible", timeout=6000)
                assert "Data source unreachable" in await banner.text_content()
                assert await page.evaluate("() => document.body.classList.contains('source-down')")
                again = redis_server(port=port).start()
                try:
                    state["doc"]["updated_at"] = iso_z(datetime.now(timezone.utc))
                    write_document(redis.Redis(port=port), state["doc"])
                    await banner.wait_for(state="hidden", timeout=8000)
                    await page.wait_for_function("() => !document.body.classList.contains('stale')",
                                                 timeout=5000)
                finally:
                    again.stop()
                assert await page.evaluate("() => window.__noReload") == 42
            finally:
                await browser.close()
    finally:
        state["run"] = False
        if not publisher.done():
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await publisher
        await runner.cleanup()
    assert not dialogs, dialogs
    assert not [e for e in errors if "favicon" not in e], errors
    assert time.monotonic() - t_start < 40
