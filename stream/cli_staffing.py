"""``ccpulse staffing``: the planner's command line (Erlang C, or Erlang A with --patience).

Three sources of load, one at a time:
  * a scenario: ``--contacts`` per ``--interval-min`` with ``--aht`` → a table of staffing
    levels around the required one;
  * ``--csv FILE`` of intervals (``interval_start,contacts,aht_s``) → required agents per
    interval, optionally written to ``--out FILE``;
  * ``--from-history`` → the 15-minute interval history of ``--scope`` in Redis (§5).
Every error prints one clear message and exits with status 2; no tracebacks.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timezone
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
import typer

from stream.kpi.erlang import QueueLoad, StaffingInputError, Targets
from stream.staffing import (
    IntervalPlan,
    IntervalRow,
    plan_intervals,
    plan_scenario,
    plans_table,
    read_intervals_csv,
    scenario_table,
    write_plan_csv,
)

__all__ = ["staffing", "read_history"]

HISTORY_INTERVAL_MIN = 15.0
_SCOPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class _UsageError(Exception):
    """A command-line problem: reported as ``error: …`` with exit status 2."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _parse_when(text: str, tz: ZoneInfo | timezone, name: str) -> float:
    """Epoch seconds of an ISO 8601 date or date-time; naive values are read in ``tz``."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise _UsageError(f"{name} is not an ISO 8601 date or date-time: {text[:40]!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def _history_number(text: str | None) -> float | None:
    """A decimal string from a history hash; missing or empty is 0/unknown → None."""
    if text in (None, ""):
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_history(
    redis_url: str,
    scope: str,
    prefix: str = "cc:",
    start: float | None = None,
    end: float | None = None,
) -> tuple[list[IntervalRow], list[str]]:
    """Interval rows of ``scope`` with start in [start, end) epoch seconds, from Redis.

    Reads the sorted set ``<prefix>intervals:<scope>`` and each interval's hash
    ``<prefix>interval:<scope>:<start>`` (fields ``offered``, ``aht_s``). Returns the rows
    and notes about intervals listed but gone (their hash expired). A malformed hash
    raises ``StaffingInputError`` naming the interval.
    """
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=5,
                                      socket_timeout=30)
    except ValueError:
        raise StaffingInputError("--redis is not a Redis URL (redis://, rediss:// or unix://)") from None
    try:
        lo = "-inf" if start is None else repr(start)
        hi = "+inf" if end is None else f"({end!r}"
        members = client.zrangebyscore(f"{prefix}intervals:{scope}", lo, hi)
        pipe = client.pipeline(transaction=False)
        for m in members:
            pipe.hmget(f"{prefix}interval:{scope}:{m}", "offered", "aht_s")
        values = pipe.execute() if members else []
    finally:
        client.close()
    rows: list[IntervalRow] = []
    notes: list[str] = []
    problems: list[str] = []
    for member, (offered, aht) in zip(members, values):
        if offered is None and aht is None:
            notes.append(f"interval {member}: listed but its hash is gone (expired?); skipped")
            continue
        n = 0.0 if offered in (None, "") else _history_number(offered)
        a = _history_number(aht)
        if n is None or n < 0:
            problems.append(f"interval {member}: offered is not a count: {str(offered)[:40]!r}")
            continue
        if aht not in (None, "") and (a is None or a <= 0) and n > 0:
            problems.append(f"interval {member}: aht_s is not a positive number: {str(aht)[:40]!r}")
            continue
        rows.append(IntervalRow(member, n, a if a is not None and a > 0 else None))
    if problems:
        shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise StaffingInputError("bad interval history in Redis:\n  " + "\n  ".join(shown))
    return rows, notes


def staffing(
    contacts: Annotated[float | None, typer.Option(
        "--contacts", help="Contacts offered per interval (scenario).")] = None,
    interval_min: Annotated[float | None, typer.Option(
        "--interval-min", help="Interval length in minutes (default 30; history intervals are 15).")] = None,
    aht: Annotated[float | None, typer.Option(
        "--aht", help="Average handle time, seconds (fallback for intervals without one).")] = None,
    threshold: Annotated[float, typer.Option(
        "--threshold", help="Service-level threshold T, seconds.")] = 20.0,
    sl_target: Annotated[float, typer.Option(
        "--sl-target", help="Service-level target, 0–1 exclusive.")] = 0.8,
    max_occupancy: Annotated[float, typer.Option(
        "--max-occupancy", help="Highest acceptable occupancy, (0, 1].")] = 0.85,
    shrinkage: Annotated[float, typer.Option(
        "--shrinkage", help="Share of paid time off the phones, [0, 1).")] = 0.30,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", help="Contacts an agent handles at once (chat/SMS).")] = 1,
    patience: Annotated[float | None, typer.Option(
        "--patience", help="Mean customer patience, seconds: use Erlang A.")] = None,
    span: Annotated[int, typer.Option(
        "--span", help="Scenario rows either side of the required staffing.")] = 3,
    csv_file: Annotated[Path | None, typer.Option(
        "--csv", help="CSV of intervals: interval_start,contacts,aht_s.")] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Write the interval plan to this CSV file.")] = None,
    from_history: Annotated[bool, typer.Option(
        "--from-history", help="Read the 15-minute interval history from Redis.")] = False,
    scope: Annotated[str | None, typer.Option(
        "--scope", help="History scope, e.g. queue:sales.")] = None,
    redis_url: Annotated[str, typer.Option(
        "--redis", envvar="CCPULSE_REDIS_URL", help="Redis URL (redis:// or rediss://).",
        show_default=False)] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[str, typer.Option(
        "--prefix", help="Redis key prefix.")] = "cc:",
    from_: Annotated[str | None, typer.Option(
        "--from", help="First interval start (ISO 8601), inclusive.")] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="End of the range (ISO 8601), exclusive.")] = None,
    tz_name: Annotated[str, typer.Option(
        "--timezone", help="Time zone for --from/--to without an offset.")] = "UTC",
) -> None:
    """Agents and positions needed: Erlang C, or Erlang A when --patience is given."""
    try:
        _run(contacts, interval_min, aht, threshold, sl_target, max_occupancy, shrinkage, concurrency,
             patience, span, csv_file, out, from_history, scope, redis_url, prefix, from_, to, tz_name)
    except _UsageError as exc:
        raise _fail(str(exc)) from None
    except StaffingInputError as exc:
        raise _fail(str(exc)) from None
    except UnicodeDecodeError:
        raise _fail(f"{csv_file} is not UTF-8 text") from None
    except redis.RedisError as exc:
        raise _fail(f"cannot read history from Redis: {type(exc).__name__}: {exc}") from None
    except OSError as exc:
        where = f": {exc.filename}" if getattr(exc, "filename", None) else ""
        raise _fail(f"{exc.strerror or exc}{where}") from None


def _run(contacts, interval_min, aht, threshold, sl_target, max_occupancy, shrinkage, concurrency,
         patience, span, csv_file, out, from_history, scope, redis_url, prefix, from_, to, tz_name) -> None:
    sources = [name for name, on in (("--contacts", contacts is not None), ("--csv", csv_file is not None),
                                     ("--from-history", from_history)) if on]
    if len(sources) != 1:
        raise _UsageError("give exactly one of --contacts (scenario), --csv FILE or --from-history"
                          + (f" (got {', '.join(sources)})" if sources else ""))
    targets = Targets(sl_target, threshold, max_occupancy, shrinkage)
    if not from_history and any(v is not None for v in (scope, from_, to)):
        raise _UsageError("--scope, --from and --to go with --from-history")
    if contacts is not None:
        if aht is None:
            raise _UsageError("a scenario needs --aht (average handle time in seconds)")
        if out is not None:
            raise _UsageError("--out goes with --csv or --from-history")
        load = QueueLoad.per_interval(contacts, 30.0 if interval_min is None else interval_min, aht,
                                      concurrency, patience)
        if span < 0 or span > 1000:
            raise _UsageError("--span must be between 0 and 1000")
        _print_scenario(load, targets, span, 30.0 if interval_min is None else interval_min, contacts)
        return
    if csv_file is not None:
        minutes = 30.0 if interval_min is None else interval_min
        rows = read_intervals_csv(csv_file)
    else:
        if not scope:
            raise _UsageError("--from-history needs --scope (e.g. queue:sales)")
        if not _SCOPE_RE.match(scope):
            raise _UsageError(f"--scope has characters a scope cannot have: {scope[:40]!r}")
        if interval_min is not None and interval_min != HISTORY_INTERVAL_MIN:
            raise _UsageError("history intervals are 15 minutes; drop --interval-min")
        minutes = HISTORY_INTERVAL_MIN
        try:
            tz: ZoneInfo | timezone = UTC if tz_name.upper() == "UTC" else ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise _UsageError(f"unknown time zone {tz_name[:60]!r}") from None
        start = _parse_when(from_, tz, "--from") if from_ else None
        end = _parse_when(to, tz, "--to") if to else None
        if start is not None and end is not None and end <= start:
            raise _UsageError("--to must be after --from")
        rows, notes = read_history(redis_url, scope, prefix, start, end)
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        if not rows:
            raise _UsageError(f"no interval history for scope {scope!r} in that range")
    plans = plan_intervals(rows, minutes, targets, concurrency=concurrency, patience_s=patience,
                           fallback_aht_s=aht)
    _print_plans(plans, targets, patience, minutes)
    if out is not None:
        n = write_plan_csv(plans, out)
        typer.echo(f"wrote {n} intervals to {out}")


def _model_line(load: QueueLoad, targets: Targets) -> str:
    model = "Erlang C" if load.patience_s is None else f"Erlang A (patience {load.patience_s:g} s)"
    conc = f", concurrency {load.concurrency}" if load.concurrency > 1 else ""
    return (f"{model}: SL target {targets.sl_target:.0%} within {targets.threshold_s:g} s, "
            f"max occupancy {targets.max_occupancy:.0%}, shrinkage {targets.shrinkage:.0%}{conc}")


def _print_scenario(load: QueueLoad, targets: Targets, span: int, minutes: float, contacts: float) -> None:
    sc = plan_scenario(load, targets, span=span)
    typer.echo(_model_line(load, targets))
    typer.echo(f"load: {contacts:g} contacts per {minutes:g} min = {load.arrivals_per_h:.1f}/h × AHT "
               f"{load.aht_s:g} s = {load.offered_erlangs:.2f} Erlangs")
    if load.arrivals_per_h == 0:
        typer.echo("required: 0 agents, 0 positions (no load)")
        return
    typer.echo(f"required: {sc.required.agents} agents, {sc.required.positions} positions\n")
    typer.echo(scenario_table(sc), nl=False)


def _print_plans(plans: list[IntervalPlan], targets: Targets, patience: float | None, minutes: float) -> None:
    model = "Erlang C" if patience is None else f"Erlang A (patience {patience:g} s)"
    typer.echo(f"{model}, {minutes:g}-minute intervals: SL target {targets.sl_target:.0%} within "
               f"{targets.threshold_s:g} s, max occupancy {targets.max_occupancy:.0%}, "
               f"shrinkage {targets.shrinkage:.0%}\n")
    typer.echo(plans_table(plans), nl=False)
