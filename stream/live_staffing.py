"""Live staffing per queue at publish time: measured load → Erlang C/A → required agents.

λ from the last 15 minutes, AHT of the last hour (configured fallback when none), patience
estimate Σ queue waits / abandoned over the last hour when abandons exist (→ Erlang A),
concurrency = mean capacity of the queue's staffed agents on its busiest channel (by offered
contacts in the last hour), and that channel's service-level threshold.
"""

from __future__ import annotations

from .config import Settings
from .kpi import buckets as b
from .kpi import metrics
from .kpi.erlang import StaffingInputError
from .staffing import live_queue_staffing


def busiest_channel(mix: dict[str, float], queue: str, live) -> str:
    """The channel with the most offered contacts in the last hour (else the waiting one)."""
    if mix and max(mix.values()) > 0:
        return max(sorted(mix), key=lambda ch: mix[ch])
    waiting = sorted(ch for (q, ch) in live.waiting if q == queue)
    return waiting[0] if waiting else "voice"


def _concurrency(queue: str, channel: str, live, staffed: int) -> int:
    """Mean capacity of the queue's staffed agents on its busiest channel (voice: 1)."""
    if staffed <= 0:
        return 1
    total = live.capacity.get((queue, channel))
    if not total:
        return 1
    return max(1, int(round(total / staffed)))


def queue_staffing(queue: str, m15, h1, entry: dict, live, cfg: Settings,
                   mix: dict[str, float] | None = None) -> dict:
    qcfg = cfg.queues.get(queue)
    s = cfg.staffing
    offered = int(round(m15[b.OFFERED])) if m15 else 0
    aht_1h = metrics.aht(h1) if h1 else None
    patience = metrics.patience_s(h1) if h1 else None
    staffed = int(entry.get("staffed", 0))
    channel = busiest_channel(mix or {}, queue, live)
    try:
        return live_queue_staffing(
            offered_15m=offered, aht_1h_s=aht_1h,
            fallback_aht_s=(qcfg.fallback_aht_s if qcfg and qcfg.fallback_aht_s else s.fallback_aht_s),
            sl_target=cfg.sl_target(queue), threshold_s=cfg.sl_threshold(queue, channel),
            max_occupancy=(qcfg.max_occupancy if qcfg and qcfg.max_occupancy else s.max_occupancy),
            shrinkage=(qcfg.shrinkage if qcfg and qcfg.shrinkage is not None else s.shrinkage),
            concurrency=_concurrency(queue, channel, live, staffed),
            patience_s=patience if patience and patience > 0 else None, staffed=staffed)
    except StaffingInputError:
        return {}
