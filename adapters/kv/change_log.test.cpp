#include "adapters/kv/change_log.hpp"

#include <doctest/doctest.h>

#include "adapters/error.hpp"

using namespace tessera;
using namespace tessera::adapters;

namespace {

change_log::kept_write kept(uint64_t last_seq, std::vector<write_op> ops) {
  return {last_seq, change_log::encode(ops)};
}

}  // namespace

TEST_SUITE("adapters.change_log") {
  TEST_CASE("a write's body keeps each op's key and kind, in order, and counts them") {
    std::vector<write_op> ops{{"storage/a", "x"}, {std::string("k\0\xff", 3), "", true}, {"", "v"}};
    auto body = change_log::encode(ops);
    CHECK(change_log::count(body) == 3u);
    auto page = change_log::page_of({{7, body}}, 4, 10, 7, "s");
    REQUIRE(page);
    CHECK(page->changes == std::vector<change>{{5, "storage/a", false},
                                               {6, std::string("k\0\xff", 3), true},
                                               {7, "", false}});
    CHECK(page->last == 7);
  }

  TEST_CASE("a page starts right after the reader's number, inside a write if need be") {
    std::vector<change_log::kept_write> writes{kept(3, {{"a", ""}, {"b", ""}, {"c", ""}}),
                                               kept(5, {{"d", ""}, {"e", ""}})};
    auto page = change_log::page_of(writes, 1, 3, 9, "s");
    REQUIRE(page);
    CHECK(page->changes == std::vector<change>{{2, "b", false}, {3, "c", false}, {4, "d", false}});
    CHECK(page->last == 9);  // the newest committed, beyond what was read
  }

  TEST_CASE("a reader at the newest number gets an empty page") {
    auto page = change_log::page_of({}, 9, 10, 9, "s");
    REQUIRE(page);
    CHECK(page->changes.empty());
    CHECK(page->last == 9);
  }

  TEST_CASE("a reader whose next change was dropped by the retention is told it is gone") {
    auto page = change_log::page_of({kept(12, {{"x", ""}, {"y", ""}})}, 5, 10, 12, "s");
    REQUIRE_FALSE(page);
    CHECK(code_of(page.error()) == errc::gone);
    CHECK(detail_of(page.error()).find("oldest kept is 11") != std::string::npos);
    auto none_kept = change_log::page_of({}, 5, 10, 12, "s");
    REQUIRE_FALSE(none_kept);
    CHECK(code_of(none_kept.error()) == errc::gone);
  }

  TEST_CASE("writes that do not follow each other are a storage failure, not a silent skip") {
    auto page =
        change_log::page_of({kept(2, {{"a", ""}, {"b", ""}}), kept(5, {{"d", ""}})}, 0, 10, 5, "s");
    REQUIRE_FALSE(page);
    CHECK(code_of(page.error()) == errc::storage_failure);
    CHECK(detail_of(page.error()).find("does not follow") != std::string::npos);
  }

  TEST_CASE("a page carries its sequence's id, and new ids differ") {
    auto page = change_log::page_of({}, 0, 10, 0, "abc");
    REQUIRE(page);
    CHECK(page->sequence == "abc");
    auto a = change_log::new_sequence_id(), b = change_log::new_sequence_id();
    CHECK(a.size() == 32);
    CHECK(a != b);
  }

  TEST_CASE("a body that does not decode is a storage failure, not a short page") {
    auto page = change_log::page_of({{4, std::string("\x00\x00\x00\x00\x09k", 6)}}, 0, 10, 4, "s");
    REQUIRE_FALSE(page);
    CHECK(code_of(page.error()) == errc::storage_failure);
    CHECK_FALSE(change_log::count(std::string("\x02\x00\x00\x00\x00", 5)));
  }
}
