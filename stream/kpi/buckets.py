"""Fixed-size accumulators: the only numbers the engine keeps per bucket.

An accumulator is a plain list of floats with one slot per field below (no growing
lists), optionally followed by the TTR histogram: only the customer shards' buckets ever
count a TTR, so the others stay CORE slots long (41 pointers, 328 bytes: under half the
memory of the 90 slots with the histogram, and inside Python's small-object allocator).
`apply_all` and `add_into` widen an accumulator to SIZE the first time a histogram slot
reaches it; readers treat missing slots as zero. Every KPI of DESIGN §3 is a ratio of two
slots, so buckets, windows, partitions and workers combine by elementwise addition and
ratios are recomputed afterwards — never averaged. Facts are sparse deltas {slot: value}
so they can be applied and retracted.
"""

from __future__ import annotations

from itertools import zip_longest
from operator import add as _plus

FIELDS = (
    "offered", "answered", "abandoned", "short_abandons", "handled", "transferred",
    "talk_sum", "hold_sum", "acw_sum", "answer_wait_sum",
    "sl_answered_within", "sl_abandoned_within", "sl_abandoned_counted",
    "abandon_wait_sum",
    "disp_n", "disp_resolved",
    "surveys", "surveys_unjoined", "nps_n", "nps_promoters", "nps_detractors",
    "csat_n", "csat_good", "ces_n", "ces_sum", "ces_high",
    "sent_samples", "sent_end_sum", "sent_negative", "sent_improved",
    "fcr_handled", "fcr_repeated", "fcr_excluded", "fcr_disp_n", "fcr_disp_resolved",
    "ttr_n", "ttr_sum",
    "occ_busy_s", "occ_acw_s", "occ_available_s", "fcr_pending",
)
N_FIELDS = len(FIELDS)
IDX = {name: i for i, name in enumerate(FIELDS)}

# slot indexes as module constants: the hot path indexes lists directly
OFFERED, ANSWERED, ABANDONED, SHORT_ABANDONS, HANDLED, TRANSFERRED = range(6)
TALK, HOLD, ACW, ANSWER_WAIT = 6, 7, 8, 9
SL_ANS_WITHIN, SL_ABN_WITHIN, SL_ABN_COUNTED, ABANDON_WAIT = 10, 11, 12, 13
DISP_N, DISP_RESOLVED = 14, 15
SURVEYS, SURVEYS_UNJOINED, NPS_N, NPS_PROMOTERS, NPS_DETRACTORS = 16, 17, 18, 19, 20
CSAT_N, CSAT_GOOD, CES_N, CES_SUM, CES_HIGH = 21, 22, 23, 24, 25
SENT_SAMPLES, SENT_END_SUM, SENT_NEGATIVE, SENT_IMPROVED = 26, 27, 28, 29
FCR_HANDLED, FCR_REPEATED, FCR_EXCLUDED, FCR_DISP_N, FCR_DISP_RESOLVED = 30, 31, 32, 33, 34
TTR_N, TTR_SUM = 35, 36
OCC_BUSY, OCC_ACW, OCC_AVAILABLE = 37, 38, 39
FCR_PENDING = 40

# Histogram of TTR (seconds) for p90: fixed log-spaced bounds, counts appended after FIELDS.
TTR_BOUNDS = tuple(60.0 * (1.25 ** i) for i in range(48))  # 1 min … ~3.5 days
TTR_HIST0 = N_FIELDS
CORE = N_FIELDS  # length of an accumulator without the TTR histogram
SIZE = N_FIELDS + len(TTR_BOUNDS) + 1


def new() -> list[float]:
    """An empty accumulator (CORE slots: the histogram is added when first counted)."""
    return [0.0] * CORE


def _pad(acc: list[float], length: int) -> list[float]:
    if len(acc) < length:
        acc.extend([0.0] * (length - len(acc)))
    return acc


def widen(acc: list[float]) -> list[float]:
    """Give acc the TTR histogram's slots (zeros); SIZE long afterwards."""
    return _pad(acc, SIZE)


def add_into(acc: list[float], other: list[float]) -> None:
    """acc += other, elementwise in C; other may be shorter (core-only or packed)."""
    n = len(other)
    if n == len(acc):
        acc[:] = map(_plus, acc, other)
    else:
        if n > len(acc):  # keep the two lengths: CORE, or SIZE with the histogram
            _pad(acc, SIZE if n > CORE else CORE)
        acc[:n] = map(_plus, acc, other)  # map stops at the end of other


def apply_all(accs: list[list[float]], delta: tuple, sign: float = 1.0) -> None:
    """Add a sparse fact delta ((slot, value), ...) into each of accs (a fact's minute and
    interval buckets and their sums: one pass over the delta for all four); sign=-1
    retracts it."""
    for slot, value in delta:
        v = sign * value
        if slot >= CORE:  # a TTR histogram slot: widen the accumulators that lack it
            for acc in accs:
                if len(acc) <= slot:
                    widen(acc)
        for acc in accs:
            acc[slot] += v


def total(accs: list[list[float]]) -> list[float]:
    """Elementwise sum of accumulators of any length, a new list: one pass per column in C
    (zip_longest and sum) instead of one Python-level add per accumulator."""
    if len(accs) == 1:
        return list(accs[0])
    return _pad(list(map(sum, zip_longest(*accs, fillvalue=0.0))), CORE)


def is_zero(acc: list[float]) -> bool:
    """Nothing left but float residue of retractions (builtins only: runs per saved bucket)."""
    return not any(acc) or (max(acc) <= 1e-9 and min(acc) >= -1e-9)


def ttr_slot(seconds: float) -> int:
    """Histogram slot for a TTR value: the first bound ≥ value (last slot = overflow)."""
    lo, hi = 0, len(TTR_BOUNDS)
    while lo < hi:
        mid = (lo + hi) // 2
        if TTR_BOUNDS[mid] < seconds:
            lo = mid + 1
        else:
            hi = mid
    return TTR_HIST0 + lo


def pack(acc: list[float]) -> list[float]:
    """Compact form for storage: trailing zeros dropped."""
    end = len(acc)
    if end > TTR_HIST0 and not any(acc[TTR_HIST0:]):  # the TTR histogram is mostly empty
        end = TTR_HIST0
    while end and not acc[end - 1]:
        end -= 1
    return acc[:end]


def unpack(data: list[float]) -> list[float]:
    """A stored (packed) accumulator back to CORE or SIZE slots."""
    acc = [float(v) for v in data]
    return _pad(acc, SIZE if len(acc) > CORE else CORE)
