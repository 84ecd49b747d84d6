"""Deployment files: docker-compose.yml, Dockerfile, .dockerignore, deploy/k8s, deploy/grafana
and deploy/redis/users.acl (the last one against a real redis-server on a free port)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

from stream import config as ccconfig

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
GRAFANA = DEPLOY / "grafana"
COMPOSE = REPO / "docker-compose.yml"
PROM_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
WORKER_PORT = 6066
WALLBOARD_PORT = 8080


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def config_accepts(env: dict[str, str], toml_text: str | None = None, tmp_path: Path | None = None):
    """stream.config.load with these CCPULSE_* variables (and TOML): raises ConfigError on
    an unknown or invalid setting (Settings forbids unknown fields)."""
    path = None
    if toml_text is not None:
        assert tmp_path is not None
        path = tmp_path / "ccpulse.toml"
        path.write_text(toml_text)
    return ccconfig.load(path, environ={k: v for k, v in env.items() if k.startswith("CCPULSE_")})


# --- docker-compose.yml -----------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def service_env(svc: dict) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published(svc: dict) -> dict[int, str]:
    """container port -> host binding ("127.0.0.1:6066")."""
    out = {}
    for spec in svc.get("ports", []):
        parts = str(spec).split(":")
        out[int(parts[-1].split("/")[0])] = ":".join(parts[:-1])
    return out


def mounts(svc: dict) -> dict[str, str]:
    """container path -> source (relative bind paths resolved against the repo)."""
    out = {}
    for spec in svc.get("volumes", []):
        parts = spec.split(":")
        source, target = parts[0], parts[1]
        if source.startswith("."):
            source = str((REPO / source).resolve())
        out[target] = source
    return out


def healthcheck_text(svc: dict) -> str:
    test = svc["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def test_compose_services_and_images(compose):
    services = compose["services"]
    assert {"kafka", "redis", "prometheus", "grafana", "worker", "wallboard", "simulator"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:3.9.0"
    assert services["redis"]["image"] == "redis:7-alpine"
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    for name in ("worker", "wallboard", "simulator"):
        assert services[name]["build"] == ".", name
        assert services[name].get("image") == "ccpulse:latest", name


def test_compose_kafka_is_a_single_kraft_node(compose):
    kafka = compose["services"]["kafka"]
    env = service_env(kafka)
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    listeners = dict(item.split("://", 1) for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["PLAINTEXT"] == "kafka:9092"
    assert listeners["PLAINTEXT"].endswith(":9092")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    node, _, address = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert address == "kafka:" + listeners[controller].rsplit(":", 1)[1]
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in healthcheck_text(kafka)
    assert "localhost:9092" in healthcheck_text(kafka) or "kafka:9092" in healthcheck_text(kafka)


def test_compose_redis(compose):
    redis = compose["services"]["redis"]
    assert "redis-cli" in healthcheck_text(redis) and "ping" in healthcheck_text(redis)
    assert 6379 not in published(redis), "do not take the host's 6379"


def test_compose_worker(compose, tmp_path):
    worker = compose["services"]["worker"]
    assert worker["command"] in (["worker"], "worker")
    env = service_env(worker)
    assert env["CCPULSE_BROKER_URL"] == "kafka://kafka:9092"
    assert env["CCPULSE_REDIS_URL"] == "redis://redis:6379/0"
    settings = config_accepts(env)
    assert settings.web_port == WORKER_PORT
    assert settings.web_host == "0.0.0.0", "Prometheus scrapes worker:6066 from another container"
    assert settings.bootstrap == "kafka:9092"
    assert WORKER_PORT in published(worker)
    for dep in ("kafka", "redis"):
        assert worker["depends_on"][dep]["condition"] == "service_healthy"
    check = healthcheck_text(worker)
    assert "/healthz" in check and str(WORKER_PORT) in check
    assert worker["volumes"] and any(v.endswith(":/var/lib/ccpulse") for v in worker["volumes"])


def test_compose_wallboard_and_simulator(compose):
    services = compose["services"]
    board = services["wallboard"]
    cmd = board["command"]
    assert cmd[0] == "wallboard"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == str(WALLBOARD_PORT)
    assert "--public" in cmd, "bound to 0.0.0.0 without a token the wallboard refuses to start"
    assert WALLBOARD_PORT in published(board)
    config_accepts(service_env(board))
    sim = services["simulator"]
    cmd = sim["command"]
    assert cmd[0] == "simulate"
    assert cmd[cmd.index("--rate") + 1] == "20"
    assert cmd[cmd.index("--broker") + 1] == "kafka://kafka:9092"
    assert service_env(sim)["CCPULSE_BROKER_URL"] == "kafka://kafka:9092"
    assert service_env(sim)["CCPULSE_REDIS_URL"] == "redis://redis:6379/0"
    config_accepts(service_env(sim))


def test_compose_published_ports_are_local_only(compose):
    for name, svc in compose["services"].items():
        for port, host in published(svc).items():
            assert host.startswith("127.0.0.1:"), f"{name}:{port} published on {host or 'all addresses'}"


def test_compose_prometheus_loads_the_tested_rules(compose):
    prom = compose["services"]["prometheus"]
    assert 9090 in published(prom)
    m = mounts(prom)
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_in_container = PurePosixPath(config_flag.split("=", 1)[1])
    mount_dir = str(config_in_container.parent)
    assert m[mount_dir] == str(PROM_CONFIG.parent), "the config directory is deploy/prometheus"
    host_config = Path(m[mount_dir]) / config_in_container.name
    assert host_config == PROM_CONFIG
    rule_files = set()
    for pattern in load_yaml(host_config)["rule_files"]:
        rule_files |= set(host_config.parent.glob(pattern))
    assert rule_files == set(RULE_FILES), "Prometheus must load the same rule files the promtool tests cover"
    # and it scrapes the worker where the worker listens
    jobs = {j["job_name"]: j for j in load_yaml(PROM_CONFIG)["scrape_configs"]}
    assert f"worker:{WORKER_PORT}" in [t for sc in jobs["ccpulse"]["static_configs"] for t in sc["targets"]]


def test_compose_grafana_mounts_provisioning_and_dashboards(compose):
    grafana = compose["services"]["grafana"]
    assert 3000 in published(grafana)
    m = mounts(grafana)
    assert m["/etc/grafana/provisioning"] == str(GRAFANA / "provisioning")
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "ccpulse.yml")["providers"][0]
    assert m[provider["options"]["path"]] == str(GRAFANA / "dashboards")
    home = service_env(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == provider["options"]["path"] + "/ccpulse.json"
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"


# --- Dockerfile and .dockerignore -------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile():
    ins = dockerfile_instructions()
    froms = [rest.split()[0] for word, rest in ins if word == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert "pip install ." in runs
    # the image runs the hot modules compiled, built from its own sources (not the host's)
    assert "python scripts/build_compiled.py --target" in runs
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    exposed = {p for word, rest in ins if word == "EXPOSE" for p in rest.split()}
    assert {"6066", "8080"} <= exposed
    entry = [json.loads(rest) for word, rest in ins if word == "ENTRYPOINT"]
    assert entry and entry[-1] == ["ccpulse"]
    # what the build copies exists and is not excluded by .dockerignore
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for word, rest in ins:
        if word == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), f"COPY {src}: missing from the repo"
                assert src not in ignored and src.rstrip("/") not in ignored, f"COPY {src} is dockerignored"
    assert (REPO / "pyproject.toml").exists()
    assert "ccpulse" in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_dockerignore_keeps_the_context_small_and_secret_free():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "tests", ".env", "**/*.so", "stream/_compiled.json"} <= ignored
    assert not {"stream", "pyproject.toml", "README.md"} & ignored


# --- Kubernetes -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s() -> dict[str, list[dict]]:
    return {path.name: load_all(path) for path in sorted(K8S.glob("*.yaml"))}


def find(k8s, kind: str, name: str | None = None) -> dict:
    hits = [d for docs in k8s.values() for d in docs
            if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def port_number(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def test_k8s_files_parse_with_required_fields(k8s):
    expected = {"configmap.yaml", "statefulset.yaml", "service.yaml", "wallboard-deployment.yaml",
                "secret.example.yaml", "kustomization.yaml"}
    assert expected <= set(k8s)
    for fname, docs in k8s.items():
        assert docs, fname
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), fname
            if doc["kind"] != "Kustomization":
                assert doc["metadata"].get("name"), fname
                assert "namespace" not in doc["metadata"], f"{fname}: manifests are namespace-agnostic"
    kinds = sorted(d["kind"] for docs in k8s.values() for d in docs)
    assert kinds.count("Service") >= 2 and "StatefulSet" in kinds and "Deployment" in kinds
    assert "ConfigMap" in kinds and "Secret" in kinds


def test_kustomization_lists_the_manifests_but_not_the_example_secret(k8s):
    kust = k8s["kustomization.yaml"][0]
    assert "namespace" not in kust
    resources = kust["resources"]
    for res in resources:
        assert (K8S / res).exists(), res
    assert set(resources) == set(k8s) - {"kustomization.yaml", "secret.example.yaml"}


def test_k8s_configmap_is_a_valid_ccpulse_config(k8s, tmp_path):
    cm = find(k8s, "ConfigMap")
    toml_text = cm["data"]["ccpulse.toml"]
    tomllib.loads(toml_text)
    settings = config_accepts({}, toml_text, tmp_path)
    assert settings.web_port == WORKER_PORT and settings.web_host == "0.0.0.0"
    assert settings.data_dir == "/var/lib/ccpulse"
    assert settings.wallboard.port == WALLBOARD_PORT


def test_k8s_worker_statefulset(k8s):
    sts = find(k8s, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (c,) = containers(sts)
    assert c["image"] == "ccpulse:latest"
    assert c["command"] == ["ccpulse", "worker", "--config", "/etc/ccpulse/ccpulse.toml"]
    http = next(p for p in c["ports"] if p["name"] == "http")
    assert http["containerPort"] == WORKER_PORT
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert live["path"] == "/healthz" and ready["path"] == "/readyz"
    assert port_number(c, live["port"]) == port_number(c, ready["port"]) == WORKER_PORT
    if "startupProbe" in c:
        assert port_number(c, c["startupProbe"]["httpGet"]["port"]) == WORKER_PORT
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == WORKER_PORT
    assert ann["prometheus.io/path"] == "/metrics"
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 30
    assert c["resources"]["requests"] and c["resources"]["limits"]
    # table state on the volume claim template
    mounts_by_name = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    (vct,) = spec["volumeClaimTemplates"]
    assert mounts_by_name[vct["metadata"]["name"]] == "/var/lib/ccpulse"
    assert vct["spec"]["resources"]["requests"]["storage"]
    # the ConfigMap mounted where --config points
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    config_vol = next(n for n, v in volumes.items() if "configMap" in v)
    assert volumes[config_vol]["configMap"]["name"] == find(k8s, "ConfigMap")["metadata"]["name"]
    assert mounts_by_name[config_vol] == str(PurePosixPath(c["command"][-1]).parent)
    assert "ccpulse.toml" in find(k8s, "ConfigMap")["data"]
    # runs as the image's unprivileged user
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # secrets come from the Secret of the example
    refs = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    secrets = {d["metadata"]["name"] for d in k8s["secret.example.yaml"]}
    assert refs and refs <= secrets
    # the headless service is the StatefulSet's
    headless = find(k8s, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"


def test_k8s_services_reach_the_worker_port(k8s):
    sts = find(k8s, "StatefulSet")
    (c,) = containers(sts)
    labels = sts["spec"]["template"]["metadata"]["labels"]
    worker_services = [d for d in k8s["service.yaml"] if d["kind"] == "Service"]
    assert len(worker_services) == 2
    assert sum(1 for s in worker_services if s["spec"].get("clusterIP") == "None") == 1
    for svc in worker_services:
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
        (port,) = svc["spec"]["ports"]
        assert port["port"] == WORKER_PORT
        assert port_number(c, port["targetPort"]) == WORKER_PORT


def test_k8s_wallboard(k8s):
    dep = find(k8s, "Deployment", "ccpulse-wallboard")
    (c,) = containers(dep)
    cmd = c["command"]
    assert cmd[:2] == ["ccpulse", "wallboard"]
    assert cmd[cmd.index("--port") + 1] == str(WALLBOARD_PORT)
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    http = next(p for p in c["ports"] if p["name"] == "http")
    assert http["containerPort"] == WALLBOARD_PORT
    for probe in ("livenessProbe", "readinessProbe"):
        assert port_number(c, c[probe]["httpGet"]["port"]) == WALLBOARD_PORT
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = find(k8s, "Service", "ccpulse-wallboard")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert port_number(c, svc["spec"]["ports"][0]["targetPort"]) == WALLBOARD_PORT
    refs = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
    secrets = {d["metadata"]["name"]: d for d in k8s["secret.example.yaml"]}
    assert refs and refs <= set(secrets)
    # bound to the pod address the wallboard needs a token (or --public)
    assert "--public" in cmd or any("CCPULSE_API_TOKEN" in secrets[r]["stringData"] for r in refs)


def test_k8s_example_secrets(k8s, tmp_path):
    toml_text = find(k8s, "ConfigMap")["data"]["ccpulse.toml"]
    secrets = {d["metadata"]["name"]: d for d in k8s["secret.example.yaml"]}
    assert all(d["kind"] == "Secret" for d in secrets.values())
    worker = secrets["ccpulse-worker"]["stringData"]
    assert {"CCPULSE_REDIS_URL", "CCPULSE_BROKER_URL", "CCPULSE_KAFKA__SASL_PASSWORD"} <= set(worker)
    assert "ccpulse-worker:" in worker["CCPULSE_REDIS_URL"]
    assert "ccpulse-reader:" in secrets["ccpulse-wallboard"]["stringData"]["CCPULSE_REDIS_URL"]
    for name, secret in secrets.items():
        for key, value in secret["stringData"].items():
            if key != "CCPULSE_BROKER_URL":
                assert "CHANGE-ME" in value, f"{name}.{key} must be a visible placeholder"
        # every name is a setting the worker knows, and with the ConfigMap it validates
        settings = config_accepts(secret["stringData"], toml_text, tmp_path)
        assert settings.redis_url == secret["stringData"]["CCPULSE_REDIS_URL"]
    settings = config_accepts(worker, toml_text, tmp_path)
    assert settings.kafka.sasl_password == worker["CCPULSE_KAFKA__SASL_PASSWORD"]
    assert settings.customer_hash_secret != "change-me"


# --- Grafana ----------------------------------------------------------------------------

REQUIRED_PANELS = {
    # title: metrics its queries must use
    "AHT per queue": {"queue:cc_handle_time_seconds:avg15m", "cc_aht_seconds"},
    "Service level": {"cc_service_level_ratio", "cc_service_level_target_ratio"},
    "ASA per queue": {"queue:cc_answer_wait_seconds:avg15m", "cc_asa_seconds"},
    "Abandon rate": {"cc_abandon_ratio"},
    "Contacts waiting": {"cc_contacts_waiting"},
    "Longest wait": {"cc_longest_wait_seconds"},
    "Agents by state": {"cc_agents"},
    "Occupancy": {"cc_occupancy_ratio"},
    "Required vs staffed agents": {"cc_required_agents", "cc_staffed_agents"},
    "Staffing gap": {"cc_staffing_gap"},
    "First contact resolution": {"cc_fcr_ratio"},
    "CSAT": {"cc_csat_ratio"},
    "NPS": {"cc_nps"},
    "Customer sentiment": {"cc_customer_sentiment", "cc_sentiment_samples"},
    "Event lag": {"cc_event_lag_seconds"},
    "Dead letters": {"cc_events_rejected_total"},
    "Duplicates": {"cc_events_duplicate_total"},
    "Publish failures": {"cc_publish_failures_total"},
}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "ccpulse.json").read_text())


def all_panels(dash: dict) -> list[dict]:
    out = []
    for panel in dash["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def test_grafana_provisioning_files():
    ds_doc = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert ds_doc["apiVersion"] == 1
    (ds,) = ds_doc["datasources"]
    assert ds["type"] == "prometheus" and ds["uid"]
    dash_doc = load_yaml(GRAFANA / "provisioning" / "dashboards" / "ccpulse.yml")
    assert dash_doc["apiVersion"] == 1
    (provider,) = dash_doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_grafana_dashboard_structure(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles = [p["title"] for p in panels]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] != "row":
            assert p.get("targets"), p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]


def test_grafana_datasource_uid_matches_provisioning(dashboard):
    (ds,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    seen = 0
    for p in all_panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": ds["uid"]}, p["title"]
        for t in p["targets"]:
            assert t.get("datasource", p["datasource"])["uid"] == ds["uid"], p["title"]
            seen += 1
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"]["uid"] == ds["uid"], var["name"]
    assert seen > 20


def test_grafana_queue_variable_is_used(dashboard):
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    queue = variables["queue"]
    assert queue["type"] == "query" and queue["multi"] and queue["includeAll"]
    query = queue["query"]["query"] if isinstance(queue["query"], dict) else queue["query"]
    assert query.startswith("label_values(") and query.rstrip().endswith("queue)")
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    assert sum('queue=~"$queue"' in e for e in exprs) >= 15


def test_grafana_required_panels(dashboard):
    from test_deploy_prometheus import metric_names

    by_title = {p["title"]: p for p in all_panels(dashboard)}
    for title, metrics in REQUIRED_PANELS.items():
        assert title in by_title, f"panel {title!r} missing"
        used = set()
        for t in by_title[title]["targets"]:
            used |= metric_names(t["expr"])
        assert metrics <= used, f"panel {title!r} lacks {sorted(metrics - used)}"


# --- Redis ACL --------------------------------------------------------------------------

ACL = DEPLOY / "redis" / "users.acl"


def acl_users() -> dict[str, list[str]]:
    users = {}
    for line in ACL.read_text().splitlines():
        if line.strip():
            word, name, *rules = line.split()
            assert word == "user"
            users[name] = rules
    return users


def placeholder_password(user: str) -> str:
    (pw,) = [r[1:] for r in acl_users()[user] if r.startswith(">")]
    assert "CHANGE-ME" in pw
    return pw


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    assert Path(binary).exists(), "redis-server is required (apt-get install redis-server)"
    port = free_port()
    assert port != 6379
    workdir = tmp_path_factory.mktemp("acl-redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--aclfile", str(ACL)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server refused the ACL file:\n{proc.stdout.read().decode()}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def client(port: int, user: str | None):
    import redis

    if user is None:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    return redis.Redis(host="127.0.0.1", port=port, username=user,
                       password=placeholder_password(user), socket_timeout=5)


def denied(call) -> None:
    """The server refuses the call with NOPERM (redis-py: NoPermissionError)."""
    import redis

    with pytest.raises(redis.exceptions.NoPermissionError):
        call()


def test_acl_file_users():
    users = acl_users()
    assert {"ccpulse-worker", "ccpulse-reader"} <= set(users)
    assert "~cc:*" in users["ccpulse-worker"] and "&cc:updates" in users["ccpulse-worker"]
    assert "%R~cc:*" in users["ccpulse-reader"] and "&cc:updates" in users["ccpulse-reader"]
    for user in ("ccpulse-worker", "ccpulse-reader"):
        assert "-@dangerous" in users[user] and "-@admin" in users[user]
    assert (DEPLOY / "redis" / "README.md").exists(), "the comments of the ACL file live there"


def test_acl_worker_can_publish_a_cycle_and_nothing_else(acl_redis):
    r = client(acl_redis, "ccpulse-worker")
    pipe = r.pipeline(transaction=True)
    pipe.delete("cc:kpi:center:15m")
    pipe.hset("cc:kpi:center:15m", mapping={"offered": "3", "aht_s": "300"})
    pipe.hdel("cc:kpi:center:15m", "aht_s")
    pipe.hset("cc:interval:center:2026-01-01T00:00:00+00:00", mapping={"offered": "1"})
    pipe.expire("cc:interval:center:2026-01-01T00:00:00+00:00", 691200)
    pipe.zadd("cc:intervals:center", {"2026-01-01T00:00:00+00:00": 1767225600})
    pipe.zremrangebyscore("cc:intervals:center", "-inf", 0)
    pipe.sadd("cc:index", "cc:kpi:center:15m")
    pipe.set("cc:snapshot", b"{}")
    pipe.publish("cc:updates", b'{"seq": 1}')
    pipe.execute()
    assert r.hgetall("cc:kpi:center:15m") == {b"offered": b"3"}
    assert r.smembers("cc:index") == {b"cc:kpi:center:15m"}
    assert r.set("cc:lock", "me", nx=True, px=5000)
    release = r.register_script(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0")
    assert release(keys=["cc:lock"], args=["me"]) == 1
    assert r.ping()
    denied(lambda: r.hset("other:key", "a", "1"))
    denied(lambda: r.get("other:key"))
    denied(lambda: r.publish("other-channel", "x"))
    denied(lambda: r.eval("return redis.call('get', KEYS[1])", 1, "other:key"))
    denied(lambda: r.keys("*"))
    denied(lambda: r.flushall())
    denied(lambda: r.flushdb())
    denied(lambda: r.config_get("maxmemory"))
    denied(lambda: r.execute_command("ACL", "LIST"))
    denied(lambda: r.script_flush())
    denied(lambda: r.execute_command("CLIENT", "KILL", "127.0.0.1:1"))


def test_acl_reader_reads_and_subscribes_only(acl_redis):
    import redis

    writer = client(acl_redis, "ccpulse-worker")
    writer.set("cc:snapshot", b'{"as_of": "x"}')
    writer.hset("cc:kpi:queue:billing:15m", mapping={"offered": "2"})
    writer.zadd("cc:intervals:queue:billing", {"a": 1})
    r = client(acl_redis, "ccpulse-reader")
    assert r.get("cc:snapshot") == b'{"as_of": "x"}'
    assert r.hgetall("cc:kpi:queue:billing:15m") == {b"offered": b"2"}
    assert r.zrangebyscore("cc:intervals:queue:billing", 0, 10) == [b"a"]
    pubsub = r.pubsub()
    pubsub.subscribe("cc:updates")
    deadline = time.monotonic() + 5
    msg = None
    while msg is None and time.monotonic() < deadline:
        writer.publish("cc:updates", b"tick")
        msg = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    assert msg is not None and msg["data"] == b"tick"
    pubsub.close()
    denied(lambda: r.set("cc:snapshot", b"{}"))
    denied(lambda: r.hset("cc:kpi:queue:billing:15m", "offered", "9"))
    denied(lambda: r.delete("cc:snapshot"))
    denied(lambda: r.publish("cc:updates", b"x"))
    denied(lambda: r.get("other:key"))
    denied(lambda: r.keys("*"))
    denied(lambda: r.eval("return 1", 0))
    denied(lambda: r.flushall())
    denied(lambda: r.config_get("maxmemory"))
    other = r.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.subscribe("other-channel")
        other.get_message(timeout=1)
    other.close()


def test_acl_default_user_is_off(acl_redis):
    import redis

    # unauthenticated clients get nothing (redis-py reports the refused HELLO/command as an
    # AuthenticationError)
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError)):
        client(acl_redis, None).get("cc:snapshot")
    # and the default user cannot be logged into either
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=acl_redis, username="default", password="not-the-password",
                    socket_timeout=5).ping()
