"""A server on localhost against a hostile client and hostile web pages, over raw HTTP: request
targets that dodge the token, foreign Hosts (DNS rebinding), foreign Origins (CSRF, WebSocket
hijacking), non-JSON bodies, the page's headers, the login session, the keep-alive timeout and
the WebSocket's kernel send buffer. The browser's view of the same attacks is in
test_security_browser.py."""
import socket
import subprocess
import time

import pytest

from harness import assert_problem, read_response, run_tessera
from live_client import RawWebSocket

TOKEN = "e2e-Security-Token-6a1f0c"
GOOD = {"Authorization": "Bearer " + TOKEN}
NO_DEMOS = ("--set", "panels.demos=false")
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def raw_request(srv, method, target, host=None, headers=None, body=b"", version="1.1"):
    """`method target` with exactly these headers (Host is the server's own unless given; None
    values are left out); returns the RawResponse."""
    lines = [f"{method} {target} HTTP/{version}"]
    all_headers = {"Host": host or f"127.0.0.1:{srv.port}", "Connection": "close"}
    all_headers.update(headers or {})
    lines += [f"{k}: {v}" for k, v in all_headers.items() if v is not None]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return srv.raw(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


@pytest.fixture
def secured(server):
    srv = server("--api-token", TOKEN, *NO_DEMOS)
    res = srv.request("POST", "/api/storages", {"id": "todos", "data": {"secret": "s3cr3t"}}, GOOD)
    assert res.status == 201, res
    return srv


def storage_ids(srv):
    res = srv.request("GET", "/api/storages", None, GOOD)
    assert res.status == 200, res
    return [s["id"] for s in res.body["storages"]]


# --- routing and the token -------------------------------------------------------------------

TARGETS = ["Xapi/storages/todos", "api/storages/todos", "*", "%2Fapi/storages/todos",
           "http://127.0.0.1:{port}/api/storages/todos", "http://evil.example/api/storages/todos",
           "//api/storages/todos", "/API/storages/todos", "/api/../api/storages/todos",
           "/api/./storages/todos", "/api/storages/todos/", "/api%2Fstorages/todos",
           "/ws", "/ws/", "/WS", "Xws", "/api", "/api/"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_no_request_target_reads_or_writes_without_the_token(secured, method):
    body = b'{"id":"made","data":{"x":1}}' if method == "POST" else b'{"data":{"x":1}}'
    for target in TARGETS:
        target = target.format(port=secured.port)
        res = raw_request(secured, method, target, headers={"Content-Type": "application/json"},
                          body=b"" if method in ("GET", "DELETE") else body)
        assert res.status in (400, 401), (method, target, res)
        assert b"s3cr3t" not in res.raw, (method, target, res)
    after = secured.request("GET", "/api/storages/todos", None, GOOD)
    assert after.body["version"] == 1 and after.body["data"] == {"secret": "s3cr3t"}, after
    assert storage_ids(secured) == ["todos"]


def test_a_target_not_starting_with_a_slash_is_400_even_when_the_rest_is_an_api_path(secured):
    for target in ("Xapi/storages/todos", "api/storages", "*", "%2Fapi/storages"):
        assert_problem(raw_request(secured, "GET", target), 400, "invalid_argument")
    metrics = secured.request("GET", "/metrics", None, GOOD).raw
    assert b'tessera_http_guard_refusals_total{reason="target"} 4' in metrics
    res = raw_request(secured, "POST", "Xapi/storages", headers={"Content-Type":
                                                                 "application/json"},
                      body=b'{"id":"pwned","data":{}}')
    assert_problem(res, 400, "invalid_argument")
    assert storage_ids(secured) == ["todos"]


def test_an_absolute_form_target_naming_this_server_is_served_as_its_path(secured):
    target = f"http://127.0.0.1:{secured.port}/api/storages/todos"
    assert raw_request(secured, "GET", target).status == 401
    res = raw_request(secured, "GET", target, headers=GOOD)
    assert res.status == 200 and res.body["data"] == {"secret": "s3cr3t"}, res


def test_a_token_shorter_than_16_characters_stops_start_up(tmp_path):
    run = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                      "--api-token", "short-token-15c")
    assert run.returncode == 2, run
    assert "at least 16 characters" in run.stderr and "short-token-15c" not in run.stderr, \
        run.stderr


# --- Host ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/api/storages", "/healthz", "/ui/app.js", "/metrics"])
def test_a_foreign_host_is_refused_on_every_route(server, path):
    srv = server(*NO_DEMOS)
    for host in ("evil.example", f"evil.example:{srv.port}", f"localhost:{srv.port + 1}",
                 f"127.0.0.2:{srv.port}"):
        assert_problem(raw_request(srv, "GET", path, host=host), 421, "misdirected_request")
    assert srv.metric("tessera_http_guard_refusals_total", reason="host") == 4
    for host in (f"localhost:{srv.port}", f"127.0.0.1:{srv.port}", f"[::1]:{srv.port}",
                 f"LOCALHOST:{srv.port}"):
        assert raw_request(srv, "GET", path, host=host).status == 200, host


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_a_foreign_host_cannot_open_the_websocket(server):
    srv = server(*NO_DEMOS)
    res = raw_request(srv, "GET", "/ws", host=f"evil.example:{srv.port}", headers=UPGRADE)
    assert_problem(res, 421, "misdirected_request")
    ws = RawWebSocket(srv)  # the same upgrade with the server's own Host
    try:
        assert ws.handshake()[0] == 101
    finally:
        ws.close()


def test_a_request_with_two_hosts_is_400(server):
    srv = server(*NO_DEMOS)
    res = srv.raw(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                  f"Host: evil.example\r\nConnection: close\r\n\r\n".encode())
    assert_problem(res, 400, "invalid_argument")


def test_names_in_allowed_hosts_are_served(server):
    srv = server(*NO_DEMOS, "--set", "server.allowed_hosts=dash.example,box:7000")
    assert raw_request(srv, "GET", "/healthz", host="dash.example").status == 200
    assert raw_request(srv, "GET", "/healthz", host="dash.example:443").status == 200
    assert raw_request(srv, "GET", "/healthz", host="box:7000").status == 200
    assert raw_request(srv, "GET", "/healthz", host="box:7001").status == 421
    assert raw_request(srv, "GET", "/healthz", host="other.example").status == 421


def test_http_1_1_without_host_is_400_and_http_1_0_without_host_is_served(server):
    srv = server(*NO_DEMOS)
    res = srv.raw(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert_problem(res, 400, "invalid_argument")
    assert srv.raw(b"GET /healthz HTTP/1.0\r\n\r\n").status == 200


# --- Origin ----------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/storages", b'{"id":"pwned","data":{}}'),
    ("PUT", "/api/storages/todos", b'{"data":{"pwned":1}}'),
    ("PATCH", "/api/storages/todos", b'{"data":{"pwned":1}}'),
    ("DELETE", "/api/storages/todos", b""),
    ("POST", "/api/sandbox/run", b'{"kind":"action","handler":"def on_action(a,p,s): pass"}'),
])
def test_a_state_changing_request_from_another_origin_is_403_and_changes_nothing(
        server, method, path, body):
    srv = server(*NO_DEMOS)
    assert srv.request("POST", "/api/storages", {"id": "todos", "data": {"a": 1}}).status == 201
    for origin in ("http://evil.example", "null", f"http://localhost:{srv.port + 1}",
                   f"https://127.0.0.1:{srv.port}.evil.example"):
        res = raw_request(srv, method, path, headers={"Origin": origin,
                                                       "Content-Type": "application/json"},
                          body=body)
        assert_problem(res, 403, "cross_origin")
    assert srv.metric("tessera_http_guard_refusals_total", reason="origin") == 4
    after = srv.request("GET", "/api/storages/todos")
    assert after.body["version"] == 1 and after.body["data"] == {"a": 1}, after
    assert srv.request("GET", "/api/storages/pwned").status == 404


def test_the_servers_own_origin_an_allowed_origin_and_no_origin_may_write(server):
    srv = server(*NO_DEMOS, "--set", "server.allowed_origins=https://dash.example")
    for n, origin in enumerate((f"http://127.0.0.1:{srv.port}", "https://dash.example", None)):
        res = raw_request(srv, "POST", "/api/storages",
                          headers={"Origin": origin, "Content-Type": "application/json"},
                          body=b'{"id":"s%d","data":{}}' % n)
        assert res.status == 201, (origin, res)
    own = raw_request(srv, "POST", "/api/storages", host=f"localhost:{srv.port}",
                      headers={"Origin": f"http://localhost:{srv.port}"},
                      body=b'{"id":"s3","data":{}}')
    assert own.status == 201, own


def test_a_websocket_upgrade_from_another_origin_is_403(server):
    srv = server(*NO_DEMOS)
    for origin, expected in (("http://evil.example", 403), (f"http://127.0.0.1:{srv.port}", 101)):
        ws = RawWebSocket(srv, headers={"Origin": origin})
        try:
            status, _ = ws.handshake()
        finally:
            ws.close()
        assert status == expected, origin


# --- content type ----------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x"])
def test_a_json_body_sent_as_another_media_type_is_415_and_changes_nothing(server, content_type):
    srv = server(*NO_DEMOS)
    res = raw_request(srv, "POST", "/api/storages", headers={"Content-Type": content_type},
                      body=b'{"id":"pwned","data":{}}')
    assert_problem(res, 415, "unsupported_media_type")
    assert srv.request("GET", "/api/storages/pwned").status == 404


def test_json_with_parameters_or_without_content_type_and_a_post_without_body_are_taken(server):
    srv = server(*NO_DEMOS)
    res = raw_request(srv, "POST", "/api/storages",
                      headers={"Content-Type": "application/json; charset=utf-8"},
                      body=b'{"id":"a","data":{}}')
    assert res.status == 201, res
    assert raw_request(srv, "POST", "/api/storages", body=b'{"id":"b","data":{}}').status == 201
    task = {"id": "t", "schedule": "0 0 1 1 *",
            "handler": "def on_schedule(storage):\n    pass\n"}
    assert srv.request("POST", "/api/tasks", task).status == 201
    run = raw_request(srv, "POST", "/api/tasks/t/run", headers={"Content-Type": "text/plain"})
    assert run.status == 200 and run.body["status"] == "succeeded", run


# --- headers ---------------------------------------------------------------------------------

def test_the_page_cannot_be_framed_by_other_sites_and_carries_a_content_security_policy(server):
    srv = server(*NO_DEMOS)
    res = srv.request("GET", "/")
    assert res.status == 200, res
    csp = res.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp, csp
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp, csp
    assert "*" not in csp and "http:" not in csp, csp
    assert res.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert res.headers["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("method,path", [("GET", "/api/storages"), ("GET", "/api/nothing"),
                                         ("GET", "/healthz"), ("POST", "/api/storages")])
def test_api_answers_are_never_sniffed_nor_cached(server, method, path):
    srv = server(*NO_DEMOS)
    res = srv.request(method, path, b"{" if method == "POST" else None)
    assert res.headers["X-Content-Type-Options"] == "nosniff", res
    assert res.headers["Cache-Control"] == "no-store", res


# --- the page's session ----------------------------------------------------------------------

def login(srv, token):
    return srv.request("POST", "/login", "token=" + token, FORM)


def test_with_a_token_the_page_is_a_login_form_and_a_wrong_token_opens_nothing(secured):
    page = secured.request("GET", "/")
    assert page.status == 200 and b'<form id="login"' in page.raw, page
    assert b"panel-grid" not in page.raw
    assert secured.request("GET", "/?token=" + TOKEN).raw == page.raw, "a token in the URL"
    wrong = login(secured, TOKEN + "x")
    assert wrong.status == 401 and b"Wrong token." in wrong.raw, wrong
    assert "Set-Cookie" not in wrong.headers
    metric = secured.request("GET", "/metrics", None, GOOD)
    assert b'tessera_logins_total{result="wrong_token"} 1' in metric.raw


def test_the_right_token_gives_a_session_cookie_that_opens_the_api_for_its_own_origin_only(
        secured):
    res = login(secured, TOKEN)
    assert res.status == 303 and res.headers["Location"] == "/", res
    cookie = res.headers["Set-Cookie"]
    assert cookie.startswith(f"tessera_session_{secured.port}="), cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie, cookie
    session = {"Cookie": cookie.split(";")[0]}
    assert b"panel-grid" in secured.request("GET", "/", None, session).raw
    assert secured.request("GET", "/api/storages", None, session).status == 200
    # The same cookie on a request another page made (the browser sends it along) opens nothing.
    for foreign in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": f"http://localhost:{secured.port + 1}"}):
        res = secured.request("GET", "/api/storages/todos", None, {**session, **foreign})
        assert_problem(res, 401, "unauthorized")
    own = {**session, "Origin": f"http://127.0.0.1:{secured.port}", "Sec-Fetch-Site":
           "same-origin", "Content-Type": "application/json"}
    assert secured.request("PATCH", "/api/storages/todos", {"data": {"b": 2}}, own).status == 200
    out = secured.request("POST", "/logout", None, session)
    assert out.status == 303 and "Max-Age=0" in out.headers["Set-Cookie"], out
    assert_problem(secured.request("GET", "/api/storages", None, session), 401, "unauthorized")


def test_behind_a_tls_proxy_the_session_cookie_is_secure(secured):
    res = secured.request("POST", "/login", "token=" + TOKEN, {**FORM, "X-Forwarded-Proto":
                                                               "https"})
    assert res.status == 303 and "; Secure" in res.headers["Set-Cookie"], res


def test_a_login_from_another_origin_is_refused(secured):
    res = raw_request(secured, "POST", "/login", headers={**FORM, "Origin": "http://evil.example"},
                      body=("token=" + TOKEN).encode())
    assert_problem(res, 403, "cross_origin")
    assert "set-cookie" not in res.headers


# --- hostile clients -------------------------------------------------------------------------

def closed_after(sock, limit):
    """Seconds until the server closed `sock` (recv gives EOF), waiting at most `limit`."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return None
    return time.monotonic() - start


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout_ms(server):
    srv = server(*NO_DEMOS, "--set", "server.keepalive_timeout_ms=400")
    with socket.create_connection((srv.connect_host, srv.port)) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        assert read_response(sock.makefile("rb")).status == 200
        waited = closed_after(sock, 10)
    assert waited is not None and 0.2 < waited < 5, waited
    default = server(*NO_DEMOS)
    with socket.create_connection((default.connect_host, default.port)) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{default.port}\r\n\r\n".encode())
        assert read_response(sock.makefile("rb")).status == 200
        assert closed_after(sock, 2) is None, "the 60 s default closed within 2 s"


def kernel_send_buffer(port, client_port):
    """The server side's send buffer (tb) and send queue of the connection to `client_port`."""
    out = subprocess.run(["ss", "-tmnH", "state", "established",
                          f"( sport = :{port} and dport = :{client_port} )"],
                         capture_output=True, text=True, check=True).stdout
    tb = int(out.split("tb")[1].split(",")[0])
    send_q = int(out.split()[1])
    return tb, send_q


def test_a_websocket_client_that_never_reads_holds_a_bounded_kernel_send_buffer(server):
    srv = server(*NO_DEMOS)
    big = "x" * 400_000
    assert srv.request("POST", "/api/storages", {"id": "big", "data": {"blob": big}}).status == 201
    panel = {"id": "huge", "storage_ids": ["big"], "template": "{{ big.blob }}",
             "handler": "def on_action(action, payload, storage):\n    pass\n"}
    assert srv.request("POST", "/api/panels", panel).status == 201
    stalled = RawWebSocket(srv, rcvbuf=4096)
    try:
        status, _ = stalled.handshake()
        assert status == 101
        stalled.send_json({"type": "subscribe", "panel": "huge"})
        client_port = stalled.sock.getsockname()[1]
        # The render (400 kB) waits in the server for a client that does not read: the kernel
        # takes what its send buffer holds and no more.
        deadline = time.monotonic() + 10
        while (sent := kernel_send_buffer(srv.port, client_port))[1] == 0:
            assert time.monotonic() < deadline, "the render never reached the socket"
            time.sleep(0.02)
        tb, send_q = sent
        # ws_max_pending_bytes (4 MiB) asks for 64 KiB, which Linux doubles; autotuning would
        # have let it grow to megabytes on loopback.
        assert tb <= 2 * 64 * 1024, tb
        assert send_q <= tb, (send_q, tb)
    finally:
        stalled.close()
    assert srv.request("GET", "/healthz").status == 200
