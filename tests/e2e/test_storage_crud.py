"""The storage REST API as a client uses it: create, read, replace, merge, delete, list."""
from datetime import datetime

import pytest

from harness import assert_problem


def parse_time(text):
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create(srv, id, data):
    res = srv.request("POST", "/api/storages", {"id": id, "data": data})
    assert res.status == 201, res
    return res.body


def test_post_creates_a_storage_at_version_1_with_an_etag(server):
    srv = server()
    res = srv.request("POST", "/api/storages", {"id": "s1", "data": {"a": 1, "b": [1, "x"]}})
    assert res.status == 201, res
    assert res.headers["Content-Type"] == "application/json"
    assert res.headers["ETag"] == '"1"'
    body = res.body
    assert set(body) == {"id", "data", "version", "created_at", "updated_at"}
    assert body["id"] == "s1"
    assert body["data"] == {"a": 1, "b": [1, "x"]}
    assert body["version"] == 1
    assert parse_time(body["updated_at"]) >= parse_time(body["created_at"])


def test_post_without_data_creates_an_empty_object(server):
    srv = server()
    assert create(srv, "empty", {})["data"] == {}
    res = srv.request("POST", "/api/storages", {"id": "nodata"})
    assert res.status == 201, res
    assert res.body["data"] == {} and res.body["version"] == 1
    assert srv.request("GET", "/api/storages/nodata").body["data"] == {}


def test_get_returns_the_whole_storage_and_its_etag(server):
    srv = server()
    created = create(srv, "g", {"nested": {"x": [1, 2, {"y": None}]}, "s": "é✓", "f": 1.5})
    res = srv.request("GET", "/api/storages/g")
    assert res.status == 200, res
    assert res.headers["ETag"] == '"1"'
    assert res.body == created


def test_timestamps_are_iso8601_utc_and_updated_at_moves_forward(server):
    srv = server()
    created = create(srv, "t", {"a": 1})
    replaced = srv.request("PUT", "/api/storages/t", {"data": {"a": 2}}).body
    assert replaced["created_at"] == created["created_at"]
    assert parse_time(replaced["updated_at"]) >= parse_time(created["updated_at"])
    for stamp in (replaced["created_at"], replaced["updated_at"]):
        assert len(stamp) == len("2026-01-01T00:00:00.000Z"), stamp
        assert parse_time(stamp).utcoffset().total_seconds() == 0


def test_put_replaces_the_whole_data_and_increments_the_version(server):
    srv = server()
    create(srv, "p", {"a": 1, "b": 2})
    res = srv.request("PUT", "/api/storages/p", {"data": {"c": 3}})
    assert res.status == 200, res
    assert res.body["data"] == {"c": 3}
    assert res.body["version"] == 2
    assert res.headers["ETag"] == '"2"'
    assert srv.request("GET", "/api/storages/p").body["data"] == {"c": 3}


def test_patch_merges_top_level_keys_removes_nulls_and_replaces_nested_objects(server):
    srv = server()
    create(srv, "m", {"keep": 1, "change": 1, "drop": 1, "obj": {"x": 1, "y": 2}})
    res = srv.request("PATCH", "/api/storages/m",
                      {"data": {"change": 2, "drop": None, "obj": {"z": 3}, "new": [1]}})
    assert res.status == 200, res
    expected = {"keep": 1, "change": 2, "obj": {"z": 3}, "new": [1]}
    assert res.body["data"] == expected
    assert res.body["version"] == 2
    assert res.headers["ETag"] == '"2"'
    assert srv.request("GET", "/api/storages/m").body["data"] == expected


def test_delete_answers_success_and_the_storage_is_gone(server):
    srv = server()
    create(srv, "d", {"a": 1})
    res = srv.request("DELETE", "/api/storages/d")
    assert res.status == 200, res
    assert res.body == {"success": True}
    assert_problem(srv.request("GET", "/api/storages/d"), 404, "not_found")
    assert srv.request("GET", "/api/storages").body["storages"] == []


@pytest.mark.parametrize("method,body", [("GET", None), ("PUT", {"data": {}}),
                                         ("PATCH", {"data": {}}), ("DELETE", None)])
def test_a_missing_storage_is_404_and_is_not_created(server, method, body):
    srv = server()
    assert_problem(srv.request(method, "/api/storages/ghost", body), 404, "not_found")
    assert srv.request("GET", "/api/storages").body["storages"] == []


def test_creating_an_existing_id_is_409_and_keeps_the_data(server):
    srv = server()
    create(srv, "dup", {"a": 1})
    assert_problem(srv.request("POST", "/api/storages", {"id": "dup", "data": {"b": 2}}),
                   409, "conflict")
    res = srv.request("GET", "/api/storages/dup")
    assert res.body["data"] == {"a": 1} and res.body["version"] == 1


def test_ids_may_use_letters_digits_dot_dash_underscore_up_to_128_chars(server):
    srv = server()
    for id in ["A-z_0.9", "x" * 128, "-", "..."]:
        create(srv, id, {"id": id})
        assert srv.request("GET", f"/api/storages/{id}").body["data"] == {"id": id}


# --- listing ---------------------------------------------------------------------------------

def test_listing_shows_id_version_and_updated_at_of_each_storage(server):
    srv = server()
    assert srv.request("GET", "/api/storages").body == {"storages": [], "next_after": None}
    create(srv, "b", {})
    updated = srv.request("PATCH", "/api/storages/b", {"data": {"x": 1}}).body
    create(srv, "a", {})
    res = srv.request("GET", "/api/storages")
    assert res.status == 200, res
    assert res.body["next_after"] is None
    assert [s["id"] for s in res.body["storages"]] == ["a", "b"]
    b = res.body["storages"][1]
    assert set(b) == {"id", "version", "updated_at"}
    assert b["version"] == 2 and b["updated_at"] == updated["updated_at"]


@pytest.mark.parametrize("count,limit", [(25, 7), (25, 5), (3, 1000)])
def test_paging_with_limit_and_after_visits_every_id_once_in_order(server, count, limit):
    srv = server()
    ids = [f"id-{n:03d}" for n in range(count)]
    for id in reversed(ids):
        create(srv, id, {})
    seen, after, pages = [], None, 0
    while True:
        query = f"?limit={limit}" + (f"&after={after}" if after else "")
        page = srv.request("GET", "/api/storages" + query)
        assert page.status == 200, page
        items = [s["id"] for s in page.body["storages"]]
        assert 1 <= len(items) <= limit
        seen += items
        pages += 1
        after = page.body["next_after"]
        if after is None:
            break
        assert after == items[-1]
    assert seen == ids
    assert pages == -(-count // limit)


def test_listing_after_an_id_starts_strictly_after_it_even_if_it_does_not_exist(server):
    srv = server()
    for id in ["a", "a-", "aa", "b"]:
        create(srv, id, {})
    ids = lambda q: [s["id"] for s in srv.request("GET", "/api/storages" + q).body["storages"]]
    assert ids("?after=a") == ["a-", "aa", "b"]
    assert ids("?after=a0") == ["aa", "b"]
    assert ids("?after=b") == []


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=", "limit=-1",
                                   "limit=1.5", "limit=%zz", "after=a%20b", "after=%2F",
                                   "after=" + "x" * 129, "after=%zz"])
def test_a_bad_limit_or_after_is_rejected_with_400(server, query):
    srv = server()
    create(srv, "a", {})
    assert_problem(srv.request("GET", "/api/storages?" + query), 400, "invalid_argument")


def test_head_answers_like_get_without_a_body_and_the_connection_stays_usable(server):
    srv = server()
    assert srv.request("POST", "/api/storages", {"id": "h", "data": {"a": 1}}).status == 201
    client = srv.client()
    head = client.request("HEAD", "/api/storages/h")
    assert head.status == 200
    assert head.headers["ETag"] == '"1"'
    assert head.raw == b""
    get = client.request("GET", "/api/storages/h")  # same keep-alive connection
    assert get.status == 200 and get.body["data"] == {"a": 1}
    assert int(head.headers["Content-Length"]) == len(get.raw)
    client.close()


def test_a_storage_created_again_continues_from_its_deleted_version(server):
    srv = server()
    create(srv, "r", {"n": 1})
    srv.request("PATCH", "/api/storages/r", {"data": {"n": 2}})
    assert srv.request("DELETE", "/api/storages/r").status == 200
    again = create(srv, "r", {"n": 1})
    assert again["version"] == 3, again
    # A client that read the old storage at version 1 or 2 cannot write over the new one.
    for stale in ('"1"', '"2"'):
        res = srv.request("PUT", "/api/storages/r", {"data": {"n": 9}}, {"If-Match": stale})
        assert_problem(res, 412, "precondition_failed")
    # The tombstone survives a restart, and a storage that never existed still starts at 1.
    assert srv.request("DELETE", "/api/storages/r", None, {"If-Match": '"3"'}).status == 200
    srv.restart()
    assert create(srv, "r", {})["version"] == 4
    assert create(srv, "fresh", {})["version"] == 1
    srv.restart()
    assert srv.request("GET", "/api/storages/r").body["version"] == 4
