"""The Faust app that hosts a worker: lifecycle, the publish timer and the HTTP views.

Faust runs the service that owns the batch pipeline (`pipeline.py`) with its consuming and
publishing tasks (a cycle every `publish_interval_s`), and the web server with /metrics, /healthz, /readyz
and the JSON API. The hot path consumes with aiokafka below Faust's per-event machinery, as
issue 12 allows; state exactness comes from the checkpoint design, not Faust tables.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import faust
import mode
import orjson

from ._compiled import compiled_modules
from .config import Settings
from .pipeline import Pipeline

log = logging.getLogger("ccpulse.app")
MAX_PARAM = 256          # bytes of one query parameter value
MAX_QUERY = 2048         # bytes of the whole query string
MAX_PARAMS = 16          # query parameters per request
MAX_BODY = 64 * 1024     # bytes of a POST body
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _host_name(host_header: str) -> str:
    """`name:port`, `[v6]:port` or `name` → name, without raising on odd headers."""
    if host_header.startswith("["):
        return host_header[1:host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def broker_credentials(cfg: Settings):
    k = cfg.kafka
    if k.security_protocol == "PLAINTEXT":
        return None
    from .kafka_security import client_kwargs

    kwargs = client_kwargs(cfg)
    if k.security_protocol == "SSL":
        return faust.SSLCredentials(kwargs["ssl_context"])
    return faust.SASLCredentials(username=k.sasl_username, password=k.sasl_password,
                                 mechanism=k.sasl_mechanism, ssl_context=kwargs.get("ssl_context"))


def create_app(cfg: Settings, pipeline: Pipeline) -> faust.App:
    app = faust.App(
        f"{cfg.group_id}-host", broker=cfg.broker_url, broker_credentials=broker_credentials(cfg),
        store="memory://", autodiscover=False, web_host=cfg.web_host, web_port=cfg.web_port,
        web_bind=cfg.web_host, web_in_thread=False, broker_session_timeout=6,
        broker_heartbeat_interval=1, topic_partitions=cfg.partitions, producer_acks=-1,
        topic_allow_declare=True, logging_config=None, datadir=cfg.data_dir,
    )

    class PipelineService(mode.Service):
        async def on_start(self) -> None:
            await pipeline.start()

        @mode.Service.task
        async def _consume(self) -> None:
            await pipeline.run()

        @mode.Service.task
        async def _publish(self) -> None:
            await pipeline.publish_loop()

        async def on_stop(self) -> None:
            await pipeline.stop()

    app.service(PipelineService)

    def guarded(request: Any) -> bool:
        """The API needs the bearer token unless the server is bound to loopback only.

        A configured token is always required (compared in constant time). Without one the
        API answers only on a loopback bind, and only to requests whose Host is a loopback
        name: a web page that points its own name at 127.0.0.1 (DNS rebinding) gets nothing.
        """
        token = cfg.api_token
        if not token:
            return cfg.web_host in _LOOPBACK and \
                _host_name(request.headers.get("Host", "")) in _LOOPBACK
        header = request.headers.get("Authorization", "")
        given = header[7:] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())

    def error(web: Any, status: int, message: str, fields: dict[str, str] | None = None):
        headers = {"WWW-Authenticate": 'Bearer realm="ccpulse"'} if status == 401 else None
        body: dict[str, Any] = {"error": message, "status": status}
        if fields:  # what is wrong with each named input (the what-if request's fields)
            body["fields"] = fields
        return web.json(body, status=status, headers=headers)

    def params(request: Any, *names: str) -> dict[str, str]:
        """The named query parameters; ValueError past the size limits (→ 400)."""
        if len(request.query_string) > MAX_QUERY or len(request.query) > MAX_PARAMS:
            raise ValueError("query string too long")
        out = {}
        for name in names:
            value = request.query.get(name)
            if value is not None:
                if len(value.encode("utf-8", "surrogateescape")) > MAX_PARAM:
                    raise ValueError(f"parameter {name} is too long")
                out[name] = value
        return out

    @app.page("/metrics")
    async def metrics_view(web, request):
        return web.bytes(pipeline.metrics.render(),
                         content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def healthz(web, request):
        return web.json({"status": "ok", "events": pipeline.events_seen,
                         "cycles": pipeline.cycle_count, "redis": pipeline.redis_ok,
                         "state": {f"{kind}.{part}": n
                                   for (kind, part), n in pipeline.state_sizes().items()},
                         "positions": pipeline.positions(), "heap": pipeline.heap,
                         "pymalloc": pipeline.pymalloc,
                         "full_collections": pipeline.full_collections,
                         "compiled": compiled_modules()})

    @app.page("/readyz")
    async def readyz(web, request):
        if pipeline.ready and pipeline.consumer is not None and pipeline.consumer.assignment():
            return web.json({"status": "ready", "shards": sorted(pipeline.owned)})
        return web.json({"status": "not ready"}, status=503)

    @app.page("/api/kpi")
    async def api_kpi(web, request):
        if not guarded(request):
            return error(web, 401, "missing or wrong bearer token")
        try:
            q = params(request, "scope", "window")
        except ValueError as exc:
            return error(web, 400, str(exc))
        view = pipeline.view
        if view is None:
            return error(web, 503, "no data published yet")
        scope, window = q.get("scope", "center"), q.get("window")
        if scope not in view.kpi:
            return error(web, 404, "unknown scope")
        if window is not None and window not in ("15m", "1h", "today"):
            return error(web, 400, "window must be one of 15m, 1h, today")
        data = view.kpi[scope] if window is None else {window: view.kpi[scope].get(window, {})}
        return web.json({"scope": scope, "as_of": view.as_of, "windows": data})

    @app.page("/api/load")
    async def api_load(web, request):
        if not guarded(request):
            return error(web, 401, "missing or wrong bearer token")
        view = pipeline.view
        if view is None:
            return error(web, 503, "no data published yet")
        try:
            scope = params(request, "scope").get("scope")
        except ValueError as exc:
            return error(web, 400, str(exc))
        if scope is None:
            return web.json({"as_of": view.as_of, "load": view.load})
        if scope not in view.load:
            return error(web, 404, "unknown scope")
        return web.json({"scope": scope, "as_of": view.as_of, "load": view.load[scope]})

    @app.page("/api/intervals")
    async def api_intervals(web, request):
        if not guarded(request):
            return error(web, 401, "missing or wrong bearer token")
        from redis.exceptions import RedisError

        from .report import ReportError, read_range

        try:
            q = params(request, "scope", "from", "to", "by")
            if q.get("by") not in (None, "interval"):
                raise ValueError("by must be interval (leave it out for the total only)")
            rows, total = await read_range(pipeline.sink.redis, cfg.redis_prefix,
                                           q.get("scope", "center"), q.get("from"), q.get("to"),
                                           cfg.tz)
        except (ValueError, ReportError) as exc:
            return error(web, 400, str(exc))
        except (RedisError, OSError) as exc:  # the history lives in Redis only: say so, no 500
            log.warning("interval history unavailable: %s", type(exc).__name__)
            return error(web, 503, "interval history unavailable (Redis)")
        return web.json({"scope": q.get("scope", "center"), "total": total,
                         "intervals": rows if q.get("by") == "interval" else None})

    async def api_whatif(web, request):
        if not guarded(request):
            return error(web, 401, "missing or wrong bearer token")
        if request.method != "POST":
            return error(web, 405, "POST a JSON body")
        if (request.content_length or 0) > MAX_BODY:
            return error(web, 413, "body too large")  # refused before reading it
        body = b""
        while len(body) <= MAX_BODY:  # read() returns what has arrived: loop to EOF or limit
            chunk = await request.content.read(MAX_BODY + 1 - len(body))
            if not chunk:
                break
            body += chunk
        if len(body) > MAX_BODY:
            return error(web, 413, "body too large")
        from .staffing import StaffingInputError, whatif

        try:
            payload = orjson.loads(body)
            if not isinstance(payload, dict):
                raise StaffingInputError("body must be a JSON object")
            return web.json(whatif(payload))
        except (orjson.JSONDecodeError, StaffingInputError, ValueError) as exc:
            fields = getattr(exc, "errors", None)  # WhatIfError: field -> what is wrong
            return error(web, 400, str(exc), fields if isinstance(fields, dict) else None)

    @app.page("/api/staffing/whatif")
    class WhatIf(faust.web.View):
        """A function page answers GET only; the what-if API is a POST."""

        async def get(self, request):
            return await api_whatif(self, request)

        async def post(self, request):
            return await api_whatif(self, request)

    app.ccpulse_started = time.time()  # type: ignore[attr-defined]
    return app


def configure_logging(level: str) -> None:
    """Configure logging ourselves: Faust's `-l warn` leaves the root logger at DEBUG."""
    import structlog

    numeric = getattr(logging, level.upper(), logging.WARNING)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        force=True)
    logging.getLogger().setLevel(numeric)
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(numeric))


def run_worker(cfg: Settings, scorer=None, staffing=None) -> None:
    configure_logging(cfg.log_level)
    from pathlib import Path

    Path(cfg.data_dir).expanduser().mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(cfg, scorer=scorer, staffing=staffing)
    app = create_app(cfg, pipeline)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    from faust.worker import Worker

    worker = Worker(app, loglevel=cfg.log_level.upper(), quiet=True, redirect_stdouts=False)
    if cfg.customer_hash_secret == "change-me":
        log.warning("customer_hash_secret is the default: set CCPULSE_CUSTOMER_HASH_SECRET(_FILE) "
                    "so customer ids cannot be recovered from their hashes")
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    if pipeline.fatal:  # stopped on a configuration problem (wrong Redis password, …)
        code = 2
    raise SystemExit(code)
