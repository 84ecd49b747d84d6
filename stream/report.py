"""`ccpulse report`: KPIs of any time range from the interval history in Redis.

Intervals carry their counts and raw sums (`sum_*`), so a range is the sum of its intervals
and every ratio is recomputed from the summed numerators and denominators — never an
average of interval ratios.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from .kpi import buckets as b
from .kpi import metrics
from .kpi.windows import parse_iso
from .view import AGENT_HIDDEN  # queue-side ratios `cc:kpi:agent:…` omits too (DESIGN §3)


class ReportError(ValueError):
    """Bad report parameters."""


def _decode(raw: dict) -> dict[str, str]:
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()}


async def read_range(redis: Any, prefix: str, scope: str, start: str | None, end: str | None,
                     tz: ZoneInfo) -> tuple[list[dict], dict]:
    """Rows of the intervals with start in [start, end), and their total."""
    lo = parse_iso(start, tz) if start else float("-inf")
    hi = parse_iso(end, tz) if end else float("inf")
    if lo >= hi:
        raise ReportError("--from must be before --to")
    members = await redis.zrangebyscore(f"{prefix}intervals:{scope}", lo, f"({hi}" if hi != float("inf") else "+inf")
    pipe = redis.pipeline(transaction=False)
    for m in members:
        pipe.hgetall(f"{prefix}interval:{scope}:{m.decode() if isinstance(m, bytes) else m}")
    rows, total = [], b.new()
    for raw in (await pipe.execute()) if members else []:
        fields = _decode(raw)
        if not fields:
            continue  # expired between the two reads
        acc = metrics.acc_from_fields(fields)
        if b.is_zero(acc):
            # every fact it held was retracted again (e.g. a provisional ACW timeout replaced
            # by the real wrap-up): no activity, like the intervals that were never written
            continue
        b.add_into(total, acc)
        row = {"start": fields.get("start"), **_kpis(scope, acc)}
        rows.append(row)
    summary = _kpis(scope, total)
    summary["intervals"] = len(rows)
    return rows, summary


def _kpis(scope: str, acc: list[float]) -> dict:
    """The KPIs of one re-added accumulator, shaped like `cc:kpi:<scope>:…`."""
    out = metrics.kpis(acc)
    if scope.startswith("agent:"):
        for name in AGENT_HIDDEN:
            out.pop(name, None)
    if not any(acc[b.TTR_HIST0:]):
        # the interval hashes carry ttr_n and ttr_sum but not the TTR histogram: without it
        # the p90 is unknown (metrics.ttr_p90 would report +inf), so leave it out
        out.pop("ttr_p90_s", None)
    return out


def render(rows: list[dict], total: dict, fmt: str, by_interval: bool) -> str:
    data = rows if by_interval else [total]
    if fmt == "json":
        return orjson.dumps({"total": total, "intervals": rows} if by_interval else total,
                            option=orjson.OPT_INDENT_2).decode()
    columns: list[str] = []
    for row in data:
        for key in row:
            if key not in columns:
                columns.append(key)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for row in data:
            writer.writerow(row)
        return out.getvalue()
    lines = []
    for row in data:
        head = row.get("start", "total")
        lines.append(f"== {head}")
        for key in columns:
            if key in row and key != "start":
                value = row[key]
                text = f"{value:.4f}" if isinstance(value, float) else str(value)
                lines.append(f"  {key:<22} {text}")
    return "\n".join(lines)
