"""Tasks as a client uses them: create, read, change, run now, delete; scheduled runs at their
cron times, the overlap and misfire policies, restarts (graceful and kill -9) that never run a
scheduled time twice, run history, the logs API and retention, bound panels re-rendering after
a run, the weather demo, and the task metrics. Schedules here fire every second (6-field cron)
so that each scenario takes a few seconds of real time."""
import datetime
import pathlib
import threading
import time

import pytest

from harness import assert_problem, wait_until
from live_client import live, run

TASK_FIELDS = {"id", "name", "schedule", "timezone", "storage_ids", "handler", "enabled",
               "overlap", "misfire", "timeout", "status", "last_run", "last_status", "next_run",
               "fresh_process", "version", "created_at", "updated_at"}
RUN_FIELDS = {"run_id", "task_id", "trigger", "scheduled_for", "started_at", "finished_at",
              "status", "error", "logs", "changed_storages"}

COUNT = (
    "import logging\n"
    "def on_schedule(storage):\n"
    "    c = storage['c']\n"
    "    c['n'] = c.get('n', 0) + 1\n"
    "    print('run', c['n'])\n"
    "    logging.warning('warned %d', c['n'])\n"
)
SLOW = (
    "import time\n"
    "def on_schedule(storage):\n"
    "    time.sleep(1.6)\n"
    "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n"
)
FAIL = "def on_schedule(storage):\n    print('about to fail')\n    raise RuntimeError('feed is down')\n"
LOOP = "def on_schedule(storage):\n    while True:\n        pass\n"
EVERY_SECOND = "* * * * * *"
FAR_AWAY = "0 0 1 1 *"  # once a year: never fires during a test


def ts(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


@pytest.fixture
def srv(server):
    return server()


def create_task(srv, id, schedule=FAR_AWAY, handler=COUNT, storage_ids=("c",), **fields):
    res = srv.request("POST", "/api/tasks", {"id": id, "schedule": schedule, "handler": handler,
                                             "storage_ids": list(storage_ids), **fields})
    assert res.status == 201, res
    return res.body


def task(srv, id):
    res = srv.request("GET", f"/api/tasks/{id}")
    assert res.status == 200, res
    return res.body


def runs(srv, id, limit=100):
    res = srv.request("GET", f"/api/tasks/{id}/runs?limit={limit}")
    assert res.status == 200, res
    return res.body["runs"]


def counter(srv, id="c"):
    res = srv.request("GET", f"/api/storages/{id}")
    assert res.status == 200, res
    return res.body["data"].get("n", 0)


def run_now(srv, id):
    res = srv.request("POST", f"/api/tasks/{id}/run")
    assert res.status == 200, res
    assert set(res.body) == RUN_FIELDS, res.body
    return res.body


def finished(srv, id, count, **match):
    """Waits until `id` has at least `count` finished runs matching `match`; returns them."""
    def done():
        found = [r for r in runs(srv, id) if r["status"] != "running" and
                 all(r[k] == v for k, v in match.items())]
        return found if len(found) >= count else None
    return wait_until(done, timeout=20, message=lambda: f"{count} runs {match}: {runs(srv, id)}")


def disable(srv, id):
    res = srv.request("PATCH", f"/api/tasks/{id}", {"enabled": False})
    assert res.status == 200, res


# --- the REST API ----------------------------------------------------------------------------

def test_a_created_task_is_listed_read_back_and_knows_its_next_fire_time(srv):
    before = datetime.datetime.now(datetime.timezone.utc)
    body = create_task(srv, "nightly", schedule="30 2 * * *", timezone="Europe/Berlin",
                       name="Nightly report", overlap="queue_one", misfire="skip", timeout=5)
    assert set(body) == TASK_FIELDS, body
    assert (body["id"], body["name"], body["schedule"], body["timezone"], body["storage_ids"],
            body["enabled"], body["overlap"], body["misfire"], body["timeout"], body["status"],
            body["last_run"], body["last_status"], body["version"]) == \
        ("nightly", "Nightly report", "30 2 * * *", "Europe/Berlin", ["c"], True, "queue_one",
         "skip", 5.0, "scheduled", None, None, 1)
    nxt = ts(body["next_run"])
    local = nxt.astimezone(datetime.timezone(datetime.timedelta(hours=1)))  # CET in December
    assert (local.hour, local.minute, local.second) == (2, 30, 0), body["next_run"]
    assert before < nxt <= before + datetime.timedelta(days=1), body["next_run"]
    res = srv.request("GET", "/api/tasks/nightly")
    assert res.status == 200 and res.body == body and res.headers.get("ETag") == '"1"', res
    listed = srv.request("GET", "/api/tasks").body["tasks"]
    assert [t["id"] for t in listed] == ["nightly"], listed
    assert "handler" not in listed[0] and listed[0]["next_run"] == body["next_run"], listed
    # Bound storages that did not exist are created empty, as for panels.
    assert srv.request("GET", "/api/storages/c").body["data"] == {}


def test_defaults_are_utc_skip_run_once_enabled_and_the_sandbox_timeout(srv):
    body = create_task(srv, "t")
    assert (body["name"], body["timezone"], body["overlap"], body["misfire"], body["enabled"],
            body["timeout"]) == ("t", "UTC", "skip", "run_once", True, 2.0), body


@pytest.mark.parametrize("fields,detail", [
    ({"schedule": "61 * * * *"}, "minute"),
    ({"schedule": "* * * *"}, "schedule"),
    ({"schedule": "0 0 30 2 *"}, "schedule"),
    ({"schedule": "* * * * MON-FRY"}, "day-of-week"),
    ({"schedule": "@reboot"}, "reboot"),
    ({"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"overlap": "sometimes"}, "overlap"),
    ({"misfire": "never"}, "misfire"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": 3600}, "timeout"),
    ({"enabled": "yes"}, "enabled"),
    ({"storage_ids": ["bad id"]}, "storage_ids"),
    ({"colour": "red"}, "colour"),
    ({"id": "has space"}, "id"),
    ({"handler": ""}, "handler"),
])
def test_a_bad_field_is_refused_with_a_message_naming_it_and_nothing_is_created(srv, fields,
                                                                                 detail):
    body = {"id": "t", "schedule": "* * * * *", "handler": COUNT, **fields}
    problem = assert_problem(srv.request("POST", "/api/tasks", body), 400, "invalid_argument")
    assert detail in problem["detail"], problem
    assert srv.request("GET", "/api/tasks").body == {"tasks": []}


def test_a_task_needs_a_schedule_and_a_handler(srv):
    for missing in ("schedule", "handler"):
        body = {"id": "t", "schedule": "* * * * *", "handler": COUNT}
        del body[missing]
        problem = assert_problem(srv.request("POST", "/api/tasks", body), 400)
        assert missing in problem["detail"], problem


def test_a_handler_that_does_not_compile_or_lacks_on_schedule_is_refused(srv):
    problem = assert_problem(srv.request("POST", "/api/tasks", {
        "id": "t", "schedule": "* * * * *", "handler": "def on_schedule(storage):\n  x = (\n"}),
        400, "syntax_error")
    assert problem["error"]["line"] >= 1, problem
    problem = assert_problem(srv.request("POST", "/api/tasks", {
        "id": "t", "schedule": "* * * * *", "handler": "def on_action(a, p, s):\n  pass\n"}),
        400)
    assert "on_schedule" in problem["detail"], problem
    assert srv.request("GET", "/api/tasks").body == {"tasks": []}


def test_a_duplicate_id_is_a_conflict(srv):
    create_task(srv, "t")
    assert_problem(srv.request("POST", "/api/tasks", {"id": "t", "schedule": "* * * * *",
                                                      "handler": COUNT}), 409, "conflict")


def test_patch_changes_the_schedule_at_once_and_honours_if_match(srv):
    create_task(srv, "t", schedule="0 0 1 1 *")
    res = srv.request("PATCH", "/api/tasks/t", {"schedule": "*/5 * * * *", "name": "five"},
                      {"If-Match": '"1"'})
    assert res.status == 200, res
    nxt = ts(res.body["next_run"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert nxt.minute % 5 == 0 and nxt.second == 0 and nxt - now <= datetime.timedelta(
        minutes=5), res.body
    assert (res.body["name"], res.body["version"]) == ("five", 2)
    assert_problem(srv.request("PATCH", "/api/tasks/t", {"name": "x"}, {"If-Match": '"1"'}),
                   412, "precondition_failed")
    problem = assert_problem(srv.request("PATCH", "/api/tasks/t", {"schedule": "* 25 * * *"}),
                             400)
    assert "hour" in problem["detail"], problem
    assert_problem(srv.request("PATCH", "/api/tasks/t", {"handler": COUNT}), 400)
    assert task(srv, "t")["schedule"] == "*/5 * * * *"


def test_a_disabled_task_has_no_next_run_and_enabling_it_schedules_it(srv):
    body = create_task(srv, "t", enabled=False)
    assert (body["status"], body["next_run"]) == ("disabled", None), body
    res = srv.request("PATCH", "/api/tasks/t", {"enabled": True})
    assert res.status == 200 and res.body["status"] == "scheduled", res
    assert ts(res.body["next_run"]) > datetime.datetime.now(datetime.timezone.utc)


def test_the_handler_is_read_and_replaced_and_bad_code_keeps_the_old_one(srv):
    create_task(srv, "t")
    assert srv.request("GET", "/api/tasks/t/handler").body == {"handler": COUNT}
    assert_problem(srv.request("PUT", "/api/tasks/t/handler", {"handler": "def on_schedule(:\n"}),
                   400, "syntax_error")
    assert srv.request("GET", "/api/tasks/t/handler").body == {"handler": COUNT}
    new = "def on_schedule(storage):\n    storage['c']['n'] = 42\n"
    res = srv.request("PUT", "/api/tasks/t/handler", {"handler": new})
    assert res.status == 200 and res.body["version"] == 2, res
    run_now(srv, "t")
    assert counter(srv) == 42


def test_unknown_tasks_are_404(srv):
    for method, path in [("GET", "/api/tasks/nope"), ("PATCH", "/api/tasks/nope"),
                         ("DELETE", "/api/tasks/nope"), ("POST", "/api/tasks/nope/run"),
                         ("GET", "/api/tasks/nope/runs"), ("PUT", "/api/tasks/nope/handler")]:
        body = {"handler": COUNT} if method == "PUT" else {"name": "x"} if method == "PATCH" \
            else None
        assert_problem(srv.request(method, path, body), 404, "not_found")


def test_deleting_a_task_removes_it_its_runs_and_its_logs(srv):
    create_task(srv, "t")
    run_now(srv, "t")
    assert srv.request("GET", "/api/logs?task_id=t").body["count"] == 2
    assert srv.request("DELETE", "/api/tasks/t").body == {"success": True}
    assert_problem(srv.request("GET", "/api/tasks/t"), 404)
    assert srv.request("GET", "/api/logs?task_id=t").body == {"logs": [], "count": 0}
    create_task(srv, "t")  # the id is free again, with an empty history
    assert runs(srv, "t") == []


# --- runs ------------------------------------------------------------------------------------

def test_run_now_returns_the_finished_run_with_its_logs_and_changed_storages(srv):
    create_task(srv, "t")
    before = datetime.datetime.now(datetime.timezone.utc)
    r = run_now(srv, "t")
    assert (r["run_id"], r["task_id"], r["trigger"], r["scheduled_for"], r["status"],
            r["error"], r["changed_storages"]) == \
        ("t:1", "t", "manual", None, "succeeded", None, ["c"]), r
    assert before - datetime.timedelta(seconds=1) <= ts(r["started_at"]) <= ts(r["finished_at"])
    assert [(line["level"], line["message"]) for line in r["logs"]] == \
        [("info", "run 1"), ("warning", "warned 1")], r["logs"]
    assert counter(srv) == 1
    t = task(srv, "t")
    assert (t["last_run"], t["last_status"]) == (r["started_at"], "succeeded"), t
    assert runs(srv, "t") == [r]


def test_a_failing_handler_is_a_failed_run_with_the_message_and_changes_nothing(srv):
    create_task(srv, "t", handler=FAIL)
    r = run_now(srv, "t")
    assert r["status"] == "failed" and r["changed_storages"] == [], r
    assert "feed is down" in r["error"]["message"] and r["error"]["kind"] == "handler_error", r
    assert [line["message"] for line in r["logs"]] == ["about to fail"], r
    assert counter(srv) == 0
    assert task(srv, "t")["last_status"] == "failed"


def test_a_handler_over_its_timeout_is_timed_out(srv):
    create_task(srv, "t", handler=LOOP, timeout=0.5)
    r = run_now(srv, "t")
    assert r["status"] == "timed_out" and r["error"]["kind"] == "timeout", r
    assert ts(r["finished_at"]) - ts(r["started_at"]) < datetime.timedelta(seconds=5), r


def test_runs_are_listed_newest_first_and_paginated(srv):
    create_task(srv, "t")
    ids = [run_now(srv, "t")["run_id"] for _ in range(5)]
    page = srv.request("GET", "/api/tasks/t/runs?limit=2").body
    assert [r["run_id"] for r in page["runs"]] == ids[::-1][:2] and page["next_cursor"], page
    second = srv.request("GET", f"/api/tasks/t/runs?limit=2&cursor={page['next_cursor']}").body
    assert [r["run_id"] for r in second["runs"]] == ids[::-1][2:4], second
    last = srv.request("GET", f"/api/tasks/t/runs?limit=2&cursor={second['next_cursor']}").body
    assert [r["run_id"] for r in last["runs"]] == ids[:1], last
    assert_problem(srv.request("GET", "/api/tasks/t/runs?limit=0"), 400)
    assert_problem(srv.request("GET", "/api/tasks/t/runs?cursor=abc"), 400)


# --- the schedule ----------------------------------------------------------------------------

def test_an_enabled_task_fires_at_each_scheduled_second_with_little_lag(srv):
    create_task(srv, "t", schedule=EVERY_SECOND)
    done = finished(srv, "t", 3, trigger="schedule")
    disable(srv, "t")
    for r in done:
        assert r["status"] == "succeeded", r
        when = ts(r["scheduled_for"])
        assert when.microsecond == 0, r
        lag = ts(r["started_at"]) - when
        assert datetime.timedelta(0) <= lag < datetime.timedelta(seconds=1), r
    slots = [r["scheduled_for"] for r in runs(srv, "t")]
    assert len(slots) == len(set(slots)), slots
    assert counter(srv) == len([r for r in runs(srv, "t") if r["status"] == "succeeded"])
    assert srv.metric("tessera_task_schedule_lag_seconds_count") >= 3


def test_overlap_skip_records_skipped_runs_and_never_runs_two_at_once(srv):
    create_task(srv, "t", schedule=EVERY_SECOND, handler=SLOW, overlap="skip", timeout=5)
    finished(srv, "t", 2, status="succeeded")
    finished(srv, "t", 2, status="skipped")
    disable(srv, "t")
    wait_until(lambda: all(r["status"] != "running" for r in runs(srv, "t")), timeout=10)
    all_runs = runs(srv, "t")
    done = sorted((ts(r["started_at"]), ts(r["finished_at"])) for r in all_runs
                  if r["status"] == "succeeded")
    for (_, end), (start, _) in zip(done, done[1:]):
        assert start >= end, done  # one at a time
    for r in all_runs:
        if r["status"] == "skipped":
            assert r["error"]["kind"] == "overlap" and r["trigger"] == "schedule", r
    assert srv.metric("tessera_task_skips_total", reason="overlap") >= 2


def test_overlap_queue_one_keeps_one_waiting_run_and_skips_the_rest(srv):
    create_task(srv, "t", schedule=EVERY_SECOND, handler=SLOW, overlap="queue_one", timeout=5)
    finished(srv, "t", 3, status="succeeded")
    disable(srv, "t")
    wait_until(lambda: all(r["status"] != "running" for r in runs(srv, "t")), timeout=10)
    done = sorted((ts(r["started_at"]), ts(r["finished_at"]), ts(r["scheduled_for"]))
                  for r in runs(srv, "t") if r["status"] == "succeeded")
    for (_, end, _), (start, _, slot) in zip(done, done[1:]):
        assert start >= end, done
    # A queued run starts when the previous one ends, well after its scheduled second.
    assert any(start - slot >= datetime.timedelta(milliseconds=500) for start, _, slot in done)
    assert any(r["status"] == "skipped" for r in runs(srv, "t"))


def test_overlap_allow_runs_concurrently(srv):
    # Runs that wrote the same storage would conflict and re-run; these only read it.
    sleepy = "import time\ndef on_schedule(storage):\n    time.sleep(1.6)\n"
    create_task(srv, "t", schedule=EVERY_SECOND, handler=sleepy, overlap="allow", timeout=5)
    done = finished(srv, "t", 3, status="succeeded")
    disable(srv, "t")
    spans = sorted((ts(r["started_at"]), ts(r["finished_at"])) for r in done)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    assert not any(r["status"] == "skipped" for r in runs(srv, "t"))


def test_a_manual_run_while_one_is_running_is_a_conflict_under_overlap_skip(srv):
    create_task(srv, "t", handler=SLOW, timeout=5)
    first = {}
    thread = threading.Thread(target=lambda: first.update(r=run_now(srv, "t")))
    thread.start()
    wait_until(lambda: task(srv, "t")["status"] == "running")
    assert_problem(srv.request("POST", "/api/tasks/t/run"), 409, "conflict")
    thread.join(10)
    assert first["r"]["status"] == "succeeded"


# --- restarts and misfires --------------------------------------------------------------------

def down_for(srv, seconds, kill=False):
    if kill:
        srv.kill9()
    else:
        srv.stop()
    time.sleep(seconds)  # the downtime itself is the scenario: scheduled times pass unrun
    srv.all_stderr += srv.stderr()
    return srv.start()


@pytest.mark.parametrize("kill", [False, True], ids=["graceful", "kill9"])
def test_after_downtime_a_missed_schedule_runs_once_and_no_time_runs_twice(srv, kill):
    create_task(srv, "t", schedule=EVERY_SECOND)
    finished(srv, "t", 2, trigger="schedule")
    stopped = datetime.datetime.now(datetime.timezone.utc)
    down_for(srv, 3, kill)
    restarted = datetime.datetime.now(datetime.timezone.utc)
    catch_up = finished(srv, "t", 1, trigger="catch_up")
    assert len(catch_up) == 1, catch_up
    assert stopped - datetime.timedelta(seconds=1) <= ts(catch_up[0]["scheduled_for"]) <= \
        restarted, catch_up
    finished(srv, "t", 1, trigger="schedule", status="succeeded")
    disable(srv, "t")
    all_runs = runs(srv, "t")
    slots = [r["scheduled_for"] for r in all_runs]
    assert len(slots) == len(set(slots)), slots
    assert srv.metric("tessera_task_misfires_total", policy="run_once") == 1
    assert counter(srv) == len([r for r in all_runs if r["status"] == "succeeded"])


def test_misfire_skip_records_one_skipped_run_for_the_missed_times(srv):
    create_task(srv, "t", schedule=EVERY_SECOND, misfire="skip")
    finished(srv, "t", 1, trigger="schedule")
    down_for(srv, 3)
    skipped = finished(srv, "t", 1, status="skipped")
    assert len(skipped) == 1 and skipped[0]["error"]["kind"] == "misfire", skipped
    assert "skip" in skipped[0]["error"]["message"], skipped
    assert not [r for r in runs(srv, "t") if r["trigger"] == "catch_up" and
                r["status"] == "succeeded"]


def test_misfire_catch_up_runs_the_newest_missed_times_up_to_the_bound(server):
    srv = server("--set", "tasks.max_catch_up=2")
    create_task(srv, "t", schedule=EVERY_SECOND, misfire="catch_up")
    finished(srv, "t", 1, trigger="schedule")
    down_for(srv, 4)
    caught = finished(srv, "t", 2, trigger="catch_up", status="succeeded")
    assert len(caught) == 2, caught
    first, second = sorted(ts(r["scheduled_for"]) for r in caught)
    assert second - first == datetime.timedelta(seconds=1), caught
    limit = [r for r in runs(srv, "t") if r["error"] and r["error"]["kind"] == "catch_up_limit"]
    assert len(limit) == 1 and limit[0]["status"] == "skipped", runs(srv, "t")


def test_a_run_cut_off_by_kill9_is_recorded_as_interrupted_and_not_run_again(srv):
    create_task(srv, "t", handler=SLOW, timeout=5)
    cut = []

    def manual_run():
        try:
            srv.request("POST", "/api/tasks/t/run")
        except ConnectionError as e:  # the server dies under it: expected
            cut.append(e)

    thread = threading.Thread(target=manual_run)
    thread.start()
    # Once its record is on disk (written ahead of the handler), the run has started.
    wait_until(lambda: [r["status"] for r in runs(srv, "t")] == ["running"])
    down_for(srv, 0, kill=True)
    thread.join(10)
    assert cut, "the manual run's connection should have been cut by kill -9"
    (r,) = runs(srv, "t")
    assert (r["status"], r["error"]["kind"]) == ("failed", "interrupted"), r
    assert task(srv, "t")["status"] == "scheduled"


def test_a_graceful_stop_lets_a_run_in_progress_finish_and_records_it(srv):
    create_task(srv, "t", schedule=EVERY_SECOND, handler=SLOW, timeout=5)
    # Its record on disk says running: the handler (1.6 s) has started.
    wait_until(lambda: [r["status"] for r in runs(srv, "t")][:1] == ["running"])
    started = time.monotonic()
    srv.stop()  # SIGTERM; must exit 0
    took = time.monotonic() - started
    srv.all_stderr += srv.stderr()
    srv.start()
    disable(srv, "t")
    first = runs(srv, "t")[-1]
    assert first["status"] == "succeeded", first
    assert counter(srv) >= 1
    assert not [r for r in runs(srv, "t") if r["error"] and r["error"]["kind"] == "interrupted"]
    assert took < 5, f"the stop took {took:.1f}s (shutdown grace 5 s)"


def test_a_run_longer_than_the_shutdown_grace_is_cut_off_and_recorded_interrupted(server):
    srv = server("--set", "server.shutdown_grace_ms=300")
    create_task(srv, "t", handler=SLOW, schedule=EVERY_SECOND, timeout=5)
    wait_until(lambda: [r["status"] for r in runs(srv, "t")][:1] == ["running"])
    srv.stop()
    assert "still running at the end of the shutdown grace" in srv.stderr()
    srv.all_stderr += srv.stderr()
    srv.start()
    disable(srv, "t")
    first = runs(srv, "t")[-1]
    assert (first["status"], first["error"]["kind"]) == ("failed", "interrupted"), first


def test_tasks_and_their_history_survive_a_restart(srv):
    create_task(srv, "t", schedule="15 4 * * *", timezone="Asia/Taipei")
    r = run_now(srv, "t")
    before = task(srv, "t")
    srv.restart()
    assert task(srv, "t") == before
    assert runs(srv, "t") == [r]


# --- logs ------------------------------------------------------------------------------------

def test_logs_are_queried_by_task_level_time_and_limit(srv):
    create_task(srv, "a")
    create_task(srv, "b", storage_ids=("d",), handler=COUNT.replace("'c'", "'d'"))
    t0 = datetime.datetime.now(datetime.timezone.utc)
    run_now(srv, "a")
    run_now(srv, "b")
    t1 = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(0.01)  # so that the next run's lines are strictly after t1
    run_now(srv, "a")
    logs = srv.request("GET", "/api/logs").body
    assert logs["count"] == 6 and len(logs["logs"]) == 6, logs
    stamps = [ts(line["created_at"]) for line in logs["logs"]]
    assert stamps == sorted(stamps, reverse=True), stamps
    assert set(logs["logs"][0]) == {"id", "task_id", "run_id", "level", "message", "source",
                                    "created_at"}
    only_a = srv.request("GET", "/api/logs?task_id=a").body["logs"]
    assert [line["message"] for line in only_a] == ["warned 2", "run 2", "warned 1", "run 1"]
    warnings = srv.request("GET", "/api/logs?level=warning").body["logs"]
    assert {line["level"] for line in warnings} == {"warning"} and len(warnings) == 3
    iso = lambda t: t.isoformat().replace("+00:00", "Z")
    window = srv.request("GET", f"/api/logs?since={iso(t0)}&until={iso(t1)}").body["logs"]
    assert sorted(line["run_id"] for line in window) == ["a:1", "a:1", "b:1", "b:1"], window
    assert len(srv.request("GET", "/api/logs?limit=2").body["logs"]) == 2


@pytest.mark.parametrize("query", ["level=loud", "since=yesterday", "until=2026-13-01T00:00:00Z",
                                   "limit=0", "limit=5000", "task_id=bad%20id"])
def test_a_bad_log_query_is_a_400(srv, query):
    assert_problem(srv.request("GET", f"/api/logs?{query}"), 400, "invalid_argument")


def test_delete_logs_before_a_time_returns_how_many_it_deleted(srv):
    create_task(srv, "t")
    run_now(srv, "t")
    run_now(srv, "t")
    cut = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(milliseconds=1)
    time.sleep(0.01)
    run_now(srv, "t")
    iso = cut.isoformat().replace("+00:00", "Z")
    assert_problem(srv.request("DELETE", "/api/logs"), 400)
    assert_problem(srv.request("DELETE", "/api/logs?before=soon"), 400)
    res = srv.request("DELETE", f"/api/logs?before={iso}")
    assert res.status == 200 and res.body == {"deleted": 4}, res
    left = srv.request("GET", "/api/logs").body["logs"]
    assert [line["run_id"] for line in left] == ["t:3", "t:3"], left
    assert [len(r["logs"]) for r in runs(srv, "t")] == [2, 0, 0]
    assert srv.request("DELETE", f"/api/logs?before={iso}").body == {"deleted": 0}


def test_only_the_newest_runs_per_task_are_kept_with_their_logs(server):
    srv = server("--set", "tasks.keep_runs=3")
    create_task(srv, "t")
    for _ in range(5):
        run_now(srv, "t")
    assert [r["run_id"] for r in runs(srv, "t")] == ["t:5", "t:4", "t:3"]
    assert {line["run_id"] for line in srv.request("GET", "/api/logs").body["logs"]} == \
        {"t:5", "t:4", "t:3"}


# --- storages and panels ----------------------------------------------------------------------

def test_a_scheduled_run_re_renders_a_bound_panel_for_its_subscribers(srv):
    res = srv.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                              "template": "n={{ c.get('n', 0) }}"})
    assert res.status == 201, res

    async def scenario():
        async with live(srv) as ws:
            first = await ws.subscribe("p")
            assert first["html"] == "n=0", first
            create_task(srv, "t", schedule=EVERY_SECOND)
            msg, _ = await ws.render("p", lambda m: m["html"] == "n=2", timeout=10)
            assert msg["version"] > first["version"], msg

    run(scenario())
    disable(srv, "t")


def test_a_task_run_and_concurrent_rest_writes_of_the_same_storage_lose_nothing(srv):
    srv.request("POST", "/api/storages", {"id": "c", "data": {"n": 0, "other": 0}})
    create_task(srv, "t", schedule=EVERY_SECOND,
                handler="import time\ndef on_schedule(storage):\n"
                        "    n = storage['c']['n']\n    time.sleep(0.05)\n"
                        "    storage['c']['n'] = n + 1\n")
    for i in range(40):
        cur = srv.request("GET", "/api/storages/c").body
        data = dict(cur["data"], other=cur["data"]["other"] + 1)
        res = srv.request("PATCH", "/api/storages/c", {"data": data},
                          {"If-Match": f'"{cur["version"]}"'})
        assert res.status in (200, 412), res
        if res.status == 412:
            continue
        time.sleep(0.02)
    disable(srv, "t")
    wait_until(lambda: all(r["status"] != "running" for r in runs(srv, "t")))
    ok = len([r for r in runs(srv, "t") if r["status"] == "succeeded"])
    assert ok >= 1 and counter(srv) == ok


# --- demo and metrics ---------------------------------------------------------------------------

def weather_reading(data):
    """What the demo's offline generator yields for this storage's city and minute."""
    import importlib.util
    path = pathlib.Path(__file__).parents[2] / "web/demo/tasks/weather-refresh.py"
    spec = importlib.util.spec_from_file_location("weather_refresh", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    minute = ts(data["updated_at"])
    reading = module.generated(data.get("city") or "Taipei", minute)
    reading["time"] = minute.strftime("%H:%M")
    return reading


def test_the_weather_demo_task_fills_the_storage_its_panel_renders(server):
    srv = server("--set", "panels.demos=true")
    t = task(srv, "weather-refresh")
    assert (t["schedule"], t["storage_ids"], t["enabled"]) == ("* * * * *", ["weather"], True)
    r = run_now(srv, "weather-refresh")
    assert r["status"] == "succeeded" and r["changed_storages"] == ["weather"], r
    data = srv.request("GET", "/api/storages/weather").body["data"]
    assert data["current"]["source"] == "generator" and len(data["readings"]) == 1, data
    html = srv.request("GET", "/api/panels/weather/render").body["html"]
    assert f"{data['current']['temp_c']} °C" in html, html
    # The reading is the demo generator's, for the city and the minute of the run.
    assert data["current"] == weather_reading(data), data
    again = run_now(srv, "weather-refresh")
    assert again["status"] == "succeeded", again
    data2 = srv.request("GET", "/api/storages/weather").body["data"]
    assert data2["current"] == weather_reading(data2), data2
    assert data2["readings"] == [data["current"], data2["current"]], data2


def test_task_metrics_count_runs_enabled_tasks_and_the_queue(srv):
    create_task(srv, "a")
    create_task(srv, "b", enabled=False)
    create_task(srv, "f", handler=FAIL)
    run_now(srv, "a")
    run_now(srv, "f")
    m = srv.metrics()
    value = lambda name, **labels: m.get((name, frozenset(labels.items())), 0.0)
    assert value("tessera_tasks_enabled") == 2
    assert value("tessera_task_schedule_queue_size") == 2
    assert value("tessera_task_runs_total", status="succeeded") == 1
    assert value("tessera_task_runs_total", status="failed") == 1
    srv.request("DELETE", "/api/tasks/a")
    assert srv.metric("tessera_tasks_enabled") == 1
    # The scheduler (an actor of its own) drops the deleted task's entry right after.
    wait_until(lambda: srv.metric("tessera_task_schedule_queue_size") == 1, timeout=5)


def test_disabling_a_task_cancels_its_queued_run(srv):
    create_task(srv, "t", schedule=EVERY_SECOND, handler=SLOW, overlap="queue_one", timeout=5)
    wait_until(lambda: task(srv, "t")["status"] == "running", timeout=10)
    first = ts(runs(srv, "t")[0]["scheduled_for"])
    # The next second falls due while the first run is busy and is queued; the task then
    # registers the second after it.
    wait_until(lambda: ts(task(srv, "t")["next_run"]) >= first + datetime.timedelta(seconds=2),
               timeout=10)
    disable(srv, "t")
    wait_until(lambda: all(r["status"] != "running" for r in runs(srv, "t")), timeout=10)
    all_runs = runs(srv, "t")
    cancelled = [r for r in all_runs if r["error"] and r["error"]["kind"] == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["status"] == "skipped", all_runs
    assert len([r for r in all_runs if r["status"] == "succeeded"]) == 1, all_runs


def test_the_weather_demo_fetches_the_configured_url_instead_of_generating(server):
    import http.server
    import json as _json

    reading = {"temp_c": 21.46, "condition": "drizzle", "humidity": 77, "wind_kmh": 9}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = _json.dumps(reading).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    source = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=source.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{source.server_port}/weather.json"
    try:
        srv = server("--set", "panels.demos=true", "--set", f"tasks.weather_url={url}",
                     "--set", "sandbox.network=true")
        r = run_now(srv, "weather-refresh")
        assert r["status"] == "succeeded", r
        current = srv.request("GET", "/api/storages/weather").body["data"]["current"]
        assert (current["temp_c"], current["condition"], current["source"]) == \
            (21.5, "drizzle", url), current
    finally:
        source.shutdown()


def test_the_task_list_pages_by_id_when_asked(srv):
    for id in ("a", "b", "c"):
        create_task(srv, id)
    page = srv.request("GET", "/api/tasks?limit=2").body
    assert [t["id"] for t in page["tasks"]] == ["a", "b"] and page["next_after"] == "b", page
    rest = srv.request("GET", "/api/tasks?limit=2&after=b").body
    assert [t["id"] for t in rest["tasks"]] == ["c"] and rest["next_after"] is None, rest
    assert [t["id"] for t in srv.request("GET", "/api/tasks").body["tasks"]] == ["a", "b", "c"]
    assert_problem(srv.request("GET", "/api/tasks?limit=0"), 400)
    assert_problem(srv.request("GET", "/api/tasks?after=bad%20id"), 400)


def test_storages_newly_bound_by_a_patch_are_created_empty(srv):
    create_task(srv, "t")
    res = srv.request("PATCH", "/api/tasks/t", {"storage_ids": ["c", "fresh"]})
    assert res.status == 200 and res.body["storage_ids"] == ["c", "fresh"], res
    assert srv.request("GET", "/api/storages/fresh").body["data"] == {}
