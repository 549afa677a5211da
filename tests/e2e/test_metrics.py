"""/metrics as Prometheus scrapes it, actor passivation seen through it, and the health probes."""
import subprocess

from harness import wait_until

ITEM = "/api/storages/{id}"


def test_healthz_says_ok(server):
    res = server().request("GET", "/healthz")
    assert res.status == 200 and res.body == {"status": "ok"}, res


def test_readyz_says_ready(server):
    res = server().request("GET", "/readyz")
    assert res.status == 200 and res.body == {"status": "ready"}, res


def test_metrics_is_text_that_promtool_accepts(server):
    srv = server()
    srv.request("POST", "/api/storages", {"id": "a", "data": {}})
    srv.request("GET", "/api/storages/a")
    srv.request("GET", "/api/storages/missing")
    srv.request("GET", "/nope")
    srv.request("PATCH", "/api/storages")
    res = srv.request("GET", "/metrics")
    assert res.status == 200
    assert res.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=res.raw,
                           capture_output=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_http_requests_are_counted_by_route_template_method_and_status(server):
    srv = server()
    srv.request("POST", "/api/storages", {"id": "a", "data": {}})
    for _ in range(3):
        assert srv.request("GET", "/api/storages/a").status == 200
    for id in ("x", "y"):
        assert srv.request("GET", f"/api/storages/{id}").status == 404
    m = srv.metrics()
    count = lambda **l: m.get(("tessera_http_requests_total", frozenset(l.items())), 0)
    assert count(route=ITEM, method="GET", status="200") == 3
    assert count(route=ITEM, method="GET", status="404") == 2
    assert count(route="/api/storages", method="POST", status="201") == 1
    durations = ("tessera_http_request_duration_seconds_count",
                 frozenset({"route": ITEM, "method": "GET"}.items()))
    assert m[durations] == 5
    assert ("tessera_http_request_duration_seconds_bucket",
            frozenset({"route": ITEM, "method": "GET", "le": "+Inf"}.items())) in m
    # Ids never become label values: the number of series does not grow with the ids used.
    assert not any(v == "x" or v == "/api/storages/x" for key in m for _, v in key[1])


def test_commits_count_every_write_and_only_writes(server):
    srv = server()
    base = srv.metric("tessera_storage_commits_total")
    writes_before = srv.metric("tessera_rocksdb_write_duration_seconds_count")
    writes = [("POST", "/api/storages", {"id": "c", "data": {}}),
              ("PATCH", "/api/storages/c", {"data": {"a": 1}}),
              ("PUT", "/api/storages/c", {"data": {"b": 1}}),
              ("POST", "/api/storages", {"id": "d"}),
              ("DELETE", "/api/storages/d", None)]
    for method, path, body in writes:
        assert srv.request(method, path, body).status in (200, 201)
    failures = [("GET", "/api/storages/c", None),  # a read
                ("PUT", "/api/storages/c", {"data": {}}, {"If-Match": '"1"'}),  # 412
                ("POST", "/api/storages", {"id": "c"}),  # 409
                ("PATCH", "/api/storages/nope", {"data": {}}),  # 404
                ("PATCH", "/api/storages/c", b"{")]  # 400
    for method, path, body, *headers in failures:
        srv.request(method, path, body, *headers)
    assert srv.metric("tessera_storage_commits_total") == base + len(writes)
    assert srv.metric("tessera_rocksdb_write_duration_seconds_count") == writes_before + len(writes)
    assert srv.metric("tessera_rocksdb_write_duration_seconds_bucket", le="+Inf") == \
        writes_before + len(writes)
    assert srv.metric("tessera_rocksdb_write_duration_seconds_sum") > 0


def test_actor_activations_and_live_actors_are_counted_by_kind(server):
    srv = server()
    assert ("tessera_actors_live", frozenset({("kind", "storage")})) in srv.metrics()
    assert srv.metric("tessera_actors_live", kind="storage") == 0
    for n in range(3):
        srv.request("POST", "/api/storages", {"id": f"s{n}"})
        srv.request("GET", f"/api/storages/s{n}")
    assert srv.metric("tessera_actors_live", kind="storage") == 3
    assert srv.metric("tessera_actor_activations_total", kind="storage") == 3
    assert srv.metric("tessera_actor_passivations_total", kind="storage") == 0


def test_idle_storages_are_passivated_and_reactivated_on_the_next_read(server):
    count = 50
    srv = server("--set", "storage.idle_passivate_ms=100")
    for n in range(count):
        res = srv.request("POST", "/api/storages", {"id": f"p{n}", "data": {"n": n}})
        assert res.status == 201, res
    assert srv.metric("tessera_actor_activations_total", kind="storage") == count

    seen = {}

    def all_passivated():
        seen["live"] = srv.metric("tessera_actors_live", kind="storage")
        seen["passivated"] = srv.metric("tessera_actor_passivations_total", kind="storage")
        # Actors only leave the live set by passivation here; anything else is a loss.
        assert seen["live"] + seen["passivated"] >= count, f"actors vanished: {seen}"
        return seen["live"] == 0 and seen["passivated"] >= count

    wait_until(all_passivated, timeout=10,
               message=lambda: f"every storage actor to be passivated (last seen: {seen})")
    for n in range(count):
        res = srv.request("GET", f"/api/storages/p{n}")
        assert res.status == 200 and res.body["data"] == {"n": n} and res.body["version"] == 1
    assert srv.metric("tessera_actor_activations_total", kind="storage") == 2 * count
    res = srv.request("PATCH", "/api/storages/p0", {"data": {"more": True}})
    assert res.body["version"] == 2 and res.body["data"] == {"n": 0, "more": True}


def test_passivating_one_idle_storage_leaves_the_others_served(server):
    srv = server("--set", "storage.idle_passivate_ms=100")
    assert srv.request("POST", "/api/storages", {"id": "idle", "data": {"a": 1}}).status == 201
    wait_until(lambda: srv.metric("tessera_actor_passivations_total", kind="storage") >= 1,
               timeout=10, message="the idle storage to be passivated")
    res = srv.request("GET", "/api/storages/idle")
    assert res.status == 200 and res.body["data"] == {"a": 1}, res
    assert srv.request("POST", "/api/storages", {"id": "next"}).status == 201
    assert srv.request("GET", "/readyz").status == 200


def test_methods_clients_invent_share_one_metrics_label(server):
    srv = server()
    for n in range(5):
        res = srv.raw(f"INVENTED{n} /api/storages HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        assert res.status == 405, res
    text = srv.request("GET", "/metrics").raw.decode()
    assert "INVENTED" not in text
    assert srv.metric("tessera_http_requests_total", method="other", route="/api/storages",
                      status="405") == 5


def test_reads_and_writes_of_missing_ids_do_not_keep_actors_alive(server):
    srv = server()  # default idle passivation: 30 s
    for n in range(100):
        assert srv.request("GET", f"/api/storages/missing-{n}").status == 404
        assert srv.request("PATCH", f"/api/storages/gone-{n}", {"data": {}}).status == 404
    wait_until(lambda: srv.metric("tessera_actors_live", kind="storage") == 0, timeout=5,
               message="no live storage actors well before the 30 s idle period")
    assert srv.metric("tessera_actor_passivations_total", kind="storage") == 200
