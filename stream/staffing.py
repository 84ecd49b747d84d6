"""Staffing planner: scenarios, interval plans, CSV in/out, what-if and live staffing.

Thin layer over the pure formulas in ``stream.kpi.erlang``: it turns counts per interval
into loads, validates outside input (CSV files, JSON what-if requests) with messages a
planner can act on, and shapes results for tables, CSV files and JSON. ``live_queue_staffing``
is the worker's per-queue call on every publish, so it is cached on identical inputs.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

from stream.kpi.erlang import (
    ErlangADomainError,
    QueueLoad,
    QueueMetrics,
    StaffingInputError,
    StaffingResult,
    Targets,
    evaluate,
    positions_for,
    required_agents,
)

__all__ = [
    "StaffingInputError",
    "WhatIfError",
    "IntervalCsvError",
    "ScenarioRow",
    "Scenario",
    "IntervalRow",
    "IntervalPlan",
    "plan_scenario",
    "plan_intervals",
    "read_intervals_csv",
    "parse_intervals_csv",
    "write_plan_csv",
    "whatif",
    "live_queue_staffing",
    "PLAN_CSV_COLUMNS",
    "scenario_table",
    "plans_table",
]

CSV_COLUMNS = ("interval_start", "contacts", "aht_s")
PLAN_CSV_COLUMNS = (
    "interval_start", "contacts", "aht_s", "offered_per_h", "offered_erlangs", "model",
    "required_agents", "required_positions", "service_level", "asa_s", "occupancy",
    "p_wait", "p_abandon",
)
MAX_CSV_PROBLEMS_SHOWN = 20


class WhatIfError(StaffingInputError):
    """A what-if request with bad fields; ``errors`` maps each field to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items()))
        super().__init__(f"invalid what-if request: {detail}")


class IntervalCsvError(StaffingInputError):
    """Bad interval CSV; ``problems`` lists (line number, reason) for every bad row."""

    def __init__(self, problems: list[tuple[int, str]]) -> None:
        self.problems = list(problems)
        shown = [f"line {n}: {why}" for n, why in self.problems[:MAX_CSV_PROBLEMS_SHOWN]]
        more = len(self.problems) - len(shown)
        if more > 0:
            shown.append(f"… and {more} more")
        noun = "row" if len(self.problems) == 1 else "rows"
        super().__init__(f"{len(self.problems)} bad {noun} in interval CSV:\n  " + "\n  ".join(shown))


# ------------------------------------------------------------------------ scenarios


@dataclass(frozen=True, slots=True)
class ScenarioRow:
    """Figures at one staffing level, and whether they meet the targets."""

    agents: int
    positions: int
    metrics: QueueMetrics
    meets_target: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    """The required staffing of one load plus rows for nearby staffing levels."""

    load: QueueLoad
    targets: Targets
    required: StaffingResult
    rows: tuple[ScenarioRow, ...]


def _row(load: QueueLoad, targets: Targets, agents: int) -> ScenarioRow:
    m = evaluate(load, agents, targets.threshold_s)
    meets = m.stable and m.service_level >= targets.sl_target - 1e-12 and m.occupancy <= targets.max_occupancy + 1e-12
    return ScenarioRow(agents, positions_for(agents, targets.shrinkage), m, meets)


def plan_scenario(load: QueueLoad, targets: Targets = Targets(), *, span: int = 3) -> Scenario:
    """Required staffing, and rows from ``span`` agents below it to ``span`` above."""
    if isinstance(span, bool) or not isinstance(span, int) or not 0 <= span <= 1000:
        raise StaffingInputError(f"span must be an integer in 0..1000, got {span!r}")
    req = required_agents(load, targets)
    lo = max(1, req.agents - span)
    hi = max(req.agents + span, lo)
    rows = tuple(
        ScenarioRow(req.agents, req.positions, req.metrics, True) if n == req.agents else _row(load, targets, n)
        for n in range(lo, hi + 1)
    )
    return Scenario(load, targets, req, rows)


# ------------------------------------------------------------------------ intervals


@dataclass(frozen=True, slots=True)
class IntervalRow:
    """One planning interval: start (ISO 8601), contacts offered, AHT (None if unknown)."""

    start: str
    contacts: float
    aht_s: float | None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class IntervalPlan:
    """Required staffing for one interval; figures are None when nothing was offered."""

    start: str
    contacts: float
    aht_s: float | None
    offered_per_h: float
    offered_erlangs: float
    model: str
    agents: int
    positions: int
    service_level: float | None
    asa_s: float | None
    occupancy: float | None
    p_wait: float | None
    p_abandon: float | None


def _as_row(item: IntervalRow | Sequence[Any]) -> IntervalRow:
    if isinstance(item, IntervalRow):
        return item
    start, contacts, aht = item
    return IntervalRow(str(start), contacts, aht)


def plan_intervals(
    rows: Iterable[IntervalRow | Sequence[Any]],
    interval_min: float = 15.0,
    targets: Targets = Targets(),
    *,
    concurrency: int = 1,
    patience_s: float | None = None,
    fallback_aht_s: float | None = None,
) -> list[IntervalPlan]:
    """Required agents and positions for each interval (start, contacts, AHT seconds).

    An interval with no AHT uses ``fallback_aht_s``; with neither, it is an error unless
    nothing was offered. Identical (contacts, AHT) pairs are solved once.
    """
    solved: dict[tuple[float, float], StaffingResult] = {}
    plans: list[IntervalPlan] = []
    for item in rows:
        r = _as_row(item)
        where = f"interval {r.start}" + (f" (line {r.line})" if r.line else "")
        aht = r.aht_s if r.aht_s is not None else fallback_aht_s
        try:
            if r.contacts == 0:
                # validate the other parameters all the same: a bad option is bad everywhere
                QueueLoad.per_interval(0, interval_min, aht or 1.0, concurrency, patience_s)
                plans.append(IntervalPlan(r.start, 0.0, r.aht_s, 0.0, 0.0, "none", 0, 0,
                                          None, None, None, None, None))
                continue
            if aht is None:
                raise StaffingInputError("aht_s is missing and no fallback AHT was given")
            load = QueueLoad.per_interval(r.contacts, interval_min, aht, concurrency, patience_s)
            key = (load.arrivals_per_h, load.aht_s)
            res = solved.get(key)
            if res is None:
                res = solved[key] = required_agents(load, targets)
        except StaffingInputError as exc:
            raise StaffingInputError(f"{where}: {exc}") from None
        m = res.metrics
        plans.append(IntervalPlan(
            r.start, float(r.contacts), aht, load.arrivals_per_h, load.offered_erlangs, m.model,
            res.agents, res.positions, m.service_level, m.asa_s, m.occupancy, m.p_wait, m.p_abandon,
        ))
    return plans


def _parse_number(text: str, name: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{name} is not a number: {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {text!r}")
    return v


def _parse_start(text: str) -> str:
    if not text:
        raise ValueError("interval_start is empty")
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"interval_start is not an ISO 8601 date-time: {text[:40]!r}") from None
    return text


def parse_intervals_csv(stream: TextIO) -> tuple[list[IntervalRow], list[tuple[int, str]]]:
    """Rows and problems (line, reason) of an interval CSV; header names the columns.

    Columns ``interval_start,contacts,aht_s`` in any order, others ignored, blank lines
    skipped. ``aht_s`` may be empty (unknown): the planner then needs a fallback AHT.
    """
    reader = csv.reader(stream)
    rows: list[IntervalRow] = []
    problems: list[tuple[int, str]] = []
    try:
        header = next(reader, None)
        if header is None:
            return rows, [(1, "empty file: expected a header row " + ",".join(CSV_COLUMNS))]
        names = [h.strip().lstrip("\ufeff").lower() for h in header]
        missing = [c for c in CSV_COLUMNS if c not in names]
        if missing:
            return rows, [(reader.line_num, "header lacks column(s) " + ", ".join(missing))]
        idx = {c: names.index(c) for c in CSV_COLUMNS}
        for rec in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in rec):
                continue
            if len(rec) < len(names):
                problems.append((line, f"expected {len(names)} columns, got {len(rec)}"))
                continue
            try:
                start = _parse_start(rec[idx["interval_start"]].strip())
                contacts = _parse_number(rec[idx["contacts"]].strip(), "contacts")
                if contacts < 0:
                    raise ValueError(f"contacts must be >= 0, got {contacts:g}")
                aht_text = rec[idx["aht_s"]].strip()
                aht = _parse_number(aht_text, "aht_s") if aht_text else None
                if aht is not None and aht <= 0:
                    if contacts == 0:
                        aht = None
                    else:
                        raise ValueError(f"aht_s must be > 0, got {aht:g}")
            except ValueError as exc:
                problems.append((line, str(exc)))
                continue
            rows.append(IntervalRow(start, contacts, aht, line))
    except csv.Error as exc:
        problems.append((reader.line_num, f"unreadable CSV: {exc}"))
    return rows, problems


def read_intervals_csv(source: str | Path | TextIO) -> list[IntervalRow]:
    """Interval rows from a CSV file or stream; raises ``IntervalCsvError`` listing bad rows."""
    if isinstance(source, (str, Path)):
        with open(source, newline="", encoding="utf-8-sig") as fh:
            rows, problems = parse_intervals_csv(fh)
    else:
        rows, problems = parse_intervals_csv(source)
    if problems:
        raise IntervalCsvError(problems)
    return rows


def _fmt(v: float | int | str | None) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            return ""
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(round(v, 6))
    return str(v)


def plan_rows_for_csv(plans: Iterable[IntervalPlan]) -> Iterable[list[str]]:
    for p in plans:
        yield [_fmt(v) for v in (
            p.start, p.contacts, p.aht_s, p.offered_per_h, p.offered_erlangs, p.model, p.agents,
            p.positions, p.service_level, p.asa_s, p.occupancy, p.p_wait, p.p_abandon,
        )]


def write_plan_csv(plans: Iterable[IntervalPlan], dest: str | Path | TextIO) -> int:
    """Write interval plans as CSV (``PLAN_CSV_COLUMNS``); returns the number of rows."""
    def _write(fh: TextIO) -> int:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(PLAN_CSV_COLUMNS)
        n = 0
        for rec in plan_rows_for_csv(plans):
            w.writerow(rec)
            n += 1
        return n

    if isinstance(dest, (str, Path)):
        with open(dest, "w", newline="", encoding="utf-8") as fh:
            return _write(fh)
    return _write(dest)


# -------------------------------------------------------------------------- what-if

_WHATIF_FIELDS = {
    "contacts", "interval_min", "offered_per_h", "aht_s", "threshold_s", "sl_target",
    "max_occupancy", "shrinkage", "concurrency", "patience_s", "agents", "span",
}
WHATIF_MAX_ERLANGS = 100_000.0


def _json_num(v: float | None) -> float | None:
    """JSON has no infinity: an unbounded wait is reported as null."""
    if v is None or not math.isfinite(v):
        return None
    return v


def _metrics_dict(row: ScenarioRow) -> dict[str, Any]:
    m = row.metrics
    return {
        "agents": row.agents,
        "positions": row.positions,
        "service_level": _json_num(m.service_level),
        "asa_s": _json_num(m.asa_s),
        "mean_wait_s": _json_num(m.mean_wait_s),
        "occupancy": _json_num(m.occupancy),
        "p_wait": _json_num(m.p_wait),
        "p_abandon": _json_num(m.p_abandon),
        "stable": m.stable,
        "meets_target": row.meets_target,
    }


def whatif(payload: dict) -> dict:
    """Answer a what-if request (JSON object) with a JSON-able dict.

    Fields: ``aht_s`` (required); the load as ``contacts`` per ``interval_min`` (default 30)
    or ``offered_per_h``; optional ``threshold_s`` (20), ``sl_target`` (0.8),
    ``max_occupancy`` (0.85), ``shrinkage`` (0.3), ``concurrency`` (1), ``patience_s``
    (null → Erlang C, a number → Erlang A), ``agents`` (figures at that staffing) and
    ``span`` (rows either side of the required staffing, default 3). Every bad field is
    reported at once in a ``WhatIfError``. Sizes are capped: this faces HTTP clients.
    """
    if not isinstance(payload, dict):
        raise WhatIfError({"payload": "must be a JSON object"})
    errors: dict[str, str] = {}
    unknown = sorted(str(k)[:40] for k in payload if k not in _WHATIF_FIELDS)
    for k in unknown[:10]:
        errors[k] = "unknown field"

    def num(name: str, default: float | None, lo: float, hi: float, *, lo_open: bool = False,
            hi_open: bool = False, integer: bool = False) -> float | None:
        v = payload.get(name, default)
        if v is None:
            if default is not None:  # an explicit null where a value is needed
                errors[name] = "must be a number"
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            errors[name] = "must be a number"
            return None
        if integer and not float(v).is_integer():
            errors[name] = "must be an integer"
            return None
        lo_ok = v > lo if lo_open else v >= lo
        hi_ok = v < hi if hi_open else v <= hi
        if not (lo_ok and hi_ok):
            errors[name] = f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
            return None
        return int(v) if integer else float(v)

    aht = num("aht_s", None, 0, 86_400, lo_open=True)
    if "aht_s" not in payload or payload.get("aht_s") is None:
        errors["aht_s"] = "is required (mean handle time in seconds, > 0)"
    contacts = num("contacts", None, 0, 10_000_000)
    interval_min = num("interval_min", 30.0, 0, 1440, lo_open=True)
    per_h = num("offered_per_h", None, 0, 100_000_000)
    if contacts is None and per_h is None and "contacts" not in errors and "offered_per_h" not in errors:
        errors["contacts"] = "give contacts (per interval_min) or offered_per_h"
    elif contacts is not None and per_h is not None:
        errors["offered_per_h"] = "give either contacts or offered_per_h, not both"
    threshold = num("threshold_s", 20.0, 0, 86_400)
    sl_target = num("sl_target", 0.8, 0, 1, lo_open=True, hi_open=True)
    max_occ = num("max_occupancy", 0.85, 0, 1, lo_open=True)
    shrinkage = num("shrinkage", 0.30, 0, 1, hi_open=True)
    concurrency = num("concurrency", 1, 1, 100, integer=True)
    patience = num("patience_s", None, 0, 86_400 * 7, lo_open=True)
    agents = num("agents", None, 1, 1_000_000, integer=True)
    span = num("span", 3, 0, 50, integer=True)
    if errors:
        raise WhatIfError(errors)

    rate = per_h if per_h is not None else contacts * 60.0 / interval_min  # type: ignore[operator]
    load = QueueLoad(rate, aht, int(concurrency), patience)  # type: ignore[arg-type]
    if load.offered_erlangs > WHATIF_MAX_ERLANGS:
        raise WhatIfError({"offered_per_h": f"load of {load.offered_erlangs:.0f} Erlangs exceeds the "
                                            f"limit of {WHATIF_MAX_ERLANGS:.0f}"})
    targets = Targets(sl_target, threshold, max_occ, shrinkage)  # type: ignore[arg-type]
    inputs = {
        "offered_per_h": rate, "aht_s": aht, "threshold_s": threshold, "sl_target": sl_target,
        "max_occupancy": max_occ, "shrinkage": shrinkage, "concurrency": int(concurrency),
        "patience_s": patience,
    }
    if rate == 0:
        return {
            "model": "none", "inputs": inputs, "offered_per_h": 0.0, "offered_erlangs": 0.0,
            "required_agents": 0, "required_positions": 0, "required": None, "rows": [],
            **({"at_agents": _metrics_dict(_row(load, targets, int(agents)))} if agents else {}),
        }
    try:
        scenario = plan_scenario(load, targets, span=int(span))  # type: ignore[arg-type]
        at_agents = _row(load, targets, int(agents)) if agents is not None else None
    except ErlangADomainError:
        raise WhatIfError({"patience_s": "too long relative to aht_s at this load for Erlang A; "
                                         "leave it out to use Erlang C"}) from None
    req_row = next(r for r in scenario.rows if r.agents == scenario.required.agents)
    out: dict[str, Any] = {
        "model": load.model,
        "inputs": inputs,
        "offered_per_h": rate,
        "offered_erlangs": load.offered_erlangs,
        "required_agents": scenario.required.agents,
        "required_positions": scenario.required.positions,
        "required": _metrics_dict(req_row),
        "rows": [_metrics_dict(r) for r in scenario.rows],
    }
    if at_agents is not None:
        out["at_agents"] = _metrics_dict(at_agents)
    return out


# ----------------------------------------------------------------------------- live


@lru_cache(maxsize=4096)
def _live_required(rate: float, aht: float, sl_target: float, threshold_s: float,
                   max_occupancy: float, shrinkage: float, concurrency: int,
                   patience_s: float | None) -> tuple[int, int, str]:
    targets = Targets(sl_target, threshold_s, max_occupancy, shrinkage)
    try:
        res = required_agents(QueueLoad(rate, aht, concurrency, patience_s), targets)
    except ErlangADomainError:
        # Patience effectively infinite at this load: customers behave as in Erlang C.
        res = required_agents(QueueLoad(rate, aht, concurrency, None), targets)
    return res.agents, res.positions, res.metrics.model


def live_queue_staffing(
    offered_15m: int,
    aht_1h_s: float | None,
    fallback_aht_s: float,
    sl_target: float,
    threshold_s: float,
    max_occupancy: float,
    shrinkage: float,
    concurrency: int,
    patience_s: float | None,
    staffed: int,
) -> dict:
    """Staffing a queue needs now, from the last 15 minutes' offered contacts (DESIGN §4).

    λ = offered_15m × 4 per hour; AHT is the last hour's, else ``fallback_aht_s`` (when
    None, non-finite or ≤ 0). Erlang A when ``patience_s`` is known, else Erlang C (also
    when patience is so long that Erlang A is impractical: then the two agree). Returns
    ``required_agents``, ``required_positions``, ``staffing_gap`` (= required − staffed),
    ``offered_per_h`` and ``model`` ('erlang_c' | 'erlang_a' | 'none' with no load).
    Called per queue on every publish: results are cached on identical inputs. Bad
    inputs raise ``StaffingInputError``.
    """
    if isinstance(offered_15m, bool) or not isinstance(offered_15m, (int, float)) \
            or not math.isfinite(offered_15m) or offered_15m < 0:
        raise StaffingInputError(f"offered_15m must be a count >= 0, got {offered_15m!r}")
    if isinstance(staffed, bool) or not isinstance(staffed, (int, float)) or not math.isfinite(staffed) \
            or staffed < 0:
        raise StaffingInputError(f"staffed must be a count >= 0, got {staffed!r}")
    per_h = float(offered_15m) * 4.0
    if per_h == 0:
        return {"required_agents": 0, "required_positions": 0, "staffing_gap": -int(staffed),
                "offered_per_h": 0.0, "model": "none"}
    aht = aht_1h_s
    if aht is None or isinstance(aht, bool) or not isinstance(aht, (int, float)) \
            or not math.isfinite(aht) or aht <= 0:
        aht = fallback_aht_s
    agents, positions, model = _live_required(
        per_h, aht, sl_target, threshold_s, max_occupancy, shrinkage, concurrency, patience_s,
    )
    return {
        "required_agents": agents,
        "required_positions": positions,
        "staffing_gap": agents - int(staffed),
        "offered_per_h": per_h,
        "model": model,
    }


def scenario_table(scenario: Scenario) -> str:
    """A fixed-width text table of a scenario's rows (required row marked with *)."""
    buf = io.StringIO()
    erlang_a = scenario.load.patience_s is not None
    head = f"{'':1}{'agents':>7} {'positions':>9} {'SL':>8} {'ASA s':>9} {'occupancy':>9} {'P(wait)':>8}"
    if erlang_a:
        head += f" {'P(abandon)':>10} {'wait all s':>10}"
    buf.write(head + "\n")
    for r in scenario.rows:
        m = r.metrics
        mark = "*" if r.agents == scenario.required.agents else " "
        asa = f"{m.asa_s:9.1f}" if math.isfinite(m.asa_s) else f"{'inf':>9}"
        line = (f"{mark}{r.agents:>7} {r.positions:>9} {m.service_level:>8.1%} {asa} "
                f"{m.occupancy:>9.1%} {m.p_wait:>8.1%}")
        if erlang_a:
            line += f" {m.p_abandon:>10.2%} {m.mean_wait_s:>10.1f}"
        buf.write(line + "\n")
    return buf.getvalue()


def plans_table(plans: Sequence[IntervalPlan]) -> str:
    """A fixed-width text table of interval plans."""
    buf = io.StringIO()
    width = max([len("interval_start")] + [len(p.start) for p in plans])
    buf.write(f"{'interval_start':<{width}} {'contacts':>8} {'aht_s':>7} {'Erlangs':>8} {'agents':>6} "
              f"{'positions':>9} {'SL':>7} {'ASA s':>7} {'occupancy':>9} {'P(aband.)':>9}\n")
    for p in plans:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.1%}"
        asa = "-" if p.asa_s is None else (f"{p.asa_s:.1f}" if math.isfinite(p.asa_s) else "inf")
        aht = "-" if p.aht_s is None else f"{p.aht_s:.0f}"
        buf.write(f"{p.start:<{width}} {p.contacts:>8g} {aht:>7} {p.offered_erlangs:>8.2f} {p.agents:>6} "
                  f"{p.positions:>9} {pct(p.service_level):>7} {asa:>7} {pct(p.occupancy):>9} "
                  f"{pct(p.p_abandon):>9}\n")
    if plans:
        peak = max(plans, key=lambda p: p.agents)
        buf.write(f"{len(plans)} intervals; peak {peak.agents} agents / {peak.positions} positions at {peak.start}\n")
    return buf.getvalue()
