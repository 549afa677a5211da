#include "actors/panel/action_batch.hpp"

#include <doctest/doctest.h>

using namespace tessera;
using namespace tessera::panel;
using json = nlohmann::json;

namespace {

storage::snapshot bound() {
  storage::snapshot s;
  s["c"] = {R"({"n":1})", 3};
  s["d"] = {"{}", 0};
  return s;
}

json answer_of(json results) {
  return json{{"ok", true}, {"results", std::move(results)}, {"html", "<p>2</p>"}};
}

}  // namespace

TEST_SUITE("actors.panel.action_batch") {
  TEST_CASE("a batch body lists the actions in order with their payloads as sent") {
    panel_record r;
    r.id = "p";
    r.handler = "def on_action(a, p, s): pass";
    auto body = json::parse(batch_body(r, bound(), {{"inc", R"({"by":2})"}, {"reset", ""}}));
    CHECK(body["actions"] == json::parse(R"([{"action":"inc","payload":{"by":2}},
                                             {"action":"reset","payload":{}}])"));
    CHECK(body["storage"]["c"] == json{{"n", 1}});
    CHECK(body["handler"] == r.handler);
    CHECK_FALSE(body.contains("action"));
  }

  TEST_CASE("an answer splits into one outcome per action, in order") {
    auto out = split_batch(
        answer_of(
            {{{"ok", true}, {"changed", {"c"}}, {"logs", {{{"message", "one"}}}}},
             {{"ok", false}, {"error", {{"kind", "handler_error"}}}, {"logs", json::array()}}}),
        2, bound());
    REQUIRE(out);
    REQUIRE(out->size() == 2);
    CHECK((*out)[0].ok);
    CHECK((*out)[0].changed == json{"c"});
    CHECK((*out)[0].logs[0]["message"] == "one");
    CHECK_FALSE((*out)[1].ok);
    auto failure = json::parse((*out)[1].failure);
    CHECK(failure["ok"] == false);
    CHECK(failure["error"]["kind"] == "handler_error");
  }

  TEST_CASE("changed ids that are not bound to the panel are dropped from a reply") {
    auto out = split_batch(answer_of({{{"ok", true}, {"changed", {"c", "other", 7}}}}), 1, bound());
    REQUIRE(out);
    CHECK((*out)[0].changed == json{"c"});
  }

  TEST_CASE("an answer that is not a batch answer for that many actions is refused") {
    CHECK_FALSE(split_batch(json{{"ok", true}}, 1, bound()));
    CHECK_FALSE(split_batch(answer_of({{{"ok", true}}}), 2, bound()));
    CHECK_FALSE(split_batch(answer_of({{{"changed", {"c"}}}}), 1, bound()));
    CHECK_FALSE(split_batch(answer_of({{{"ok", "yes"}}}), 1, bound()));
    CHECK_FALSE(split_batch(answer_of({{{"ok", false}}}), 1, bound()));  // a failure names it
    CHECK_FALSE(split_batch(answer_of({7}), 1, bound()));
  }

  TEST_CASE("a reply carries the render after the action, or why it failed") {
    auto ok = json::parse(action_reply(5, {"c"}, json::array(), json{{"html", "<b>"}}));
    CHECK(ok == json{{"success", true},
                     {"version", 5},
                     {"changed", {"c"}},
                     {"logs", json::array()},
                     {"html", "<b>"}});
    auto failed = json::parse(action_reply(5, json::array(), json::array(),
                                           json{{"render_error", {{"kind", "template_error"}}}}));
    CHECK(failed["html"].is_null());
    CHECK(failed["render_error"]["kind"] == "template_error");
  }
}
