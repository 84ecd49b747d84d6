"""The publishable view: merged partials turned into the KPI, load and snapshot documents.

Pure: the Redis sink, the Prometheus collector, the HTTP API and the wallboard all read the
same `View`, so every surface shows the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Settings
from .kpi import buckets as b
from .kpi import metrics
from .kpi.agents import STATES
from .kpi.rollup import Partial
from .kpi.shard import MIX_PREFIX
from .kpi.windows import WINDOWS, iso_utc

LIVE_FIELDS = ("waiting", "agents", "capacity", "at_risk")


@dataclass
class LiveMerged:
    waiting: dict = field(default_factory=dict)  # (q, ch) -> [n, oldest_ts]
    agents: dict = field(default_factory=dict)  # (q, state) -> n ; q "" = center
    capacity: dict = field(default_factory=dict)  # (q, ch) -> concurrency sum
    at_risk: list = field(default_factory=list)  # (iid, q, agent, score, since)

    def add(self, other: "LiveMerged") -> None:
        for key, (n, oldest) in other.waiting.items():
            cur = self.waiting.get(key)
            if cur is None:
                self.waiting[key] = [n, oldest]
            else:
                cur[0] += n
                cur[1] = min(cur[1], oldest)
        for key, n in other.agents.items():
            self.agents[key] = self.agents.get(key, 0) + n
        for key, n in other.capacity.items():
            self.capacity[key] = self.capacity.get(key, 0) + n
        self.at_risk.extend(other.at_risk)

    def to_wire(self) -> list:
        return [[[k[0], k[1], v[0], v[1]] for k, v in self.waiting.items()],
                [[k[0], k[1], v] for k, v in self.agents.items()],
                [[k[0], k[1], v] for k, v in self.capacity.items()],
                [list(r) for r in self.at_risk]]

    @classmethod
    def from_wire(cls, data: list) -> "LiveMerged":
        waiting, agents, capacity, at_risk = data
        return cls({(q, ch): [n, o] for q, ch, n, o in waiting},
                   {(q, st): n for q, st, n in agents},
                   {(q, ch): n for q, ch, n in capacity},
                   [tuple(r) for r in at_risk])


@dataclass
class View:
    as_of: float
    updated_at: float
    kpi: dict[str, dict[str, dict[str, Any]]]  # scope -> window -> fields
    load: dict[str, dict[str, Any]]
    at_risk: dict[str, list[dict]]
    queues: list[str]
    windows: Partial

    def snapshot(self, cfg: Settings, intervals: dict[str, list[dict]]) -> dict:
        return {"version": 1, "as_of": iso_utc(self.as_of), "updated_at": iso_utc(self.updated_at),
                "timezone": cfg.timezone, "queues": self.queues, "kpi": self.kpi,
                "load": self.load, "intervals": intervals, "atrisk": self.at_risk}


AGENT_HIDDEN = ("service_level", "sl_abandons_negative", "sl_abandons_positive", "abandon_rate")


def scope_kpis(scope: str, acc: list[float], cfg: Settings, channels_by_queue: dict) -> dict:
    out = metrics.kpis(acc)
    if scope == "center":
        for name, slot in metrics.CENTER_ONLY.items():
            out[name] = int(round(acc[slot]))
    if scope.startswith("agent:"):
        for name in AGENT_HIDDEN:  # queue-side ratios: an agent does not own a queue's waits
            out.pop(name, None)
    threshold = None
    if scope.startswith("queue:"):
        q = scope[6:]
        values = {cfg.sl_threshold(q, ch) for ch in channels_by_queue.get(q, ())}
        threshold = values.pop() if len(values) == 1 else None
    elif scope.startswith("channel:"):
        ch = scope[8:]
        values = {cfg.sl_threshold(q, ch) for q, chs in channels_by_queue.items() if ch in chs}
        threshold = values.pop() if len(values) == 1 else None
    if threshold is not None:
        out["sl_threshold_s"] = threshold
    return out


def build_view(windows: Partial, live: LiveMerged, cfg: Settings, as_of: float,
               updated_at: float, staffing=None) -> View:
    """Turn merged window accumulators and live figures into the published documents."""
    channels_by_queue: dict[str, set] = {}
    for q, ch in live.waiting:
        channels_by_queue.setdefault(q, set()).add(ch)
    mix: dict[str, dict[str, float]] = {}  # queue -> channel -> offered in the last hour
    kpi: dict[str, dict[str, dict]] = {}
    for (scope, window), acc in sorted(windows.items()):
        if scope.startswith(MIX_PREFIX):  # internal: a queue's channel mix, not published
            q, ch = scope[len(MIX_PREFIX):].split("|", 1)
            channels_by_queue.setdefault(q, set()).add(ch)
            if window == "1h":
                mix.setdefault(q, {})[ch] = acc[b.OFFERED]
            continue
        kpi.setdefault(scope, {})
    # channels seen per queue come from the waiting index and from the windows' scopes
    queues = sorted({s[6:] for s in kpi if s.startswith("queue:")}
                    | {q for q, _ in live.waiting if q}
                    | {q for q, _ in live.agents if q})
    for (scope, window), acc in windows.items():
        if scope in kpi:
            kpi[scope][window] = scope_kpis(scope, acc, cfg, channels_by_queue)
    for scope in ["center", *[f"queue:{q}" for q in queues]]:
        per = kpi.setdefault(scope, {})
        for w in WINDOWS:
            per.setdefault(w, metrics.kpis(b.new()))
    load = build_load(windows, live, cfg, queues, as_of, staffing, mix)
    at_risk: dict[str, list[dict]] = {"center": []}
    for iid, q, agent, score, since in sorted(live.at_risk, key=lambda r: r[3]):
        row = {"interaction_id": iid, "queue": q, "agent_id": agent, "score": round(score, 4),
               "since": iso_utc(since) if since else None}
        at_risk["center"].append(row)
        at_risk.setdefault(f"queue:{q}", []).append(row)
    return View(as_of, updated_at, kpi, load, at_risk, queues, windows)


def build_load(windows: Partial, live: LiveMerged, cfg: Settings, queues: list[str],
               as_of: float, staffing=None, mix: dict | None = None) -> dict[str, dict]:
    load: dict[str, dict] = {}
    scopes = {"center": None, **{f"queue:{q}": q for q in queues}}
    for (q, ch), (n, oldest) in live.waiting.items():
        for scope in ("center", f"queue:{q}", f"channel:{ch}"):
            entry = load.setdefault(scope, {"waiting": 0, "_oldest": None})
            entry["waiting"] += n
            if entry["_oldest"] is None or oldest < entry["_oldest"]:
                entry["_oldest"] = oldest
    for scope, q in scopes.items():
        entry = load.setdefault(scope, {"waiting": 0, "_oldest": None})
        agent_q = "" if q is None else q
        for state in STATES:
            entry[f"agents_{state}"] = live.agents.get((agent_q, state), 0)
        entry["staffed"] = sum(entry[f"agents_{s}"] for s in ("available", "busy", "acw"))
        occ = windows.get((scope, "15m"))
        if occ is not None:
            value = metrics.occupancy(occ)
            if value is not None:
                entry["occupancy_15m"] = value
        m15 = windows.get((scope, "15m"))
        h1 = windows.get((scope, "1h"))
        entry["offered_per_h"] = (m15[b.OFFERED] * 4.0) if m15 else 0.0
        aht_1h = metrics.aht(h1) if h1 else None
        if aht_1h is not None:
            entry["aht_1h_s"] = aht_1h
        if q is not None:
            entry["sl_target"] = cfg.sl_target(q)
            if staffing is not None:
                entry.update(staffing(q, m15, h1, entry, live, cfg, (mix or {}).get(q, {})))
    for scope, entry in load.items():
        oldest = entry.pop("_oldest", None)
        entry["longest_wait_s"] = max(0.0, as_of - oldest) if oldest is not None else 0.0
    if any("required_agents" in e for s, e in load.items() if s.startswith("queue:")):
        center = load["center"]
        center["required_agents"] = sum(load[f"queue:{q}"].get("required_agents", 0) for q in queues)
        center["required_positions"] = sum(load[f"queue:{q}"].get("required_positions", 0)
                                           for q in queues)
        center["staffing_gap"] = center["required_agents"] - center["staffed"]
    return load


def interval_doc(scope: str, start_iso: str, acc: list[float]) -> dict:
    doc = metrics.with_sums(acc)
    if scope.startswith("agent:"):  # as in cc:kpi:agent:…, queue-side ratios are left out
        for name in AGENT_HIDDEN:
            doc.pop(name, None)
    doc["start"] = start_iso
    return doc
