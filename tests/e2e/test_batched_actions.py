"""Batched actions (panels.max_batch): the actions waiting for one panel run in one sandbox call
and one commit, each on the state the ones before it left; one that raises changes nothing and
gets its own error, the others commit, and every request gets exactly one answer of its own.

To make actions wait, a first action holds the panel's sandbox call (a busy loop) while the
others arrive; GET /api/sandbox shows when it is running."""
import threading

from harness import run_together, wait_until

SETTINGS = ("--set", "panels.demos=false", "--set", "sandbox.workers=1")

HANDLER = (
    "import time\n"
    "def on_action(action, payload, storage):\n"
    "    s = storage['s']\n"
    "    if action == 'hold':\n"
    "        end = time.time() + payload['seconds']\n"
    "        while time.time() < end:\n"
    "            pass\n"
    "        return\n"
    "    s['n'] = s.get('n', 0) + 1\n"
    "    s.setdefault('seen', []).append(payload.get('i'))\n"
    "    print('action', payload.get('i'))\n"
    "    if payload.get('fail'):\n"
    "        raise ValueError('refused %s' % payload['i'])\n"
    "    if payload.get('loop'):\n"
    "        while True:\n"
    "            pass\n"
)


def make_panel(srv, pid="p"):
    if srv.request("GET", "/api/storages/s").status == 404:
        assert srv.request("POST", "/api/storages", {"id": "s", "data": {}}).status == 201
    body = {"id": pid, "storage_ids": ["s"], "handler": HANDLER,
            "template": "<p>{{ s.n }}</p>"}
    res = srv.request("POST", "/api/panels", body)
    assert res.status == 201, res


def act(srv, payload, pid="p", name="go"):
    return srv.request("POST", f"/api/panels/{pid}/action", {"action": name, "payload": payload})


def held(srv, seconds, pid="p"):
    """Starts an action that keeps the panel's call busy for `seconds`; returns its thread
    once the sandbox runs it."""
    thread = threading.Thread(target=act, args=(srv, {"seconds": seconds}, pid, "hold"))
    thread.start()
    wait_until(lambda: any(w["state"] == "busy"
                           for w in srv.request("GET", "/api/sandbox").body["workers"]),
               message="the holding action running")
    return thread


def burst(srv, payloads, pid="p"):
    return run_together(len(payloads), lambda i, _: act(srv, payloads[i], pid))


def storage_data(srv):
    return srv.request("GET", "/api/storages/s").body["data"]


def test_waiting_actions_run_in_one_call_and_each_gets_its_own_answer(server):
    srv = server(*SETTINGS)
    make_panel(srv)
    hold = held(srv, 2)
    replies = burst(srv, [{"i": i} for i in range(20)])
    hold.join()
    assert all(r.status == 200 for r in replies), replies
    # One call served several of them: they share the version of the state after it.
    versions = [r.body["version"] for r in replies]
    assert len(set(versions)) < len(replies), versions
    for i, r in enumerate(replies):
        assert r.body["changed"] == ["s"], r
        assert [line["message"] for line in r.body["logs"]] == [f"action {i}"], r
    data = storage_data(srv)
    assert data["n"] == 20 and sorted(data["seen"]) == list(range(20)), data
    assert srv.metric("tessera_panel_action_batch_size_count") >= 1


def test_in_a_burst_the_actions_that_raise_change_nothing_and_the_others_commit(server):
    srv = server(*SETTINGS)
    make_panel(srv)
    hold = held(srv, 2)
    payloads = [{"i": i, "fail": i % 3 == 0} for i in range(30)]
    replies = burst(srv, payloads)
    hold.join()
    for p, r in zip(payloads, replies):
        if p["fail"]:
            assert r.status == 422 and r.body["code"] == "handler_error", r
            assert f"refused {p['i']}" in r.body["error"]["message"], r
            assert [line["message"] for line in r.body["logs"]] == [f"action {p['i']}"], r
        else:
            assert r.status == 200 and r.body["changed"] == ["s"], r
    data = storage_data(srv)
    kept = [p["i"] for p in payloads if not p["fail"]]
    assert data["n"] == len(kept) and sorted(data["seen"]) == kept, data


def test_a_batch_that_fails_as_a_whole_runs_again_one_action_per_call(server):
    srv = server(*SETTINGS, "--set", "sandbox.timeout_ms=800")
    make_panel(srv)
    hold = held(srv, 0.6)
    payloads = [{"i": i, "loop": i == 2} for i in range(6)]
    replies = burst(srv, payloads)
    hold.join()
    for p, r in zip(payloads, replies):
        if p["loop"]:
            assert r.status == 422 and r.body["code"] == "timeout", r
        else:
            assert r.status == 200, r
    data = storage_data(srv)
    assert data["n"] == 5 and sorted(data["seen"]) == [0, 1, 3, 4, 5], data


def test_a_thousand_increments_through_two_panels_with_rest_patches_end_exact(server):
    srv = server(*SETTINGS)
    make_panel(srv, "a")
    make_panel(srv, "b")
    increments, patches = 1000, 100

    def work(i, _):
        if i >= increments:
            k = i - increments
            return srv.request("PATCH", "/api/storages/s", {"data": {f"k{k}": k}})
        return act(srv, {"i": i}, "a" if i % 2 else "b")

    # 32 clients at a time, each sending its share in turn.
    jobs = list(range(increments + patches))
    replies = run_together(32, lambda t, _: [work(i, None) for i in jobs[t::32]], timeout=240)
    flat = [r for share in replies for r in share]
    assert len(flat) == increments + patches and all(r.status == 200 for r in flat), \
        [r for r in flat if r.status != 200][:3]
    data = storage_data(srv)
    assert data["n"] == increments, data["n"]
    assert sorted(data["seen"]) == list(range(increments))
    assert all(data[f"k{k}"] == k for k in range(patches)), data


def test_max_batch_1_runs_every_action_in_a_call_of_its_own(server):
    srv = server(*SETTINGS, "--set", "panels.max_batch=1")
    make_panel(srv)
    hold = held(srv, 1)
    replies = burst(srv, [{"i": i} for i in range(8)])
    hold.join()
    versions = [r.body["version"] for r in replies]
    assert len(set(versions)) == len(replies), versions
    assert srv.metric("tessera_panel_action_batch_size_count") == 0


def test_actions_queued_behind_a_commit_get_their_call_ahead_and_still_land_in_order(server):
    """While a run commits, the actions queued behind it are already computed on the state it
    leaves (docs/architecture.md, "Calls ahead"). That must not reorder, lose or double
    anything, also when REST writes between them make some of those calls stale."""
    srv = server(*SETTINGS)
    make_panel(srv)
    clients, per_client, patchers = 8, 40, 2

    def work(t, _):
        if t >= clients:
            return [srv.request("PATCH", "/api/storages/s", {"data": {f"k{t}_{k}": k}})
                    for k in range(per_client)]
        return [act(srv, {"i": t * 1000 + k}) for k in range(per_client)]

    replies = run_together(clients + patchers, work, timeout=240)
    flat = [r for share in replies for r in share]
    assert all(r.status == 200 for r in flat), [r for r in flat if r.status != 200][:3]
    data = storage_data(srv)
    assert data["n"] == clients * per_client, data["n"]
    for t in range(clients):  # each client's actions landed once each, in the order it sent
        mine = [i for i in data["seen"] if i // 1000 == t]
        assert mine == [t * 1000 + k for k in range(per_client)], (t, mine)
    assert all(data[f"k{t}_{k}"] == k for t in range(clients, clients + patchers)
               for k in range(per_client))
    made = srv.metric("tessera_panel_calls_ahead_total", outcome="made")
    used = srv.metric("tessera_panel_calls_ahead_total", outcome="used")
    assert 0 < used <= made, (made, used)
