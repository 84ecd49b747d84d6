"""Shared fixtures: a real tansu broker and a real private redis-server per test session.

Every test that needs isolation gets its own topic names, consumer group and Redis key
prefix (`unique`), so one broker and one Redis serve the whole session. Nothing here ever
connects to a server the tests did not start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
import redis as redis_sync

from stream import embedded

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("stack")
    s = embedded.start_stack(partitions=4, log_dir=log_dir)
    yield s
    s.stop()


@pytest.fixture()
def redis_client(stack):
    client = redis_sync.Redis.from_url(stack.redis_url)
    yield client
    client.close()


class Topics:
    """Unique topic names, group and prefix for one test."""

    def __init__(self, tag: str, partitions: int = 4) -> None:
        self.tag = tag
        self.partitions = partitions
        self.interactions = f"t{tag}.interactions"
        self.agents = f"t{tag}.agent-states"
        self.surveys = f"t{tag}.surveys"
        self.deadletter = f"t{tag}.deadletter"
        self.customers = f"t{tag}.customers"
        self.group = f"g{tag}"
        self.prefix = f"t{tag}:"

    def env(self, stack, **extra) -> dict[str, str]:
        env = {
            "CCPULSE_BROKER_URL": stack.broker_url, "CCPULSE_REDIS_URL": stack.redis_url,
            "CCPULSE_TOPIC_INTERACTIONS": self.interactions, "CCPULSE_TOPIC_AGENTS": self.agents,
            "CCPULSE_TOPIC_SURVEYS": self.surveys, "CCPULSE_TOPIC_DEADLETTER": self.deadletter,
            "CCPULSE_TOPIC_CUSTOMERS": self.customers,
            "CCPULSE_GROUP_ID": self.group, "CCPULSE_REDIS_PREFIX": self.prefix,
            "CCPULSE_DATA_DIR": f"/tmp/ccpulse-test-{self.tag}",
        }
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def create(self, stack) -> "Topics":
        asyncio.run(embedded.create_topics(
            stack.bootstrap, self.partitions,
            (self.interactions, self.agents, self.surveys, self.deadletter, self.customers)))
        return self


@pytest.fixture()
def unique(stack):
    return Topics(uuid.uuid4().hex[:8]).create(stack)


class WorkerProc:
    """A `ccpulse worker` subprocess in its own process group."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.web_port = embedded.free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "WorkerProc":
        env = {**os.environ, **self.env, "CCPULSE_WEB_PORT": str(self.web_port)}
        self.proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env,
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(ROOT))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"


@pytest.fixture()
def worker_factory(stack, unique, tmp_path):
    workers: list[WorkerProc] = []

    def make(**extra) -> WorkerProc:
        w = WorkerProc(unique.env(stack, **extra), tmp_path / f"worker{len(workers)}.log")
        workers.append(w)
        return w.start()

    yield make
    for w in workers:
        try:
            w.kill()
        except Exception:
            pass


def produce(stack, topic: str, events: list[dict | bytes | tuple], key_field: str | None = None) -> dict:
    """Produce events in order — dicts (keyed by interaction or agent id), raw bytes, or
    (value, key) pairs of raw bytes; returns {partition: last_offset}."""
    from aiokafka import AIOKafkaProducer

    async def go():
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False,
                                    acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024)
        await producer.start()
        last: dict[int, int] = {}
        try:
            futures = []
            for ev in events:
                if isinstance(ev, tuple):
                    value, key = ev
                elif isinstance(ev, (bytes, bytearray)):
                    value, key = bytes(ev), None
                else:
                    value = orjson.dumps(ev)
                    k = ev.get(key_field or "interaction_id") or ev.get("agent_id")
                    key = k.encode() if isinstance(k, str) else None
                futures.append(await producer.send(topic, value=value, key=key))
            for md in await asyncio.gather(*futures):
                last[md.partition] = max(last.get(md.partition, -1), md.offset)
        finally:
            await producer.stop()
        return last

    return asyncio.run(go())


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


def noon_zone(now: float | None = None) -> str:
    """An IANA zone (`Etc/GMT±N`) in which `now` is between 11:00 and 13:00 local time.

    A wall-clock worker's `today` starts at local midnight: events placed minutes before
    "now" fall into yesterday when a run crosses midnight in the worker's zone (a run from
    00:04 to 00:14 UTC read `today` handled 0 instead of 2). Noon is twelve hours from
    either midnight, whatever the hour the tests run.
    """
    hour = time.gmtime(time.time() if now is None else now).tm_hour
    offset = 12 - hour  # local hour = UTC hour + offset, in [-11, +12]
    return f"Etc/GMT{-offset:+d}"  # the Etc zones' sign is inverted: Etc/GMT-3 is UTC+3


def decoded(h: dict) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in h.items()}


def scrape(worker: WorkerProc) -> dict[str, float]:
    """A worker's /metrics as {series: value}."""
    import urllib.request

    text = urllib.request.urlopen(worker.url("/metrics"), timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
