"""Kafka TLS and SASL (DESIGN §8): the arguments that reach aiokafka, secrets from the
environment and from *_FILE, errors that name settings but never show a secret, and a full
worker through a TLS + SASL front (tests/kafka_gate.py says why tansu cannot do it alone).
"""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, Topics, WorkerProc, decoded, wait_for
from kafka_gate import KafkaGate, server_context
from security_certs import make_pki
from security_support import interaction
from stream import config as ccconfig
from stream import embedded
from stream.app import broker_credentials
from stream.kafka_security import client_kwargs

MARK_PW = "kafka-MARKER-pw-5f3c"
MARK_TOKEN = "api-MARKER-token-9d1e"
MARK_HASH = "hash-MARKER-secret-77aa"
MARK_REDIS = "redis-MARKER-pw-c0de"
MARKERS = (MARK_PW, MARK_TOKEN, MARK_HASH, MARK_REDIS)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def load(**env: str) -> ccconfig.Settings:
    return ccconfig.load(environ={k: str(v) for k, v in env.items()})


def sasl_env(mechanism: str, protocol: str = "SASL_PLAINTEXT", **extra) -> dict[str, str]:
    return {"CCPULSE_KAFKA__SECURITY_PROTOCOL": protocol,
            "CCPULSE_KAFKA__SASL_MECHANISM": mechanism,
            "CCPULSE_KAFKA__SASL_USERNAME": "ccpulse", **extra}


def assert_no_marker(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"secret {marker} leaked: {text[:2000]}"


# --- kwargs for aiokafka ---------------------------------------------------------------

def test_plaintext_by_default():
    assert client_kwargs(load()) == {"security_protocol": "PLAINTEXT"}
    assert broker_credentials(load()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_from_env(mechanism):
    cfg = load(**sasl_env(mechanism, CCPULSE_KAFKA__SASL_PASSWORD=MARK_PW))
    assert client_kwargs(cfg) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": mechanism,
        "sasl_plain_username": "ccpulse", "sasl_plain_password": MARK_PW}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_with_password_file(mechanism, pki, tmp_path):
    secret = tmp_path / "kafka-password"
    secret.write_text(MARK_PW + "\n")  # a trailing newline (echo, k8s secrets) is stripped
    cfg = load(**sasl_env(mechanism, "SASL_SSL", CCPULSE_KAFKA__SASL_PASSWORD_FILE=secret,
                          CCPULSE_KAFKA__SSL_CAFILE=pki.ca))
    kw = client_kwargs(cfg)
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_mechanism"] == mechanism
    assert kw["sasl_plain_username"] == "ccpulse" and kw["sasl_plain_password"] == MARK_PW
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "ccpulse test CA"),),)]
    # Faust's own clients get the same through broker_credentials
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    faust_kw = credentials_to_aiokafka_auth(broker_credentials(cfg))
    assert {k: faust_kw[k] for k in ("security_protocol", "sasl_mechanism",
                                     "sasl_plain_username", "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
        "sasl_plain_username": "ccpulse", "sasl_plain_password": MARK_PW}
    assert isinstance(faust_kw["ssl_context"], ssl.SSLContext)
    assert MARK_PW not in repr(broker_credentials(cfg))


def test_ssl_with_client_certificate(pki):
    cfg = load(CCPULSE_KAFKA__SECURITY_PROTOCOL="SSL", CCPULSE_KAFKA__SSL_CAFILE=pki.ca,
               CCPULSE_KAFKA__SSL_CERTFILE=pki.client_cert, CCPULSE_KAFKA__SSL_KEYFILE=pki.client_key,
               CCPULSE_KAFKA__SSL_CHECK_HOSTNAME="false")
    kw = client_kwargs(cfg)
    assert set(kw) == {"security_protocol", "ssl_context"} and kw["security_protocol"] == "SSL"
    assert not kw["ssl_context"].check_hostname
    assert kw["ssl_context"].verify_mode == ssl.CERT_REQUIRED  # never CERT_NONE
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(broker_credentials(cfg))["security_protocol"] == "SSL"


def test_secret_file_from_toml_env_mix(tmp_path):
    """TOML holds the non-secret part (as in deploy/k8s/configmap.yaml), env the secret."""
    toml = tmp_path / "c.toml"
    toml.write_text('[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\n'
                    'sasl_mechanism = "SCRAM-SHA-512"\nsasl_username = "ccpulse"\n')
    pw = tmp_path / "pw"
    pw.write_text(MARK_PW)
    cfg = ccconfig.load(toml, environ={"CCPULSE_KAFKA__SASL_PASSWORD_FILE": str(pw)})
    assert client_kwargs(cfg)["sasl_plain_password"] == MARK_PW
    # without the secret the TOML alone still loads (wallboard, report), the worker refuses
    cfg = ccconfig.load(toml, environ={})
    with pytest.raises(ccconfig.ConfigError, match="kafka.sasl_password"):
        client_kwargs(cfg)


@pytest.mark.parametrize("env,missing", [
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
     ["kafka.sasl_mechanism", "kafka.sasl_username", "kafka.sasl_password"]),
    (sasl_env("PLAIN"), ["kafka.sasl_password"]),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "CCPULSE_KAFKA__SASL_USERNAME": "u",
      "CCPULSE_KAFKA__SASL_PASSWORD": MARK_PW}, ["kafka.sasl_mechanism"]),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "CCPULSE_KAFKA__SASL_MECHANISM": "PLAIN",
      "CCPULSE_KAFKA__SASL_PASSWORD": MARK_PW}, ["kafka.sasl_username"]),
])
def test_incomplete_sasl_is_a_config_error(env, missing):
    cfg = load(**env)
    with pytest.raises(ccconfig.ConfigError) as info:
        client_kwargs(cfg)
    message = str(info.value)
    for name in missing:
        assert name in message
    assert MARK_PW not in message


@pytest.mark.parametrize("env,needle", [
    ({"CCPULSE_KAFKA__SASL_PASSWORD": MARK_PW}, "kafka.sasl_password need"),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CCPULSE_KAFKA__SSL_CAFILE": "/etc/hostname"},
     "kafka.ssl_cafile need"),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SSL", "CCPULSE_KAFKA__SSL_CAFILE": "/nonexistent/ca.pem"},
     "kafka.ssl_cafile: cannot read /nonexistent/ca.pem"),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SSL", "CCPULSE_KAFKA__SSL_KEYFILE": "/etc/hostname"},
     "ssl_keyfile needs kafka.ssl_certfile"),
    ({"CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "CCPULSE_KAFKA__SASL_MECHANISM": "GSSAPI"},
     "invalid setting"),
    ({"CCPULSE_KAFKA__SASL_PASSWORD_FILE": "/nonexistent/kafka-pw"},
     "CCPULSE_KAFKA__SASL_PASSWORD_FILE: cannot read /nonexistent/kafka-pw"),
])
def test_inconsistent_settings_fail_at_load(env, needle):
    with pytest.raises(ccconfig.ConfigError) as info:
        load(**env)
    assert needle in str(info.value)
    assert MARK_PW not in str(info.value)


def test_value_and_file_together_is_an_error(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(MARK_PW)
    with pytest.raises(ccconfig.ConfigError, match="both") as info:
        load(CCPULSE_KAFKA__SASL_PASSWORD="x", CCPULSE_KAFKA__SASL_PASSWORD_FILE=pw)
    assert MARK_PW not in str(info.value)


def test_unusable_tls_files_are_config_errors(tmp_path, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    cfg = load(CCPULSE_KAFKA__SECURITY_PROTOCOL="SSL", CCPULSE_KAFKA__SSL_CAFILE=junk)
    with pytest.raises(ccconfig.ConfigError, match="kafka TLS files"):
        client_kwargs(cfg)
    cfg = load(CCPULSE_KAFKA__SECURITY_PROTOCOL="SSL", CCPULSE_KAFKA__SSL_CAFILE=pki.ca,
               CCPULSE_KAFKA__SSL_CERTFILE=pki.client_cert, CCPULSE_KAFKA__SSL_KEYFILE=pki.server_key)
    with pytest.raises(ccconfig.ConfigError, match="kafka TLS files"):
        client_kwargs(cfg)  # key does not match the certificate


# --- secrets never shown ---------------------------------------------------------------

def marked_settings(tmp_path) -> ccconfig.Settings:
    pw = tmp_path / "pw"
    pw.write_text(MARK_PW)
    return load(**sasl_env("SCRAM-SHA-512", CCPULSE_KAFKA__SASL_PASSWORD_FILE=pw),
                CCPULSE_API_TOKEN=MARK_TOKEN, CCPULSE_CUSTOMER_HASH_SECRET=MARK_HASH,
                CCPULSE_REDIS_URL=f"redis://ccpulse-worker:{MARK_REDIS}@127.0.0.1:1/0")


def test_repr_masks_every_secret(tmp_path):
    cfg = marked_settings(tmp_path)
    for text in (repr(cfg), str(cfg), f"{cfg}", repr(cfg.kafka), str([cfg])):
        assert_no_marker(text)
    assert "redis://ccpulse-worker:***@127.0.0.1:1/0" in repr(cfg)
    assert "sasl_password='***'" in repr(cfg) and "api_token='***'" in repr(cfg)
    assert "customer_hash_secret='***'" in repr(cfg)
    # the values themselves are intact
    assert cfg.kafka.sasl_password == MARK_PW and cfg.api_token == MARK_TOKEN
    # rich (typer's pretty tracebacks, debuggers) uses __rich_repr__
    from rich.pretty import pretty_repr

    assert_no_marker(pretty_repr(cfg))
    assert "***" in pretty_repr(cfg)


def test_mask_url_forms():
    assert ccconfig.mask_url("rediss://u:p@h:1/0") == "rediss://u:***@h:1/0"
    assert ccconfig.mask_url("redis://:p@h:1/0") == "redis://:***@h:1/0"
    assert ccconfig.mask_url("redis://tokenonly@h/0") == "redis://***@h/0"
    assert ccconfig.mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_validation_errors_do_not_echo_values():
    with pytest.raises(ccconfig.ConfigError) as info:
        load(CCPULSE_WEB_PORT=MARK_TOKEN)  # a secret pasted into the wrong variable
    assert "web_port" in str(info.value)
    assert_no_marker(str(info.value))


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CCPULSE_")}
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT))


def test_cli_errors_never_show_secrets(tmp_path, stack):
    pw = tmp_path / "pw"
    pw.write_text(MARK_PW)
    secrets = {"CCPULSE_API_TOKEN": MARK_TOKEN, "CCPULSE_CUSTOMER_HASH_SECRET": MARK_HASH,
               "CCPULSE_DATA_DIR": str(tmp_path / "data")}
    cases = [
        # incomplete SASL: no mechanism
        {**secrets, "CCPULSE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
         "CCPULSE_KAFKA__SASL_PASSWORD_FILE": str(pw),
         "CCPULSE_REDIS_URL": f"redis://u:{MARK_REDIS}@127.0.0.1:1/0"},
        # a secret in a field of the wrong type
        {**secrets, "CCPULSE_WEB_PORT": MARK_PW},
        # Redis refuses the password (the session Redis has no such user)
        {**secrets, "CCPULSE_BROKER_URL": stack.broker_url,
         "CCPULSE_REDIS_URL": f"redis://nobody:{MARK_REDIS}@127.0.0.1:{stack.redis.port}/0"},
        # missing secret file
        {**secrets, "CCPULSE_KAFKA__SASL_PASSWORD_FILE": str(tmp_path / "missing")},
    ]
    for env in cases:
        res = run_cli("worker", env=env)
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert_no_marker(out)
        assert "Traceback" not in out and "╭" not in out, out
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), out
    # report and the wallboard only need Redis; their errors stay clean too
    res = run_cli("report", "--format", "json",
                  env={**secrets, "CCPULSE_REDIS_URL": f"redis://u:{MARK_REDIS}@127.0.0.1:1/0"})
    assert res.returncode != 0
    assert_no_marker(res.stdout + res.stderr)


# --- end to end: a worker through TLS + SASL --------------------------------------------

class SecuredBroker:
    """A private tansu that advertises the gate's address, so every client passes the gate."""

    def __init__(self, gate_kwargs: dict, log_dir: Path) -> None:
        self.tansu_port, self.port = embedded.free_port(), embedded.free_port()
        url = f"tcp://127.0.0.1:{self.tansu_port}"
        self.tansu = embedded.ChildProcess(
            "tansu", [embedded.tansu_binary(), "broker", "--listener-url", url,
                      "--advertised-listener-url", f"tcp://127.0.0.1:{self.port}"],
            self.tansu_port, log_dir / "tansu-secured.log").start()
        self.gate = KafkaGate(self.tansu_port, self.port, **gate_kwargs).start()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.gate.stop()
        self.tansu.stop()


@pytest.fixture(scope="module")
def secured(pki, tmp_path_factory):
    users = {"ccpulse": MARK_PW, "producer": "producer-pw"}
    broker = SecuredBroker({"ssl_context": server_context(str(pki.server_cert), str(pki.server_key),
                                                          str(pki.ca), require_client_cert=True),
                            "users": users}, tmp_path_factory.mktemp("secured"))
    yield broker
    broker.stop()


def client_env(pki, mechanism: str, user: str, password_file: Path) -> dict[str, str]:
    return {**sasl_env(mechanism, "SASL_SSL"), "CCPULSE_KAFKA__SASL_USERNAME": user,
            "CCPULSE_KAFKA__SASL_PASSWORD_FILE": str(password_file),
            "CCPULSE_KAFKA__SSL_CAFILE": str(pki.ca),
            "CCPULSE_KAFKA__SSL_CERTFILE": str(pki.client_cert),
            "CCPULSE_KAFKA__SSL_KEYFILE": str(pki.client_key)}


def produce_secured(bootstrap: str, kw: dict, topic: str, events: list[dict]) -> None:
    import asyncio

    import orjson
    from aiokafka import AIOKafkaProducer

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False,
                                    acks="all", **kw)
        await producer.start()
        try:
            for ev in events:
                await producer.send(topic, orjson.dumps(ev), key=ev["interaction_id"].encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(go())


def test_worker_consumes_and_publishes_through_sasl_ssl(secured, pki, stack, redis_client, tmp_path):
    pw = tmp_path / "kafka-pw"
    pw.write_text(MARK_PW)
    producer_pw = tmp_path / "producer-pw"
    producer_pw.write_text("producer-pw")
    producer_kw = client_kwargs(load(**client_env(pki, "SCRAM-SHA-256", "producer", producer_pw)))
    topics = Topics(uuid.uuid4().hex[:8])
    _create_topics(secured.bootstrap, producer_kw, topics)
    env = {**topics.env(stack), "CCPULSE_BROKER_URL": f"kafka://{secured.bootstrap}",
           **client_env(pki, "SCRAM-SHA-512", "ccpulse", pw)}
    worker = WorkerProc(env, tmp_path / "worker.log").start()
    try:
        now = time.time()
        events = []
        for n in range(5):
            events += interaction(f"s{n}", "billing", "voice", now - 300 + n, now - 290 + n,
                                  ended=now - 200, wrapup=now - 190)
        produce_secured(secured.bootstrap, producer_kw, topics.interactions, events)

        def center():
            h = decoded(redis_client.hgetall(f"{topics.prefix}kpi:center:15m"))
            return h if h.get("handled") == "5" else None

        h = wait_for(center, 90, what="KPIs published by the SASL_SSL worker")
        assert h["offered"] == "5" and h["answered"] == "5"
    finally:
        worker.kill()
    gate = secured.gate
    mechanisms = {m for u, m in gate.authenticated if u == "ccpulse"}
    assert mechanisms == {"SCRAM-SHA-512"}  # Faust's clients and the pipeline's, all of them
    assert ("producer", "SCRAM-SHA-256") in gate.authenticated
    assert gate.refused == 0 and not gate.failed
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert MARK_PW not in log


def _create_topics(bootstrap: str, kw: dict, topics: Topics) -> None:
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **kw)
        await admin.start()
        try:
            names = [topics.interactions, topics.agents, topics.surveys, topics.deadletter]
            if getattr(topics, "customers", None):  # the internal FCR topic, where it exists
                names.append(topics.customers)
            await admin.create_topics([NewTopic(t, 4, 1) for t in names])
        finally:
            await admin.close()

    asyncio.run(go())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_wrong_kafka_password_fails_at_start_in_one_line(secured, pki, stack, tmp_path, mechanism):
    wrong = "wrong-MARKER-" + mechanism
    pw = tmp_path / "pw"
    pw.write_text(wrong)
    failed_before = len(secured.gate.failed)
    env = {"CCPULSE_BROKER_URL": f"kafka://{secured.bootstrap}",
           "CCPULSE_REDIS_URL": stack.redis_url, "CCPULSE_DATA_DIR": str(tmp_path / "d"),
           **client_env(pki, mechanism, "ccpulse", pw)}
    started = time.monotonic()
    res = run_cli("worker", env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert time.monotonic() - started < 30
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith(f"error: Kafka at {secured.bootstrap} refused SASL {mechanism} "
                               "user 'ccpulse'"), out
    assert wrong not in out and MARK_PW not in out and "Traceback" not in out
    assert len(secured.gate.failed) > failed_before


def test_untrusted_broker_certificate_fails_at_start(secured, pki, stack, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(MARK_PW)
    env = {"CCPULSE_BROKER_URL": f"kafka://{secured.bootstrap}",
           "CCPULSE_REDIS_URL": stack.redis_url, "CCPULSE_DATA_DIR": str(tmp_path / "d"),
           **client_env(pki, "SCRAM-SHA-512", "ccpulse", pw),
           "CCPULSE_KAFKA__SSL_CAFILE": str(pki.other_ca)}
    res = run_cli("worker", env=env)
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "TLS server certificate not trusted" in res.stderr and "Traceback" not in out
    assert MARK_PW not in out


def test_plaintext_client_cannot_use_the_secured_listener(secured):
    """The gate itself: nothing but ApiVersions passes before SASL (guards the test setup)."""
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=secured.bootstrap, request_timeout_ms=3000,
                                    security_protocol="SSL",
                                    ssl_context=ssl.create_default_context(cafile=None))
        try:
            await asyncio.wait_for(producer.start(), 10)
        finally:
            await producer.stop()

    with pytest.raises(Exception):
        asyncio.run(go())
