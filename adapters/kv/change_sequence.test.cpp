// The change sequence of kv_store.hpp, on every backend, and across servers on PostgreSQL.
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <thread>

#include "adapters/error.hpp"
#include "adapters/kv/kv_store.hpp"
#include "adapters/kv/test_backends.hpp"
#include "adapters/pg/connection.hpp"

using namespace tessera;
using namespace tessera::adapters;
using namespace tessera::adapters::testing;

namespace {

std::vector<change> all_after(const kv_store& s, uint64_t after) {
  auto page = s.changes_after(after, 1'000'000);
  REQUIRE_MESSAGE(page, detail_of(page.error()));
  return page->changes;
}

}  // namespace

TEST_SUITE("adapters.change_sequence") {
  TEST_CASE("every op of a write gets the next number, and a reader follows from any point") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      auto empty = b.store->changes_after(0, 10);
      REQUIRE(empty);
      CHECK(empty->changes.empty());
      CHECK(empty->last == 0);
      REQUIRE_FALSE(b.store->write({{"storage/a", "1"}, {"storage/b", "2"}}));
      REQUIRE_FALSE(b.store->write({{"storage/a", "", true}}));
      REQUIRE_FALSE(b.store->write({{"panel/p", "3"}, {"task/t", "4"}, {"storage/c", "5"}}));
      CHECK(all_after(*b.store, 0) == std::vector<change>{{1, "storage/a", false},
                                                          {2, "storage/b", false},
                                                          {3, "storage/a", true},
                                                          {4, "panel/p", false},
                                                          {5, "task/t", false},
                                                          {6, "storage/c", false}});
      auto page = b.store->changes_after(2, 2);
      REQUIRE(page);
      CHECK(page->changes == std::vector<change>{{3, "storage/a", true}, {4, "panel/p", false}});
      CHECK(page->last == 6);
      auto caught_up = b.store->changes_after(6, 10);
      REQUIRE(caught_up);
      CHECK(caught_up->changes.empty());
      CHECK(caught_up->last == 6);
    }
  }

  TEST_CASE("a write that fails takes no number, so the next one leaves no gap") {
    auto s = fresh_pg();
    REQUIRE_FALSE(s->write({{"a", "1"}}));
    std::string huge;  // a key PostgreSQL's btree refuses (see kv_store.test.cpp)
    uint32_t x = 99;
    for (int i = 0; i < 10000; ++i) huge += static_cast<char>((x = x * 1103515245 + 12345) >> 24);
    REQUIRE(s->write({{"b", "2"}, {huge, "3"}}));
    REQUIRE_FALSE(s->write({{"c", "4"}}));
    CHECK(all_after(*s, 0) == std::vector<change>{{1, "a", false}, {2, "c", false}});
  }

  TEST_CASE("numbers and the sequence's id continue where they were after a reopen") {
    temp_dir dir;
    std::string first_id;
    {
      auto rocks = rocks_store::open({dir.path.string(), false, nullptr});
      REQUIRE(rocks);
      REQUIRE_FALSE((*rocks)->write({{"a", "1"}, {"b", "2"}}));
      first_id = (*rocks)->changes_after(0, 1)->sequence;
    }
    auto rocks = rocks_store::open({dir.path.string(), false, nullptr});
    REQUIRE(rocks);
    REQUIRE_FALSE((*rocks)->write({{"c", "3"}}));
    CHECK(all_after(**rocks, 2) == std::vector<change>{{3, "c", false}});
    CHECK(first_id.size() == 32);
    CHECK((*rocks)->changes_after(0, 1)->sequence == first_id);

    auto url = throwaway_postgres::shared().fresh_database();
    auto first_pg = fresh_pg(2, 1'000'000, url);
    REQUIRE_FALSE(first_pg->write({{"a", "1"}, {"b", "2"}}));
    first_pg.reset();
    auto pg = fresh_pg(2, 1'000'000, url);
    REQUIRE_FALSE(pg->write({{"c", "3"}}));
    CHECK(all_after(*pg, 2) == std::vector<change>{{3, "c", false}});
    auto pg_id = pg->changes_after(0, 1)->sequence;
    CHECK(pg_id.size() == 32);
    CHECK(pg_id != first_id);
    CHECK(fresh_pg()->changes_after(0, 1)->sequence != pg_id);  // another database, another id
  }

  TEST_CASE("a RocksDB store reopened after trimming numbers on and still trims") {
    temp_dir dir;
    {
      auto rocks = rocks_store::open({dir.path.string(), false, nullptr, 100});
      REQUIRE(rocks);
      for (int i = 1; i <= 300; ++i) REQUIRE_FALSE((*rocks)->write({{"k", std::to_string(i)}}));
    }
    auto rocks = rocks_store::open({dir.path.string(), false, nullptr, 100});
    REQUIRE(rocks);
    CHECK(code_of((*rocks)->changes_after(0, 1).error()) == errc::gone);
    for (int i = 301; i <= 600; ++i) REQUIRE_FALSE((*rocks)->write({{"k", std::to_string(i)}}));
    auto recent = (*rocks)->changes_after(500, 1000);  // the newest 100 are kept at least
    REQUIRE(recent);
    CHECK(recent->changes.size() == 100);
    CHECK(recent->changes.back().seq == 600);
    CHECK(code_of((*rocks)->changes_after(300, 1).error()) == errc::gone);
  }

  TEST_CASE("asking for no changes answers the newest number alone") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      REQUIRE_FALSE(b.store->write({{"a", "1"}, {"b", "2"}}));
      auto page = b.store->changes_after(0, 0);
      REQUIRE(page);
      CHECK(page->changes.empty());
      CHECK(page->last == 2);
    }
  }

  TEST_CASE("the newest changes past the retention are kept; a reader from before is told gone") {
    for (auto& b : backends(/*retention=*/100)) {
      CAPTURE(b.name);
      for (int i = 1; i <= 600; ++i)
        REQUIRE_FALSE(b.store->write({{"k/" + std::to_string(i), "v"}}));
      auto old = b.store->changes_after(0, 10);
      REQUIRE_FALSE(old);
      CHECK(code_of(old.error()) == errc::gone);
      auto recent = b.store->changes_after(500, 1000);
      REQUIRE(recent);
      REQUIRE(recent->changes.size() == 100);
      CHECK(recent->changes.front() == change{501, "k/501", false});
      CHECK(recent->changes.back() == change{600, "k/600", false});
      // Not everything was kept: the retention trims, within its slack.
      auto kept = 0;
      for (uint64_t after = 0; after < 600; ++after)
        if (b.store->changes_after(after, 1)) ++kept;
      CHECK(kept >= 100);
      CHECK(kept <= 400);
    }
  }
}

TEST_SUITE("adapters.pg_store") {
  TEST_CASE("servers writing together on one database get numbers in commit order, no gaps") {
    auto url = throwaway_postgres::shared().fresh_database();
    auto a = fresh_pg(4, 1'000'000, url);
    auto b = fresh_pg(4, 1'000'000, url);
    constexpr int writers = 4, writes = 150;
    std::atomic<bool> done{false};
    std::vector<change> followed;
    std::string broken;
    // A reader follows while they write: every page continues from the number it asked after,
    // so a number that became visible before a smaller one would show as a gap.
    std::thread reader([&] {
      uint64_t after = 0;
      for (;;) {
        bool last_round = done.load();
        auto page = a->changes_after(after, 50);
        if (!page) {
          broken = detail_of(page.error());
          return;
        }
        for (auto& c : page->changes) {
          if (c.seq != after + 1) {
            broken = "after " + std::to_string(after) + " came " + std::to_string(c.seq);
            return;
          }
          after = c.seq;
          followed.push_back(c);
        }
        if (last_round && page->changes.empty()) return;
      }
    });
    std::vector<std::thread> threads;
    std::atomic<int> failed_writes{0};
    for (int w = 0; w < writers; ++w)
      threads.emplace_back([&, w] {
        auto& store = w % 2 ? *a : *b;
        for (int i = 0; i < writes; ++i) {
          auto key = "w" + std::to_string(w) + "/" + std::to_string(i);
          if (store.write({{key, "1"}, {key + "/x", "2"}})) ++failed_writes;
        }
      });
    for (auto& t : threads) t.join();
    done = true;
    reader.join();
    CHECK(failed_writes == 0);
    CHECK(broken == "");
    CHECK(followed.size() == writers * writes * 2);
    std::set<std::string> keys;
    for (auto& c : followed) keys.insert(c.key);
    CHECK(keys.size() == followed.size());
    // A write's two ops are numbered together, in its order.
    for (size_t i = 0; i + 1 < followed.size(); i += 2)
      CHECK(followed[i + 1].key == followed[i].key + "/x");
  }

  TEST_CASE("a version 1 database is upgraded in place: its data kept, numbering from 1") {
    auto url = throwaway_postgres::shared().fresh_database();
    {
      auto c = pg::connection::open(url, {});
      REQUIRE(c);
      REQUIRE(
          (*c)->exec("CREATE TABLE tessera_schema (version integer NOT NULL);"
                     "INSERT INTO tessera_schema VALUES (1);"
                     "CREATE TABLE tessera_kv (key bytea PRIMARY KEY, value bytea NOT NULL);"
                     "INSERT INTO tessera_kv VALUES ('storage/old'::bytea, 'kept'::bytea);"));
    }
    auto s = fresh_pg(2, 1'000'000, url);
    CHECK(s->get("storage/old")->value() == "kept");
    REQUIRE_FALSE(s->write({{"storage/new", "1"}}));
    CHECK(all_after(*s, 0) == std::vector<change>{{1, "storage/new", false}});
    auto c = pg::connection::open(url, {});
    REQUIRE(c);
    auto v = (*c)->exec("SELECT version::text FROM tessera_schema");
    REQUIRE(v);
    CHECK((*v)[0][0].value() == std::to_string(pg_store::schema_version));
  }
}
