"""The WebSocket protocol itself (RFC 6455) as /ws speaks it, seen from a raw socket: the
upgrade's refusals, pings, fragments, frames sent along with the request, the closing handshake,
the close codes of protocol violations, close 1001 at shutdown, and whole frames in order for a
client that reads slowly (the server's partial writes)."""
import json
import signal
import struct
import time

import pytest

from harness import wait_until
from live_client import RawWebSocket, client_frame, close_code
from test_live import NO_DEMOS, counter, create_panel, create_storage, ws_metric_total

SUBSCRIBE_P = json.dumps({"type": "subscribe", "panel": "p"}).encode()
PING, PONG, CLOSE, TEXT, CONTINUATION = 0x9, 0xA, 0x8, 0x1, 0x0


@pytest.fixture
def srv(server):
    return server(*NO_DEMOS)


def upgraded(srv, **kw):
    raw = RawWebSocket(srv, **kw)
    status, headers = raw.handshake()
    assert status == 101, (status, headers)
    return raw


def answers_ping(srv, payload):
    """A new connection answers a ping with a pong carrying the same payload."""
    raw = upgraded(srv)
    try:
        raw.send_raw(client_frame(payload, opcode=PING))
        return raw.frame() == (PONG, True, payload)
    finally:
        raw.close()


def test_a_ping_is_answered_with_a_pong_carrying_its_payload(srv):
    assert answers_ping(srv, b"are you there")


def test_a_close_from_the_client_is_answered_with_its_code_and_the_connection_ends(srv):
    raw = upgraded(srv)
    try:
        wait_until(lambda: ws_metric_total(srv, "tessera_ws_connections") == 1, 10,
                   "the connection in the metrics")
        raw.send_raw(client_frame(struct.pack("!H", 1000) + b"bye", opcode=CLOSE))
        opcode, fin, payload = raw.frame()
        assert (opcode, fin, close_code(payload)) == (CLOSE, True, 1000), payload
        assert raw.closed_by_server()
    finally:
        raw.close()
    wait_until(lambda: ws_metric_total(srv, "tessera_ws_connections") == 0, 10,
               "the connection gone from the metrics")


@pytest.mark.parametrize("frame, code", [
    (client_frame(SUBSCRIBE_P, masked=False), 1002),
    (client_frame(b"\xc3\x28"), 1007),
    (client_frame(b"x", opcode=0x3), 1002),
    (client_frame(b"x", opcode=CONTINUATION), 1002),
    (client_frame(b"p" * 126, opcode=PING), 1002),
    (client_frame(b"p", opcode=PING, fin=False), 1002),
    (client_frame(struct.pack("!H", 1005), opcode=CLOSE), 1002),
], ids=["unmasked", "text-not-utf8", "unknown-opcode", "stray-continuation", "long-ping",
        "fragmented-ping", "reserved-close-code"])
def test_a_protocol_violation_gets_the_close_code_of_the_rfc_and_the_server_keeps_serving(
        srv, frame, code):
    raw = upgraded(srv)
    try:
        raw.send_raw(frame)
        opcode, _, payload = raw.frame()
        assert opcode == CLOSE and close_code(payload) == code, payload
        assert raw.closed_by_server()
    finally:
        raw.close()
    assert srv.request("GET", "/healthz").status == 200
    assert answers_ping(srv, b"still there?")


def test_a_silent_client_is_pinged_at_half_the_idle_timeout_and_closed_at_the_whole(server):
    srv = server(*NO_DEMOS, "--set", "server.ws_idle_timeout_ms=1000")
    raw = upgraded(srv)
    try:
        start = time.monotonic()
        assert raw.frame() == (PING, True, b"")
        pinged = time.monotonic() - start
        opcode, _, payload = raw.frame()
        closed = time.monotonic() - start
        assert opcode == CLOSE and close_code(payload) == 1001, payload
        # Half of 1 s, then the whole; the upper bounds leave room for a loaded machine.
        assert 0.4 <= pinged <= 0.9 and 0.9 <= closed <= 1.8, (pinged, closed)
        assert raw.closed_by_server()
    finally:
        raw.close()


def test_a_client_that_answers_pings_stays_connected_past_the_idle_timeout(server):
    srv = server(*NO_DEMOS, "--set", "server.ws_idle_timeout_ms=1000")
    counter(srv)
    raw = upgraded(srv)
    try:
        pings, until = 0, time.monotonic() + 2.5
        while time.monotonic() < until:
            opcode, _, payload = raw.frame()
            assert opcode == PING, (opcode, payload)
            raw.send_raw(client_frame(payload, opcode=PONG))
            pings += 1
        assert 3 <= pings <= 6, pings  # one every 0.5 s for 2.5 s
        raw.send_json({"type": "subscribe", "panel": "p"})
        assert raw.message()["html"] == "p:n=0"
    finally:
        raw.close()


def test_a_message_over_the_body_limit_is_refused_with_1009_from_its_header_alone(server):
    srv = server(*NO_DEMOS, "--set", "server.max_body_bytes=4096")
    raw = upgraded(srv)
    try:
        raw.send_raw(client_frame(b"x" * 100_000)[:20])  # the header and a little payload
        opcode, _, payload = raw.frame()
        assert opcode == CLOSE and close_code(payload) == 1009, payload
    finally:
        raw.close()


def test_a_fragmented_message_with_a_ping_between_its_fragments_is_understood(srv):
    counter(srv)
    raw = upgraded(srv)
    try:
        raw.send_raw(client_frame(SUBSCRIBE_P[:5], fin=False) +
                     client_frame(b"between", opcode=PING) +
                     client_frame(SUBSCRIBE_P[5:12], opcode=CONTINUATION, fin=False) +
                     client_frame(SUBSCRIBE_P[12:], opcode=CONTINUATION))
        assert raw.frame() == (PONG, True, b"between")
        msg = raw.message()
        assert msg["type"] == "render" and msg["html"] == "p:n=0", msg
    finally:
        raw.close()


def test_frames_sent_in_the_same_write_as_the_upgrade_request_are_read(srv):
    counter(srv)
    raw = RawWebSocket(srv, early=client_frame(SUBSCRIBE_P))
    try:
        status, _ = raw.handshake()
        assert status == 101
        msg = raw.message()
        assert msg["type"] == "render" and msg["html"] == "p:n=0", msg
    finally:
        raw.close()


@pytest.mark.parametrize("version, key, status", [
    ("8", None, 426),
    ("13", "", 400),
    ("13", "not a key", 400),
])
def test_an_upgrade_with_a_wrong_version_or_key_is_refused(srv, version, key, status):
    raw = RawWebSocket(srv, version=version, key=key)
    try:
        got, headers = raw.handshake()
        assert got == status, (got, headers)
        if status == 426:
            assert headers["sec-websocket-version"] == "13", headers
    finally:
        raw.close()


def test_at_shutdown_every_open_connection_gets_close_1001(srv):
    counter(srv)
    clients = [upgraded(srv) for _ in range(3)]
    try:
        for raw in clients:
            raw.send_json({"type": "subscribe", "panel": "p"})
            assert raw.message()["html"] == "p:n=0"
        srv.proc.send_signal(signal.SIGTERM)
        for raw in clients:
            opcode, _, payload = raw.frame()
            assert opcode == CLOSE and close_code(payload) == 1001, payload
    finally:
        for raw in clients:
            raw.close()
    assert srv.proc.wait(timeout=30) == 0, srv.stderr()


def test_at_shutdown_an_action_in_flight_gets_its_result_before_close_1001(srv):
    create_storage(srv, "c", {"n": 0})
    create_panel(srv, "slow", ["c"], "n={{ c.n }}",
                 handler="def on_action(action, payload, storage):\n"
                         "    time.sleep(1)\n"
                         "    storage['c']['n'] = 1\n")
    raw = upgraded(srv)
    try:
        raw.send_json({"type": "action", "panel": "slow", "action": "go", "ref": "r1"})
        wait_until(lambda: srv.metric("tessera_sandbox_workers", state="busy") >= 1, 10,
                   "the action running in the sandbox")
        srv.proc.send_signal(signal.SIGTERM)
        result = raw.message()
        assert result["type"] == "result" and result["ref"] == "r1" and result["ok"], result
        opcode, _, payload = raw.frame()
        assert opcode == CLOSE and close_code(payload) == 1001, payload
    finally:
        raw.close()
    assert srv.proc.wait(timeout=30) == 0, srv.stderr()
    srv.start()
    assert srv.request("GET", "/api/storages/c").body["data"] == {"n": 1}


def test_a_slow_reader_gets_whole_frames_in_version_order_ending_on_the_latest_render(srv):
    # 16 renders of 500 KB are more than the socket buffers hold (tcp_wmem's maximum is 4 MiB
    # by default), so the server's writes stop part-way through a frame and go on when the
    # client reads again.
    blob = "y" * 500_000
    create_storage(srv, "big", {"tag": "t0", "blob": blob})
    create_panel(srv, "huge", ["big"], "{{ big.tag }}:{{ big.blob }}")
    changes = 16
    raw = upgraded(srv, rcvbuf=4096, timeout=30)
    try:
        raw.send_json({"type": "subscribe", "panel": "huge"})
        for i in range(1, changes + 1):  # each one rendered (and so published) before the next
            res = srv.request("PATCH", "/api/storages/big", {"data": {"tag": f"t{i}"}})
            assert res.status == 200, res
            wait_until(lambda i=i: srv.request("GET", "/api/panels/huge/render")
                       .body["html"].startswith(f"t{i}:"), 10, f"the render of t{i}")
        versions, tags = [], []
        while not tags or tags[-1] != f"t{changes}":
            msg = raw.message()
            assert msg["type"] == "render" and msg["panel"] == "huge", str(msg)[:200]
            tag, _, rest = msg["html"].partition(":")
            assert rest == blob, f"render {tag} is not whole ({len(rest)} characters)"
            versions.append(msg["version"])
            tags.append(tag)
        # The first may already be a later state than the one subscribed to: the subscribe
        # render and the first change race, and an older render is never sent after a newer.
        assert versions == sorted(set(versions)), versions
        numbers = [int(tag[1:]) for tag in tags]
        assert numbers == sorted(set(numbers)), tags
    finally:
        raw.close()
