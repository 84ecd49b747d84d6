"""The worker's HTTP API (DESIGN §8): bearer token, loopback bind, parameter and body limits,
JSON errors without stack traces — against a real `ccpulse worker` on tansu + redis-server.
"""

from __future__ import annotations

import http.client as httpc
import json
import socket
import time
import uuid

import pytest

from conftest import Topics, WorkerProc, produce, wait_for
from security_support import http, interaction, reachable

TOKEN = "tok-MARKER-3b8f0a"


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_json_error(status: int, headers: dict, body: bytes, expected: int) -> dict:
    assert status == expected, body
    assert headers.get("Content-Type", "").startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["status"] == expected and isinstance(doc["error"], str)
    assert b"Traceback" not in body and b'File "' not in body
    return doc


@pytest.fixture(scope="module")
def api_worker(stack, tmp_path_factory):
    """One worker for the module (starting one takes a while)."""
    topics = Topics(uuid.uuid4().hex[:8]).create(stack)
    worker = WorkerProc(topics.env(stack, CCPULSE_API_TOKEN=TOKEN, CCPULSE_WEB_HOST="127.0.0.1"),
                        tmp_path_factory.mktemp("api") / "worker.log").start()
    try:
        yield _with_data(stack, topics, worker)
    finally:
        worker.kill()
        assert TOKEN not in worker.log.read_text(errors="replace")


def _with_data(stack, topics, worker):
    now = time.time()
    produce(stack, topics.interactions,
            interaction("h1", "billing", "voice", now - 120, now - 110, ended=now - 60,
                        wrapup=now - 50))

    def up():
        if not reachable(worker.url("/api/kpi?scope=center"), auth()):
            return False
        status, _, body = http(worker.url("/api/kpi?scope=center"), headers=auth())
        return status == 200 and json.loads(body)["windows"]["15m"].get("handled") == 1

    wait_for(up, 60, what="the API with data")
    return worker


def test_bearer_token_is_required_and_checked(api_worker):
    url = api_worker.url("/api/kpi?scope=center")
    status, headers, body = http(url)
    assert_json_error(status, headers, body, 401)
    assert headers.get("WWW-Authenticate", "").startswith("Bearer")
    for bad in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"bearer {TOKEN}"}, {"Authorization": TOKEN},
                {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                {"Authorization": "Bearer"}):
        assert_json_error(*http(url, headers=bad), 401)
    # a token in the query string is not accepted by the worker API
    assert_json_error(*http(url + f"&token={TOKEN}"), 401)
    status, headers, body = http(url, headers=auth())
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    doc = json.loads(body)
    assert doc["scope"] == "center" and doc["windows"]["15m"]["handled"] == 1
    # every /api/* view is guarded; /metrics and the probes are open by design
    for path in ("/api/load", "/api/intervals?scope=center", "/api/staffing/whatif"):
        assert_json_error(*http(api_worker.url(path)), 401)
        assert http(api_worker.url(path), headers=auth())[0] != 401
    assert_json_error(*http(api_worker.url("/api/staffing/whatif"), "POST",
                            {"Content-Type": "application/json"}, b"{}"), 401)
    assert http(api_worker.url("/metrics"))[0] == 200
    assert http(api_worker.url("/healthz"))[0] == 200


def test_non_ascii_authorization_header_does_not_break_the_guard(api_worker):
    conn = httpc.HTTPConnection("127.0.0.1", api_worker.web_port, timeout=10)
    conn.putrequest("GET", "/api/kpi")
    conn.putheader("Authorization", "Bearer t\xf6k\xe9n".encode("latin-1"))
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert_json_error(resp.status, dict(resp.getheaders()), body, 401)


def test_parameter_limits(api_worker):
    base = api_worker.url("/api/kpi")
    doc = assert_json_error(*http(base + "?scope=" + "a" * 300, headers=auth()), 400)
    assert "scope" in doc["error"]
    assert_json_error(*http(base + "?window=" + "b" * 257, headers=auth()), 400)
    # the whole query string and the number of parameters are capped too
    assert_json_error(*http(base + "?" + "&".join(f"x{i}=1" for i in range(40)), headers=auth()), 400)
    assert_json_error(*http(base + "?junk=" + "c" * 3000, headers=auth()), 400)
    assert_json_error(*http(api_worker.url("/api/load?scope=" + "d" * 300), headers=auth()), 400)
    assert_json_error(*http(api_worker.url("/api/intervals?from=" + "e" * 300), headers=auth()), 400)
    # beyond aiohttp's request-line limit the server answers 4xx by itself, still no trace
    status, _, body = http(base + "?scope=" + "f" * 20000, headers=auth())
    assert 400 <= status < 500 and b"Traceback" not in body
    # valid parameters, unknown values: JSON errors, not 500s
    assert_json_error(*http(base + "?scope=queue:%3Cscript%3E", headers=auth()), 404)
    assert_json_error(*http(base + "?scope=center&window=1y", headers=auth()), 400)


def test_body_limits_and_methods(api_worker):
    url = api_worker.url("/api/staffing/whatif")
    json_hdr = {**auth(), "Content-Type": "application/json"}
    status, _, body = http(url, "POST", json_hdr,
                           json.dumps({"contacts": 100, "interval_min": 30, "aht_s": 180}).encode())
    assert status == 200, body
    assert json.loads(body)["required_agents"] == 14  # DESIGN §4 vector over HTTP
    big = b'{"contacts": 1, "aht_s": 180, "pad": "' + b"x" * (64 * 1024) + b'"}'
    assert_json_error(*http(url, "POST", json_hdr, big), 413)
    # without Content-Length (chunked): the server reads at most 64 KiB + 1 byte, then 413
    conn = httpc.HTTPConnection("127.0.0.1", api_worker.web_port, timeout=10)
    conn.putrequest("POST", "/api/staffing/whatif")
    for k, v in {**json_hdr, "Transfer-Encoding": "chunked"}.items():
        conn.putheader(k, v)
    conn.endheaders()
    chunk = b"y" * 8192
    for _ in range(10):
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert_json_error(resp.status, dict(resp.getheaders()), body, 413)
    # bad JSON and bad fields are 400 with a message, a GET is 405
    assert_json_error(*http(url, "POST", json_hdr, b"{not json"), 400)
    assert_json_error(*http(url, "POST", json_hdr, b"[1, 2]"), 400)
    doc = assert_json_error(*http(url, "POST", json_hdr, b'{"contacts": -1, "aht_s": 0}'), 400)
    assert "contacts" in doc["error"]
    assert_json_error(*http(url, headers=auth()), 405)
    # unknown routes and methods never show a stack trace either
    for method, path in (("GET", "/api/nope"), ("DELETE", "/api/kpi"), ("PUT", "/metrics")):
        status, _, body = http(api_worker.url(path), method, auth())
        assert status in (404, 405) and b"Traceback" not in body


def test_binds_loopback_only(api_worker):
    """The worker listens on 127.0.0.1 only: another local address gets no connection."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # no packet is sent: picks the route's address
            address = probe.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback IPv4 address here")
    if address.startswith("127."):
        pytest.skip("no non-loopback IPv4 address here")
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((address, api_worker.web_port)) != 0
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", api_worker.web_port)) == 0


def test_open_loopback_api_refuses_foreign_host_names(stack, unique, worker_factory):
    """No token on a loopback bind: open to local tools, closed to DNS rebinding."""
    worker = worker_factory(CCPULSE_WEB_HOST="127.0.0.1")
    url = worker.url("/api/load")

    wait_for(lambda: reachable(url, ok=(200, 503)), 60, what="the open loopback API")
    assert http(url, headers={"Host": f"localhost:{worker.web_port}"})[0] in (200, 503)
    assert_json_error(*http(url, headers={"Host": f"attacker.example:{worker.web_port}"}), 401)
    assert_json_error(*http(url, headers={"Host": "192.168.1.10"}), 401)


def test_non_loopback_bind_without_token_closes_the_api(stack, unique, worker_factory):
    """Bound elsewhere than the loopback names and no token: /api/* answers 401 to everyone,
    /metrics and the probes still work. (127.0.0.2 stands in for a pod address: it is not
    one of the loopback names the guard trusts, and it exposes nothing beyond this host.)"""
    worker = worker_factory(CCPULSE_WEB_HOST="127.0.0.2")
    base = f"http://127.0.0.2:{worker.web_port}"
    wait_for(lambda: reachable(base + "/healthz"), 60, what="worker web server")
    assert_json_error(*http(base + "/api/kpi"), 401)
    assert_json_error(*http(base + "/api/load", headers=auth("anything")), 401)
    assert_json_error(*http(base + "/api/load", headers={"Host": "localhost"}), 401)
    assert http(base + "/metrics")[0] == 200
