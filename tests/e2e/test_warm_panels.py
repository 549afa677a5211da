"""Warm sandbox processes through panels and tasks (sandbox.reuse): one panel's calls share a
warm process, another panel never sees it, changed code gets a fresh one, and reuse = call
keeps a fresh process per call.

The probe is a mutation the state checks cannot see by design (an element appended to a list a
module holds, docs/architecture.md "Threat model"): it survives exactly as long as the process
that made it, so counting it tells which process ran a call."""
import pytest

from harness import wait_idle, wait_until

SETTINGS = ("--set", "panels.demos=false", "--set", "sandbox.workers=2")

# Counts, in this process, how many actions appended to json.__all__ (a list, not a dict).
COUNTING = (
    "def on_action(action, payload, storage):\n"
    "    json.__all__.append('warm-probe')\n"
    "    storage[payload['sid']]['seen'] = json.__all__.count('warm-probe')\n"
)


def start(server, *extra):
    """A server whose sandbox workers are all up: a call of a panel goes to its home worker
    only while that worker is idle (during start-up it may go to another one, fresh)."""
    srv = server(*SETTINGS, *extra)
    wait_idle(srv)
    return srv


# Counts, per run, how many runs this process has served, in storage t's "seen".
TASK_COUNTING = ("def on_schedule(storage):\n"
                 "    json.__all__.append('warm-probe')\n"
                 "    t = storage['t']\n"
                 "    t['runs'] = t.get('runs', 0) + 1\n"
                 "    t['seen'] = t.get('seen', []) + [json.__all__.count('warm-probe')]\n")


def run_task_times(srv, n):
    """Runs task `job` n times, each once the one before committed; returns storage t's
    "seen"."""
    for run in range(1, n + 1):
        res = srv.request("POST", "/api/tasks/job/run", {})
        assert res.status in (200, 202), res
        wait_until(lambda: srv.request("GET", "/api/storages/t").body["data"].get("runs") == run,
                   timeout=10, message=f"run {run} committed")
    return srv.request("GET", "/api/storages/t").body["data"]["seen"]


def create(srv, path, body):
    res = srv.request("POST", path, body)
    assert res.status == 201, res
    return res.body


def make_panel(srv, pid, sid):
    create(srv, "/api/storages", {"id": sid, "data": {}})
    create(srv, "/api/panels", {"id": pid, "storage_ids": [sid], "handler": COUNTING,
                                "template": "<p>{{ storage['%s'].seen }}</p>" % sid})


def act(srv, pid, sid):
    res = srv.request("POST", f"/api/panels/{pid}/action", {"action": "go", "payload": {"sid": sid}})
    assert res.status == 200, res
    return srv.request("GET", f"/api/storages/{sid}").body["data"]["seen"]


def test_one_panels_actions_share_a_warm_process_that_no_other_panel_sees(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    make_panel(srv, "b", "sb")
    assert [act(srv, "a", "sa") for _ in range(5)] == [1, 2, 3, 4, 5]
    # Panel b runs the same code, with the same limits, in a process of its own.
    assert act(srv, "b", "sb") == 1


def test_changed_handler_code_gets_a_fresh_process(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    act(srv, "a", "sa")
    act(srv, "a", "sa")
    res = srv.request("PUT", "/api/panels/a/handler", {"handler": COUNTING + "\n# v2\n"})
    assert res.status == 200, res
    assert act(srv, "a", "sa") == 1


def test_a_failed_action_discards_the_panels_warm_process(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    act(srv, "a", "sa")
    act(srv, "a", "sa")
    res = srv.request("POST", "/api/panels/a/action", {"action": "go", "payload": {}})
    assert res.status == 422 and res.body["code"] == "handler_error", res
    assert act(srv, "a", "sa") == 1


def test_reuse_call_runs_every_action_in_a_fresh_process(server):
    srv = start(server, "--set", "sandbox.reuse=call")
    make_panel(srv, "a", "sa")
    assert [act(srv, "a", "sa") for _ in range(3)] == [1, 1, 1]


def test_an_idle_warm_process_is_retired_after_reuse_idle_ms(server):
    srv = start(server, "--set", "sandbox.reuse_idle_ms=200")
    make_panel(srv, "a", "sa")
    assert act(srv, "a", "sa") == 1
    # Retired without any further call: the metrics and the listing say so on their own.
    wait_until(lambda: discarded(srv, "idle") == 1, timeout=10,
               message="the idle process counted as retired")
    assert srv.metric("tessera_sandbox_warm_processes") == 0
    assert warm_of(srv, "a") == []
    # The warm process is retired once idle for 200 ms: wait until a call finds a fresh one.
    wait_until(lambda: act(srv, "a", "sa") == 1, timeout=10, interval=0.3,
               message="a fresh process after the idle time")


def test_a_warm_process_serves_at_most_reuse_max_calls(server):
    srv = start(server, "--set", "sandbox.reuse_max_calls=1")
    make_panel(srv, "a", "sa")
    assert [act(srv, "a", "sa") for _ in range(3)] == [1, 1, 1]


def test_a_task_reuses_its_warm_process_between_runs(server):
    srv = start(server)
    create(srv, "/api/storages", {"id": "t", "data": {}})
    create(srv, "/api/tasks", {"id": "job", "schedule": "0 0 1 1 *", "storage_ids": ["t"],
                               "handler": TASK_COUNTING})
    assert run_task_times(srv, 3) == [1, 2, 3]


@pytest.mark.parametrize("value", ["sometimes", ""])
def test_an_unknown_reuse_mode_stops_start_up_naming_the_key(tmp_path, value):
    from harness import run_tessera
    res = run_tessera("serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
                      "--set", f"sandbox.reuse={value}")
    assert res.returncode != 0
    assert "sandbox.reuse" in res.stderr, res.stderr


def test_a_panel_that_asks_for_a_fresh_process_gets_one_per_call_and_keeps_the_field(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    res = srv.request("PATCH", "/api/panels/a", {"fresh_process": True})
    assert res.status == 200 and res.body["fresh_process"] is True, res
    assert [act(srv, "a", "sa") for _ in range(3)] == [1, 1, 1]
    bundle = srv.request("GET", "/api/panels/a/export").body
    assert bundle["metadata"]["fresh_process"] is True, bundle
    # Imported elsewhere, the panel still asks for it.
    other = start(server)
    assert other.request("POST", "/api/panels/import", bundle).status in (200, 201)
    assert other.request("GET", "/api/panels/a").body["fresh_process"] is True
    bad = srv.request("PATCH", "/api/panels/a", {"fresh_process": "yes"})
    assert bad.status == 400 and "fresh_process" in bad.body["detail"], bad
    # Asking no more: its calls share a warm process again.
    assert srv.request("PATCH", "/api/panels/a", {"fresh_process": False}).status == 200
    assert [act(srv, "a", "sa") for _ in range(2)] == [1, 2]


def test_a_task_that_asks_for_a_fresh_process_gets_one_per_run(server):
    srv = start(server)
    create(srv, "/api/storages", {"id": "t", "data": {}})
    res = srv.request("POST", "/api/tasks", {"id": "job", "schedule": "0 0 1 1 *",
                                             "storage_ids": ["t"], "handler": TASK_COUNTING,
                                             "fresh_process": True})
    assert res.status == 201 and res.body["fresh_process"] is True, res
    assert run_task_times(srv, 2) == [1, 1]


def warm_of(srv, pid):
    return [w for w in srv.request("GET", "/api/sandbox").body["warm"]
            if w["key"].startswith(f"panel:{pid}:")]


def discarded(srv, reason):
    return srv.metric("tessera_sandbox_warm_discarded_total", reason=reason)


def test_get_sandbox_lists_a_panels_warm_process_with_its_calls_and_memory(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    for _ in range(3):
        act(srv, "a", "sa")
    (w,) = warm_of(srv, "a")
    assert w["calls"] == 3 and w["pid"] > 0 and w["idle_ms"] >= 0, w
    assert 0 < w["uss_kib"] <= w["pss_kib"], w  # private pages, and its share of the rest
    assert srv.metric("tessera_sandbox_warm_processes") == 1
    assert srv.metric("tessera_sandbox_warm_private_bytes") == w["uss_kib"] * 1024
    assert warm_of(srv, "b") == []


def test_deleting_a_panel_discards_its_warm_process_at_once(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    act(srv, "a", "sa")
    assert len(warm_of(srv, "a")) == 1
    assert srv.request("DELETE", "/api/panels/a").status == 200
    wait_until(lambda: warm_of(srv, "a") == [], message="the deleted panel's process gone")
    assert discarded(srv, "discarded") == 1
    assert srv.metric("tessera_sandbox_warm_processes") == 0


def test_changed_code_discards_the_old_warm_process_at_once(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    act(srv, "a", "sa")
    (old,) = warm_of(srv, "a")
    res = srv.request("PUT", "/api/panels/a/handler", {"handler": COUNTING + "\n# v2\n"})
    assert res.status == 200, res
    wait_until(lambda: all(w["key"] != old["key"] for w in warm_of(srv, "a")),
               message="the old code's process gone")
    assert discarded(srv, "discarded") == 1
    assert act(srv, "a", "sa") == 1
    (new,) = warm_of(srv, "a")
    assert new["key"] != old["key"] and new["calls"] == 1


def test_a_failed_call_is_counted_as_a_discard_by_reason(server):
    srv = start(server)
    make_panel(srv, "a", "sa")
    act(srv, "a", "sa")
    res = srv.request("POST", "/api/panels/a/action", {"action": "go", "payload": {}})
    assert res.status == 422, res
    assert discarded(srv, "failed") == 1
    assert warm_of(srv, "a") == []
