"""`ccpulse` command line: worker, up, demo, simulate, replay, report, staffing, wallboard."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from . import config as config_mod
from . import embedded

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ccpulse: live contact-center KPIs from Kafka events")

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML config file (or CCPULSE_CONFIG)")
BrokerOpt = typer.Option(None, "--broker", help="kafka://host:9092 (default from config)")
RedisOpt = typer.Option(None, "--redis", help="redis://host:6379/0 (default from config)")


def load_settings(config: Optional[Path], **overrides) -> config_mod.Settings:
    try:
        return config_mod.load(config, **overrides)
    except config_mod.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
           redis: Optional[str] = RedisOpt,
           clock: Optional[str] = typer.Option(None, help="wall (live) or event (replay)"),
           web_port: Optional[int] = typer.Option(None, "--web-port"),
           web_host: Optional[str] = typer.Option(None, "--web-host"),
           group: Optional[str] = typer.Option(None, "--group", help="consumer group id")) -> None:
    """Run a worker: consume, compute, publish to Redis and /metrics."""
    cfg = load_settings(config, broker_url=broker, redis_url=redis, clock=clock, web_port=web_port,
                        web_host=web_host, group_id=group)
    from .app import run_worker
    from .live_staffing import queue_staffing
    from .pipeline import preflight
    from .sentiment import default_scorer

    try:  # incomplete Kafka security or Redis refusing the credentials: one line, exit 2
        preflight(cfg)
    except config_mod.ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    sys.argv = [sys.argv[0], "worker"]
    run_worker(cfg, scorer=default_scorer(cfg), staffing=queue_staffing)


class Children:
    """Child processes of `up`/`demo`, each in its own process group, stopped together."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def spawn(self, name: str, argv: list[str], env: dict | None = None, log: Path | None = None):
        out = open(log, "ab") if log else None
        proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT if out else None,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def run_stack(config: Optional[Path], broker: Optional[str], redis: Optional[str], partitions: int,
              simulate_args: list[str] | None, wallboard: bool, web_port: int,
              wallboard_port: int, duration: Optional[float]) -> None:
    stack = None
    children = Children()
    log_dir = Path(tempfile.mkdtemp(prefix="ccpulse-"))
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        if broker is None or redis is None:
            typer.echo("starting embedded broker (tansu) and redis-server …")
            stack = embedded.start_stack(partitions, log_dir)
            broker = broker or stack.broker_url
            redis = redis or stack.redis_url
        else:
            asyncio.run(embedded.create_topics(config_mod.broker_bootstrap(broker), partitions))
        env = {"CCPULSE_BROKER_URL": broker, "CCPULSE_REDIS_URL": redis,
               "CCPULSE_WEB_PORT": str(web_port)}
        if config:
            env["CCPULSE_CONFIG"] = str(config)
        children.spawn("worker", embedded.python_cmd("worker"), env, log_dir / "worker.log")
        if wallboard:
            children.spawn("wallboard", embedded.python_cmd("wallboard", "--port", str(wallboard_port)),
                           env, log_dir / "wallboard.log")
        if simulate_args is not None:
            children.spawn("simulator", embedded.python_cmd("simulate", "--broker", broker,
                                                           *simulate_args), env,
                           log_dir / "simulator.log")
        typer.echo(f"""
ccpulse is running
  broker     {broker}
  redis      {redis}      (try: redis-cli -u {redis} HGETALL cc:kpi:center:15m)
  metrics    http://127.0.0.1:{web_port}/metrics
  api        http://127.0.0.1:{web_port}/api/kpi?scope=center""" + (f"""
  wallboard  http://127.0.0.1:{wallboard_port}/""" if wallboard else "") + f"""
  logs       {log_dir}
Press Ctrl-C to stop.""")
        started = time.monotonic()
        while not stopping:
            time.sleep(0.2)
            if duration is not None and time.monotonic() - started > duration:
                break
            for name, proc in children.procs:
                if proc.poll() is not None and name != "simulator":
                    typer.echo(f"{name} exited with {proc.returncode}; see {log_dir}/{name}.log",
                               err=True)
                    stopping = True
    finally:
        typer.echo("stopping …")
        children.stop()
        if stack is not None:
            stack.stop()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        typer.echo("stopped.")


@app.command()
def up(config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
       redis: Optional[str] = RedisOpt, partitions: int = typer.Option(4),
       web_port: int = typer.Option(6066), duration: Optional[float] = typer.Option(None)) -> None:
    """Start broker + Redis (embedded unless given) and a worker."""
    run_stack(config, broker, redis, partitions, None, False, web_port, 8080, duration)


@app.command()
def demo(config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
         redis: Optional[str] = RedisOpt, partitions: int = typer.Option(4),
         web_port: int = typer.Option(6066), wallboard_port: int = typer.Option(8080),
         rate: float = typer.Option(0.5, help="contacts per second"),
         bad_rate: float = typer.Option(0.005, help="share of injected bad records"),
         duration: Optional[float] = typer.Option(None, help="stop after N seconds")) -> None:
    """Everything: embedded broker + Redis, worker, live simulator and the wallboard."""
    run_stack(config, broker, redis, partitions,
              # a team sized for the rate (--agents 0) and a flat day: the demo looks alive
              # at any hour, with realistic service levels rather than a flood of abandons
              ["--rate", str(rate), "--agents", "0", "--flat", "--bad-rate", str(bad_rate),
               "--live"], True, web_port,
              wallboard_port, duration)


@app.command()
def replay(file: Path, config: Optional[Path] = ConfigOpt, broker: Optional[str] = BrokerOpt,
           redis: Optional[str] = RedisOpt,
           timezone: Optional[str] = typer.Option(None, help="zone for timestamps without offset"),
           wait: float = typer.Option(600.0, help="seconds to wait for the pipeline")) -> None:
    """Replay a call-log CSV through the broker and wait until the pipeline has it all."""
    from .replay import ReplaySummary, RowError, produce_events, read_call_log, wait_processed

    cfg = load_settings(config, broker_url=broker, redis_url=redis, timezone=timezone)
    summary = ReplaySummary()
    started = time.monotonic()
    try:
        events = read_call_log(str(file), cfg.tz, summary)
    except (OSError, RowError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from .kafka_security import client_kwargs

    typer.echo(f"rows read        {summary.rows}")
    typer.echo(f"rows rejected    {len(summary.rejected)}")
    for line, reason in summary.rejected[:50]:
        typer.echo(f"  line {line}: {reason}")
    if len(summary.rejected) > 50:
        typer.echo(f"  … {len(summary.rejected) - 50} more")
    if not events:
        typer.echo("events produced  0 (no valid row)")
        return
    try:
        asyncio.run(produce_events(events, cfg.bootstrap, cfg.topic_interactions, summary,
                                   client_kwargs(cfg)))
    except Exception as exc:  # broker unreachable or refusing: a clear message, no traceback
        typer.echo(f"error: cannot produce to the broker: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    produced = time.monotonic()
    typer.echo(f"events produced  {summary.events} in {produced - started:.1f}s")
    try:
        ok = asyncio.run(wait_processed(cfg.redis_url, cfg.redis_prefix, cfg.topic_interactions,
                                        summary.end_offsets, wait))
    except Exception as exc:
        typer.echo(f"error: cannot follow the pipeline in Redis: {type(exc).__name__}: {exc}",
                   err=True)
        raise typer.Exit(1) from None
    if not ok:
        typer.echo(f"error: the pipeline did not finish within {wait:.0f}s", err=True)
        raise typer.Exit(1)
    typer.echo(f"processed        in {time.monotonic() - started:.1f}s total")


@app.command()
def report(scope: str = typer.Option("center"), start: Optional[str] = typer.Option(None, "--from"),
           end: Optional[str] = typer.Option(None, "--to"),
           fmt: str = typer.Option("table", "--format", help="table, json or csv"),
           by: str = typer.Option("range", "--by", help="range or interval"),
           config: Optional[Path] = ConfigOpt, redis: Optional[str] = RedisOpt) -> None:
    """KPIs of a time range from the interval history (counts and sums re-added)."""
    from .report import ReportError, read_range, render
    from .sinks.redis_sink import connect

    if fmt not in ("table", "json", "csv") or by not in ("range", "interval"):
        typer.echo("error: --format must be table|json|csv and --by range|interval", err=True)
        raise typer.Exit(2)
    cfg = load_settings(config, redis_url=redis)

    async def go():
        client = connect(cfg)  # URL plus the redis_ssl_* TLS options
        try:
            return await read_range(client, cfg.redis_prefix, scope, start, end, cfg.tz)
        finally:
            await client.aclose()

    try:
        rows, total = asyncio.run(go())
    except (ReportError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # connection problems: a clear message, no traceback
        typer.echo(f"error: cannot read the interval history: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(render(rows, total, fmt, by == "interval"))


def _register_optional() -> None:
    from .cli_staffing import staffing
    from .simulate import simulate
    from .web.wallboard import wallboard

    app.command("simulate")(simulate)
    app.command("staffing")(staffing)
    app.command("wallboard")(wallboard)


_register_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
