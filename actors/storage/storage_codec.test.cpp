#include "actors/storage/storage_codec.hpp"

#include <doctest/doctest.h>

using namespace tessera::storage;

TEST_SUITE("actors.storage") {
  TEST_CASE("a record survives encode and decode unchanged") {
    storage_record r{"s-1", R"({"a":"line\nbreak"})", 42, 1700000000000, 1700000000123};
    auto back = decode("s-1", encode(r));
    REQUIRE(back);
    CHECK(back->data == r.data);
    CHECK(back->version == 42);
    CHECK(back->created_at == r.created_at);
    CHECK(back->updated_at == r.updated_at);
  }

  TEST_CASE("an absent storage is created at its tombstone's version + 1") {
    CHECK(next_record({"s", "", 0, 0, 0}, "{}", 5).version == 1);
    auto again = next_record({"s", "", 0, 0, 0, 7}, "{}", 5);
    CHECK(again.version == 8);
    CHECK(again.created_at == 5);
    CHECK(next_record(again, "{}", 6).version == 9);
  }

  TEST_CASE("tombstones live outside the storages' key range") {
    CHECK_FALSE(tombstone_key("a").starts_with(key_prefix));
    CHECK(tombstone_key("a") == "tombstone/storage/a");
  }

  TEST_CASE("an unreadable value decodes to nothing") {
    CHECK_FALSE(decode("x", ""));
    CHECK_FALSE(decode("x", "v2 1 2 3\n{}"));
    CHECK_FALSE(decode("x", "v1 1 2\n{}"));
    CHECK_FALSE(decode("x", "v1 a 2 3\n{}"));
  }

  TEST_CASE("ids are 1-128 characters of letters, digits, underscore, dot and dash") {
    CHECK(valid_storage_id("a"));
    CHECK(valid_storage_id("A.b-c_9"));
    CHECK(valid_storage_id(std::string(128, 'x')));
    CHECK_FALSE(valid_storage_id(""));
    CHECK_FALSE(valid_storage_id(std::string(129, 'x')));
    CHECK_FALSE(valid_storage_id("a b"));
    CHECK_FALSE(valid_storage_id("a/b"));
    CHECK_FALSE(valid_storage_id("\xC3\xA9"));
  }
}
