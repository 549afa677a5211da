"""Every bad request gets a clear 4xx problem+json, changes nothing, and the server (and, unless
the body was refused unread, the connection) keeps serving."""
import http.client

import pytest

from harness import assert_problem


def nested(depth):
    """A JSON object nesting `depth` levels deep (counting itself)."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


# (name, body template with %s where POST puts its "id" field, status, code)
BAD_BODIES = [
    ("truncated json", b'{%s"data":{"a":1}', 400, "malformed_json"),
    ("trailing garbage", b'{%s"data":{}} x', 400, "malformed_json"),
    ("single quotes", b"{%s'data':{}}", 400, "malformed_json"),
    ("empty body", b"", 400, "malformed_json"),
    ("data is a string", b'{%s"data":"text"}', 400, "invalid_argument"),
    ("data is an array", b'{%s"data":[1,2]}', 400, "invalid_argument"),
    ("data is a number", b'{%s"data":5}', 400, "invalid_argument"),
    ("data is null", b'{%s"data":null}', 400, "invalid_argument"),
    ("body is an array", b'[{%s"data":{}}]', 400, "invalid_argument"),
    ("body is a string", b'"text"', 400, "invalid_argument"),
    ("unknown field", b'{%s"data":{},"extra":1}', 400, "invalid_argument"),
    ("invalid utf8 byte", b'{%s"data":{"k":"\xff"}}', 400, "invalid_utf8"),
    ("overlong utf8", b'{%s"data":{"k":"\xc0\xaf"}}', 400, "invalid_utf8"),
    ("utf8 surrogate", b'{%s"data":{"k":"\xed\xa0\x80"}}', 400, "invalid_utf8"),
    ("truncated utf8 in a key", b'{%s"data":{"\xe2\x82":1}}', 400, "invalid_utf8"),
    ("65 levels deep", b'{%s"data":' + nested(64).encode() + b"}", 400, "json_too_deep"),
    ("100000 open brackets", b'{%s"data":' + b"[" * 100_000, 400, "json_too_deep"),
]


def fill(template, id_field):
    return template % id_field if b"%s" in template else template


@pytest.fixture
def srv(server):
    srv = server()
    res = srv.request("POST", "/api/storages", {"id": "s", "data": {"a": 1}})
    assert res.status == 201, res
    return srv


def assert_unchanged(srv):
    res = srv.request("GET", "/api/storages/s")
    assert res.status == 200 and res.body["data"] == {"a": 1} and res.body["version"] == 1, res
    assert [s["id"] for s in srv.request("GET", "/api/storages").body["storages"]] == ["s"]


@pytest.mark.parametrize("name,template,status,code", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_a_bad_body_is_a_4xx_problem_and_changes_nothing(srv, method, name, template, status,
                                                         code):
    path, id_field = ("/api/storages", b'"id":"new",') if method == "POST" else \
        ("/api/storages/s", b"")
    client = srv.client()
    res = client.request(method, path, fill(template, id_field),
                         {"Content-Type": "application/json"})
    assert_problem(res, status, code)
    assert client.request("GET", "/healthz").status == 200  # same connection still serves
    client.close()
    assert_unchanged(srv)


@pytest.mark.parametrize("body", [{"data": {}}, {"id": 5, "data": {}}, {"id": None}])
def test_post_without_a_string_id_is_400(srv, body):
    assert_problem(srv.request("POST", "/api/storages", body), 400, "invalid_argument")
    assert_unchanged(srv)


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("body", [{}, {"id": "s", "data": {"b": 2}}])
def test_put_and_patch_need_exactly_a_data_field(srv, method, body):
    assert_problem(srv.request(method, "/api/storages/s", body), 400, "invalid_argument")
    assert_unchanged(srv)


def test_nesting_of_exactly_64_levels_is_accepted_by_default(srv):
    body = '{"id":"deep","data":' + nested(63) + "}"
    assert srv.request("POST", "/api/storages", body.encode()).status == 201


def test_max_json_depth_setting_moves_the_limit(server):
    srv = server("--set", "server.max_json_depth=5")
    ok = '{"id":"ok","data":' + nested(4) + "}"
    too_deep = '{"id":"deep","data":' + nested(5) + "}"
    assert srv.request("POST", "/api/storages", ok.encode()).status == 201
    assert_problem(srv.request("POST", "/api/storages", too_deep.encode()), 400, "json_too_deep")
    assert_problem(srv.request("GET", "/api/storages/deep"), 404, "not_found")


# --- ids -------------------------------------------------------------------------------------

BAD_PATH_IDS = ["a%20b", "x" * 129, "a%2Fb", "%C3%A9t%C3%A9", "%FF", "a%zz", "a*b"]
BAD_BODY_IDS = ["a b", "x" * 129, "a/b", "été", "", "a\u0000b", "../x"]


@pytest.mark.parametrize("id", BAD_PATH_IDS)
@pytest.mark.parametrize("method,body", [("GET", None), ("PUT", {"data": {}}),
                                         ("PATCH", {"data": {}}), ("DELETE", None)])
def test_a_bad_id_in_the_path_is_400_and_creates_nothing(srv, method, body, id):
    assert_problem(srv.request(method, f"/api/storages/{id}", body), 400, "invalid_argument")
    assert_unchanged(srv)
    assert srv.metric("tessera_actor_activations_total", kind="storage") == 1


@pytest.mark.parametrize("id", BAD_BODY_IDS, ids=range(len(BAD_BODY_IDS)))
def test_a_bad_id_in_a_post_body_is_400_and_creates_nothing(srv, id):
    assert_problem(srv.request("POST", "/api/storages", {"id": id, "data": {}}), 400,
                   "invalid_argument")
    assert_unchanged(srv)


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"1.5e999"])
def test_a_number_too_big_for_a_double_is_a_400_and_does_not_crash_the_server(srv, number):
    body = b'{"id":"huge","data":{"n":%s}}' % number
    try:
        res = srv.request("POST", "/api/storages", body)
    except (ConnectionError, http.client.HTTPException) as e:
        raise AssertionError(f"no answer ({e!r}); server stderr:\n{srv.stderr()[-500:]}")
    assert_problem(res, 400)
    assert_problem(srv.request("GET", "/api/storages/huge"), 404, "not_found")
    assert_unchanged(srv)


def test_request_headers_over_16_kib_get_a_431_problem(srv):
    res = srv.raw(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert_problem(res, 431)
    assert srv.request("GET", "/healthz").status == 200


@pytest.mark.parametrize("framing", [b"Content-Length: abc\r\n",
                                     b"Content-Length: 5\r\nContent-Length: 6\r\n"])
def test_a_malformed_content_length_is_400(srv, framing):
    res = srv.raw(b"POST /api/storages HTTP/1.1\r\nHost: t\r\n" + framing + b"\r\n{}")
    assert_problem(res, 400)
    assert_unchanged(srv)


def test_a_raw_space_in_the_request_line_is_400(srv):
    res = srv.raw(b"GET /api/storages/a b HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(res, 400)
    assert srv.request("GET", "/healthz").status == 200


# --- routes and methods ----------------------------------------------------------------------

@pytest.mark.parametrize("method,path,allowed", [
    ("POST", "/api/storages/s", {"GET", "PUT", "PATCH", "DELETE"}),
    ("PATCH", "/api/storages", {"GET", "POST"}),
    ("DELETE", "/api/storages", {"GET", "POST"}),
    ("BREW", "/api/storages/s", {"GET", "PUT", "PATCH", "DELETE"}),
    ("POST", "/healthz", {"GET"}),
])
def test_a_wrong_method_is_405_with_an_allow_header(srv, method, path, allowed):
    client = srv.client()
    res = client.request(method, path, {"id": "s", "data": {"x": 1}})
    assert_problem(res, 405, "method_not_allowed")
    assert {m.strip() for m in res.headers["Allow"].split(",")} == allowed
    assert client.request("GET", "/healthz").status == 200
    client.close()
    assert_unchanged(srv)


@pytest.mark.parametrize("path", ["/nope", "/ui", "/api", "/api/nope", "/api/storages/s/extra",
                                  "/API/storages", "/api/storages%2Fs"])
def test_an_unknown_route_is_404(srv, path):
    client = srv.client()
    assert_problem(client.request("GET", path), 404, "not_found")
    assert client.request("GET", "/healthz").status == 200
    client.close()
