"""Optimistic concurrency with If-Match, and concurrent writers to one storage."""

import pytest

from harness import assert_problem, run_together


@pytest.fixture
def srv(server):
    srv = server()
    assert srv.request("POST", "/api/storages", {"id": "s", "data": {"a": 1}}).status == 201
    assert srv.request("PATCH", "/api/storages/s", {"data": {"b": 2}}).status == 200
    return srv  # "s" is at version 2 with {"a": 1, "b": 2}


def assert_still(srv, version=2, data=None):
    res = srv.request("GET", "/api/storages/s")
    assert res.status == 200, res
    assert res.body["version"] == version, res
    assert res.body["data"] == (data if data is not None else {"a": 1, "b": 2}), res


WRITES = [("PUT", {"data": {"c": 3}}), ("PATCH", {"data": {"c": 3}}), ("DELETE", None)]


@pytest.mark.parametrize("method,body", WRITES)
@pytest.mark.parametrize("if_match", ['"2"', "2", "*", '"7", "2"', ' "2" '])
def test_a_matching_if_match_lets_the_write_through(srv, method, body, if_match):
    res = srv.request(method, "/api/storages/s", body, {"If-Match": if_match})
    assert res.status == 200, res
    if method == "DELETE":
        assert_problem(srv.request("GET", "/api/storages/s"), 404, "not_found")
    else:
        assert res.body["version"] == 3 and res.headers["ETag"] == '"3"'
        assert res.body["data"]["c"] == 3


@pytest.mark.parametrize("method,body", WRITES)
@pytest.mark.parametrize("if_match", ['"1"', '"3"', '"1", "3"', 'W/"2"'])
def test_a_stale_if_match_is_rejected_with_412_and_changes_nothing(srv, method, body, if_match):
    res = srv.request(method, "/api/storages/s", body, {"If-Match": if_match})
    problem = assert_problem(res, 412, "precondition_failed")
    assert "2" in problem["detail"]  # says which version the storage is at
    assert_still(srv)


@pytest.mark.parametrize("method,body", WRITES)
@pytest.mark.parametrize("if_match", ["abc", '"abc"', '"2', '"2",', "2.0", '"-"', "W/"])
def test_a_malformed_if_match_is_400_and_changes_nothing(srv, method, body, if_match):
    res = srv.request(method, "/api/storages/s", body, {"If-Match": if_match})
    assert_problem(res, 400, "invalid_argument")
    assert_still(srv)


def test_the_etag_of_a_read_is_what_if_match_expects(srv):
    etag = srv.request("GET", "/api/storages/s").headers["ETag"]
    res = srv.request("PUT", "/api/storages/s", {"data": {}}, {"If-Match": etag})
    assert res.status == 200, res
    assert_problem(srv.request("PUT", "/api/storages/s", {"data": {"x": 1}}, {"If-Match": etag}),
                   412, "precondition_failed")
    assert_still(srv, 3, {})


@pytest.mark.parametrize("mode", [[], ["--sync"]], ids=["wal", "fsync"])
def test_100_concurrent_patches_of_distinct_keys_all_land(server, mode):
    srv = server(*mode)
    assert srv.request("POST", "/api/storages", {"id": "hot", "data": {}}).status == 201

    def patch(i, barrier):
        client = srv.client(timeout=30)
        client.conn.connect()
        barrier.wait(timeout=30)
        res = client.request("PATCH", "/api/storages/hot", {"data": {f"k{i}": i}})
        client.close()
        return res.status, res.body["version"]

    results = run_together(100, patch, what="a writer")
    assert all(isinstance(r, tuple) and r[0] == 200 for r in results), results
    assert sorted(v for _, v in results) == list(range(2, 102))  # each saw its own version
    final = srv.request("GET", "/api/storages/hot").body
    assert final["version"] == 101
    assert final["data"] == {f"k{i}": i for i in range(100)}


@pytest.mark.parametrize("mode", [[], ["--sync"]], ids=["wal", "fsync"])
def test_of_two_writers_with_the_same_if_match_exactly_one_wins_every_time(server, mode):
    srv = server(*mode)
    assert srv.request("POST", "/api/storages", {"id": "race", "data": {}}).status == 201
    clients = [srv.client(), srv.client()]
    for round in range(1, 21):
        def put(i, barrier):
            barrier.wait(timeout=30)
            res = clients[i].request("PUT", "/api/storages/race", {"data": {"winner": i}},
                                     {"If-Match": f'"{round}"'})
            return res.status, res.body

        results = run_together(2, put, what="a writer")
        statuses = sorted(r[0] for r in results)
        assert statuses == [200, 412], (round, results)
        winner = next(i for i, r in enumerate(results) if r[0] == 200)
        assert results[1 - winner][1]["code"] == "precondition_failed"
        now = srv.request("GET", "/api/storages/race").body
        assert now["version"] == round + 1 and now["data"] == {"winner": winner}, (round, now)
    for c in clients:
        c.close()


@pytest.mark.parametrize("mode", [[], ["--sync"]], ids=["wal", "fsync"])
def test_of_ten_concurrent_creates_of_one_id_exactly_one_succeeds(server, mode):
    srv = server(*mode)

    def create(i, barrier):
        client = srv.client(timeout=30)
        client.conn.connect()
        barrier.wait(timeout=30)
        res = client.request("POST", "/api/storages", {"id": "once", "data": {"by": i}})
        client.close()
        return res.status, res.body

    results = run_together(10, create, what="a writer")
    statuses = sorted(r[0] for r in results)
    assert statuses == [201] + [409] * 9, results
    winner = next(i for i, r in enumerate(results) if r[0] == 201)
    stored = srv.request("GET", "/api/storages/once").body
    assert stored["version"] == 1 and stored["data"] == {"by": winner}
