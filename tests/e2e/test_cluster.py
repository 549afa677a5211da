"""A cluster of tessera nodes on one throwaway PostgreSQL: membership, the transport between
nodes, and the version fence (docs/architecture.md, "Cluster"). Every node runs with a 300 ms
heartbeat and a 1.5 s lease unless a test says otherwise: a lost node is found within about
two seconds, and a node slowed down by AddressSanitizer on two cores is not mistaken for one."""
import datetime
import signal
import subprocess
import threading
import time

import postgres
from harness import run_tessera, wait_until
from live_client import live, rest, run

HEARTBEAT_MS = 300
LEASE_MS = 1500


def cluster_args(url, name, heartbeat_ms=HEARTBEAT_MS, lease_ms=LEASE_MS, tls=None):
    args = ["--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}",
            "--set", "cluster.enabled=true", "--set", f"cluster.node_name={name}",
            "--set", "cluster.listen=127.0.0.1:0",
            "--set", f"cluster.heartbeat_ms={heartbeat_ms}",
            "--set", f"cluster.lease_ms={lease_ms}"]
    if tls:
        cert, key, ca = tls
        args += ["--set", f"cluster.tls_cert={cert}", "--set", f"cluster.tls_key={key}",
                 "--set", f"cluster.tls_ca={ca}"]
    return args


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_ca(directory, name):
    """A certificate authority: (its certificate, its key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, key = directory / f"{name}.pem", directory / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
            str(ca), "-days", "2", "-subj", f"/CN={name}")
    return ca, key


def node_certificate(directory, ca, name):
    """A node's (certificate, key, CA certificate) signed by `ca` (from make_ca)."""
    ca_pem, ca_key = ca
    cert, key, csr = (directory / f"{name}.pem", directory / f"{name}.key",
                      directory / f"{name}.csr")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
            "-CAcreateserial", "-out", str(cert), "-days", "2")
    return cert, key, ca_pem


def start_nodes(server, tmp_path, names, **options):
    url = postgres.shared().database_for(tmp_path / "cluster")
    return url, [server(*cluster_args(url, n, **options)) for n in names]


def members(node):
    res = node.request("GET", "/api/cluster")
    assert res.status == 200, res
    return res.body


def states(node):
    """{(name, generation): state} as `node` sees the cluster."""
    return {(m["name"], m["generation"]): m["state"] for m in members(node)["members"]}


def alive_names(node):
    return sorted(name for (name, _), state in states(node).items() if state == "alive")


def generation_of(node):
    return members(node)["generation"]


def leases(url, prefix):
    """{key: (owner, epoch)} of the cluster's leases whose key starts with `prefix`."""
    out = postgres.shared().psql(
        f"SELECT key, owner, epoch FROM tessera_leases WHERE key LIKE '{prefix}%'",
        database=url.split("=")[-1])
    rows = [line.split("|") for line in out.splitlines() if line]
    return {key: (owner, int(epoch)) for key, owner, epoch in rows}


def test_three_nodes_list_each_other_as_alive_members_with_their_addresses(server, tmp_path):
    _, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5,
                   lambda: f"{node.port}: {members(node)}")
    body = members(nodes[0])
    assert body["enabled"] is True and body["self"] == "a" and body["self_alive"] is True
    by_name = {m["name"]: m for m in body["members"]}
    for node, name in zip(nodes, "abc"):
        assert by_name[name]["reachable"] is True
        assert by_name[name]["http"] == f"127.0.0.1:{node.port}"
        assert by_name[name]["generation"] == generation_of(node)
        assert by_name[name]["address"].startswith("127.0.0.1:")
    assert len({m["generation"] for m in body["members"]}) == 3
    # Heartbeats move on.
    first = by_name["b"]["heartbeat_at"]
    wait_until(lambda: {m["name"]: m for m in members(nodes[0])["members"]}["b"]["heartbeat_at"]
               > first, 3, "b's heartbeat to move")
    for node in nodes:
        assert node.metric("tessera_cluster_members", state="alive") == 3


def test_a_node_killed_with_sigkill_is_declared_dead_by_exactly_one_survivor(server, tmp_path):
    _, (a, b, c) = start_nodes(server, tmp_path, ["a", "b", "c"])
    wait_until(lambda: alive_names(a) == ["a", "b", "c"], 5)
    c_generation = generation_of(c)
    before = [n.metric("tessera_cluster_members_declared_dead_total") for n in (a, b)]
    c.kill9()
    killed_at = time.monotonic()
    wait_until(lambda: states(a)[("c", c_generation)] == "dead", 5, lambda: states(a))
    found_after = time.monotonic() - killed_at
    assert found_after < LEASE_MS / 1000 + 1.0, found_after
    wait_until(lambda: states(b)[("c", c_generation)] == "dead", 2, lambda: states(b))
    declared = [n.metric("tessera_cluster_members_declared_dead_total") - was
                for n, was in zip((a, b), before)]
    assert sorted(declared) == [0, 1], declared
    assert alive_names(a) == ["a", "b"]


def test_a_paused_node_is_declared_dead_and_joins_again_as_a_new_member(server, tmp_path):
    _, (a, b, c) = start_nodes(server, tmp_path, ["a", "b", "c"])
    wait_until(lambda: alive_names(a) == ["a", "b", "c"], 5)
    old = generation_of(c)
    c.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: states(a)[("c", old)] == "dead", LEASE_MS / 1000 + 1.0,
                   lambda: states(a))
    finally:
        c.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: generation_of(c) != old, 5, "c to join again")
    new = generation_of(c)
    assert new > old
    wait_until(lambda: states(a).get(("c", new)) == "alive", 5, lambda: states(a))
    # The old run stays dead: a dead member never comes back.
    assert states(a)[("c", old)] == "dead"
    assert states(c)[("c", old)] == "dead"
    assert c.metric("tessera_cluster_rejoins_total") == 1
    assert "was declared dead while its heartbeat was late" in c.stderr()


def test_a_node_stopped_cleanly_leaves_at_once_without_waiting_for_its_lease(server, tmp_path):
    _, (a, b) = start_nodes(server, tmp_path, ["a", "b"], heartbeat_ms=1000, lease_ms=30000)
    wait_until(lambda: alive_names(a) == ["a", "b"], 5)
    gen = generation_of(b)
    b.stop()
    stopped_at = time.monotonic()
    # Seen dead within 3 s: a 30 s lease could not have run out.
    wait_until(lambda: states(a)[("b", gen)] == "dead", 3, lambda: states(a))
    assert time.monotonic() - stopped_at < 3
    assert a.metric("tessera_cluster_members_declared_dead_total") == 0


def test_a_node_started_again_under_its_name_replaces_its_killed_run_at_once(server, tmp_path):
    url, (a, b) = start_nodes(server, tmp_path, ["a", "b"], heartbeat_ms=1000, lease_ms=30000)
    old = generation_of(b)
    b.kill9()
    again = server(*cluster_args(url, "b", heartbeat_ms=1000, lease_ms=30000))
    new = generation_of(again)
    assert new > old
    # Long before b's 30 s lease: a sees the new run alive and the old one dead at its next
    # read of the members (every heartbeat).
    wait_until(lambda: states(a).get(("b", new)) == "alive", 3, lambda: states(a))
    assert states(a)[("b", old)] == "dead"


def test_a_paused_node_whose_name_was_taken_meanwhile_stops_instead_of_joining_again(
        server, tmp_path):
    url, (a, b) = start_nodes(server, tmp_path, ["a", "b"])
    b.proc.send_signal(signal.SIGSTOP)
    try:
        # An operator starts another "b" while the first one is frozen.
        other = server(*cluster_args(url, "b"))
    finally:
        b.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: not b.running, 10, "the paused b to stop")
    assert b.proc.returncode == 0
    assert "another process joined as 'b'" in b.stderr()
    # a sees the newer b alive, and only it, at its next read of the members.
    wait_until(lambda: [g for (n, g), s in states(a).items() if n == "b" and s == "alive"]
               == [members(other)["generation"]], 3, lambda: states(a))


def test_a_single_server_says_it_is_not_in_a_cluster(server):
    body = server().request("GET", "/api/cluster").body
    assert body == {"enabled": False, "members": []}


def test_cluster_settings_that_cannot_work_are_refused_at_start(tmp_path):
    rocks = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                        "--set", "cluster.enabled=true")
    assert rocks.returncode == 2
    assert 'cluster.enabled needs storage.backend = "postgres"' in rocks.stderr
    url = postgres.shared().database_for(tmp_path / "cluster")
    open_listen = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen",
                              "127.0.0.1:0", *cluster_args(url, "x"),
                              "--set", "cluster.listen=192.0.2.1:0")
    assert open_listen.returncode == 2
    assert "without TLS" in open_listen.stderr


def test_a_node_that_cannot_reach_postgresql_does_not_start(tmp_path):
    bad = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                      *cluster_args(f"host={tmp_path} port=1 user=postgres", "x"), timeout=30)
    assert bad.returncode != 0
    assert "tessera listening" not in bad.stdout


def test_nodes_with_certificates_from_the_cluster_ca_talk_over_tls(server, tmp_path):
    ca = make_ca(tmp_path / "pki", "cluster-ca")
    url = postgres.shared().database_for(tmp_path / "cluster")
    nodes = [server(*cluster_args(url, n, tls=node_certificate(tmp_path / "pki", ca, n)))
             for n in ("a", "b", "c")]
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"] and all(
            m["reachable"] for m in members(node)["members"] if m["state"] == "alive"), 5,
            lambda: members(node))


def test_a_node_without_a_certificate_from_the_cluster_ca_is_refused(server, tmp_path):
    ca = make_ca(tmp_path / "pki", "cluster-ca")
    url = postgres.shared().database_for(tmp_path / "cluster")
    a, b = [server(*cluster_args(url, n, tls=node_certificate(tmp_path / "pki", ca, n)))
            for n in ("a", "b")]
    wait_until(lambda: alive_names(a) == ["a", "b"], 5)
    b_generation = generation_of(b)
    other_ca = make_ca(tmp_path / "other", "other-ca")
    # It even claims b's name: a process the cluster refuses must not replace the real b.
    intruder = run_tessera("serve", "--data-dir", str(tmp_path / "intruder"), "--listen",
                           "127.0.0.1:0",
                           *cluster_args(url, "b",
                                         tls=node_certificate(tmp_path / "other", other_ca,
                                                              "intruder")),
                           env={"TESSERA_PANELS_DEMOS": "false"}, timeout=60)
    assert intruder.returncode != 0
    assert "tessera listening" not in intruder.stdout
    assert "refused by the cluster" in intruder.stderr, intruder.stderr
    assert "disconnect_during_handshake" in intruder.stderr
    # It never became alive, and left; b kept its place.
    wait_until(lambda: [s for (n, g), s in states(a).items() if n == "b" and g != b_generation]
               == ["dead"], 3, lambda: states(a))
    assert alive_names(a) == ["a", "b"]
    assert states(a)[("b", b_generation)] == "alive"
    assert b.running and generation_of(b) == b_generation


def test_tls_files_that_cannot_be_used_stop_start_up_with_a_message(tmp_path):
    ca = make_ca(tmp_path / "pki", "cluster-ca")
    cert, key, ca_pem = node_certificate(tmp_path / "pki", ca, "a")
    _, other_key, _ = node_certificate(tmp_path / "pki", ca, "b")
    url = postgres.shared().database_for(tmp_path / "cluster")
    for files, named in [((cert, tmp_path / "missing.key", ca_pem), "cluster.tls_key"),
                         ((cert, other_key, ca_pem), "key values mismatch"),
                         ((key, key, ca_pem), "cluster.tls_cert")]:
        bad = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                          *cluster_args(url, "a", tls=files), timeout=30)
        assert bad.returncode == 2, bad.stderr
        assert named in bad.stderr, bad.stderr


INCREMENT = ("def on_action(action, payload, storage):\n"
             "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n")


def test_a_node_writing_from_a_stale_copy_is_fenced_off_and_reads_again(server, tmp_path):
    """Versions are the fence: every storage write is conditional on the version its writer
    read, so a node whose copy is stale cannot overwrite a write made since. Its copy is made
    stale by a server outside the cluster on the same database, whose writes no node hears of
    (no NOTIFY), as a paused or cut-off node's would be."""
    url, (a,) = start_nodes(server, tmp_path, ["a"])
    outsider = server("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    assert a.request("POST", "/api/storages", {"id": "s", "data": {"from": []}}).status == 201
    assert a.request("GET", "/api/storages/s").body["version"] == 1  # a holds version 1 now
    patched = outsider.request("PATCH", "/api/storages/s", {"data": {"o": 1}})
    assert patched.status == 200 and patched.body["version"] == 2, patched
    stale = a.request("PATCH", "/api/storages/s", {"data": {"a": 1}})
    assert stale.status == 409, stale
    assert stale.body["code"] == "conflict"
    # Nothing of a's write landed, and a reads what the store holds.
    assert outsider.request("GET", "/api/storages/s").body["data"] == {"from": [], "o": 1}
    fresh = a.request("GET", "/api/storages/s").body
    assert fresh["version"] == 2 and fresh["data"] == {"from": [], "o": 1}
    again = a.request("PATCH", "/api/storages/s", {"data": {"a": 1}})
    assert again.status == 200 and again.body["version"] == 3, again
    assert again.body["data"] == {"from": [], "o": 1, "a": 1}


def test_a_panel_action_on_a_stale_node_runs_again_on_what_the_store_holds(server, tmp_path):
    url, (a,) = start_nodes(server, tmp_path, ["a"])
    assert a.request("POST", "/api/storages", {"id": "c", "data": {"n": 0}}).status == 201
    assert a.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                             "template": "{{ c.n }}",
                                             "handler": INCREMENT}).status == 201
    b = server(*cluster_args(url, "b"))  # loads the panel at start
    for node in (a, b, a, b, b, a):
        res = node.request("POST", "/api/panels/p/action", {"action": "inc"})
        assert res.status == 200, res
    # Every increment landed once: the store holds 6, read through a node started now.
    c = server(*cluster_args(url, "c"))
    got = c.request("GET", "/api/storages/c")
    assert got.status == 200 and got.body["data"] == {"n": 6}, got


COUNTER_TEMPLATE = "p:n={{ c.n }}"


def counter_panel(node, template=COUNTER_TEMPLATE):
    assert node.request("POST", "/api/storages", {"id": "c", "data": {"n": 0}}).status == 201
    res = node.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                               "template": template, "handler": INCREMENT})
    assert res.status == 201, res


def test_a_write_on_one_node_is_seen_live_by_a_websocket_client_on_another(server, tmp_path):
    _, (a, b) = start_nodes(server, tmp_path, ["a", "b"])
    counter_panel(a)
    # b hears of the panel through its change feed, within milliseconds.
    wait_until(lambda: b.request("GET", "/api/panels/p").status == 200, 5)

    async def scenario():
        async with live(a) as ws:
            first = await ws.subscribe("p")
            assert first["html"] == "p:n=0"
            # A REST write on b, then an action on b: each reaches a's subscriber.
            res = await rest(b, "PATCH", "/api/storages/c", {"data": {"n": 5}})
            assert res.status == 200, res
            msg, _ = await ws.render("p", lambda m: m["html"] == "p:n=5", timeout=5)
            assert msg["version"] > first["version"]
            res = await rest(b, "POST", "/api/panels/p/action", {"action": "inc"})
            assert res.status == 200, res
            msg, _ = await ws.render("p", lambda m: m["html"] == "p:n=6", timeout=5)
        # a's own copy followed too: it reads and writes on top of b's writes.
        read = a.request("GET", "/api/storages/c").body
        assert read["data"] == {"n": 6}
        res = a.request("POST", "/api/panels/p/action", {"action": "inc"})
        assert res.status == 200 and "p:n=7" in res.body["html"], res

    run(scenario())
    # Each write was made by the node owning its storage and handed on by the other's feed.
    heard = sum(n.metric("tessera_cluster_change_feed_changes_total") for n in (a, b))
    assert heard >= 2, heard


def test_a_panel_created_changed_and_deleted_on_one_node_follows_on_the_others(server, tmp_path):
    _, (a, b) = start_nodes(server, tmp_path, ["a", "b"])
    counter_panel(b)
    # Created on b: a serves it (within the feed's delivery).
    wait_until(lambda: a.request("GET", "/api/panels/p/render").status == 200, 5)
    assert a.request("GET", "/api/panels/p/render").body["html"] == "p:n=0"

    async def scenario():
        async with live(a) as ws:
            await ws.subscribe("p")
            res = await rest(b, "PUT", "/api/panels/p/template", {"template": "new:{{ c.n }}"})
            assert res.status == 200, res
            await ws.render("p", lambda m: m["html"] == "new:0", timeout=5)
            res = await rest(b, "DELETE", "/api/panels/p")
            assert res.status == 200, res
            await ws.recv_until(lambda m: m["type"] == "deleted" and m.get("panel") == "p", 5,
                                "p's deletion")

    run(scenario())
    assert a.request("GET", "/api/panels/p").status == 404
    # The same id can be made again, on either node, and only once.
    counter_panel_again = a.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                                            "template": "again",
                                                            "handler": INCREMENT})
    assert counter_panel_again.status == 201, counter_panel_again
    wait_until(lambda: b.request("GET", "/api/panels/p").status == 200, 5)
    twice = b.request("POST", "/api/panels", {"id": "p", "template": "twice"})
    assert twice.status == 409, twice


COUNT_RUNS = ("def on_schedule(storage):\n"
              "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n")


def task_runs(node, id="t"):
    res = node.request("GET", f"/api/tasks/{id}/runs?limit=100")
    assert res.status == 200, res
    return res.body["runs"]


def runs_done(node):
    return sum(v for (name, _), v in node.metrics().items() if name == "tessera_task_runs_total")


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def three_nodes_with_a_task_every_second(server, tmp_path):
    """Nodes a, b, c, all alive; task t counting its runs in storage c, every second."""
    url, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    a = nodes[0]
    assert a.request("POST", "/api/storages", {"id": "c", "data": {"n": 0}}).status == 201
    res = a.request("POST", "/api/tasks", {"id": "t", "schedule": "* * * * * *",
                                           "handler": COUNT_RUNS, "storage_ids": ["c"]})
    assert res.status == 201, res
    return url, nodes


def test_a_task_every_second_runs_once_per_slot_on_its_owner_and_moves_on_a_node_loss(
        server, tmp_path):
    url, nodes = three_nodes_with_a_task_every_second(server, tmp_path)
    a = nodes[0]
    wait_until(lambda: len([r for r in task_runs(a) if r["status"] == "succeeded"]) >= 3, 20,
               lambda: task_runs(a))
    # One node, its owner, runs it: the others' run counters stay still.
    counts = [runs_done(n) for n in nodes]
    assert len([c for c in counts if c > 0]) == 1, counts
    owner = nodes[[c > 0 for c in counts].index(True)]
    owner_name = "abc"[nodes.index(owner)]
    survivors = [n for n in nodes if n is not owner]
    # It holds the task's lease, taken once.
    assert leases(url, "task/") == {"task/t": (owner_name, 1)}
    owner.kill9()
    killed_at = datetime.datetime.now(datetime.timezone.utc)
    survivor = survivors[0]
    # A survivor takes the schedule over within the lease and a second.
    def first_after_kill():
        later = [r for r in task_runs(survivor)
                 if r["status"] == "succeeded" and ts(r["started_at"]) > killed_at]
        return min(later, key=lambda r: r["started_at"]) if len(later) >= 3 else None
    first = wait_until(first_after_kill, 20, lambda: task_runs(survivor))
    takeover = (ts(first["started_at"]) - killed_at).total_seconds()
    assert takeover < LEASE_MS / 1000 + 1.0 + 0.5, (takeover, first)
    res = survivor.request("PATCH", "/api/tasks/t", {"enabled": False})
    assert res.status == 200, res
    disabled_at = datetime.datetime.now(datetime.timezone.utc)
    # Disabled on every node (the change feed): the owner stops firing it.
    for node in survivors:
        wait_until(lambda: node.request("GET", "/api/tasks/t").body["next_run"] is None, 5,
                   lambda: node.request("GET", "/api/tasks/t").body)

    def settled():
        rs = task_runs(survivor)
        return rs if all(r["status"] != "running" or ts(r["started_at"]) < killed_at
                         for r in rs) else None
    rs = wait_until(settled, 10)
    late = [r for r in rs if ts(r["scheduled_for"]) > disabled_at + datetime.timedelta(seconds=1)]
    assert not late, late
    # Exactly one run per scheduled second, before and after the loss.
    slots = [r["scheduled_for"] for r in rs if r["scheduled_for"]]
    assert len(slots) == len(set(slots)), sorted(slots)
    succeeded = len([r for r in rs if r["status"] == "succeeded"])
    cut_off = len([r for r in rs if r["status"] == "running"])  # in flight on the killed node
    n = survivor.request("GET", "/api/storages/c").body["data"]["n"]
    assert succeeded <= n <= succeeded + cut_off, (n, succeeded, cut_off)
    # The two survivors split nothing: one of them ran it after the loss, and took the lease.
    ran = [s for s in survivors if runs_done(s) > 0]
    assert len(ran) == 1
    assert leases(url, "task/") == {"task/t": ("abc"[nodes.index(ran[0])], 2)}
    assert ran[0].metric("tessera_cluster_lease_takeovers_total") >= 1


def test_a_task_changed_or_run_through_any_node_is_changed_and_run_by_its_owner(
        server, tmp_path):
    _, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    a = nodes[0]
    assert a.request("POST", "/api/storages", {"id": "c", "data": {"n": 0}}).status == 201
    res = a.request("POST", "/api/tasks", {"id": "t", "schedule": "0 0 1 1 *", "enabled": False,
                                           "handler": COUNT_RUNS, "storage_ids": ["c"]})
    assert res.status == 201, res
    # Straight after the create: a node whose change feed is behind forwards to an owner that
    # may not have heard of the task yet; the owner reads it rather than answer not_found.
    for i, node in enumerate(nodes):
        res = node.request("PATCH", "/api/tasks/t", {"schedule": f"0 0 {i + 1} 1 *"})
        assert res.status == 200, res
        assert res.body["schedule"] == f"0 0 {i + 1} 1 *"
    forwarded = [n.metric("tessera_cluster_forwarded_requests_total", kind="task") for n in nodes]
    assert sorted(forwarded) == [0, 1, 1], forwarded
    for node in nodes:
        wait_until(lambda: node.request("GET", "/api/tasks/t").body.get("schedule") == "0 0 3 1 *",
                   5, lambda: node.request("GET", "/api/tasks/t"))
    # "Run now" through each node runs on the owner, once each.
    for node in nodes:
        res = node.request("POST", "/api/tasks/t/run")
        assert res.status in (200, 202), res
    owner = nodes[forwarded.index(0)]
    wait_until(lambda: runs_done(owner) == 3, 10, lambda: [runs_done(n) for n in nodes])
    assert [runs_done(n) for n in nodes if n is not owner] == [0, 0]
    wait_until(lambda: a.request("GET", "/api/storages/c").body["data"]["n"] == 3, 5)
    assert nodes[1].request("DELETE", "/api/tasks/t").status in (200, 204)
    for node in nodes:
        wait_until(lambda: node.request("GET", "/api/tasks/t").status == 404, 5)


def test_two_servers_firing_one_task_on_one_database_run_each_second_once(server, tmp_path):
    """Without the cluster every server fires every task it knows: the claims make each
    scheduled second run once, and run numbers taken by the other server are not reused."""
    url = postgres.shared().database_for(tmp_path / "shared")
    shared = ("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    one = server(*shared)
    assert one.request("POST", "/api/storages", {"id": "c", "data": {"n": 0}}).status == 201
    res = one.request("POST", "/api/tasks", {"id": "t", "schedule": "* * * * * *",
                                             "handler": COUNT_RUNS, "storage_ids": ["c"]})
    assert res.status == 201, res
    two = server(*shared)  # loads t at start, and fires it too
    wait_until(lambda: len([r for r in task_runs(one) if r["status"] == "succeeded"]) >= 6, 20,
               lambda: task_runs(one))
    for node in (one, two):  # neither hears of the other's update: disable on both
        assert node.request("PATCH", "/api/tasks/t", {"enabled": False}).status == 200
    rs = wait_until(lambda: (lambda rs: rs if all(r["status"] != "running" for r in rs)
                             else None)(task_runs(one)), 10)
    slots = [r["scheduled_for"] for r in rs if r["scheduled_for"]]
    assert len(slots) == len(set(slots)), sorted(slots)
    seqs = [r["run_id"] for r in rs]
    assert len(seqs) == len(set(seqs)), seqs
    succeeded = len([r for r in rs if r["status"] == "succeeded"])
    # (Read through a server started now: without the cluster, a server's copy may lag the
    # other's writes.)
    fresh = server(*shared)
    assert fresh.request("GET", "/api/storages/c").body["data"]["n"] == succeeded
    assert runs_done(one) + runs_done(two) >= succeeded
    # Both fired: the later one lost its claim on the seconds the other had run.
    lost = sum(n.metric("tessera_task_skips_total", reason="claimed_elsewhere") for n in (one, two))
    assert lost >= 1


def forwarded(node):
    return node.metric("tessera_cluster_forwarded_requests_total", kind="storage")


def test_a_write_through_one_node_is_read_back_at_once_through_any_other(server, tmp_path):
    """Every storage has one owner (rendezvous hashing over the alive members); the others
    forward its requests there, so a read anywhere sees every write acknowledged before."""
    _, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    ids = [f"s{i}" for i in range(24)]
    for i, id in enumerate(ids):
        res = nodes[i % 3].request("POST", "/api/storages", {"id": id, "data": {"v": 0}})
        assert res.status == 201, res
    for round in range(1, 4):
        for i, id in enumerate(ids):
            writer, reader = nodes[(i + round) % 3], nodes[(i + round + 1) % 3]
            res = writer.request("PATCH", f"/api/storages/{id}", {"data": {"v": round}})
            assert res.status == 200, res
            read = reader.request("GET", f"/api/storages/{id}").body
            assert (read["version"], read["data"]) == (res.body["version"], {"v": round}), \
                (id, res.body, read)
    # Each node forwarded the requests for the storages it does not own.
    assert all(forwarded(n) > 0 for n in nodes), [forwarded(n) for n in nodes]


def test_concurrent_actions_through_three_nodes_on_one_storage_count_exactly(server, tmp_path):
    url, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    counter_panel(nodes[0])
    for node in nodes:
        wait_until(lambda: node.request("GET", "/api/panels/p").status == 200, 5)
    per_node, threads = 20, []
    failures = []

    def hammer(node):
        for _ in range(per_node):
            res = node.request("POST", "/api/panels/p/action", {"action": "inc"})
            if res.status != 200:
                failures.append(res)

    for node in nodes:
        for _ in range(2):
            threads.append(threading.Thread(target=hammer, args=(node,)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    for node in nodes:
        assert node.request("GET", "/api/storages/c").body["data"] == {"n": 6 * per_node}
    # The two nodes that do not own the panel sent their actions to the one that does, which
    # ran all of them in order.
    panel_forwards = [n.metric("tessera_cluster_forwarded_requests_total", kind="panel")
                      for n in nodes]
    assert sorted(panel_forwards) == [0, 2 * per_node, 2 * per_node], panel_forwards


def test_kill_9_of_a_node_under_a_write_load_loses_no_acknowledged_write(server, tmp_path):
    url, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    ids = [f"s{i}" for i in range(12)]
    for id in ids:
        assert nodes[0].request("POST", "/api/storages", {"id": id, "data": {}}).status == 201
    victim, survivors = nodes[2], nodes[:2]
    acked = {id: set() for id in ids}
    after_kill = {}  # storage -> seconds from the kill to its first write acknowledged
    killed_at = [None]
    stop = threading.Event()
    lock = threading.Lock()

    def writer(n):
        i = 0
        while not stop.is_set():
            i += 1
            id = ids[(n * 5 + i) % len(ids)]
            targets = survivors if killed_at[0] else nodes
            node = targets[(n + i) % len(targets)]
            key = f"w{n}_{i}"
            try:
                res = node.request("PATCH", f"/api/storages/{id}", {"data": {key: True}})
            except OSError:
                continue  # the killed node's connection
            if res.status == 200:
                with lock:
                    acked[id].add(key)
                    if killed_at[0] and id not in after_kill:
                        after_kill[id] = time.monotonic() - killed_at[0]

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(len(k) for k in acked.values()) >= 200, 20)
    victim.kill9()
    killed_at[0] = time.monotonic()
    wait_until(lambda: len(after_kill) == len(ids), 15, lambda: sorted(after_kill))
    stop.set()
    for t in threads:
        t.join()
    # Every storage took writes again through the survivors, within the lease and a second.
    assert max(after_kill.values()) < LEASE_MS / 1000 + 1.0, after_kill
    # Every acknowledged write is in the database (read by a server that loads it afresh).
    reader = server("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    for id in ids:
        data = reader.request("GET", f"/api/storages/{id}").body["data"]
        missing = acked[id] - set(data)
        assert not missing, (id, sorted(missing)[:5])


def owned_by_the_other(node, ids):
    """The first of `ids` (storages) that a PATCH through `node` forwards to another node."""
    for id in ids:
        before = node.metric("tessera_cluster_forwarded_requests_total", kind="storage")
        assert node.request("PATCH", f"/api/storages/{id}", {"data": {"probe": 1}}).status == 200
        if node.metric("tessera_cluster_forwarded_requests_total", kind="storage") > before:
            return id
    raise AssertionError(f"every one of {ids} is owned by the node itself")


def test_a_write_forwarded_to_a_frozen_owner_is_answered_once_the_owner_is_declared_dead(
        server, tmp_path):
    """A frozen owner (SIGSTOP) keeps its connection open, so only the membership can tell it
    is gone: the write waiting on it is answered (its outcome unknown) when the owner is
    declared dead, not at the actors' 30 s timeout, and the next write lands on the survivor."""
    _, (a, b) = start_nodes(server, tmp_path, ["a", "b"])
    for node in (a, b):
        wait_until(lambda: alive_names(node) == ["a", "b"], 5)
    ids = [f"s{i}" for i in range(8)]
    for id in ids:
        assert a.request("POST", "/api/storages", {"id": id, "data": {}}).status == 201
    id = owned_by_the_other(a, ids)
    b.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        res = a.request("PATCH", f"/api/storages/{id}", {"data": {"during": 1}})
        waited = time.monotonic() - started
        assert res.status in (200, 503), res
        assert waited < LEASE_MS / 1000 + 2.5, waited
        if res.status == 503:
            assert "may or may not have landed" in res.body["detail"], res
        res = a.request("PATCH", f"/api/storages/{id}", {"data": {"after": 1}})
        assert res.status == 200, res
        assert res.body["data"]["after"] == 1
    finally:
        b.proc.send_signal(signal.SIGCONT)


def test_the_owner_of_a_storage_holds_its_lease_and_a_survivor_takes_it_over_after_a_kill(
        server, tmp_path):
    url, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    by_name = dict(zip(["a", "b", "c"], nodes))
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    ids = [f"s{i}" for i in range(9)]
    for id in ids:
        assert nodes[0].request("POST", "/api/storages", {"id": id, "data": {}}).status == 201
    keys = {f"storage/{id}" for id in ids}
    held = wait_until(lambda: (lambda l: l if set(l) == keys else None)(leases(url, "storage/")),
                      5, lambda: leases(url, "storage/"))
    assert all(epoch == 1 for _, epoch in held.values()), held
    # The holder is the owner: a write through it is served there, not forwarded.
    for id in ids:
        holder = by_name[held[f"storage/{id}"][0]]
        before = holder.metric("tessera_cluster_forwarded_requests_total", kind="storage")
        assert holder.request("PATCH", f"/api/storages/{id}", {"data": {"x": 1}}).status == 200
        assert holder.metric("tessera_cluster_forwarded_requests_total", kind="storage") == before
    victim_name = held["storage/s0"][0]
    victim = by_name[victim_name]
    lost = {k for k, (owner, _) in held.items() if owner == victim_name}
    survivors = [n for name, n in by_name.items() if name != victim_name]
    victim.kill9()
    rest = sorted(n for n in by_name if n != victim_name)
    for node in survivors:
        wait_until(lambda: alive_names(node) == rest, LEASE_MS / 1000 + 2)
    # Actors activate on use (as in Orleans): the new owner takes the lease when it serves one.
    for key in lost:
        res = survivors[0].request("PATCH", "/api/" + key.replace("storage/", "storages/"),
                                   {"data": {"y": 1}})
        assert res.status == 200, res
    after = wait_until(lambda: (lambda l: l if all(l[k][0] != victim_name for k in lost)
                                else None)(leases(url, "storage/")), 5,
                       lambda: leases(url, "storage/"))
    for key in lost:
        assert after[key][1] == 2, after
    for key in keys - lost:
        assert after[key] == held[key], (key, after[key], held[key])
    takeovers = sum(n.metric("tessera_cluster_lease_takeovers_total") for n in survivors)
    assert takeovers == len(lost), (takeovers, lost)
    # Started again under its name, the node owns its storages again: the survivors let go of
    # theirs (passivated), and the node takes each lease back when it serves it.
    again = server(*cluster_args(url, victim_name))
    for node in survivors + [again]:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 10)
    wait_until(lambda: sum(n.metric("tessera_actors_live", kind="storage") for n in survivors)
               == len(keys - lost), 5,
               lambda: [n.metric("tessera_actors_live", kind="storage") for n in survivors])
    for key in lost:
        res = survivors[1].request("PATCH", "/api/" + key.replace("storage/", "storages/"),
                                   {"data": {"z": 1}})
        assert res.status == 200, res
    back = wait_until(lambda: (lambda l: l if all(l[k][0] == victim_name for k in lost)
                               else None)(leases(url, "storage/")), 5,
                      lambda: leases(url, "storage/"))
    assert all(back[k][1] == 3 for k in lost), back


def test_every_node_stopped_and_one_started_again_serves_all_the_data(server, tmp_path):
    url, nodes = start_nodes(server, tmp_path, ["a", "b", "c"])
    for node in nodes:
        wait_until(lambda: alive_names(node) == ["a", "b", "c"], 5)
    for i in range(9):
        res = nodes[i % 3].request("POST", "/api/storages", {"id": f"s{i}", "data": {"i": i}})
        assert res.status == 201, res
    counter_panel(nodes[1])
    wait_until(lambda: nodes[2].request("GET", "/api/panels/p").status == 200, 5)
    assert nodes[2].request("POST", "/api/panels/p/action", {"action": "inc"}).status == 200
    for node in nodes:
        node.stop()
    again = server(*cluster_args(url, "b"))
    assert alive_names(again) == ["b"]
    for i in range(9):
        assert again.request("GET", f"/api/storages/s{i}").body["data"] == {"i": i}
    assert again.request("GET", "/api/storages/c").body["data"] == {"n": 1}
    res = again.request("POST", "/api/panels/p/action", {"action": "inc"})
    assert res.status == 200 and "p:n=2" in res.body["html"], res


def test_a_paused_owner_resumed_after_the_takeover_runs_no_slot_twice(server, tmp_path):
    """The owner of a task's schedule is frozen past its lease; a survivor takes the schedule
    over. Resumed, the old owner finds itself dead (it owns nothing then) and joins again;
    whatever it fires meanwhile loses its claim: one run per second, and the counter agrees."""
    url, nodes = three_nodes_with_a_task_every_second(server, tmp_path)
    a = nodes[0]
    wait_until(lambda: any(runs_done(n) > 0 for n in nodes), 10)
    owner = next(n for n in nodes if runs_done(n) > 0)
    others = [n for n in nodes if n is not owner]
    old = generation_of(owner)
    owner.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: any(s == "dead" for (_, g), s in states(others[0]).items()
                               if g == old), LEASE_MS / 1000 + 2, "the owner declared dead")
        before = sum(runs_done(n) for n in others)
        wait_until(lambda: sum(runs_done(n) for n in others) >= before + 2, 10,
                   "a survivor to run the task")
    finally:
        owner.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: generation_of(owner) != old, 10, "the old owner to join again")
    # Alive again under its name, it owns the schedule again: the runs go on.
    rejoined = sum(runs_done(n) for n in nodes)
    wait_until(lambda: sum(runs_done(n) for n in nodes) >= rejoined + 3, 10)
    res = others[0].request("PATCH", "/api/tasks/t", {"enabled": False})
    assert res.status == 200, res
    for node in nodes:
        wait_until(lambda: node.request("GET", "/api/tasks/t").body["next_run"] is None, 5)
    rs = wait_until(lambda: (lambda rs: rs if all(r["status"] != "running" for r in rs)
                             else None)(task_runs(others[0])), 10)
    slots = [r["scheduled_for"] for r in rs if r["scheduled_for"]]
    assert len(slots) == len(set(slots)), sorted(slots)
    succeeded = len([r for r in rs if r["status"] == "succeeded"])
    fresh = server("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    assert fresh.request("GET", "/api/storages/c").body["data"]["n"] == succeeded
