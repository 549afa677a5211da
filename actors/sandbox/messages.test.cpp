#include "actors/sandbox/messages.hpp"

#include <doctest/doctest.h>

#include "runtime/round_trip.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::sandbox;

TEST_CASE("a sandbox call and its result read back equal after serialization") {
  runtime::system_config cfg{1, {add_sandbox_messages}};
  caf::actor_system sys{cfg};
  call c{call_kind::render, R"({"template":"<p>{{ x }}</p>"})", 1500, 128, "panel:p/abc"};
  auto c2 = runtime::round_trip(sys, c);
  REQUIRE(c2);
  CHECK(*c2 == c);
  call_result r{"handler_error", R"({"ok":false})", 12, 345, R"({"reused":true})"};
  auto r2 = runtime::round_trip(sys, r);
  REQUIRE(r2);
  CHECK(*r2 == r);
}
