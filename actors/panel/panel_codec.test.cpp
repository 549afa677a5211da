#include "actors/panel/panel_codec.hpp"

#include <doctest/doctest.h>

#include "actors/panel/panel_directory.hpp"
#include "adapters/error.hpp"

using namespace tessera;
using namespace tessera::panel;
using json = nlohmann::json;

namespace {
const panel_limits limits{2000, 30000};
}

TEST_SUITE("actors.panel.codec") {
  TEST_CASE("a new panel takes its id as title and documented defaults") {
    auto r = parse_new_panel(json{{"id", "p"}}, limits);
    REQUIRE(r);
    CHECK(r->title == "p");
    CHECK(r->size == "medium");
    CHECK(r->storage_ids.empty());
    CHECK(r->template_.empty());
  }

  TEST_CASE("bad fields are refused with a message naming them") {
    SUBCASE("unknown field") {
      auto r = parse_new_panel(json{{"id", "p"}, {"colour", "red"}}, limits);
      REQUIRE_FALSE(r);
      CHECK(detail_of(r.error()).find("colour") != std::string::npos);
    }
    SUBCASE("bad id") { CHECK_FALSE(parse_new_panel(json{{"id", "a b"}}, limits)); }
    SUBCASE("storage listed twice") {
      CHECK_FALSE(parse_new_panel(json{{"id", "p"}, {"storage_ids", {"s", "s"}}}, limits));
    }
    SUBCASE("template not a string") {
      CHECK(code_of(parse_new_panel(json{{"id", "p"}, {"template", 1}}, limits).error()) ==
            errc::invalid_argument);
    }
  }

  TEST_CASE("an update may only set the fields its route allows") {
    auto r = parse_new_panel(json{{"id", "p"}}, limits);
    REQUIRE(r);
    CHECK_FALSE(apply_update(*r, json{{"template", "x"}}, {"title"}, limits));
    auto next = apply_update(*r, json{{"title", "T"}}, {"title"}, limits);
    REQUIRE(next);
    CHECK(next->title == "T");
    CHECK(r->title == "p");
  }

  TEST_CASE("a record survives encoding for RocksDB") {
    auto r = parse_new_panel(
        json{{"id", "p"}, {"storage_ids", {"a", "b"}}, {"template", "<b>{{ a }}</b>"}}, limits);
    REQUIRE(r);
    r->version = 7;
    r->created_at = 1000;
    r->updated_at = 2000;
    auto back = decode(encode(*r), limits);
    REQUIRE(back);
    CHECK(back->storage_ids == r->storage_ids);
    CHECK(back->template_ == r->template_);
    CHECK(back->version == 7);
    CHECK(back->updated_at == 2000);
    CHECK(back->timeout_ms == 2000);
    CHECK_FALSE(decode("not json", limits));
  }

  TEST_CASE("a panel's timeout is seconds up to the server's maximum, default when absent") {
    auto r = parse_new_panel(json{{"id", "p"}, {"timeout", 0.5}}, limits);
    REQUIRE(r);
    CHECK(r->timeout_ms == 500);
    CHECK(to_json(*r)["timeout"] == 0.5);
    CHECK_FALSE(metadata_json(*r).contains("timeout"));  // templates and handlers see metadata
    SUBCASE("over the maximum") {
      auto over = parse_new_panel(json{{"id", "p"}, {"timeout", 31}}, limits);
      REQUIRE_FALSE(over);
      CHECK(detail_of(over.error()).find("at most 30 seconds") != std::string::npos);
    }
    SUBCASE("not positive") {
      CHECK_FALSE(parse_new_panel(json{{"id", "p"}, {"timeout", 0}}, limits));
      CHECK_FALSE(parse_new_panel(json{{"id", "p"}, {"timeout", "2"}}, limits));
    }
    SUBCASE("null means the default") {
      auto next = apply_update(*r, json{{"timeout", nullptr}}, {"timeout"}, limits);
      REQUIRE(next);
      CHECK(next->timeout_ms == 2000);
    }
    SUBCASE("a record from before the field gets the default") {
      auto old = json::parse(encode(*r));
      old.erase("timeout_ms");
      auto back = decode(old.dump(), panel_limits{1500, 30000});
      REQUIRE(back);
      CHECK(back->timeout_ms == 1500);
    }
  }

  TEST_CASE("a bundle's storages become defaults and its code joins the panel") {
    auto b = parse_bundle(R"({"metadata":{"id":"t","storages":{"s":{"n":1}}},
                              "template":"x","handler":"def on_action(a, p, s): pass"})");
    REQUIRE(b);
    CHECK(b->panel["storage_ids"] == json{"s"});
    CHECK(b->storages.at("s") == R"({"n":1})");
    CHECK(b->panel["template"] == "x");
    CHECK_FALSE(parse_bundle(R"({"metadata":{"id":"t"},"extra":1})"));
    CHECK_FALSE(parse_bundle(R"({"metadata":{"id":"t","storages":{"s":[1]}}})"));
  }
}
