#include "actors/task/task_codec.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>

#include "actors/task/messages.hpp"
#include "actors/task/run_log.hpp"
#include "actors/task/task_actor.hpp"
#include "actors/task/task_scheduler.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::task;
using json = nlohmann::json;

namespace {

const char* handler = "def on_schedule(storage):\n    pass\n";

caf::expected<task_record> parse(json body) {
  body["id"] = body.value("id", "t");
  if (!body.contains("handler")) body["handler"] = handler;
  return parse_new_task(body, task_limits{2000, 30000});
}

std::string message_of(const caf::expected<task_record>& r) {
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == errc::invalid_argument);
  return detail_of(r.error());
}

int64_t at(const char* iso) { return *runtime::parse_iso8601(iso); }

}  // namespace

TEST_SUITE("task codec") {
  TEST_CASE("a new task gets the documented defaults") {
    auto r = parse({{"schedule", "*/5 * * * *"}});
    REQUIRE(r);
    CHECK(r->name == "t");
    CHECK(r->timezone == "UTC");
    CHECK(r->enabled);
    CHECK(r->overlap == overlap_policy::skip);
    CHECK(r->misfire == misfire_policy::run_once);
    CHECK(r->timeout_ms == 2000);
  }

  TEST_CASE("a bad schedule is refused with the cron field it got wrong") {
    CHECK(message_of(parse({{"schedule", "0 24 * * *"}})).find("hour") != std::string::npos);
    CHECK(message_of(parse({{"schedule", "0 0 * * *"}, {"timezone", "Nowhere/City"}}))
              .find("timezone") != std::string::npos);
    CHECK(message_of(parse({{"schedule", 5}})).find("schedule") != std::string::npos);
  }

  TEST_CASE("a timeout is given in seconds and bounded by the sandbox's maximum") {
    auto r = parse({{"schedule", "* * * * *"}, {"timeout", 1.5}});
    REQUIRE(r);
    CHECK(r->timeout_ms == 1500);
    CHECK(message_of(parse({{"schedule", "* * * * *"}, {"timeout", 31}})).find("at most 30") !=
          std::string::npos);
    CHECK(message_of(parse({{"schedule", "* * * * *"}, {"timeout", -1}})).find("timeout") !=
          std::string::npos);
  }

  TEST_CASE("an update may only set the fields its route allows") {
    auto r = parse({{"schedule", "* * * * *"}});
    REQUIRE(r);
    auto u = apply_update(*r, {{"handler", "x"}}, {"name"}, task_limits{});
    REQUIRE_FALSE(u);
    CHECK(detail_of(u.error()).find("unknown field 'handler'") != std::string::npos);
    auto ok = apply_update(*r, {{"overlap", "allow"}, {"misfire", "catch_up"}},
                           {"overlap", "misfire"}, task_limits{});
    REQUIRE(ok);
    CHECK(ok->overlap == overlap_policy::allow);
    CHECK(ok->misfire == misfire_policy::catch_up);
  }

  TEST_CASE("records and states survive encoding, and a damaged record is refused") {
    auto r = parse({{"schedule", "0 9 * * MON-FRI"},
                    {"timezone", "Europe/Berlin"},
                    {"storage_ids", {"a", "b"}},
                    {"overlap", "queue_one"}});
    REQUIRE(r);
    r->version = 3;
    auto back = decode(encode(*r));
    REQUIRE(back);
    CHECK(encode(*back) == encode(*r));
    task_state s{12, 3, 11, "failed"};
    auto s2 = decode_state(encode(s));
    REQUIRE(s2);
    CHECK(encode(*s2) == encode(s));
    auto broken = json::parse(encode(*r));
    broken["schedule"] = "99 * * * *";
    CHECK_FALSE(decode(broken.dump()));
    CHECK_FALSE(decode("not json"));
  }

  TEST_CASE("run keys sort by sequence number so the newest run is last") {
    CHECK(run_key("t", 9) < run_key("t", 10));
    CHECK(run_key("t", 10).starts_with(run_prefix("t")));
    CHECK_FALSE(run_key("t.x", 1).starts_with(run_prefix("t")));
    CHECK(run_id("t", 7) == "t:7");
  }
}

TEST_SUITE("log queries") {
  TEST_CASE("log query parameters are checked and defaulted") {
    auto q = parse_log_query(log_params{});
    REQUIRE(q);
    CHECK(q->limit == 100);
    CHECK(q->min_level == 0);
    log_params p;
    p.task_id = "t";
    p.level = "WARNING";
    p.since = "2026-12-01T00:00:00Z";
    p.limit = "5";
    auto w = parse_log_query(p);
    REQUIRE(w);
    CHECK(w->min_level == 2);
    CHECK(w->since == at("2026-12-01T00:00:00Z"));
    CHECK(w->limit == 5);
    auto refused = [](auto set) {
      log_params bad;
      set(bad);
      return !parse_log_query(bad);
    };
    CHECK(refused([](log_params& b) { b.level = "loud"; }));
    CHECK(refused([](log_params& b) { b.since = "yesterday"; }));
    CHECK(refused([](log_params& b) { b.limit = "1001"; }));
  }
}

TEST_SUITE("scheduler") {
  TEST_CASE("the scheduler wakes each task at its time, earliest first, and forgets removed ones") {
    runtime::system_config cfg{2, {}};
    caf::actor_system sys{cfg};
    caf::scoped_actor self{sys};
    auto scheduler = sys.spawn(task_scheduler, nullptr);
    auto now = runtime::now_ms();
    caf::actor me = caf::actor_cast<caf::actor>(self);
    self->send(scheduler, schedule_atom::value, std::string{"late"}, now + 300, me);
    self->send(scheduler, schedule_atom::value, std::string{"early"}, now + 100, me);
    self->send(scheduler, schedule_atom::value, std::string{"gone"}, now + 200, me);
    self->send(scheduler, schedule_atom::value, std::string{"gone"}, int64_t{0}, me);
    std::vector<int64_t> fired;
    for (int i = 0; i < 2; ++i)
      self->receive([&](fire_atom, int64_t when) {
        CHECK(runtime::now_ms() >= when);
        fired.push_back(when);
      });
    // The scheduler sends in time order: had "gone" fired, it would have come before "late".
    CHECK(fired == std::vector<int64_t>{now + 100, now + 300});
    self->send_exit(scheduler, caf::exit_reason::user_shutdown);
  }
}
