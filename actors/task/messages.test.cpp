#include "actors/task/messages.hpp"

#include <doctest/doctest.h>

#include "actors/task/run_log.hpp"
#include "runtime/round_trip.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::task;

TEST_CASE("a log query reads back equal after serialization") {
  runtime::system_config cfg{1, {add_task_messages}};
  caf::actor_system sys{cfg};
  log_query q{"nightly-report", 2, 1700000000000, 1700000360000, 250};
  auto back = runtime::round_trip(sys, q);
  REQUIRE(back);
  CHECK(*back == q);
  auto every = runtime::round_trip(sys, log_query{});  // every task, no bounds
  REQUIRE(every);
  CHECK(*every == log_query{});
}
