"""deploy/prometheus and the metric contract: promtool checks and unit tests, rule coverage,
and every metric name used by the rules and the Grafana dashboard against the worker's
contract (DESIGN.md §6).

promtool is required (Debian package `prometheus`; the install script installs it): nothing
here is skipped when it is missing, the tests fail instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROM = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
RUNBOOKS = PROM / "runbooks.md"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "ccpulse.json"

# ---------------------------------------------------------------------------------------
# The worker's metric contract: every series name the worker serves on /metrics, with the
# _bucket/_sum/_count series of its histograms. This is the one place to change it (to be
# replaced by an import from the worker's code); recording-rule names are not listed here
# but read from the rule files, so they follow the rules by themselves.
_COUNTERS = (
    "cc_events_total",
    "cc_events_rejected_total",
    "cc_events_duplicate_total",
    "cc_publish_failures_total",
)
_HISTOGRAMS = ("cc_handle_time_seconds", "cc_answer_wait_seconds", "cc_publish_cycle_seconds",
               "cc_publish_phase_seconds")
_GAUGES = (
    # windowed, {queue, channel, window}
    "cc_aht_seconds", "cc_asa_seconds", "cc_service_level_ratio", "cc_abandon_ratio",
    "cc_fcr_ratio", "cc_transfer_ratio", "cc_nps", "cc_csat_ratio", "cc_ces",
    "cc_customer_sentiment", "cc_offered_contacts", "cc_answered_contacts",
    "cc_abandoned_contacts", "cc_handled_contacts", "cc_sentiment_samples",
    # per queue / live
    "cc_service_level_target_ratio", "cc_occupancy_ratio", "cc_contacts_waiting",
    "cc_longest_wait_seconds", "cc_agents", "cc_contacts_at_risk", "cc_required_agents",
    "cc_staffed_agents", "cc_staffing_gap",
    # pipeline
    "cc_event_lag_seconds", "cc_consumer_lag_messages", "cc_state_entries",
    "cc_worker_heap_bytes", "cc_worker_pymalloc_bytes",
    "cc_worker_resident_bytes",
)
EXPORTED_METRICS = frozenset(
    _COUNTERS + _GAUGES
    + tuple(f"{h}{suffix}" for h in _HISTOGRAMS for suffix in ("_bucket", "_sum", "_count"))
)
# Series Prometheus makes itself.
PROMETHEUS_METRICS = frozenset({"up"})
# ---------------------------------------------------------------------------------------

SEVERITIES = {"page", "warning"}


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    assert found, "promtool not found: apt-get install prometheus (it is required, not optional)"
    return found


def run_promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def show(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def rules() -> list[dict]:
    out = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                out.append({**rule, "_group": group["name"], "_file": path.name})
    return out


def alert_rules() -> dict[str, dict]:
    return {r["alert"]: r for r in rules() if "alert" in r}


def recording_rules() -> dict[str, dict]:
    return {r["record"]: r for r in rules() if "record" in r}


def group_names(kind: str) -> list[str]:
    """Groups holding recording ('record') or alerting ('alert') rules, in file order."""
    names = []
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            if any(kind in rule for rule in group["rules"]):
                names.append(group["name"])
    return names


# --- PromQL metric-name extraction ------------------------------------------------------

_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
             "and", "or", "unless", "inf", "nan", "Inf", "NaN", "atan2"}
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, labels, durations and
    template variables left out)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    return {name for name in _IDENT.findall(text) if name not in _KEYWORDS}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    exprs.append(target["expr"])
            walk(panel.get("panels", []))

    walk(dash["panels"])
    return exprs


def dashboard_variable_queries() -> list[str]:
    """The PromQL inside the dashboard's query variables (label_values(<selector>, label))."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for var in dash["templating"]["list"]:
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = _LABEL_VALUES.match(query)
        out.append(m.group(1) if m else query)
    return out


def test_metric_name_extraction():
    expr = ('sum by (queue) (rate(cc_handle_time_seconds_sum{queue=~"$queue", x="a b"}[$__rate_interval]))'
            ' / on (queue) group_left max by (queue) (up{job="ccpulse"}) and bool foo:bar:baz offset 15m'
            ' > 1.5 * avg_over_time(queue:x:y[2h] offset 15m) unless histogram_quantile(0.9, z_bucket)')
    assert metric_names(expr) == {"cc_handle_time_seconds_sum", "up", "foo:bar:baz", "queue:x:y", "z_bucket"}
    assert metric_names("absent(up)") == {"up"}
    assert metric_names("sum(rate(a_total[5m])) by (reason) > 0.1") == {"a_total"}
    assert _LABEL_VALUES.match('label_values(cc_x{queue!="all"}, queue)').group(1) == 'cc_x{queue!="all"}'


# --- promtool ---------------------------------------------------------------------------

def test_rule_and_test_files_exist():
    assert {p.name for p in RULE_FILES} == {"recording.yml", "alerts.yml"}
    assert TEST_FILES, "no promtool test files in deploy/prometheus/tests"


def test_promtool_check_config():
    proc = run_promtool("check", "config", str(PROM / "prometheus.yml"))
    assert proc.returncode == 0, show(proc)
    # every rule_files entry resolves (relative to the config file), to exactly our rules
    config = load_yaml(PROM / "prometheus.yml")
    resolved = set()
    for pattern in config["rule_files"]:
        matches = sorted(PROM.glob(pattern))
        assert matches, f"rule_files entry {pattern!r} matches nothing next to prometheus.yml"
        resolved.update(matches)
    assert resolved == set(RULE_FILES)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in proc.stdout + proc.stderr, show(proc)


def test_prometheus_scrapes_the_workers_as_job_ccpulse():
    config = load_yaml(PROM / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert "ccpulse" in jobs, "the alerts select up{job=\"ccpulse\"}"
    job = jobs["ccpulse"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert "worker:6066" in targets


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path):
    proc = run_promtool("check", "rules", str(path))
    assert proc.returncode == 0, show(proc)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_test_rules(path):
    proc = run_promtool("test", "rules", str(path))
    assert proc.returncode == 0, show(proc)
    assert "SUCCESS" in proc.stdout, show(proc)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_unit_test_files_load_all_rules_in_a_fixed_order(path):
    """Each test file loads every rule file and orders the groups recordings-first: without
    group_eval_order promtool evaluates groups in random order, so an alert would see the
    recordings of the previous step in some runs and not in others."""
    doc = load_yaml(path)
    loaded = {(path.parent / f).resolve() for f in doc["rule_files"]}
    assert loaded == {p.resolve() for p in RULE_FILES}
    order = doc.get("group_eval_order", [])
    recording, alerting = group_names("record"), group_names("alert")
    assert sorted(order) == sorted(recording + alerting), "group_eval_order must list every group"
    assert max(order.index(g) for g in recording) < min(order.index(g) for g in alerting)


# --- coverage: every rule has tests -----------------------------------------------------

def _unit_tests():
    for path in TEST_FILES:
        for case in load_yaml(path)["tests"]:
            yield path.name, case


def test_every_alert_has_firing_and_quiet_test_cases():
    fired: dict[str, set[str]] = {}
    quiet: dict[str, set[str]] = {}
    for fname, case in _unit_tests():
        for check in case.get("alert_rule_test", []):
            bucket = fired if check.get("exp_alerts") else quiet
            bucket.setdefault(check["alertname"], set()).add(f"{fname}: {case.get('name')}")
    names = set(alert_rules())
    assert not names - set(fired), f"alerts never tested firing: {sorted(names - set(fired))}"
    assert not names - set(quiet), f"alerts never tested not firing: {sorted(names - set(quiet))}"
    unknown = (set(fired) | set(quiet)) - names
    assert not unknown, f"tests name alerts that do not exist: {sorted(unknown)}"


def test_fired_alerts_are_checked_with_exact_labels_and_annotations():
    for fname, case in _unit_tests():
        for check in case.get("alert_rule_test", []):
            rule = alert_rules()[check["alertname"]]
            for exp in check.get("exp_alerts") or []:
                assert exp["exp_labels"]["severity"] == rule["labels"]["severity"], (fname, case["name"])
                assert set(exp.get("exp_annotations", {})) == set(rule["annotations"]), (fname, case["name"])


def test_every_recording_rule_is_evaluated_by_a_test():
    tested: set[str] = set()
    for _, case in _unit_tests():
        for check in case.get("promql_expr_test", []):
            if check.get("exp_samples"):
                tested |= metric_names(check["expr"])
    missing = set(recording_rules()) - tested
    assert not missing, f"recording rules without a promql_expr_test: {sorted(missing)}"


# --- rule content -----------------------------------------------------------------------

def test_alerts_have_severity_annotations_and_runbooks():
    runbook_text = RUNBOOKS.read_text()
    anchors = {"#" + m.lower() for m in re.findall(r"^## (\w+)\s*$", runbook_text, re.M)}
    rule_list = [r for r in rules() if "alert" in r]
    assert len({r["alert"] for r in rule_list}) == len(rule_list), "duplicate alert names"
    for rule in rule_list:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key), f"{name}: annotation {key} missing"
        link = rule["annotations"]["runbook"]
        assert link.startswith("deploy/prometheus/runbooks.md#"), name
        assert link[link.index("#"):] in anchors, f"{name}: runbook section {link} missing"
        assert link.endswith("#" + name.lower()), name
        assert rule.get("for"), f"{name}: every alert waits a little before firing"


def test_required_alerts_exist_with_their_guards():
    alerts = alert_rules()
    spike = alerts["CcpulseAhtSpike"]
    assert spike["labels"]["severity"] == "page"
    assert spike["for"] == "5m"
    expr = spike["expr"]
    assert "queue:cc_handle_time_seconds:avg15m" in expr
    assert "1.5 * queue:cc_handle_time_seconds:avg2h_offset15m" in expr
    assert re.search(r"increase15m\s*>=\s*20", expr), "volume guard"
    assert re.search(r"avg15m\s*>\s*240", expr), "absolute floor"
    assert "cc_service_level_target_ratio" in alerts["CcpulseServiceLevelBelowTarget"]["expr"]
    assert "cc_longest_wait_seconds" in alerts["CcpulseLongestWaitHigh"]["expr"]
    assert "cc_event_lag_seconds" in alerts["CcpulseEventLagHigh"]["expr"]
    assert "cc_events_rejected_total" in alerts["CcpulseDeadLettersRising"]["expr"]
    down = alerts["CcpulseWorkerDown"]
    assert down["expr"].strip() == 'up{job="ccpulse"} == 0' and down["for"] == "1m"
    assert down["labels"]["severity"] == "page"
    sentiment = alerts["CcpulseCustomerSentimentDrop"]["expr"]
    assert "cc_customer_sentiment" in sentiment and re.search(r"samples:15m\s*>=\s*10", sentiment)


def test_histogram_recordings_sum_across_workers():
    """AHT/ASA are ratios of sums over workers, never averages of per-worker ratios."""
    shape = re.compile(r"sum by \(queue\) \(rate\((\w+)_sum(\[\w+\](?: offset \w+)?)\)\) / "
                       r"sum by \(queue\) \(rate\(\1_count\2\)\)")
    checked = 0
    for name, rule in recording_rules().items():
        if name.startswith(("queue:cc_handle_time_seconds:avg", "queue:cc_answer_wait_seconds:avg")):
            expr = " ".join(rule["expr"].split())
            assert shape.fullmatch(expr), f"{name}: {expr}"
            checked += 1
    assert checked >= 7


# --- metric names against the contract --------------------------------------------------

def allowed_metrics() -> frozenset[str]:
    return EXPORTED_METRICS | PROMETHEUS_METRICS | frozenset(recording_rules())


def test_rules_use_only_exported_metrics():
    allowed = allowed_metrics()
    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, f"no metric found in {rule.get('alert') or rule.get('record')}"
        unknown = used - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')} uses {sorted(unknown)}, not in the contract"


def test_recording_rules_read_only_worker_metrics():
    for name, rule in recording_rules().items():
        unknown = metric_names(rule["expr"]) - EXPORTED_METRICS
        assert not unknown, f"{name} reads {sorted(unknown)}"


def test_dashboard_uses_only_exported_metrics():
    allowed = allowed_metrics()
    exprs = dashboard_exprs() + dashboard_variable_queries()
    assert len(exprs) > 20
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in dashboard expression {expr!r}"
        unknown = names - allowed
        assert not unknown, f"dashboard expression {expr!r} uses {sorted(unknown)}, not in the contract"
        used |= names
    # every metric of the contract is on the dashboard (histogram _sum/_count through the
    # recordings)
    missing = {m for m in EXPORTED_METRICS if not m.endswith(("_sum", "_count"))} - used
    assert not missing, f"contract metrics not on the dashboard: {sorted(missing)}"


def test_dashboard_expressions_are_valid_promql(tmp_path):
    """promtool parses every dashboard expression (template variables substituted)."""
    subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$queue": "billing",
             "$window": "15m"}
    rules_doc = {"groups": [{"name": "dashboard", "rules": []}]}
    for i, expr in enumerate(dashboard_exprs() + dashboard_variable_queries()):
        for var, value in subst.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown template variable in {expr!r}"
        rules_doc["groups"][0]["rules"].append({"record": f"dashboard_expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules_doc))
    proc = run_promtool("check", "rules", str(path))
    assert proc.returncode == 0, show(proc)


def test_contract_matches_the_worker():
    """EXPORTED_METRICS agrees with the list the worker's Prometheus sink declares."""
    from stream.sinks import prometheus_sink

    worker: set[str] = set()
    for name in prometheus_sink.EXPORTED_METRICS:
        if name in _HISTOGRAMS:
            worker |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        else:
            worker.add(name)
    assert worker == set(EXPORTED_METRICS), (
        f"only in the worker: {sorted(worker - EXPORTED_METRICS)}; "
        f"only in this contract: {sorted(EXPORTED_METRICS - worker)}")
    assert tuple(prometheus_sink.HANDLE_BUCKETS) == (30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600)
    assert tuple(prometheus_sink.WAIT_BUCKETS) == (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
