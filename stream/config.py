"""Settings: one TOML file plus CCPULSE_* environment variables, validated once at start.

Precedence: defaults < TOML file < environment. Environment names are the dotted path in
upper case with `__` between levels, e.g. CCPULSE_REDIS_URL, CCPULSE_KPI__ACW_TIMEOUT_S.
Secrets may come from a file: CCPULSE_<NAME>_FILE=/run/secrets/x sets <NAME> to its content.
Secrets (passwords, tokens, the customer hash key, credentials inside URLs) never appear in
`repr()` of the settings or in a ConfigError message: both show `***` instead.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Iterator, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

CHANNELS = ("voice", "chat", "sms")
DEFAULT_SL_THRESHOLDS = {"voice": 20.0, "chat": 60.0, "sms": 900.0}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names it (never a secret value)."""


MASK = "***"
# setting names whose values are secrets; URLs are shown with their password masked
SECRET_FIELDS = frozenset({"sasl_password", "api_token", "customer_hash_secret"})
URL_FIELDS = frozenset({"redis_url", "broker_url"})


def mask_url(url: str) -> str:
    """`redis://user:pw@host:6379/0` → `redis://user:***@host:6379/0` (no userinfo: unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}:{MASK}@{hostport}" if ":" in userinfo else f"{MASK}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def _shown(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in SECRET_FIELDS:
        return MASK
    if name in URL_FIELDS and isinstance(value, str):
        return mask_url(value)
    return value


class _Masked:
    """repr() (and rich's repr) of a settings struct with every secret replaced by ***."""

    __slots__ = ()

    def __rich_repr__(self) -> Iterator[tuple[str, Any]]:
        for name in self.__struct_fields__:  # type: ignore[attr-defined]
            yield name, _shown(name, getattr(self, name))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={_shown(name, getattr(self, name))!r}"
                           for name in self.__struct_fields__)  # type: ignore[attr-defined]
        return f"{type(self).__name__}({fields})"

    __str__ = __repr__


class QueueSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Per-queue targets; thresholds per channel override the channel defaults."""

    sl_target: float = 0.8
    sl_thresholds: dict[str, float] = {}
    max_occupancy: float | None = None
    shrinkage: float | None = None
    fallback_aht_s: float | None = None


class KpiSettings(msgspec.Struct, forbid_unknown_fields=True):
    short_abandon_s: float = 5.0
    exclude_short_abandons: bool = True
    acw_timeout_s: float = 600.0
    retention_h: float = 48.0
    minute_retention_min: int = 75
    fcr_horizon_h: float = 72.0
    survey_join_days: float = 7.0
    closed_keep_s: float = 3600.0
    sl_thresholds: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_SL_THRESHOLDS))
    sentiment_span: int = 3
    at_risk_threshold: float = -0.5
    default_language: str = "en"


class StaffingSettings(msgspec.Struct, forbid_unknown_fields=True):
    max_occupancy: float = 0.85
    shrinkage: float = 0.30
    fallback_aht_s: float = 300.0
    default_sl_target: float = 0.8


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True):
    """Caps on distinct names: past a cap an event goes to the dead-letter topic."""

    max_queues: int = 200
    max_agents: int = 5000
    max_channels: int = 3
    max_inflight_interactions: int = 500_000


class WallboardSettings(msgspec.Struct, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8080
    stale_after_s: float = 10.0
    sl_amber: float = 0.8
    sl_red: float = 0.7
    waiting_amber: int = 5
    waiting_red: int = 15
    longest_wait_amber_s: float = 60.0
    longest_wait_red_s: float = 180.0
    aht_amber_s: float = 420.0
    aht_red_s: float = 600.0
    abandon_amber: float = 0.05
    abandon_red: float = 0.10


class KafkaSettings(_Masked, msgspec.Struct, forbid_unknown_fields=True):
    """TLS and SASL for the Kafka clients; secrets via env or *_FILE, never the command line."""

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True


class Settings(_Masked, msgspec.Struct, forbid_unknown_fields=True):
    broker_url: str = "kafka://127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # TLS for rediss:// URLs (PEM paths): the CA that signed the server's certificate, and
    # the client certificate and key when Redis verifies clients (tls-auth-clients yes)
    redis_ssl_ca: str | None = None
    redis_ssl_cert: str | None = None
    redis_ssl_key: str | None = None
    redis_prefix: str = "cc:"
    group_id: str = "ccpulse"
    timezone: str = "UTC"
    clock: Literal["wall", "event"] = "wall"
    # how often the wallboard picture is rewritten (queue, center and channel scopes); the
    # wait for the next cycle is part of every event's freshness (bench at 5,000 events/s:
    # p99 3.2 s at 0.5 s, 1.2 s at 0.25 s; docs/BENCHMARKS.md, 2026-12-03)
    publish_interval_s: float = 0.25
    # every agent scope is refreshed within this: slices of agents in turn, on their own
    # clock, so slow cycles (a replay) refresh several slices at once rather than fall behind
    agent_publish_interval_s: float = 15.0
    # each shard's state is checkpointed with its offsets this often (spread over cycles)
    checkpoint_interval_s: float = 5.0
    # longest a fetch waits at the broker for data: part of every event's freshness when the
    # broker answers only at the deadline (tansu: p50 134 ms at 500 ms, 17 ms at 50 ms)
    fetch_max_wait_ms: int = 50
    partitions: int = 4
    topic_interactions: str = "cc.interactions"
    topic_agents: str = "cc.agent-states"
    topic_surveys: str = "cc.surveys"
    topic_deadletter: str = "cc.deadletter"
    topic_customers: str = "cc.customers"  # internal: FCR records keyed by customer hash
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    api_token: str | None = None
    # Faust's working directory; a per-user default, not a fixed name in the shared /tmp
    data_dir: str = msgspec.field(default_factory=lambda: default_data_dir())
    log_level: str = "warning"
    per_agent_kpis: bool = True
    customer_hash_secret: str = "change-me"
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    kpi: KpiSettings = msgspec.field(default_factory=KpiSettings)
    staffing: StaffingSettings = msgspec.field(default_factory=StaffingSettings)
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    wallboard: WallboardSettings = msgspec.field(default_factory=WallboardSettings)
    queues: dict[str, QueueSettings] = {}

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def bootstrap(self) -> str:
        return broker_bootstrap(self.broker_url)

    def sl_threshold(self, queue: str, channel: str) -> float:
        q = self.queues.get(queue)
        if q is not None and channel in q.sl_thresholds:
            return q.sl_thresholds[channel]
        return self.kpi.sl_thresholds.get(channel, DEFAULT_SL_THRESHOLDS.get(channel, 20.0))

    def sl_target(self, queue: str) -> float:
        q = self.queues.get(queue)
        return q.sl_target if q is not None else self.staffing.default_sl_target


def default_data_dir() -> str:
    """$XDG_STATE_HOME/ccpulse, else ~/.local/state/ccpulse (deployments set data_dir)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return os.path.join(base, "ccpulse")


def broker_bootstrap(url: str) -> str:
    """`kafka://h1:9092;h2:9092` or `h1:9092,h2:9092` → `h1:9092,h2:9092`."""
    rest = url.split("://", 1)[1] if "://" in url else url
    return ",".join(p for p in rest.replace(";", ",").split(",") if p)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith("CCPULSE_") or name in ("CCPULSE_CONFIG", "CCPULSE_TANSU",
                                                      "CCPULSE_REDIS_SERVER", "CCPULSE_CHAOS_FULL",
                                                      "CCPULSE_SENTIMENT_PLUGIN",
                                                      "CCPULSE_PURE_PYTHON"):
            continue
        key = name[len("CCPULSE_"):].lower()
        if key.endswith("_file"):
            key = key[: -len("_file")]
            try:
                value = Path(value).read_text().strip()
            except (OSError, UnicodeDecodeError) as exc:
                # the path is not secret, the content is never read into the message
                raise ConfigError(f"invalid setting: {name}: cannot read {value}: "
                                  f"{exc.strerror or type(exc).__name__}") from None
        if key in seen:
            raise ConfigError(f"invalid setting: both {seen[key]} and {name} are set")
        seen[key] = name
        path = key.split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None,
         **overrides: Any) -> Settings:
    """Build validated Settings; raises ConfigError naming the bad setting."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    path = path or environ.get("CCPULSE_CONFIG")
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    try:
        settings = msgspec.convert(data, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from exc
    try:
        settings.tz
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"invalid setting: timezone {settings.timezone!r} is not an IANA zone") from exc
    if settings.publish_interval_s <= 0:
        raise ConfigError("invalid setting: publish_interval_s must be > 0")
    for name in ("agent_publish_interval_s", "checkpoint_interval_s", "fetch_max_wait_ms"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"invalid setting: {name} must be > 0")
    if not settings.redis_prefix:
        raise ConfigError("invalid setting: redis_prefix must not be empty")
    _check_tls_files(settings)
    return settings


def _check_tls_files(settings: Settings) -> None:
    """TLS options must fit the URL/protocol and name readable files (paths are not secret)."""
    redis_tls = {"redis_ssl_ca": settings.redis_ssl_ca, "redis_ssl_cert": settings.redis_ssl_cert,
                 "redis_ssl_key": settings.redis_ssl_key}
    given = [name for name, value in redis_tls.items() if value]
    if given and not settings.redis_url.startswith("rediss://"):
        raise ConfigError(f"invalid setting: {', '.join(given)} need a rediss:// redis_url")
    if settings.redis_ssl_key and not settings.redis_ssl_cert:
        raise ConfigError("invalid setting: redis_ssl_key needs redis_ssl_cert")
    k = settings.kafka
    kafka_tls = {"kafka.ssl_cafile": k.ssl_cafile, "kafka.ssl_certfile": k.ssl_certfile,
                 "kafka.ssl_keyfile": k.ssl_keyfile}
    given_k = [name for name, value in kafka_tls.items() if value]
    if given_k and k.security_protocol not in ("SSL", "SASL_SSL"):
        raise ConfigError(f"invalid setting: {', '.join(given_k)} need kafka.security_protocol "
                          f"SSL or SASL_SSL, not {k.security_protocol}")
    if k.ssl_keyfile and not k.ssl_certfile:
        raise ConfigError("invalid setting: kafka.ssl_keyfile needs kafka.ssl_certfile")
    sasl = [name for name, value in (("kafka.sasl_mechanism", k.sasl_mechanism),
                                     ("kafka.sasl_username", k.sasl_username),
                                     ("kafka.sasl_password", k.sasl_password)) if value]
    if sasl and not k.security_protocol.startswith("SASL_"):
        # credentials that would silently not be used: the operator meant SASL
        raise ConfigError(f"invalid setting: {', '.join(sasl)} need kafka.security_protocol "
                          f"SASL_PLAINTEXT or SASL_SSL, not {k.security_protocol}")
    for name, value in {**redis_tls, **kafka_tls}.items():
        if value and not os.access(value, os.R_OK):
            raise ConfigError(f"invalid setting: {name}: cannot read {value}")
