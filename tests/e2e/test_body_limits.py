"""Request bodies over server.max_body_bytes are refused with 413, however they arrive, and the
server keeps serving. Raw sockets, so the bytes on the wire are exactly the test's."""
import json
import socket

import pytest

from harness import assert_problem, read_head, read_response

MIB = 1 << 20


def padded_body(size):
    """A valid create body of exactly `size` bytes."""
    head, tail = b'{"id":"big","data":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def post_head(srv, length=None, extra=b""):
    head = (b"POST /api/storages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Content-Type: application/json\r\n" % srv.port)
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + extra + b"\r\n"


def assert_not_created(srv):
    assert_problem(srv.request("GET", "/api/storages/big"), 404, "not_found")
    assert srv.request("GET", "/healthz").status == 200


def test_a_body_over_1_mib_is_413_when_sent_whole(server):
    srv = server()
    body = padded_body(MIB + 1)
    assert_problem(srv.raw(post_head(srv, len(body)) + body), 413, "payload_too_large")
    assert_not_created(srv)


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_sent(server):
    srv = server()
    with socket.create_connection((srv.connect_host, srv.port), timeout=10) as sock:
        sock.sendall(post_head(srv, MIB + 1))
        res = read_response(sock.makefile("rb"))
    assert_problem(res, 413, "payload_too_large")
    assert res.headers.get("connection", "").lower() == "close"
    assert_not_created(srv)


def test_a_body_of_exactly_1_mib_is_accepted(server):
    srv = server()
    body = padded_body(MIB)
    res = srv.raw(post_head(srv, len(body)) + body)
    assert res.status == 201, res
    assert len(srv.request("GET", "/api/storages/big").body["data"]["pad"]) > MIB - 100


def chunked(body, size=64 * 1024):
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_is_413(server):
    srv = server()
    body = padded_body(MIB + 64 * 1024)
    res = srv.raw(post_head(srv, extra=b"Transfer-Encoding: chunked\r\n") + chunked(body))
    assert_problem(res, 413, "payload_too_large")
    assert_not_created(srv)


def test_a_chunked_body_under_the_limit_is_accepted(server):
    srv = server()
    body = padded_body(200_000)
    res = srv.raw(post_head(srv, extra=b"Transfer-Encoding: chunked\r\n") + chunked(body, 1000))
    assert res.status == 201, res
    assert srv.request("GET", "/api/storages/big").status == 200


@pytest.mark.parametrize("size,status", [(1000, 201), (1001, 413)])
def test_max_body_bytes_setting_moves_the_limit(server, size, status):
    srv = server("--set", "server.max_body_bytes=1000")
    body = padded_body(size)
    res = srv.raw(post_head(srv, len(body)) + body)
    assert res.status == status, res
    if status == 413:
        assert_problem(res, 413, "payload_too_large")
        assert_not_created(srv)


def test_a_chunked_body_over_a_small_limit_is_413(server):
    srv = server("--set", "server.max_body_bytes=1000")
    res = srv.raw(post_head(srv, extra=b"Transfer-Encoding: chunked\r\n") +
                  chunked(padded_body(1001), 100))
    assert_problem(res, 413, "payload_too_large")
    assert_not_created(srv)


def test_expect_100_continue_over_the_limit_gets_413_instead_of_continue(server):
    srv = server("--set", "server.max_body_bytes=1000")
    with socket.create_connection((srv.connect_host, srv.port), timeout=10) as sock:
        sock.sendall(post_head(srv, 5000, b"Expect: 100-continue\r\n"))
        res = read_response(sock.makefile("rb"))
    assert_problem(res, 413, "payload_too_large")
    assert_not_created(srv)


def test_expect_100_continue_within_the_limit_gets_continue_then_the_answer(server):
    srv = server()
    body = json.dumps({"id": "cont", "data": {"a": 1}}).encode()
    with socket.create_connection((srv.connect_host, srv.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        sock.sendall(post_head(srv, len(body), b"Expect: 100-continue\r\n"))
        status, _ = read_head(stream)
        assert status == 100
        sock.sendall(body)
        res = read_response(stream)
    assert res.status == 201, res
    assert res.body["data"] == {"a": 1}


def test_keep_alive_connection_serves_again_after_a_4xx_but_is_closed_after_a_413(server):
    srv = server("--set", "server.max_body_bytes=1000")
    with socket.create_connection((srv.connect_host, srv.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        bad = b'{"data":'
        sock.sendall(post_head(srv, len(bad)) + bad)
        assert_problem(read_response(stream), 400, "malformed_json")
        body = padded_body(1001)
        sock.sendall(post_head(srv, len(body)) + body)
        assert_problem(read_response(stream), 413, "payload_too_large")
        assert stream.read() == b""  # the server closed the connection
    assert srv.request("GET", "/healthz").status == 200
