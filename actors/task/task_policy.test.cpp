#include "actors/task/task_policy.hpp"

#include <doctest/doctest.h>

#include "runtime/clock.hpp"

using namespace tessera;
using namespace tessera::task;

namespace {

int64_t at(const char* iso) { return *runtime::parse_iso8601(iso); }

cron::schedule every(const char* expression, const char* zone = "UTC") {
  return std::get<cron::schedule>(cron::parse(expression, zone));
}

task_record defined(const char* schedule, bool enabled = true) {
  task_record r;
  r.id = "t";
  r.schedule = schedule;
  r.enabled = enabled;
  return r;
}

}  // namespace

TEST_SUITE("actors.task.due_times") {
  TEST_CASE("the times due after a downtime are counted and the newest kept") {
    auto s = every("* * * * *");
    auto due = due_between(s, at("2026-12-01T10:00:30Z"), at("2026-12-01T10:05:10Z"), 3);
    CHECK(due.count == 5);
    CHECK(due.exact);
    CHECK(due.newest == std::vector<int64_t>{at("2026-12-01T10:03:00Z"), at("2026-12-01T10:04:00Z"),
                                             at("2026-12-01T10:05:00Z")});
  }

  TEST_CASE("nothing is due before the next scheduled time") {
    auto s = every("0 * * * *");
    auto due = due_between(s, at("2026-12-01T10:00:00Z"), at("2026-12-01T10:59:59Z"), 1);
    CHECK(due.count == 0);
    CHECK(due.newest.empty());
  }

  TEST_CASE("a scheduled time exactly at now is due, one at the last handled time is not") {
    auto s = every("0 * * * *");
    auto due = due_between(s, at("2026-12-01T10:00:00Z"), at("2026-12-01T11:00:00.250Z"), 1);
    CHECK(due.count == 1);
    CHECK(due.newest == std::vector<int64_t>{at("2026-12-01T11:00:00Z")});
  }

  TEST_CASE("a year down under an every-second schedule finds the newest times at once") {
    auto s = every("* * * * * *");
    auto due = due_between(s, at("2025-12-01T00:00:00Z"), at("2026-12-01T00:00:00.500Z"), 2);
    CHECK_FALSE(due.exact);
    CHECK(due.count >= 2);
    CHECK(due.newest ==
          std::vector<int64_t>{at("2026-11-30T23:59:59Z"), at("2026-12-01T00:00:00Z")});
  }
}
TEST_SUITE("actors.task.task_policy") {
  TEST_CASE("a time that falls due now runs as scheduled and becomes the newest handled") {
    auto s = every("*/5 * * * *");
    auto plan = plan_due(s, misfire_policy::skip, 10, at("2026-12-01T10:00:00Z"),
                         at("2026-12-01T10:05:00.300Z"));
    REQUIRE(plan.run);
    CHECK(plan.run->trigger == "schedule");
    CHECK(plan.run->scheduled_for == at("2026-12-01T10:05:00Z"));
    CHECK(plan.last_scheduled == at("2026-12-01T10:05:00Z"));
    CHECK_FALSE(plan.misfire);
    CHECK(plan.skips.empty());
    CHECK(plan.queued.empty());
  }

  TEST_CASE("a wake-up with nothing due changes nothing") {
    auto s = every("0 * * * *");
    auto last = at("2026-12-01T10:00:00Z");
    auto plan = plan_due(s, misfire_policy::run_once, 10, last, at("2026-12-01T10:30:00Z"));
    CHECK(plan.last_scheduled == last);
    CHECK_FALSE(plan.run);
    CHECK_FALSE(plan.misfire);
  }

  TEST_CASE("one time more than the grace late is a misfire even when it is the only one") {
    auto s = every("0 * * * *");
    auto late = at("2026-12-01T11:00:00Z") + misfire_grace_ms + 1000;
    auto plan = plan_due(s, misfire_policy::run_once, 10, at("2026-12-01T10:00:00Z"), late);
    CHECK(plan.misfire == misfire_policy::run_once);
    REQUIRE(plan.run);
    CHECK(plan.run->trigger == "catch_up");
  }

  TEST_CASE("after a downtime each misfire policy handles the missed times its way") {
    auto s = every("* * * * *");
    auto last = at("2026-12-01T10:00:00Z"), now = at("2026-12-01T10:05:30Z");
    SUBCASE("run_once runs once, for the newest missed time") {
      auto plan = plan_due(s, misfire_policy::run_once, 3, last, now);
      REQUIRE(plan.run);
      CHECK(plan.run->trigger == "catch_up");
      CHECK(plan.run->scheduled_for == at("2026-12-01T10:05:00Z"));
      CHECK(plan.queued.empty());
      CHECK(plan.skips.empty());
    }
    SUBCASE("skip writes one skipped record naming how many passed") {
      auto plan = plan_due(s, misfire_policy::skip, 3, last, now);
      CHECK_FALSE(plan.run);
      REQUIRE(plan.skips.size() == 1);
      CHECK(plan.skips[0].reason == "misfire");
      CHECK(plan.skips[0].run.scheduled_for == at("2026-12-01T10:05:00Z"));
      CHECK(plan.skips[0].message.find("5 scheduled time(s) passed unrun") == 0);
    }
    SUBCASE("catch_up queues the newest max_catch_up in order and skips the older ones") {
      auto plan = plan_due(s, misfire_policy::catch_up, 3, last, now);
      CHECK_FALSE(plan.run);
      REQUIRE(plan.queued.size() == 3);
      CHECK(plan.queued[0].scheduled_for == at("2026-12-01T10:03:00Z"));
      CHECK(plan.queued[2].scheduled_for == at("2026-12-01T10:05:00Z"));
      REQUIRE(plan.skips.size() == 1);
      CHECK(plan.skips[0].reason == "catch_up_limit");
      CHECK(plan.skips[0].message.find("newest 3 of 5") != std::string::npos);
    }
    SUBCASE("catch_up within its limit skips nothing") {
      auto plan = plan_due(s, misfire_policy::catch_up, 10, last, now);
      CHECK(plan.queued.size() == 5);
      CHECK(plan.skips.empty());
    }
    // Every policy marks the newest time handled, so none of them runs again.
    CHECK(plan_due(s, misfire_policy::skip, 3, last, now).last_scheduled ==
          at("2026-12-01T10:05:00Z"));
  }

  TEST_CASE("the time lost in a spring-forward gap fires once at the end of the gap") {
    // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00Z); 02:30 never happens.
    auto s = every("30 2 * * *", "Europe/Berlin");
    auto last = at("2026-03-28T01:30:00Z");  // 02:30 CET the day before
    CHECK(next_fire(s, last, last) == at("2026-03-29T01:00:00Z"));
    auto plan = plan_due(s, misfire_policy::skip, 10, last, at("2026-03-29T01:00:01Z"));
    REQUIRE(plan.run);
    CHECK(plan.run->trigger == "schedule");
    CHECK(plan.run->scheduled_for == at("2026-03-29T01:00:00Z"));
  }

  TEST_CASE("a downtime across the spring-forward gap finds the one time it swallowed") {
    auto s = every("30 2 * * *", "Europe/Berlin");
    auto plan = plan_due(s, misfire_policy::catch_up, 10, at("2026-03-28T12:00:00Z"),
                         at("2026-03-29T12:00:00Z"));
    REQUIRE(plan.queued.size() == 1);
    CHECK(plan.queued[0].scheduled_for == at("2026-03-29T01:00:00Z"));
    CHECK(plan.skips.empty());
  }

  TEST_CASE("the hour repeated at fall-back runs once, at its first occurrence") {
    // Europe/Berlin, 2026-10-25: 03:00 CEST (01:00Z) goes back to 02:00 CET.
    auto s = every("30 2 * * *", "Europe/Berlin");
    auto first = at("2026-10-25T00:30:00Z");  // 02:30 CEST
    CHECK(next_fire(s, at("2026-10-24T12:00:00Z"), at("2026-10-24T12:00:00Z")) == first);
    // Handled at its first occurrence: at 02:30 CET (01:30Z) nothing is due.
    auto plan = plan_due(s, misfire_policy::run_once, 10, first, at("2026-10-25T01:30:00.500Z"));
    CHECK_FALSE(plan.run);
    CHECK(next_fire(s, first, at("2026-10-25T01:30:00Z")) == at("2026-10-26T01:30:00Z"));
  }

  TEST_CASE(
      "an hourly schedule over the fall-back night counts the local hours, not the UTC ones") {
    auto s = every("0 * * * *", "Europe/Berlin");
    // 22:00Z (00:00 CEST) to 04:00Z (05:00 CET) is six UTC hours but the local hour 02:00
    // occurs twice and fires once: 01, 02, 03, 04, 05 local.
    auto due = due_between(s, at("2026-10-24T22:00:00Z"), at("2026-10-25T04:00:00Z"), 10);
    CHECK(due.count == 5);
    CHECK(due.newest.front() == at("2026-10-24T23:00:00Z"));
    CHECK(due.newest.back() == at("2026-10-25T04:00:00Z"));
  }

  TEST_CASE("the next fire time is after both the last handled time and now") {
    auto s = every("0 * * * *");
    CHECK(next_fire(s, at("2026-12-01T10:00:00Z"), at("2026-12-01T09:00:00Z")) ==
          at("2026-12-01T11:00:00Z"));
    CHECK(next_fire(s, at("2026-12-01T10:00:00Z"), at("2026-12-01T12:30:00Z")) ==
          at("2026-12-01T13:00:00Z"));
    CHECK(next_fire(cron::schedule{}, 0, at("2026-12-01T12:30:00Z")) == 0);
  }

  TEST_CASE("a due run meets the overlap policy") {
    SUBCASE("an idle task starts it whatever the policy") {
      for (auto p : {overlap_policy::skip, overlap_policy::queue_one, overlap_policy::allow})
        CHECK(on_due(p, false, false).action == overlap_action::start);
    }
    SUBCASE("skip refuses it while a run is in progress") {
      auto d = on_due(overlap_policy::skip, true, false);
      CHECK(d.action == overlap_action::refuse);
      CHECK(d.message.find("overlap policy skip") != std::string::npos);
    }
    SUBCASE("queue_one queues one and refuses a second") {
      CHECK(on_due(overlap_policy::queue_one, true, false).action == overlap_action::queue);
      auto d = on_due(overlap_policy::queue_one, true, true);
      CHECK(d.action == overlap_action::refuse);
      CHECK(d.message.find("queue_one") != std::string::npos);
    }
    SUBCASE("allow starts it beside the one in progress") {
      CHECK(on_due(overlap_policy::allow, true, true).action == overlap_action::start);
    }
  }

  TEST_CASE("a manual run refused by the overlap policy names the task") {
    auto d = on_manual(overlap_policy::skip, "nightly", true, false);
    CHECK(d.action == overlap_action::refuse);
    CHECK(d.message == "task 'nightly' is running and its overlap policy is skip");
    auto q = on_manual(overlap_policy::queue_one, "nightly", true, true);
    CHECK(q.message == "task 'nightly' already has a run waiting (queue_one)");
    CHECK(on_manual(overlap_policy::queue_one, "nightly", true, false).action ==
          overlap_action::queue);
  }

  TEST_CASE("a new schedule forgets the times before it; a new name keeps them") {
    auto last = at("2026-12-01T10:00:00Z"), now = at("2026-12-01T12:00:00Z");
    SUBCASE("a new schedule re-times and cancels what is queued") {
      auto c = on_redefine(defined("0 * * * *"), defined("*/5 * * * *"), last, now);
      CHECK(c.retimed);
      CHECK(c.stop_queued);
      CHECK(c.last_scheduled == now);
    }
    SUBCASE("enabling again re-times, so the disabled hours are not misfires") {
      auto c = on_redefine(defined("0 * * * *", false), defined("0 * * * *", true), last, now);
      CHECK(c.retimed);
      CHECK(c.last_scheduled == now);
    }
    SUBCASE("disabling cancels what is queued but keeps the last handled time") {
      auto c = on_redefine(defined("0 * * * *", true), defined("0 * * * *", false), last, now);
      CHECK_FALSE(c.retimed);
      CHECK(c.stop_queued);
      CHECK(c.last_scheduled == last);
    }
    SUBCASE("another field changes nothing in the schedule") {
      auto renamed = defined("0 * * * *");
      renamed.name = "renamed";
      auto c = on_redefine(defined("0 * * * *"), renamed, last, now);
      CHECK_FALSE(c.retimed);
      CHECK_FALSE(c.stop_queued);
      CHECK(c.last_scheduled == last);
    }
  }
}
