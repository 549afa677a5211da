#include "actors/panel/panel_codec.hpp"

#include <doctest/doctest.h>

#include "actors/panel/panel_directory.hpp"
#include "adapters/error.hpp"

using namespace tessera;
using namespace tessera::panel;
using json = nlohmann::json;

TEST_SUITE("actors.panel.codec") {
  TEST_CASE("a new panel takes its id as title and documented defaults") {
    auto r = parse_new_panel(json{{"id", "p"}});
    REQUIRE(r);
    CHECK(r->title == "p");
    CHECK(r->size == "medium");
    CHECK(r->storage_ids.empty());
    CHECK(r->template_.empty());
  }

  TEST_CASE("bad fields are refused with a message naming them") {
    SUBCASE("unknown field") {
      auto r = parse_new_panel(json{{"id", "p"}, {"colour", "red"}});
      REQUIRE_FALSE(r);
      CHECK(detail_of(r.error()).find("colour") != std::string::npos);
    }
    SUBCASE("bad id") { CHECK_FALSE(parse_new_panel(json{{"id", "a b"}})); }
    SUBCASE("storage listed twice") {
      CHECK_FALSE(parse_new_panel(json{{"id", "p"}, {"storage_ids", {"s", "s"}}}));
    }
    SUBCASE("template not a string") {
      CHECK(code_of(parse_new_panel(json{{"id", "p"}, {"template", 1}}).error()) ==
            errc::invalid_argument);
    }
  }

  TEST_CASE("an update may only set the fields its route allows") {
    auto r = parse_new_panel(json{{"id", "p"}});
    REQUIRE(r);
    CHECK_FALSE(apply_update(*r, json{{"template", "x"}}, {"title"}));
    auto next = apply_update(*r, json{{"title", "T"}}, {"title"});
    REQUIRE(next);
    CHECK(next->title == "T");
    CHECK(r->title == "p");
  }

  TEST_CASE("a record survives encoding for RocksDB") {
    auto r = parse_new_panel(
        json{{"id", "p"}, {"storage_ids", {"a", "b"}}, {"template", "<b>{{ a }}</b>"}});
    REQUIRE(r);
    r->version = 7;
    r->created_at = 1000;
    r->updated_at = 2000;
    auto back = decode(encode(*r));
    REQUIRE(back);
    CHECK(back->storage_ids == r->storage_ids);
    CHECK(back->template_ == r->template_);
    CHECK(back->version == 7);
    CHECK(back->updated_at == 2000);
    CHECK_FALSE(decode("not json"));
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
