#include "actors/panel/call_ahead.hpp"

#include <doctest/doctest.h>

using namespace tessera;
using namespace tessera::panel;

TEST_SUITE("actors.panel.call_ahead") {
  TEST_CASE("a continuation waiting for the answer gets it once, when it comes") {
    call_ahead c;
    int calls = 0;
    std::string body;
    c.when_answered([&](std::optional<sandbox::call_result> r) {
      ++calls;
      body = r ? r->body : "none";
    });
    CHECK(calls == 0);
    c.answer(sandbox::call_result{"ok", "{}", 0, 0, ""});
    c.answer(std::nullopt);  // a second answer is ignored
    CHECK(calls == 1);
    CHECK(body == "{}");
  }

  TEST_CASE("a continuation set after the answer gets it at once") {
    call_ahead c;
    c.answer(std::nullopt);
    bool failed = false;
    c.when_answered([&](std::optional<sandbox::call_result> r) { failed = !r; });
    CHECK(failed);
  }

  TEST_CASE("states are the same only with the same storages, versions and data") {
    storage::snapshot a{{"s", {R"({"n":1})", 2}}};
    CHECK(same_state(a, a));
    CHECK_FALSE(same_state(a, {{"s", {R"({"n":1})", 3}}}));
    CHECK_FALSE(same_state(a, {{"s", {R"({"n":2})", 2}}}));
    CHECK_FALSE(same_state(a, {{"t", {R"({"n":1})", 2}}}));
    CHECK_FALSE(same_state(a, {{"s", {R"({"n":1})", 2}}, {"t", {"{}", 1}}}));
  }

  TEST_CASE("a sandbox's refusal ahead of time is no answer: the run calls again") {
    for (auto outcome : {"overloaded", "unavailable"}) {
      call_ahead c;
      c.answer(sandbox::call_result{outcome, "{}", 0, 0, ""});
      bool none = false;
      c.when_answered([&](std::optional<sandbox::call_result> r) { none = !r; });
      CHECK_MESSAGE(none, outcome);
    }
    call_ahead failed;  // a handler's own failure is its answer
    failed.answer(sandbox::call_result{"timeout", "{}", 0, 0, ""});
    CHECK(failed.result);
  }
}
