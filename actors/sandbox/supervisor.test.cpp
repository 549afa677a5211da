#include "actors/sandbox/supervisor.hpp"

#include <doctest/doctest.h>
#include <signal.h>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "adapters/metrics/registry.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::sandbox;
using namespace std::chrono_literals;

namespace {

const char* trivial_action = R"({"handler":"def on_action(a, p, s):\n    s['c']['n'] += 1\n",)"
                             R"("action":"inc","payload":{},"storage":{"c":{"n":1}},)"
                             R"("template":"<b>{{ c.n }}</b>"})";

struct fixture {
  std::shared_ptr<prometheus::Registry> registry = adapters::make_metrics_registry();
  sandbox_metrics metrics{*registry};
  runtime::system_config cfg{2, {add_sandbox_messages}};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  supervisor_actor sup;

  explicit fixture(size_t workers = 1, std::string exe = TESSERA_SANDBOX_BIN,
                   size_t queue_limit = 64, std::chrono::milliseconds max_timeout = 30s) {
    auto c = supervisor_config::from_settings(config::defaults());
    c.max_timeout = max_timeout;
    c.workers = workers;
    c.executor.spawn.executable = std::move(exe);
    c.executor.metrics = &metrics;
    c.queue_limit = queue_limit;
    sup = sys.spawn(sandbox_supervisor, c);
  }

  ~fixture() { self->send_exit(sup, caf::exit_reason::user_shutdown); }

  call_result run(call c) {
    call_result out = failed_result("internal", "Test", "no reply");
    self->request(sup, 30s, run_atom::value, std::move(c))
        .receive([&](call_result& r) { out = std::move(r); }, [&](caf::error&) {});
    return out;
  }

  nlohmann::json status() {
    nlohmann::json out;
    self->request(sup, 5s, status_atom::value)
        .receive([&](std::string& s) { out = nlohmann::json::parse(s); }, [&](caf::error&) {});
    return out;
  }

  // Polls the supervisor's status until `pred` holds or 10 s pass.
  template <class Pred>
  bool status_becomes(Pred pred) {
    for (auto until = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(10ms))
      if (auto s = status(); pred(s)) return true;
    return false;
  }
};

call action(std::string body = trivial_action) {
  return call{call_kind::action, std::move(body), 0, 0, {}};
}

}  // namespace

TEST_SUITE("actors.sandbox") {
  TEST_CASE("an action returns only the storages it changed and the re-rendered html") {
    fixture f;
    auto r = f.run(action());
    REQUIRE(r.outcome == "ok");
    auto j = nlohmann::json::parse(r.body);
    CHECK(j["changed"] == nlohmann::json{{"c", {{"n", 2}}}});
    CHECK(j["html"] == "<b>2</b>");
  }

  TEST_CASE("every call is answered exactly once when calls outnumber workers") {
    fixture f{1};
    constexpr int calls = 12;
    int ok = 0, answered = 0;
    for (int i = 0; i < calls; ++i) f.self->send(f.sup, run_atom::value, action());
    for (int i = 0; i < calls; ++i)
      f.self->receive([&](call_result& r) {
        ++answered;
        ok += r.outcome == "ok";
      });
    CHECK(answered == calls);
    CHECK(ok == calls);
    f.self->receive([&](call_result&) { ++answered; }, caf::after(200ms) >> [] {});
    CHECK(answered == calls);
  }

  TEST_CASE("a call that arrives when the queue is full is refused as overloaded") {
    fixture f{1, TESSERA_SANDBOX_BIN, 1};
    REQUIRE(f.status_becomes([](auto& s) { return s["workers"][0]["state"] == "idle"; }));
    auto slow = action(R"({"handler":"import time\ndef on_schedule(s):\n    time.sleep(1)\n"})");
    slow.kind = call_kind::schedule;
    for (int i = 0; i < 3; ++i) f.self->send(f.sup, run_atom::value, slow);
    std::vector<std::string> outcomes;
    for (int i = 0; i < 3; ++i)
      f.self->receive([&](call_result& r) { outcomes.push_back(r.outcome); });
    CHECK(std::count(outcomes.begin(), outcomes.end(), "overloaded") == 1);
    CHECK(std::count(outcomes.begin(), outcomes.end(), "ok") == 2);
  }

  TEST_CASE("a worker killed from outside is replaced and the next call succeeds") {
    fixture f{1};
    REQUIRE(f.status_becomes([](auto& s) { return s["workers"][0]["state"] == "idle"; }));
    auto pid = f.status()["workers"][0]["pid"].get<int>();
    REQUIRE(pid > 0);
    ::kill(pid, SIGKILL);
    CHECK(f.status_becomes([&](auto& s) {
      auto& w = s["workers"][0];
      return w["state"] == "idle" && w["pid"] != pid && w["restarts"] == 1;
    }));
    CHECK(f.run(action()).outcome == "ok");
  }

  TEST_CASE("a worker that cannot start is reported as crash-looping and calls fail fast") {
    fixture f{1, "/bin/false"};
    auto r = f.run(action());
    CHECK(r.outcome == "unavailable");
    CHECK(f.status()["workers"][0]["state"] == "crash_loop");
    auto started = std::chrono::steady_clock::now();
    CHECK(f.run(action()).outcome == "unavailable");
    CHECK(std::chrono::steady_clock::now() - started < 1s);
  }

  TEST_CASE("a timeout above the maximum is clamped to the maximum") {
    fixture f{1, TESSERA_SANDBOX_BIN, 64, 300ms};
    call c = action(R"({"handler":"def on_schedule(s):\n    while True:\n        pass\n"})");
    c.kind = call_kind::schedule;
    c.timeout_ms = 10'000'000;
    auto started = std::chrono::steady_clock::now();
    auto r = f.run(c);
    CHECK(r.outcome == "timeout");
    CHECK(r.body.find("timeout of 300 ms") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - started < 5s);
  }

  TEST_CASE("the request header carries the call's limits") {
    executor_config cfg;
    auto payload = frame_payload(call{call_kind::schedule, "{}", 1500, 128, {}}, cfg);
    auto newline = payload.find('\n');
    REQUIRE(newline != std::string::npos);
    auto header = nlohmann::json::parse(payload.substr(0, newline));
    CHECK(header["kind"] == "schedule");
    CHECK(header["timeout_ms"] == 1500);
    CHECK(header["memory_mb"] == 128);
    CHECK(header["max_output_bytes"] == cfg.max_output_bytes);
    CHECK(payload.substr(newline + 1) == "{}");
  }

  TEST_CASE("a worker answer must be a response object") {
    CHECK(read_answer(R"({"ok":true,"changed":{}})")->outcome == "ok");
    CHECK(read_answer(R"({"ok":false,"error":{"kind":"timeout"}})")->outcome == "timeout");
    CHECK(!read_answer("[1]"));
    CHECK(!read_answer(R"({"ok":false})"));
    CHECK(!read_answer("not json"));
  }
}
