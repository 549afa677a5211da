"""The change feed, GET /api/changes: what was created, changed or deleted, in commit order,
followed from any point, across restarts; bad input and a reader from before the retention."""
import threading

import pytest

from harness import assert_problem

NO_DEMOS = ("--set", "panels.demos=false")
COUNTER = (
    "def on_action(action, payload, storage):\n"
    "    storage['hits']['n'] = storage['hits'].get('n', 0) + 1\n"
)


def changes(srv, after=0, limit=None):
    path = f"/api/changes?after={after}" + (f"&limit={limit}" if limit else "")
    res = srv.request("GET", path)
    assert res.status == 200, res
    return res.body


def follow(srv, after=0, limit=1000):
    """Every change after `after`, page by page, and the number to ask after next."""
    out = []
    while True:
        page = changes(srv, after, limit)
        out += page["changes"]
        if page["next"] == after:
            return out, after
        after = page["next"]


def test_the_feed_lists_creates_changes_and_deletes_in_commit_order(server):
    srv = server(*NO_DEMOS)
    # The server's own first-start record takes a number but is not listed.
    fresh = changes(srv)
    assert fresh["changes"] == [] and fresh["next"] == fresh["last"]
    assert srv.request("POST", "/api/storages", {"id": "a", "data": {}}).status == 201
    assert srv.request("POST", "/api/storages", {"id": "b", "data": {}}).status == 201
    assert srv.request("PATCH", "/api/storages/a", {"data": {"x": 1}}).status == 200
    assert srv.request("DELETE", "/api/storages/b").status == 200
    res = srv.request("POST", "/api/panels", {"id": "p", "storage_ids": ["hits"],
                                              "template": "{{ hits.n }}", "handler": COUNTER})
    assert res.status == 201, res
    assert srv.request("POST", "/api/panels/p/action", {"action": "go"}).status == 200

    seen, last = follow(srv)
    assert [(c["kind"], c["id"], c["deleted"]) for c in seen] == [
        ("storage", "a", False), ("storage", "b", False), ("storage", "a", False),
        ("storage", "b", True),
        # a new panel creates the storages it names, then itself
        ("storage", "hits", False), ("panel", "p", False),
        ("storage", "hits", False)]
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert last == changes(srv)["last"] >= seqs[-1]
    # Caught up: nothing more, and `next` stays where it is.
    caught_up = changes(srv, last)
    assert (caught_up["changes"], caught_up["next"], caught_up["last"]) == ([], last, last)


def test_a_follower_pages_through_and_resumes_after_a_restart(server):
    srv = server(*NO_DEMOS)
    for i in range(5):
        assert srv.request("POST", "/api/storages", {"id": f"s{i}", "data": {}}).status == 201
    one_by_one, last = follow(srv, 0, limit=1)
    assert [c["id"] for c in one_by_one] == [f"s{i}" for i in range(5)]
    srv.stop()
    srv.restart()
    assert srv.request("PATCH", "/api/storages/s3", {"data": {"n": 1}}).status == 200
    newer, _ = follow(srv, last)
    assert [(c["id"], c["deleted"]) for c in newer] == [("s3", False)]
    assert newer[0]["seq"] > last


def test_concurrent_writers_each_show_once_per_commit_in_rising_order(server):
    srv = server(*NO_DEMOS)
    ids = [f"w{i}" for i in range(8)]
    for id in ids:
        assert srv.request("POST", "/api/storages", {"id": id, "data": {}}).status == 201
    _, start = follow(srv)
    failures = []

    def writer(id):
        client = srv.client()
        for n in range(40):
            res = client.request("PATCH", f"/api/storages/{id}", {"data": {"n": n}})
            if res.status != 200:
                failures.append(res)
        client.close()

    threads = [threading.Thread(target=writer, args=(id,)) for id in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    seen, _ = follow(srv, start, limit=7)
    seqs = [c["seq"] for c in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Writes queued on one storage may share a commit (one change); each writer's last write
    # is in the feed, and nothing else was.
    assert {c["id"] for c in seen} == set(ids)
    assert all(1 <= sum(c["id"] == id for c in seen) <= 40 for id in ids)


def test_a_reader_from_before_the_retention_is_told_410_and_where_to_go_on(server):
    srv = server(*NO_DEMOS, "--set", "storage.change_retention=1000")
    assert srv.request("POST", "/api/storages", {"id": "busy", "data": {}}).status == 201
    client = srv.client()
    for n in range(1500):
        assert client.request("PATCH", "/api/storages/busy", {"data": {"n": n}}).status == 200
    client.close()
    res = srv.request("GET", "/api/changes?after=0")
    assert_problem(res, 410, "gone")
    assert "no longer kept" in res.body["detail"]
    recent = srv.request("GET", "/api/changes?after=1400&limit=1000")
    assert recent.status == 200, recent
    assert [c["seq"] for c in recent.body["changes"]] == list(range(1401, recent.body["last"] + 1))


@pytest.mark.parametrize("query,detail", [
    ("after=abc", "after must be a change number"),
    ("after=-1", "after must be a change number"),
    ("limit=0", "limit must be a whole number from 1 to 1000"),
    ("limit=1001", "limit must be a whole number from 1 to 1000"),
    ("after=999999", "beyond the newest change"),
    ("after=9223372036854775808", "after must be a change number"),
])
def test_bad_after_or_limit_is_400_naming_what_is_wrong(server, query, detail):
    srv = server(*NO_DEMOS)
    res = srv.request("GET", f"/api/changes?{query}")
    assert_problem(res, 400, "invalid_argument")
    assert detail in res.body["detail"]


def test_the_feed_names_its_sequence_and_a_reader_of_another_one_is_told_410(server):
    srv = server(*NO_DEMOS)
    first = changes(srv)
    assert len(first["sequence"]) == 32
    srv.stop()
    srv.restart()
    assert changes(srv)["sequence"] == first["sequence"]  # the same store, the same sequence
    ok = srv.request("GET", f"/api/changes?after=0&sequence={first['sequence']}")
    assert ok.status == 200, ok
    other = server(*NO_DEMOS)  # a store made anew: its numbers are not the first one's
    assert changes(other)["sequence"] != first["sequence"]
    res = other.request("GET", f"/api/changes?after=0&sequence={first['sequence']}")
    assert_problem(res, 410, "gone")
    assert "not this server's" in res.body["detail"]
