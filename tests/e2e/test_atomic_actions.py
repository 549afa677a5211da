"""Panel actions under concurrency: read all bound storages, run the handler, commit every changed
storage in one batch only if none changed meanwhile, else re-run. Lost updates, torn reads and
half-applied multi-storage changes must never show."""
import pytest

from harness import assert_problem, parse_metrics, run_together

INCREMENTS = 200
ACTION_THREADS = 20  # each sends INCREMENTS // ACTION_THREADS actions on its own connection
PATCH_THREADS = 5
PATCHES_PER_THREAD = 10
# Generous waits: this is about atomicity, not latency (the suite also runs under ASan).
SETTINGS = ("--set", "panels.demos=false", "--set", "server.request_timeout_ms=60000",
            "--set", "sandbox.queue_timeout_ms=30000")

INCREMENT = (
    "def on_action(action, payload, storage):\n"
    "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n"
)

TOTAL = 1000
MOVER = (
    "def on_action(action, payload, storage):\n"
    "    a, b = storage['a'], storage['b']\n"
    "    if action == 'move':\n"
    "        a['total'] -= payload['n']\n"
    "        b['total'] += payload['n']\n"
    "        if payload.get('fail'):\n"
    "            raise RuntimeError('abort after moving')\n"
    "    elif action == 'audit':\n"
    "        if a['total'] + b['total'] != 1000:\n"
    "            b['torn'] = b.get('torn', []) + [[a['total'], b['total']]]\n"
    "        a['audits'] = a.get('audits', 0) + 1\n"
)


def samples(srv, name):
    """{labels dict as frozenset: value} of every sample of metric `name`."""
    return {labels: v for (n, labels), v in srv.metrics().items() if n == name}


def metric_total(srv, name, **labels):
    """The sum over the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for l, v in samples(srv, name).items() if want <= set(l))


def create(srv, path, body):
    res = srv.request("POST", path, body)
    assert res.status == 201, res
    return res.body


@pytest.mark.parametrize("retries", ["16", "0"], ids=["optimistic_first", "locked_at_once"])
def test_concurrent_increments_through_two_panels_and_rest_patches_all_land(server, retries):
    retries_allowed = retries
    """With max_retries=0 every conflicting action takes the locked path at once, so that path
    carries the same load."""
    srv = server(*SETTINGS, "--set", f"panels.max_retries={retries}")
    create(srv, "/api/storages", {"id": "c", "data": {"n": 0}})
    for id in ("left", "right"):
        create(srv, "/api/panels", {"id": id, "storage_ids": ["c"], "template": "{{ c.n }}",
                                    "handler": INCREMENT})
    ok_before = metric_total(srv, "tessera_panel_actions_total", result="ok")
    per_thread = INCREMENTS // ACTION_THREADS
    assert per_thread * ACTION_THREADS == INCREMENTS

    def work(i, barrier):
        client = srv.client(timeout=120)
        client.conn.connect()
        barrier.wait(timeout=60)
        out = []
        try:
            if i < ACTION_THREADS:
                for k in range(per_thread):
                    panel = ("left", "right")[(i + k) % 2]
                    res = client.request("POST", f"/api/panels/{panel}/action",
                                         {"action": "inc"})
                    out.append((res.status, res.body))
            else:
                for k in range(PATCHES_PER_THREAD):
                    key = f"k{i - ACTION_THREADS}_{k}"
                    res = client.request("PATCH", "/api/storages/c", {"data": {key: k}})
                    out.append((res.status, res.body))
        finally:
            client.close()
        return out

    results = run_together(ACTION_THREADS + PATCH_THREADS, work, timeout=180)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    actions = [r for batch in results[:ACTION_THREADS] for r in batch]
    patches = [r for batch in results[ACTION_THREADS:] for r in batch]
    assert len(actions) == INCREMENTS and len(patches) == PATCH_THREADS * PATCHES_PER_THREAD
    refused = [r for r in actions if r[0] != 200]
    assert not refused, f"{len(refused)} of {INCREMENTS} actions failed, e.g. {refused[:3]}"
    assert all(body["success"] is True and body["changed"] == ["c"] for _, body in actions)
    assert all(status == 200 for status, _ in patches), [p for p in patches if p[0] != 200][:3]

    final = srv.request("GET", "/api/storages/c").body
    assert final["data"]["n"] == INCREMENTS, final["data"]
    patched = {f"k{t}_{k}": k for t in range(PATCH_THREADS) for k in range(PATCHES_PER_THREAD)}
    assert {k: v for k, v in final["data"].items() if k != "n"} == patched, final["data"]
    # One commit per PATCH and at most one per action (queued actions commit as one batch);
    # none lost (n is exact) and none doubled by a retry.
    assert len(patches) + 2 <= final["version"] <= 1 + INCREMENTS + len(patches), final
    for id in ("left", "right"):
        res = srv.request("GET", f"/api/panels/{id}/render")
        assert res.status == 200 and res.body["html"] == str(INCREMENTS), res

    # Counted: every action that succeeded, and the conflict and retry counters exist.
    assert metric_total(srv, "tessera_panel_actions_total", result="ok") >= \
        ok_before + INCREMENTS
    names = {name for name, _ in srv.metrics()}
    assert "tessera_panel_commit_conflicts_total" in names, sorted(names)
    assert "tessera_panel_commit_retries_total" in names, sorted(names)
    conflicts = metric_total(srv, "tessera_panel_commit_conflicts_total")
    retries = metric_total(srv, "tessera_panel_commit_retries_total")
    locked = metric_total(srv, "tessera_panel_locked_runs_total")
    if retries_allowed == "0":  # every conflict went straight to one locked run
        assert (retries, locked) == (0, conflicts), (conflicts, retries, locked)
    else:  # each conflict is a retry until the budget is spent, then one locked run
        assert retries + locked == conflicts, (conflicts, retries, locked)
    text = srv.request("GET", "/metrics").body
    assert "# TYPE tessera_panel_actions_total counter" in text
    assert parse_metrics(text)  # still parses


def test_moves_between_two_storages_commit_both_or_neither_and_the_sum_holds(server):
    srv = server(*SETTINGS)
    create(srv, "/api/storages", {"id": "a", "data": {"total": TOTAL}})
    create(srv, "/api/storages", {"id": "b", "data": {"total": 0}})
    create(srv, "/api/panels", {"id": "mover", "storage_ids": ["a", "b"],
                                "template": "{{ a.total + b.total }}", "handler": MOVER})
    threads, per_thread = 20, 10

    def kind(i, k):
        return ("audit", "fail", "move", "move", "move")[(i + k) % 5]

    def work(i, barrier):
        client = srv.client(timeout=120)
        client.conn.connect()
        barrier.wait(timeout=60)
        out = []
        try:
            if i == threads:  # REST writes of other keys of both storages, meanwhile
                for k in range(per_thread):
                    for id in ("a", "b"):
                        res = client.request("PATCH", f"/api/storages/{id}",
                                             {"data": {f"note{k}": k}})
                        out.append(("patch", res))
                return out
            for k in range(per_thread):
                what = kind(i, k)
                if what == "audit":
                    body = {"action": "audit"}
                else:
                    body = {"action": "move", "payload": {"n": 1, "fail": what == "fail"}}
                res = client.request("POST", "/api/panels/mover/action", body)
                out.append((what, res))
        finally:
            client.close()
        return out

    results = run_together(threads + 1, work, timeout=180)
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    done = [r for batch in results for r in batch]
    for what, res in done:
        if what == "fail":
            body = assert_problem(res, 422, "handler_error")
            assert body["detail"] == "abort after moving", body
        else:
            assert res.status == 200, (what, res)
    moves = sum(1 for what, _ in done if what == "move")
    audits = sum(1 for what, _ in done if what == "audit")
    assert moves and audits and any(what == "fail" for what, _ in done)

    a = srv.request("GET", "/api/storages/a").body["data"]
    b = srv.request("GET", "/api/storages/b").body["data"]
    assert "torn" not in b, f"an action saw a torn state (a.total, b.total): {b['torn']}"
    assert a["total"] + b["total"] == TOTAL, (a, b)
    assert (a["total"], b["total"]) == (TOTAL - moves, moves), (a, b)  # failed moves undone
    assert a["audits"] == audits, a
    notes = {f"note{k}": k for k in range(per_thread)}
    assert {k: v for k, v in a.items() if k.startswith("note")} == notes, a
    assert {k: v for k, v in b.items() if k.startswith("note")} == notes, b
    res = srv.request("GET", "/api/panels/mover/render")
    assert res.status == 200 and res.body["html"] == str(TOTAL), res


def test_each_action_runs_on_the_writes_before_it_even_when_the_panel_remembers_its_last_state(
        server):
    """A panel starts its next run on the state its last one committed, without reading it
    (atomic_run.hpp). A REST write or another panel's action in between must still be seen:
    the remembered state is dropped when the change is heard, and a commit over a state gone
    stale unheard conflicts and re-runs on a fresh read. Either way nothing is lost."""
    srv = server(*SETTINGS)
    create(srv, "/api/storages", {"id": "c", "data": {"n": 0}})
    for id in ("left", "right"):
        create(srv, "/api/panels", {"id": id, "storage_ids": ["c"], "template": "{{ c.n }}",
                                    "handler": INCREMENT})
    expected = 0
    for round in range(20):
        for _ in range(2):
            res = srv.request("POST", "/api/panels/left/action", {"action": "inc"})
            expected += 1
            assert res.status == 200 and res.body["html"] == str(expected), (round, res)
        if round % 2 == 0:
            expected += 100
            res = srv.request("PUT", "/api/storages/c", {"data": {"n": expected}})
        else:
            expected += 1
            res = srv.request("POST", "/api/panels/right/action", {"action": "inc"})
        assert res.status == 200, (round, res)
    res = srv.request("POST", "/api/panels/left/action", {"action": "inc"})
    expected += 1
    assert res.status == 200 and res.body["html"] == str(expected), res
    assert srv.request("GET", "/api/storages/c").body["data"] == {"n": expected}
