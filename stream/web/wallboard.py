"""The wallboard: a live page for supervisors, fed from Redis (DESIGN §5) by server-sent events.

Why it is shaped like this:
  * One background task per process (`Source`) subscribes to `<prefix>updates`, re-reads
    `<prefix>snapshot` after each message (and every few seconds, in case a message was lost
    or Redis restarted empty), and keeps the latest document. Every open `/events` stream
    waits on that one task, so N browsers cost one Redis connection, and a slow browser only
    ever receives the newest state (updates coalesce, nothing queues up).
  * Redis going away is a normal state, not an error: the source keeps retrying with a short
    backoff, streams get `event: status` `{"redis": "down"}` and later `{"redis": "up"}`
    followed by a fresh snapshot. The page greys its tiles and shows a banner meanwhile.
  * The page is static (`stream/web/static/`), served by this process with a strict CSP and
    no inline code, so it works with no internet and a hostile queue or agent name can only
    ever be text. Per-agent KPI scopes are dropped before sending: a wall display has no use
    for them and they would make every push much larger.
  * Security (DESIGN §8): binds 127.0.0.1 by default; optional bearer token compared in
    constant time; query and body size limits; errors are small JSON documents, never
    tracebacks; when bound to loopback, requests for other host names are refused so a
    DNS-rebinding page cannot read the board through a victim's browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Optional

import msgspec
import orjson
import typer
from aiohttp import web

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from stream.config import ConfigError, Settings, WallboardSettings, load

__all__ = ["create_app", "serve", "wallboard", "Source", "STATIC_DIR"]

log = logging.getLogger("ccpulse.wallboard")

STATIC_DIR = Path(__file__).parent / "static"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEARTBEAT_S = 5.0            # `: ping` comment on every stream, so proxies and browsers keep it open
POLL_S = 2.0                 # liveness check of Redis while no update arrives
REFRESH_S = 10.0             # full snapshot re-read while idle: covers lost pub/sub messages
RETRY_MAX_S = 3.0            # longest pause between reconnect attempts
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
MAX_QUERY_BYTES = 2048
MAX_PARAM_BYTES = 512
MAX_PARAMS = 16
MAX_STREAMS = 200            # concurrent /events connections per process
SSE_RETRY_MS = 2000
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2"}
_DOC_PARTS = ("kpi", "load", "intervals", "atrisk")
# The chart draws offered and AHT per interval; a full interval row has ~30 fields and a day
# has 96 of them per scope, so sending only these keeps a push small with many queues.
INTERVAL_FIELDS = ("start", "offered", "answered", "handled", "aht_s", "service_level")
MAX_ATRISK = 500             # per scope; the page lists the worst dozen and the count


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def empty_document() -> dict[str, Any]:
    """What the page gets before any worker published: renders as "waiting for data"."""
    return {"version": 1, "as_of": None, "updated_at": None, "timezone": "UTC", "queues": [],
            "kpi": {}, "load": {}, "intervals": {}, "atrisk": {}}


def filter_document(doc: dict[str, Any]) -> dict[str, Any]:
    """Keep what a wall display shows: center, queue and channel scopes, no `agent:` scopes,
    and of each interval row only what the chart draws.

    Unknown top-level keys pass through (a newer worker may add some); the keys this server
    adds itself are removed so a document can never override them.
    """
    out = {k: v for k, v in doc.items() if k not in ("wallboard", "server_time", "source")}
    for part in _DOC_PARTS:
        scopes = doc.get(part)
        if not isinstance(scopes, dict):
            out[part] = {}
            continue
        kept = {k: v for k, v in scopes.items() if isinstance(k, str) and not k.startswith("agent:")}
        if part == "intervals":
            kept = {k: [{f: row[f] for f in INTERVAL_FIELDS if f in row}
                        for row in rows if isinstance(row, dict)]
                    for k, rows in kept.items() if isinstance(rows, list)}
        elif part == "atrisk":
            kept = {k: rows[:MAX_ATRISK] for k, rows in kept.items() if isinstance(rows, list)}
        out[part] = kept
    if not isinstance(out.get("queues"), list):
        out["queues"] = []
    return out


class SnapshotError(ValueError):
    """`<prefix>snapshot` holds something that is not a usable document."""


def parse_snapshot(raw: bytes | None) -> bytes:
    """Raw Redis value → filtered document as compact JSON bytes (always an object)."""
    if raw is None:
        return orjson.dumps(empty_document())
    if len(raw) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(f"snapshot is {len(raw)} bytes, limit {MAX_SNAPSHOT_BYTES}")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"snapshot is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SnapshotError("snapshot is not a JSON object")
    return orjson.dumps(filter_document(doc))


@dataclass
class Source:
    """The one reader of Redis in this process: latest snapshot plus up/down state.

    `version` grows on every change of either; readers call `wait(seen, timeout)`.
    """

    redis_url: str
    prefix: str = "cc:"
    tls: dict = field(default_factory=dict)  # redis-py ssl_* options for rediss://
    poll_s: float = POLL_S
    refresh_s: float = REFRESH_S
    retry_max_s: float = RETRY_MAX_S
    document: bytes = field(default_factory=lambda: orjson.dumps(empty_document()))
    up: bool | None = None            # None until the first attempt finished
    version: int = 0
    updated_at: str | None = None
    failures: int = 0
    bad_snapshots: int = 0
    closing: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def key(self) -> str:
        return f"{self.prefix}snapshot"

    @property
    def channel(self) -> str:
        return f"{self.prefix}updates"

    def _bump(self) -> None:
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait(self, seen: int, timeout: float) -> bool:
        """True when something changed after version `seen` (or the source is closing)."""
        if self.version != seen or self.closing:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version != seen or self.closing

    async def ready(self, timeout: float) -> None:
        """Wait (bounded) for the first read, so a first paint is not an empty page."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    def close(self) -> None:
        self.closing = True
        self._bump()

    def _set_up(self, up: bool, reason: str = "") -> None:
        if up != self.up:
            if up:
                log.info("data source reachable again: %s", self.key)
            else:
                log.warning("data source unreachable (%s); retrying", reason)
            self.up = up
            self._bump()
        self._ready.set()

    async def _load(self, client: aioredis.Redis) -> None:
        """Read the snapshot; a bad one is counted and skipped, keeping the last good one."""
        try:
            document = parse_snapshot(await client.get(self.key))
        except (SnapshotError, ResponseError) as exc:  # not JSON, too big, WRONGTYPE, NOPERM
            self.bad_snapshots += 1
            if self.bad_snapshots == 1 or self.bad_snapshots % 100 == 0:
                log.warning("ignoring %s (%d so far): %s", self.key, self.bad_snapshots, exc)
            return
        if document != self.document:
            self.document = document
            self._bump()

    def _client(self) -> aioredis.Redis:
        # No client-side retries: a failure should surface at once and be retried here,
        # where the page can be told about it.
        return aioredis.from_url(self.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0,
                                 retry=Retry(NoBackoff(), 0), decode_responses=False,
                                 **self.tls)

    async def run(self) -> None:
        """Subscribe, load, follow updates; on any failure mark down, back off, start over."""
        delay = 0.25
        while not self.closing:
            client = self._client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                await self._load(client)
                self._set_up(True)
                delay = 0.25
                await self._follow(client, pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self.failures += 1
                self._set_up(False, type(exc).__name__)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            if self.closing:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _follow(self, client: aioredis.Redis, pubsub: Any) -> None:
        last_check = last_load = time.monotonic()
        while not self.closing:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(1.0, self.poll_s))
            now = time.monotonic()
            if msg is not None:
                # Coalesce a burst: drain what is queued, then read the snapshot once.
                for _ in range(1000):
                    if await pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is None:
                        break
                await self._load(client)
                last_check = last_load = time.monotonic()
            elif now - last_load >= self.refresh_s:
                await self._load(client)
                last_check = last_load = now
            elif now - last_check >= self.poll_s:
                await client.ping()
                last_check = now


# --- HTTP -----------------------------------------------------------------------------------

SOURCE_KEY = web.AppKey("source", Source)
STREAMS_KEY = web.AppKey("streams", set)


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message, "status": status}),
                        content_type="application/json", headers=headers)


def _load_static(directory: Path) -> dict[str, tuple[bytes, str, str]]:
    """Read the page's assets once: a fixed whitelist, no path from a request touches the disk."""
    files: dict[str, tuple[bytes, str, str]] = {}
    for path in sorted(directory.iterdir()):
        ctype = _STATIC_TYPES.get(path.suffix)
        if path.is_file() and not path.is_symlink() and ctype:
            body = path.read_bytes()
            etag = '"%s"' % hashlib.sha256(body).hexdigest()[:20]
            files[path.name] = (body, ctype, etag)
    return files


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    return False


def _hostname(host_header: str) -> str:
    """`name:port`, `[v6]:port` or `name` → name; parsed by hand so odd headers cannot raise."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _supplied_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    return request.query.get("token")


def _wallboard_block(ws: WallboardSettings) -> bytes:
    """Thresholds and stale time for the page, the same for every push."""
    return orjson.dumps({k: v for k, v in msgspec.to_builtins(ws).items() if k not in ("host", "port")})


def _with_extras(document: bytes, config: bytes, source_up: bool | None) -> bytes:
    """document + `wallboard`, `server_time`, `source` spliced in, without re-encoding it."""
    extras = b'"wallboard":' + config + b',"server_time":' + orjson.dumps(_now_iso()) + \
        b',"source":' + (b'"down"' if source_up is False else b'"up"')
    body = document.rstrip()
    if body == b"{}":
        return b"{" + extras + b"}"
    return body[:-1] + b"," + extras + b"}"


def create_app(redis_url: str, prefix: str = "cc:", settings: WallboardSettings | None = None,
               token: str | None = None, public: bool = True,
               redis_tls: dict | None = None) -> web.Application:
    """The wallboard application; the Redis reader starts and stops with it.

    A token is enforced only when `public` is False (DESIGN §8: a read-only wallboard may be
    left open by choice). Static assets and /healthz never need it: they hold no data.
    """
    ws = settings or WallboardSettings()
    static = _load_static(STATIC_DIR)
    need_token = bool(token) and not public
    token_bytes = (token or "").encode("utf-8")
    # A page on another site can point its own name at 127.0.0.1 (DNS rebinding) and read an
    # open loopback board; with a token required that page gets nothing, so no check then
    # (and a reverse proxy that forwards its own Host header keeps working).
    rebinding_guard = _is_loopback(ws.host) and not need_token

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            if rebinding_guard and not _is_loopback(_hostname(request.host)):
                return _json_error(421, "unknown host name")
            if len(request.query_string) > MAX_QUERY_BYTES or len(request.query) > MAX_PARAMS or \
                    any(len(k) + len(v) > MAX_PARAM_BYTES for k, v in request.query.items()):
                return _json_error(414, "query too long")
            if (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding"):
                return _json_error(413, "request body not accepted")
            if need_token and not (request.path.startswith("/static/") or request.path == "/healthz"):
                supplied = _supplied_token(request)
                if supplied is None or not hmac.compare_digest(supplied.encode("utf-8"), token_bytes):
                    return _json_error(401, "missing or invalid bearer token",
                                       {"WWW-Authenticate": 'Bearer realm="ccpulse"'})
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _json_error(exc.status, exc.reason.lower(), headers)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("wallboard request failed: %s %s", request.method, request.path)
            return _json_error(500, "internal error")

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h["Content-Security-Policy"] = CSP
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["X-Frame-Options"] = "DENY"
        h["Cross-Origin-Resource-Policy"] = "same-origin"
        h.setdefault("Cache-Control", "no-store")

    app = web.Application(middlewares=[guard], client_max_size=1024)
    app.on_response_prepare.append(security_headers)
    source = Source(redis_url, prefix, redis_tls or {})
    app[SOURCE_KEY] = source
    app[STREAMS_KEY] = set()
    config = _wallboard_block(ws)

    def asset(name: str, request: web.Request) -> web.Response:
        if name not in static:
            raise web.HTTPNotFound()
        body, ctype, etag = static[name]
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers | {"Content-Type": ctype})

    async def index(request: web.Request) -> web.Response:
        return asset("index.html", request)

    async def static_file(request: web.Request) -> web.Response:
        return asset(request.match_info["name"], request)

    async def snapshot(request: web.Request) -> web.Response:
        await source.ready(2.0)
        return web.Response(body=_with_extras(source.document, config, source.up),
                            content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        state = "unknown" if source.up is None else ("up" if source.up else "down")
        return web.json_response({"status": "ok", "redis": state, "streams": len(app[STREAMS_KEY])},
                                 dumps=lambda o: orjson.dumps(o).decode())

    async def events(request: web.Request) -> web.StreamResponse:
        streams = app[STREAMS_KEY]
        if len(streams) >= MAX_STREAMS:
            return _json_error(503, "too many open streams", {"Retry-After": "10"})
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await response.prepare(request)
        task = asyncio.current_task()
        streams.add(task)
        try:
            await response.write(b"retry: %d\n\n" % SSE_RETRY_MS)
            await source.ready(2.0)
            seen, sent_up, sent_doc = -1, None, None
            next_ping = time.monotonic() + HEARTBEAT_S
            while not source.closing:
                if source.version != seen:
                    seen = source.version
                    if source.up is not None and source.up != sent_up:
                        sent_up = source.up
                        status = b'{"redis":"up"}' if sent_up else b'{"redis":"down"}'
                        await response.write(b"event: status\ndata: " + status + b"\n\n")
                    if source.document is not sent_doc:
                        sent_doc = source.document
                        await response.write(b"event: snapshot\ndata: " +
                                             _with_extras(sent_doc, config, source.up) + b"\n\n")
                now = time.monotonic()
                if now >= next_ping:
                    await response.write(b": ping\n\n")
                    next_ping = now + HEARTBEAT_S
                await source.wait(seen, max(0.05, next_ping - time.monotonic()))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the browser went away or the server is stopping; EventSource will reconnect
        finally:
            streams.discard(task)
        return response

    app.router.add_get("/", index)
    app.router.add_get("/static/{name:[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}}", static_file)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", healthz)

    async def run_source(app: web.Application):
        task = asyncio.create_task(source.run(), name="wallboard-source")
        yield
        source.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def end_streams(app: web.Application) -> None:
        source.close()  # wakes every /events loop so it returns before the runner cancels it

    app.cleanup_ctx.append(run_source)
    app.on_shutdown.append(end_streams)
    return app


async def serve(settings: Settings, token: str | None = None, public: bool = False,
                host: str | None = None, port: int | None = None,
                started: asyncio.Event | None = None) -> None:
    """Run the wallboard until cancelled, Ctrl-C or SIGTERM; `started` is set once it listens.

    Stopping closes every event stream first, so browsers reconnect to the next instance.
    """
    ws = settings.wallboard
    host = host or ws.host
    port = ws.port if port is None else port
    ws = msgspec.structs.replace(ws, host=host, port=port)
    from ..sinks.redis_sink import tls_options

    app = create_app(settings.redis_url, settings.redis_prefix, ws, token, public,
                     tls_options(settings))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=128)
        await site.start()
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"wallboard on http://{shown}:{port}/", err=True)
        if started is not None:
            started.set()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await stop.wait()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await runner.cleanup()


def wallboard(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file (else CCPULSE_CONFIG).")] = None,
    redis: Annotated[Optional[str], typer.Option("--redis", help="Redis URL (redis:// or rediss://); else from config.", show_default=False)] = None,
    prefix: Annotated[Optional[str], typer.Option("--prefix", help="Redis key prefix; else from config (cc:).")] = None,
    host: Annotated[Optional[str], typer.Option("--host", help="Address to bind; default 127.0.0.1.")] = None,
    port: Annotated[Optional[int], typer.Option("--port", help="Port to listen on; default 8080.")] = None,
    token_env: Annotated[Optional[str], typer.Option("--token-env", help="Name of an environment variable holding the bearer token (else api_token / CCPULSE_API_TOKEN).")] = None,
    public: Annotated[bool, typer.Option("--public/--private", help="Serve without a token even if one is configured.")] = False,
) -> None:
    """Serve the live wallboard page (SSE from Redis) on a local port."""
    try:
        overrides: dict[str, Any] = {"redis_url": redis, "redis_prefix": prefix}
        board = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        if board:
            overrides["wallboard"] = board
        settings = load(config, **overrides)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    token = settings.api_token
    if token_env:
        token = os.environ.get(token_env) or None
        if token is None:
            typer.echo(f"error: environment variable {token_env} is not set", err=True)
            raise typer.Exit(code=2)
    ws = settings.wallboard
    if not (1 <= ws.port <= 65535) or ws.stale_after_s <= 0:
        typer.echo("error: invalid setting: wallboard.port must be 1..65535 and stale_after_s > 0", err=True)
        raise typer.Exit(code=2)
    if not _is_loopback(ws.host) and not token and not public:
        typer.echo(f"error: binding {ws.host} needs a token (api_token / CCPULSE_API_TOKEN or --token-env) "
                   "or --public to serve the read-only board openly", err=True)
        raise typer.Exit(code=2)
    logging.basicConfig(level=getattr(logging, settings.log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        asyncio.run(serve(settings, token, public))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        typer.echo(f"error: cannot listen on {ws.host}:{ws.port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=2) from None


if __name__ == "__main__":  # pragma: no cover - `python -m stream.web.wallboard`
    typer.run(wallboard)
