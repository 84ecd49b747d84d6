"""Live staffing per queue at publish time: measured load → Erlang C/A → required agents.

λ from the last 15 minutes, AHT of the last hour (configured fallback when none), patience
estimate Σ queue waits / abandoned over the last hour when abandons exist (→ Erlang A),
concurrency = mean capacity of the queue's staffed agents for its busiest channel.
"""

from __future__ import annotations

from .config import Settings
from .kpi import buckets as b
from .kpi import metrics
from .kpi.erlang import StaffingInputError
from .staffing import live_queue_staffing


def _concurrency(queue: str, m15, live, staffed: int) -> int:
    if staffed <= 0:
        return 1
    per_channel = {ch: n for (q, ch), n in live.capacity.items() if q == queue}
    if not per_channel:
        return 1
    busiest = max(per_channel, key=lambda ch: per_channel[ch])
    channels_offered = {ch for (q, ch) in live.waiting if q == queue}
    if channels_offered and len(channels_offered) == 1:
        busiest = next(iter(channels_offered))
    return max(1, int(round(per_channel.get(busiest, staffed) / staffed)))


def queue_staffing(queue: str, m15, h1, entry: dict, live, cfg: Settings) -> dict:
    qcfg = cfg.queues.get(queue)
    s = cfg.staffing
    offered = int(round(m15[b.OFFERED])) if m15 else 0
    aht_1h = metrics.aht(h1) if h1 else None
    patience = metrics.patience_s(h1) if h1 else None
    staffed = int(entry.get("staffed", 0))
    try:
        return live_queue_staffing(
            offered_15m=offered, aht_1h_s=aht_1h,
            fallback_aht_s=(qcfg.fallback_aht_s if qcfg and qcfg.fallback_aht_s else s.fallback_aht_s),
            sl_target=cfg.sl_target(queue), threshold_s=cfg.sl_threshold(queue, "voice"),
            max_occupancy=(qcfg.max_occupancy if qcfg and qcfg.max_occupancy else s.max_occupancy),
            shrinkage=(qcfg.shrinkage if qcfg and qcfg.shrinkage is not None else s.shrinkage),
            concurrency=_concurrency(queue, m15, live, staffed),
            patience_s=patience if patience and patience > 0 else None, staffed=staffed)
    except StaffingInputError:
        return {}
