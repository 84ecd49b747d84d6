"""The KPI formulas of DESIGN §3, one small function each, over a summed accumulator.

A ratio with a zero denominator is absent (None), never 0. Service level has three
variants over A (answered within T), B (abandoned within T) and N (answered + abandoned,
short abandons excluded when configured) — see `service_level`.
"""

from __future__ import annotations

from typing import Callable

from . import buckets as b

Acc = list[float]


def ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def aht(a: Acc) -> float | None:
    """Σ(talk + hold + ACW) / handled."""
    return ratio(a[b.TALK] + a[b.HOLD] + a[b.ACW], a[b.HANDLED])


def service_level(a: Acc, variant: str = "ignore_abandons") -> float | None:
    """ignore_abandons A/(N−B), abandons_negative A/N, abandons_positive (A+B)/N."""
    A, B = a[b.SL_ANS_WITHIN], a[b.SL_ABN_WITHIN]
    N = a[b.ANSWERED] + a[b.SL_ABN_COUNTED]
    if variant == "ignore_abandons":
        return ratio(A, N - B)
    if variant == "abandons_negative":
        return ratio(A, N)
    if variant == "abandons_positive":
        return ratio(A + B, N)
    raise ValueError(f"unknown service level variant {variant!r}")


def abandon_rate(a: Acc) -> float | None:
    """Counted abandons / (answered + counted abandons); short abandons excluded when configured."""
    return ratio(a[b.SL_ABN_COUNTED], a[b.ANSWERED] + a[b.SL_ABN_COUNTED])


def nps(a: Acc) -> float | None:
    n = a[b.NPS_N]
    return (a[b.NPS_PROMOTERS] - a[b.NPS_DETRACTORS]) / n * 100.0 if n > 0 else None


def ttr_p90(a: Acc) -> float | None:
    """Nearest-rank p90 over the fixed TTR histogram: the upper bound of the p90 bin."""
    n = a[b.TTR_N]
    if n <= 0:
        return None
    rank = -(-int(round(n)) * 9 // 10)  # ceil(0.9 n)
    seen = 0.0
    hist = a[b.TTR_HIST0:]  # empty for a core-only accumulator
    for i, bound in enumerate(b.TTR_BOUNDS[:len(hist)]):
        seen += hist[i]
        if seen >= rank:
            return bound
    return float("inf")


def occupancy(a: Acc) -> float | None:
    busy = a[b.OCC_BUSY] + a[b.OCC_ACW]
    return ratio(busy, busy + a[b.OCC_AVAILABLE])


def patience_s(a: Acc) -> float | None:
    """Exponential-patience estimate: Σ queue waits (answered + abandoned) / abandoned."""
    return ratio(a[b.ANSWER_WAIT] + a[b.ABANDON_WAIT], a[b.ABANDONED])


COUNTS: dict[str, int] = {
    "offered": b.OFFERED, "answered": b.ANSWERED, "abandoned": b.ABANDONED,
    "short_abandons": b.SHORT_ABANDONS, "handled": b.HANDLED, "transferred": b.TRANSFERRED,
    "surveys": b.SURVEYS, "sentiment_samples": b.SENT_SAMPLES, "fcr_pending": b.FCR_PENDING,
}
CENTER_ONLY = {"fcr_excluded": b.FCR_EXCLUDED, "surveys_unjoined": b.SURVEYS_UNJOINED}

RATIOS: dict[str, Callable[[Acc], float | None]] = {
    "aht_s": aht,
    "talk_s": lambda a: ratio(a[b.TALK], a[b.HANDLED]),
    "hold_s": lambda a: ratio(a[b.HOLD], a[b.HANDLED]),
    "acw_s": lambda a: ratio(a[b.ACW], a[b.HANDLED]),
    "asa_s": lambda a: ratio(a[b.ANSWER_WAIT], a[b.ANSWERED]),
    "service_level": service_level,
    "sl_abandons_negative": lambda a: service_level(a, "abandons_negative"),
    "sl_abandons_positive": lambda a: service_level(a, "abandons_positive"),
    "abandon_rate": abandon_rate,
    "transfer_rate": lambda a: ratio(a[b.TRANSFERRED], a[b.ANSWERED]),
    "fcr_rate": lambda a: ratio(a[b.FCR_HANDLED] - a[b.FCR_REPEATED], a[b.FCR_HANDLED]),
    "fcr_disposition_rate": lambda a: ratio(a[b.DISP_RESOLVED], a[b.DISP_N]),
    "ttr_s": lambda a: ratio(a[b.TTR_SUM], a[b.TTR_N]),
    "ttr_p90_s": ttr_p90,
    "nps": nps,
    "csat": lambda a: ratio(a[b.CSAT_GOOD], a[b.CSAT_N]),
    "ces": lambda a: ratio(a[b.CES_SUM], a[b.CES_N]),
    "ces_high_effort": lambda a: ratio(a[b.CES_HIGH], a[b.CES_N]),
    "sentiment": lambda a: ratio(a[b.SENT_END_SUM], a[b.SENT_SAMPLES]),
    "sentiment_negative": lambda a: ratio(a[b.SENT_NEGATIVE], a[b.SENT_SAMPLES]),
    "sentiment_improved": lambda a: ratio(a[b.SENT_IMPROVED], a[b.SENT_SAMPLES]),
    "occupancy": occupancy,
}

# raw sums published alongside, so any reader can re-add ranges exactly (report, planners)
SUMS = ("talk_sum", "hold_sum", "acw_sum", "answer_wait_sum", "abandon_wait_sum",
        "sl_answered_within", "sl_abandoned_within", "sl_abandoned_counted",
        "disp_n", "disp_resolved", "nps_n", "nps_promoters", "nps_detractors", "csat_n",
        "csat_good", "ces_n", "ces_sum", "ces_high", "sent_end_sum", "sent_negative",
        "sent_improved", "fcr_handled", "fcr_repeated", "fcr_excluded", "ttr_n", "ttr_sum",
        "surveys_unjoined", "occ_busy_s", "occ_acw_s", "occ_available_s")


def kpis(a: Acc) -> dict[str, float | int]:
    """Every KPI of DESIGN §5 for one summed accumulator; absent ratios are left out."""
    out: dict[str, float | int] = {name: int(round(a[i])) for name, i in COUNTS.items()}
    for name, fn in RATIOS.items():
        value = fn(a)
        if value is not None:
            out[name] = value
    return out


def with_sums(a: Acc) -> dict[str, float | int]:
    """KPIs plus the raw sums (prefixed `sum_`) that let a reader re-add ranges exactly."""
    out = kpis(a)
    for name in SUMS:
        out["sum_" + name] = a[b.IDX[name]]
    return out


def acc_from_fields(fields: dict[str, str | float]) -> Acc:
    """Rebuild an accumulator from a published hash (counts + `sum_` fields), for re-adding ranges."""
    acc = b.new()
    for name, i in COUNTS.items():
        if name in fields:
            acc[i] = float(fields[name])
    for name in SUMS:
        key = "sum_" + name
        if key in fields:
            acc[b.IDX[name]] = float(fields[key])
    return acc
