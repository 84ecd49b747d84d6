"""Redis TLS + ACL (DESIGN §8) on a real redis-server started here with TLS only and the
users of deploy/redis/users.acl (test passwords put in a copy): a full worker publishes as
ccpulse-worker over rediss://, ccpulse-reader reads and subscribes but cannot write, and a
wrong password stops the worker at start with one clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from conftest import ROOT, decoded, produce, wait_for
from security_certs import make_pki
from security_support import interaction
from stream import config as ccconfig
from stream import embedded

ACL = ROOT / "deploy" / "redis" / "users.acl"
WORKER_PW = "worker-MARKER-pw-41d7"
READER_PW = "reader-MARKER-pw-82e9"
PASSWORDS = {"ccpulse-worker": WORKER_PW, "ccpulse-reader": READER_PW}


ADMIN_PW = "admin-test-pw-6e21"


def acl_with_test_passwords(dest: Path, admin: bool = False) -> Path:
    """deploy/redis/users.acl with each user's password (>plain or #sha256) replaced, plus
    (with `admin`) a test-only admin user that can change them."""
    lines = [f"user ccpulse-test-admin on >{ADMIN_PW} ~* &* +@all"] if admin else []
    for line in ACL.read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "user" and words[1] in PASSWORDS:
            rules = [w for w in words[2:] if not w.startswith((">", "#"))]
            line = " ".join(["user", words[1], *rules, ">" + PASSWORDS[words[1]]])
        lines.append(line)
    dest.write_text("\n".join(lines) + "\n")
    return dest


class TlsRedis:
    def __init__(self, pki, workdir: Path, auth_clients: str, admin: bool = False) -> None:
        self.port = embedded.free_port()
        assert self.port != 6379
        self.pki = pki
        acl = acl_with_test_passwords(workdir / "users.acl", admin)
        argv = [embedded.redis_binary(), "--port", "0", "--tls-port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", str(workdir), "--tls-cert-file", str(pki.server_cert),
                "--tls-key-file", str(pki.server_key), "--tls-ca-cert-file", str(pki.ca),
                "--tls-auth-clients", auth_clients, "--aclfile", str(acl)]
        self.log = workdir / "redis.log"
        self.proc = embedded.ChildProcess("redis-tls", argv, self.port, self.log).start()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        if user is None:
            return f"rediss://127.0.0.1:{self.port}/0"
        return f"rediss://{user}:{password or PASSWORDS[user]}@127.0.0.1:{self.port}/0"

    def client(self, user: str | None, password: str | None = None, cert: bool = False,
               ca: Path | None = None) -> redis.Redis:
        kw = {"ssl_ca_certs": str(ca or self.pki.ca)}
        if cert:
            kw.update(ssl_certfile=str(self.pki.client_cert), ssl_keyfile=str(self.pki.client_key))
        return redis.Redis.from_url(self.url(user, password), socket_timeout=5, **kw)

    def stop(self) -> None:
        self.proc.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_redis(pki, tmp_path_factory):
    server = TlsRedis(pki, tmp_path_factory.mktemp("redis-tls"), "optional")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_redis(pki, tmp_path_factory):
    server = TlsRedis(pki, tmp_path_factory.mktemp("redis-mtls"), "yes")
    yield server
    server.stop()


def test_redis_server_speaks_tls_only(tls_redis):
    plain = redis.Redis(host="127.0.0.1", port=tls_redis.port, socket_timeout=3,
                        username="ccpulse-worker", password=WORKER_PW)
    with pytest.raises(redis.exceptions.ConnectionError):
        plain.ping()
    assert tls_redis.client("ccpulse-worker").ping()
    # the default user is off: no anonymous access even over TLS
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)):
        tls_redis.client(None).get("cc:snapshot")


def test_connect_uses_the_tls_settings(tls_redis, mtls_redis, pki):
    from stream.sinks.redis_sink import connect, tls_options

    async def ping(cfg):
        client = connect(cfg)
        try:
            return await client.ping()
        finally:
            await client.aclose()

    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": tls_redis.url("ccpulse-worker"),
                                 "CCPULSE_REDIS_SSL_CA": str(pki.ca)})
    assert tls_options(cfg) == {"ssl_ca_certs": str(pki.ca)}
    assert asyncio.run(ping(cfg))
    # a server that requires a client certificate: refused without, accepted with
    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": mtls_redis.url("ccpulse-worker"),
                                 "CCPULSE_REDIS_SSL_CA": str(pki.ca)})
    with pytest.raises(redis.exceptions.ConnectionError):
        asyncio.run(ping(cfg))
    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": mtls_redis.url("ccpulse-worker"),
                                 "CCPULSE_REDIS_SSL_CA": str(pki.ca),
                                 "CCPULSE_REDIS_SSL_CERT": str(pki.client_cert),
                                 "CCPULSE_REDIS_SSL_KEY": str(pki.client_key)})
    assert tls_options(cfg) == {"ssl_ca_certs": str(pki.ca), "ssl_certfile": str(pki.client_cert),
                                "ssl_keyfile": str(pki.client_key)}
    assert asyncio.run(ping(cfg))
    # a CA that did not sign the server certificate: refused
    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": tls_redis.url("ccpulse-worker"),
                                 "CCPULSE_REDIS_SSL_CA": str(pki.other_ca)})
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        asyncio.run(ping(cfg))


@pytest.mark.parametrize("env,needle", [
    ({"CCPULSE_REDIS_URL": "redis://h:1/0", "CCPULSE_REDIS_SSL_CA": "/etc/hostname"},
     "redis_ssl_ca need a rediss:// redis_url"),
    ({"CCPULSE_REDIS_URL": "rediss://h:1/0", "CCPULSE_REDIS_SSL_KEY": "/etc/hostname"},
     "redis_ssl_key needs redis_ssl_cert"),
    ({"CCPULSE_REDIS_URL": "rediss://h:1/0", "CCPULSE_REDIS_SSL_CA": "/nonexistent/ca.pem"},
     "redis_ssl_ca: cannot read /nonexistent/ca.pem"),
])
def test_redis_tls_settings_are_checked(env, needle):
    with pytest.raises(ccconfig.ConfigError, match=re.escape(needle)):
        ccconfig.load(environ=env)


def worker_env(stack, unique, tls_redis, pki, password: str = WORKER_PW) -> dict[str, str]:
    env = unique.env(stack)
    env.update({"CCPULSE_REDIS_URL": tls_redis.url("ccpulse-worker", password),
                "CCPULSE_REDIS_SSL_CA": str(pki.ca),
                # the shipped ACL grants cc:* and &cc:updates only: the worker keeps the prefix
                "CCPULSE_REDIS_PREFIX": "cc:"})
    return env


def test_worker_publishes_as_worker_user_and_reader_reads_only(stack, unique, worker_factory,
                                                                 tls_redis, pki, tmp_path):
    reader = tls_redis.client("ccpulse-reader")
    pubsub = reader.pubsub()
    pubsub.subscribe("cc:updates")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"
    worker = worker_factory(CCPULSE_REDIS_URL=tls_redis.url("ccpulse-worker"),
                            CCPULSE_REDIS_SSL_CA=str(pki.ca), CCPULSE_REDIS_PREFIX="cc:")
    now = time.time()
    events = []
    for n in range(4):
        events += interaction(f"r{n}", "billing", "voice", now - 400 + n, now - 390 + n,
                              ended=now - 300, wrapup=now - 280)
    produce(stack, unique.interactions, events)

    def published():
        h = decoded(reader.hgetall("cc:kpi:center:15m"))
        return h if h.get("handled") == "4" else None

    h = wait_for(published, 90, what="KPIs written by ccpulse-worker over TLS")
    assert h["offered"] == "4"
    assert decoded(reader.hgetall("cc:kpi:queue:billing:15m"))["handled"] == "4"
    assert json.loads(reader.get("cc:snapshot"))
    # the reader got the worker's update messages on cc:updates
    deadline = time.monotonic() + 10
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
    assert msg is not None and "seq" in json.loads(msg["data"])
    pubsub.close()
    # reads of every kind succeed, writes are refused
    assert reader.exists("cc:snapshot") == 1
    assert reader.type("cc:kpi:center:15m") == b"hash"
    assert isinstance(reader.zrange("cc:intervals:center", 0, -1), list)
    for write in (lambda: reader.hset("cc:kpi:center:15m", "offered", "999"),
                  lambda: reader.set("cc:snapshot", b"{}"),
                  lambda: reader.delete("cc:snapshot"),
                  lambda: reader.expire("cc:snapshot", 1),
                  lambda: reader.publish("cc:updates", b"forged"),
                  lambda: reader.eval("return redis.call('del', KEYS[1])", 1, "cc:snapshot"),
                  lambda: reader.get("other:key"),
                  lambda: reader.flushall(),
                  lambda: reader.config_get("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            write()
    assert decoded(reader.hgetall("cc:kpi:center:15m"))["offered"] == "4"
    # `ccpulse report` reads with the reader user over TLS (connect(settings) brings the CA)
    res = subprocess.run(
        [sys.executable, "-m", "stream.cli", "report", "--format", "json", "--by", "interval"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CCPULSE_")},
             "CCPULSE_REDIS_URL": tls_redis.url("ccpulse-reader"),
             "CCPULSE_REDIS_SSL_CA": str(pki.ca)},
        capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert res.returncode == 0, res.stderr
    assert READER_PW not in res.stdout + res.stderr
    # the wallboard reads as ccpulse-reader over TLS too (it takes the CA in the URL query:
    # rediss://…/0?ssl_ca_certs=/path, until it reads redis_ssl_* like connect() does)
    assert wallboard_snapshot(tls_redis.url("ccpulse-reader") + f"?ssl_ca_certs={pki.ca}")
    # the worker never logged its password
    worker.stop()
    assert WORKER_PW not in worker.log.read_text(errors="replace")
    reader.close()


def test_wrong_password_stops_the_worker_at_start(stack, unique, tls_redis, pki, tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CCPULSE_")},
           **worker_env(stack, unique, tls_redis, pki, password="wrong-MARKER-pw")}
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert time.monotonic() - started < 30
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: Redis at 127.0.0.1:{tls_redis.port} refused user 'ccpulse-worker': "
                     "invalid username-password pair or user is disabled. (check the password "
                     "in CCPULSE_REDIS_URL or CCPULSE_REDIS_URL_FILE and the ACL users)"], out
    assert "wrong-MARKER-pw" not in out and "Traceback" not in out
    # the reader's credentials in the worker's place: AUTH succeeds, the write probe does not
    env["CCPULSE_REDIS_URL"] = tls_redis.url("ccpulse-reader")
    res = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert res.stderr.startswith(f"error: Redis at 127.0.0.1:{tls_redis.port}: user "
                                 "'ccpulse-reader' lacks an ACL permission"), out
    assert READER_PW not in out and "Traceback" not in out
    # a key prefix outside the worker's ACL keys is caught the same way
    env["CCPULSE_REDIS_URL"] = tls_redis.url("ccpulse-worker")
    env["CCPULSE_REDIS_PREFIX"] = "other:"
    res = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert res.returncode == 2 and "lacks an ACL permission" in res.stderr, res.stderr


def test_untrusted_redis_certificate_stops_the_worker_at_start(stack, unique, tls_redis, pki):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CCPULSE_")},
           **worker_env(stack, unique, tls_redis, pki), "CCPULSE_REDIS_SSL_CA": str(pki.other_ca)}
    res = subprocess.run([sys.executable, "-m", "stream.cli", "worker"], env=env,
                         capture_output=True, text=True, timeout=60, cwd=str(ROOT))
    assert res.returncode == 2
    assert "TLS server certificate not trusted" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr and WORKER_PW not in res.stderr


@pytest.mark.parametrize("password,prefix,needle", [
    ("wrong-MARKER-pw", "cc:", "refused user 'ccpulse-worker'"),
    (WORKER_PW, "other:", "user 'ccpulse-worker' lacks an ACL permission"),
])
def test_restore_loop_stops_on_auth_errors_instead_of_retrying(tls_redis, pki, password, prefix,
                                                                needle, caplog):
    """The checkpoint restore waits while Redis is down but gives up on AUTH/NOPERM
    (e.g. the password was rotated, or the ACL changed, while the worker was running)."""
    from stream.pipeline import Pipeline

    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": tls_redis.url("ccpulse-worker", password),
                                 "CCPULSE_REDIS_SSL_CA": str(pki.ca),
                                 "CCPULSE_REDIS_PREFIX": prefix})
    stops: list[str] = []

    async def go():
        pipeline = Pipeline(cfg)
        pipeline.on_fatal = stops.append
        try:
            shard = pipeline.engine.shard(0)
            return await asyncio.wait_for(pipeline._restore("i0", shard), 20), pipeline
        finally:
            await pipeline.sink.close()

    result, pipeline = asyncio.run(go())
    assert result is None
    assert len(stops) == 1 and needle in stops[0] and password not in stops[0]
    assert pipeline.fatal == stops[0]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(needle in e and "stopping the worker" in e for e in errors)
    assert all(password not in r.getMessage() for r in caplog.records)


def test_restore_loop_still_waits_for_a_redis_that_is_down(pki):
    """A connection refused is not fatal: the loop keeps waiting (DESIGN §5)."""
    from stream.pipeline import Pipeline

    port = embedded.free_port()
    cfg = ccconfig.load(environ={"CCPULSE_REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    stops: list[str] = []

    async def go():
        pipeline = Pipeline(cfg)
        pipeline.on_fatal = stops.append
        try:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(pipeline._restore("i0", pipeline.engine.shard(0)), 1.5)
        finally:
            await pipeline.sink.close()
        return pipeline

    pipeline = asyncio.run(go())
    assert not stops and pipeline.fatal is None


def wallboard_snapshot(url: str) -> dict:
    """/api/snapshot of the wallboard app reading `url` (waits for its first read)."""
    from aiohttp.test_utils import TestClient, TestServer

    from stream.web.wallboard import create_app

    async def go():
        client = TestClient(TestServer(create_app(url, "cc:"), host="127.0.0.1"))
        await client.start_server()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                r = await client.get("/api/snapshot")
                if r.status == 200:
                    body = await r.json()
                    if body.get("source") == "up" and body.get("queues"):
                        return body
                await asyncio.sleep(0.3)
            return {}
        finally:
            await client.close()

    return asyncio.run(go())


def test_rotated_password_stops_a_running_worker(stack, unique, worker_factory, pki, tmp_path):
    """The password changes under a running worker: its publish cycles fail (counted, logged
    once), and at the next partition assignment the checkpoint restore is refused — the
    worker then logs one line and shuts down instead of retrying forever."""
    (tmp_path / "rotating").mkdir()
    server = TlsRedis(pki, tmp_path / "rotating", "optional", admin=True)
    try:
        env = dict(CCPULSE_REDIS_URL=server.url("ccpulse-worker"), CCPULSE_REDIS_SSL_CA=str(pki.ca),
                   CCPULSE_REDIS_PREFIX="cc:")
        old = worker_factory(**env)
        wait_for(lambda: server.client("ccpulse-worker").exists("cc:snapshot"), 60,
                 what="first worker publishing")
        admin = redis.Redis.from_url(
            f"rediss://ccpulse-test-admin:{ADMIN_PW}@127.0.0.1:{server.port}/0",
            ssl_ca_certs=str(pki.ca), socket_timeout=5)
        admin.execute_command("ACL", "SETUSER", "ccpulse-worker", "resetpass", ">rotated-pw-1")
        admin.execute_command("CLIENT", "KILL", "USER", "ccpulse-worker")
        # a second worker with the new password joins the group: the old one is reassigned
        new = worker_factory(**{**env, "CCPULSE_REDIS_URL": server.url("ccpulse-worker",
                                                                       "rotated-pw-1")})
        wait_for(lambda: old.proc.poll() is not None, 90, what="the old worker to stop")
        log = old.log.read_text(errors="replace")
        fatal = [ln for ln in log.splitlines() if "stopping the worker" in ln]
        assert fatal and "refused user 'ccpulse-worker'" in fatal[0], log[-3000:]
        assert "ERROR" in fatal[0] and WORKER_PW not in log and "rotated-pw-1" not in log
        assert new.proc.poll() is None
        admin.close()
    finally:
        server.stop()
