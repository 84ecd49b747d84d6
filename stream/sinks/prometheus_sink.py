"""Prometheus: the `cc_` metrics of DESIGN §6 on the worker's /metrics.

Counters and histograms are updated once per batch/cycle (never per event from the hot
path). Gauges are computed at scrape time by a custom collector from the latest published
View and the worker's current partition ownership, so series of partitions a worker lost
disappear with the ownership and nothing stale lingers.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ..kpi.agents import STATES
from ..memory import heap_usage, pymalloc_usage, resident_bytes
from ..view import View

HANDLE_BUCKETS = (30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600)
WAIT_BUCKETS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)

# windowed gauges: metric name -> (KPI field, help)
WINDOWED = {
    "cc_aht_seconds": ("aht_s", "Average handle time (talk + hold + ACW) per handled contact"),
    "cc_asa_seconds": ("asa_s", "Average speed of answer"),
    "cc_service_level_ratio": ("service_level", "Service level, answered within T / (N - abandoned within T)"),
    "cc_abandon_ratio": ("abandon_rate", "Abandoned / (answered + abandoned), short abandons excluded"),
    "cc_fcr_ratio": ("fcr_rate", "Repeat-based first-contact resolution"),
    "cc_transfer_ratio": ("transfer_rate", "Transferred / answered"),
    "cc_nps": ("nps", "Net promoter score, -100..100"),
    "cc_csat_ratio": ("csat", "Share of CSAT responses 4-5"),
    "cc_ces": ("ces", "Mean customer effort score, 1-7"),
    "cc_customer_sentiment": ("sentiment", "Mean end-of-contact customer sentiment, -1..1"),
    "cc_offered_contacts": ("offered", "Contacts offered in the window"),
    "cc_answered_contacts": ("answered", "Contacts answered in the window"),
    "cc_abandoned_contacts": ("abandoned", "Contacts abandoned in the window"),
    "cc_handled_contacts": ("handled", "Contacts handled in the window"),
    "cc_sentiment_samples": ("sentiment_samples", "Handled contacts with customer messages"),
}

EXPORTED_METRICS = (
    "cc_events_total", "cc_events_rejected_total", "cc_events_duplicate_total",
    "cc_publish_failures_total", "cc_handle_time_seconds", "cc_answer_wait_seconds",
    *WINDOWED, "cc_service_level_target_ratio", "cc_occupancy_ratio", "cc_contacts_waiting",
    "cc_longest_wait_seconds", "cc_agents", "cc_contacts_at_risk", "cc_required_agents",
    "cc_staffed_agents", "cc_staffing_gap", "cc_event_lag_seconds", "cc_consumer_lag_messages",
    "cc_publish_cycle_seconds", "cc_publish_phase_seconds", "cc_state_entries",
    "cc_worker_heap_bytes", "cc_worker_pymalloc_bytes", "cc_worker_resident_bytes",
)
HISTOGRAMS = ("cc_handle_time_seconds", "cc_answer_wait_seconds", "cc_publish_cycle_seconds",
              "cc_publish_phase_seconds")
CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
# a publish cycle's phases, in order (Pipeline._lap)
CYCLE_PHASES = ("prepare", "stage", "checkpoint", "merge", "write", "housekeeping")


def scope_labels(scope: str) -> tuple[str, str] | None:
    """center / queue:q / channel:ch → (queue, channel) labels with `all`; agents are not exported."""
    if scope == "center":
        return "all", "all"
    if scope.startswith("queue:"):
        return scope[6:], "all"
    if scope.startswith("channel:"):
        return "all", scope[8:]
    return None


class ViewCollector(Collector):
    def __init__(self, get_view: Callable[[], View | None],
                 get_lag: Callable[[], Iterable[tuple[str, int, float, int]]]) -> None:
        self.get_view = get_view
        self.get_lag = get_lag

    def describe(self):
        return []

    def collect(self):
        view = self.get_view()
        lag_s = GaugeMetricFamily("cc_event_lag_seconds",
                                  "Now minus event time of the last event processed",
                                  labels=["topic", "partition"])
        lag_n = GaugeMetricFamily("cc_consumer_lag_messages",
                                  "Messages not yet consumed (high watermark - position)",
                                  labels=["topic", "partition"])
        for topic, partition, seconds, messages in self.get_lag():
            lag_s.add_metric([topic, str(partition)], seconds)
            lag_n.add_metric([topic, str(partition)], messages)
        yield lag_s
        yield lag_n
        if view is None:
            return
        families = {name: GaugeMetricFamily(name, help_, labels=["queue", "channel", "window"])
                    for name, (_, help_) in WINDOWED.items()}
        occ = GaugeMetricFamily("cc_occupancy_ratio", "(busy + acw) / (busy + acw + available) time",
                                labels=["queue", "window"])
        for scope, per in view.kpi.items():
            labels = scope_labels(scope)
            if labels is None:
                continue
            for window, doc in per.items():
                for name, (field, _) in WINDOWED.items():
                    value = doc.get(field)
                    if value is not None:
                        families[name].add_metric([*labels, window], float(value))
                if labels[1] == "all" and doc.get("occupancy") is not None:
                    occ.add_metric([labels[0], window], float(doc["occupancy"]))
        yield from families.values()
        yield occ
        waiting = GaugeMetricFamily("cc_contacts_waiting", "Contacts in queue now",
                                    labels=["queue", "channel"])
        longest = GaugeMetricFamily("cc_longest_wait_seconds", "Longest current wait",
                                    labels=["queue", "channel"])
        agents = GaugeMetricFamily("cc_agents", "Agents by state", labels=["queue", "state"])
        target = GaugeMetricFamily("cc_service_level_target_ratio", "Configured SL target",
                                   labels=["queue"])
        required = GaugeMetricFamily("cc_required_agents", "Agents required now (Erlang C/A)",
                                     labels=["queue"])
        staffed = GaugeMetricFamily("cc_staffed_agents", "Agents available + busy + acw",
                                    labels=["queue"])
        gap = GaugeMetricFamily("cc_staffing_gap", "Required minus staffed agents",
                                labels=["queue"])
        risk = GaugeMetricFamily("cc_contacts_at_risk", "Ongoing contacts with negative sentiment",
                                 labels=["queue"])
        for scope, doc in view.load.items():
            labels = scope_labels(scope)
            if labels is None:
                continue
            waiting.add_metric(list(labels), doc.get("waiting", 0))
            longest.add_metric(list(labels), doc.get("longest_wait_s", 0.0))
            if labels[1] != "all":
                continue
            q = labels[0]
            for state in STATES:
                agents.add_metric([q, state], doc.get(f"agents_{state}", 0))
            staffed.add_metric([q], doc.get("staffed", 0))
            if "sl_target" in doc:
                target.add_metric([q], doc["sl_target"])
            if "required_agents" in doc:
                required.add_metric([q], doc["required_agents"])
                gap.add_metric([q], doc.get("staffing_gap", 0))
            risk.add_metric([q], len(view.at_risk.get(scope, [])))
        yield from (waiting, longest, agents, target, required, staffed, gap, risk)


class StateCollector(Collector):
    """cc_state_entries: what the worker's memory holds, by shard kind and part. Every part is
    bounded by a retention or a limit, so over a long run each line levels off; one that
    keeps rising is a leak to page on, whatever the RSS does."""

    def __init__(self, get_state: Callable[[], dict[tuple[str, str], int]]) -> None:
        self.get_state = get_state

    def describe(self):
        return []

    def collect(self):
        family = GaugeMetricFamily("cc_state_entries", "Entries in the worker's state",
                                   labels=["shard", "part"])
        for (shard, part), n in sorted(self.get_state().items()):
            family.add_metric([shard, part], n)
        yield family


class HeapCollector(Collector):
    """A `{state: bytes}` gauge of one allocator: cc_worker_heap_bytes for the C heap
    (`memory.heap_usage`), cc_worker_pymalloc_bytes for Python's small objects
    (`memory.pymalloc_usage`). Beside cc_state_entries and the RSS they say who holds a
    rising RSS: live memory (`in_use`) or an allocator (`free`). Nothing is exported where
    the allocator cannot tell."""

    def __init__(self, get_heap: Callable[[], dict[str, int] | None],
                 name: str = "cc_worker_heap_bytes",
                 documentation: str = "Bytes of the worker's C heap") -> None:
        self.get_heap = get_heap
        self.name = name
        self.documentation = documentation

    def describe(self):
        return []

    def collect(self):
        heap = self.get_heap()
        if heap is None:
            return
        family = GaugeMetricFamily(self.name, self.documentation, labels=["state"])
        for state, n in sorted(heap.items()):
            family.add_metric([state], n)
        yield family


class ResidentCollector(Collector):
    """cc_worker_resident_bytes: the worker's RSS, read at each scrape, beside the two
    allocators' gauges (a worker's registry has no `process_` collector)."""

    def describe(self):
        return []

    def collect(self):
        rss = resident_bytes()
        if rss is not None:
            yield GaugeMetricFamily("cc_worker_resident_bytes",
                                    "Resident memory of the worker process", value=rss)


class Metrics:
    """The worker's registry: counters/histograms plus the view collector."""

    def __init__(self, get_view, get_lag, get_state=dict, get_heap=heap_usage,
                 get_pymalloc=pymalloc_usage) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.events = Counter("cc_events", "Valid events applied", ["type", "channel"], registry=r)
        self.rejected = Counter("cc_events_rejected", "Records sent to the dead-letter topic",
                                ["reason"], registry=r)
        self.duplicates = Counter("cc_events_duplicate", "Events ignored as duplicates (same event_id)",
                                  registry=r)
        self.publish_failures = Counter("cc_publish_failures", "Failed publish cycles", ["sink"],
                                        registry=r)
        self.handle_time = Histogram("cc_handle_time_seconds", "Handle time of handled contacts",
                                     ["queue", "channel"], buckets=HANDLE_BUCKETS, registry=r)
        self.answer_wait = Histogram("cc_answer_wait_seconds", "Queue wait of answered contacts",
                                     ["queue", "channel"], buckets=WAIT_BUCKETS, registry=r)
        # a cycle holds consuming: its duration is added to every event's freshness
        self.cycle_time = Histogram("cc_publish_cycle_seconds",
                                    "Wall time of a publish cycle (checkpoint, merge, Redis write)",
                                    buckets=CYCLE_BUCKETS, registry=r)
        # where a cycle's time goes: what to shorten when freshness or a replay is slow
        self.cycle_phase = Histogram("cc_publish_phase_seconds",
                                     "Wall time of each phase of a publish cycle",
                                     ["phase"], buckets=CYCLE_BUCKETS, registry=r)
        for phase in CYCLE_PHASES:
            self.cycle_phase.labels(phase)
        r.register(ViewCollector(get_view, get_lag))
        r.register(StateCollector(get_state))
        r.register(HeapCollector(get_heap))
        r.register(HeapCollector(get_pymalloc, "cc_worker_pymalloc_bytes",
                                 "Bytes of the worker's Python small-object arenas"))
        r.register(ResidentCollector())
        for reason in ("invalid_json", "invalid_utf8", "unknown_type", "bad_name", "bad_timestamp",
                       "missing_field", "invalid_field", "too_late", "impossible_transition",
                       "scope_limit", "wrong_topic", "too_large", "internal_error"):
            self.rejected.labels(reason)
        self.publish_failures.labels("redis")
        self.publish_failures.labels("kafka")

    def record(self, dead: list, observations: list, counts, duplicates: int) -> None:
        """Apply one cycle's outputs of the engine."""
        for letter in dead:
            self.rejected.labels(letter.reason).inc()
        for kind, q, ch, seconds in observations:
            (self.handle_time if kind == "handle_time" else self.answer_wait).labels(q, ch).observe(seconds)
        for (etype, ch), n in counts.items():
            self.events.labels(etype, ch or "none").inc(n)
        if duplicates:
            self.duplicates.inc(duplicates)

    def render(self) -> bytes:
        return generate_latest(self.registry)
