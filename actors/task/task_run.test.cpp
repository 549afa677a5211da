#include "actors/task/task_run.hpp"

#include <doctest/doctest.h>

#include "adapters/error.hpp"

using namespace tessera;
using namespace tessera::task;
using json = nlohmann::json;

namespace {

task_record nightly() {
  task_record t;
  t.id = "nightly";
  t.name = "Nightly report";
  t.schedule = "0 3 * * *";
  t.timezone = "Europe/Berlin";
  t.handler = "def on_schedule(storage): pass";
  t.timeout_ms = 1500;
  return t;
}

storage::atomic_outcome outcome(json answer) {
  storage::atomic_outcome o;
  o.answer = std::move(answer);
  return o;
}

}  // namespace

TEST_SUITE("task runs") {
  TEST_CASE("a run starts running, a skipped one is finished when it starts") {
    auto r =
        begin_run("nightly", 7, planned_run{"schedule", 1700000000000}, 1700000000123, "running");
    CHECK(r.task_id == "nightly");
    CHECK(r.seq == 7);
    CHECK(r.trigger == "schedule");
    CHECK(r.scheduled_for == 1700000000000);
    CHECK(r.started_at == 1700000000123);
    CHECK(r.finished_at == 0);
    auto s = begin_run("nightly", 8, planned_run{"catch_up", 0}, 5, "skipped");
    CHECK(s.status == "skipped");
    CHECK(s.finished_at == 5);
  }

  TEST_CASE("the call of a run carries the task, its timing and the storages as they are") {
    auto t = nightly();
    auto r = begin_run("nightly", 1, planned_run{"schedule", 1700000000000}, 0, "running");
    storage::snapshot s;
    s["orders"] = {R"({"n": 1})", 4};
    auto c = schedule_call(t, r, "task:nightly/abc")(s);
    CHECK(c.kind == sandbox::call_kind::schedule);
    CHECK(c.timeout_ms == 1500);
    CHECK(c.reuse_key == "task:nightly/abc");
    CHECK(c.body.find(R"("storage":{"orders":{"n": 1}})") != std::string::npos);  // as stored
    auto body = json::parse(c.body);
    CHECK(body["handler"] == t.handler);
    CHECK(body["task"]["id"] == "nightly");
    CHECK(body["task"]["timezone"] == "Europe/Berlin");
    CHECK(body["task"]["trigger"] == "schedule");
    CHECK(body["task"]["scheduled_for"] == "2023-11-14T22:13:20.000Z");
    auto manual = begin_run("nightly", 2, planned_run{"manual", 0}, 0, "running");
    CHECK(json::parse(schedule_call(t, manual, "")(s).body)["task"]["scheduled_for"].is_null());
  }

  TEST_CASE("a run that committed succeeds with the storages it changed and its logs") {
    auto r = begin_run("nightly", 1, planned_run{"manual", 0}, 10, "running");
    auto logs = settle_run(
        r, outcome({{"changed", {{"a", {{"n", 1}}}, {"b", json::object()}}}, {"logs", {"hi"}}}),
        20);
    CHECK(r.status == "succeeded");
    CHECK(r.finished_at == 20);
    CHECK(r.changed_storages == std::vector<std::string>{"a", "b"});
    CHECK(logs == json{"hi"});
  }

  TEST_CASE("a handler's time running out is timed_out; its error and logs are kept") {
    auto r = begin_run("nightly", 1, planned_run{"manual", 0}, 10, "running");
    json answer = {{"ok", false},
                   {"error", {{"kind", "timeout"}, {"message", "1.5 s"}}},
                   {"logs", {"started"}}};
    auto logs = settle_run(r, make_error(errc::sandbox_failed, answer.dump()), 20);
    CHECK(r.status == "timed_out");
    CHECK(r.error["message"] == "1.5 s");
    CHECK(logs == json{"started"});
    auto crashed = begin_run("nightly", 2, planned_run{"manual", 0}, 10, "running");
    settle_run(crashed, make_error(errc::sandbox_failed, R"({"error":{"kind":"crashed"}})"), 20);
    CHECK(crashed.status == "failed");
    auto garbled = begin_run("nightly", 3, planned_run{"manual", 0}, 10, "running");
    CHECK(settle_run(garbled, make_error(errc::sandbox_failed, "not json"), 20) == json::array());
    CHECK(garbled.status == "failed");
    CHECK(garbled.error == json::object());
  }

  TEST_CASE("a run that failed outside the sandbox names the error's kind and message") {
    auto r = begin_run("nightly", 1, planned_run{"manual", 0}, 10, "running");
    auto logs = settle_run(r, make_error(errc::conflict, "storages kept changing"), 20);
    CHECK(r.status == "failed");
    CHECK(r.error["kind"] == "conflict");
    CHECK(r.error["message"] == "storages kept changing");
    CHECK(logs == json::array());
  }
}
