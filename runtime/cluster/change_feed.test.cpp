// The change feed (change_feed.hpp): its pure cursor, and the feed itself on a throwaway
// PostgreSQL shared by two stores, as by two nodes.
#include "runtime/cluster/change_feed.hpp"

#include <doctest/doctest.h>

#include <condition_variable>
#include <mutex>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/pg/connection.hpp"
#include "tests/support/throwaway_postgres.hpp"

using namespace tessera;
using namespace tessera::runtime::cluster;
using namespace std::chrono_literals;

namespace {

// The changes a feed handed on, as the keys in order; waits for a number of them.
struct heard {
  std::mutex mutex;
  std::condition_variable more;
  std::vector<std::string> keys;
  int resyncs = 0;

  change_feed::target target() {
    return {[this](const adapters::change& c) {
              std::lock_guard lock{mutex};
              keys.push_back(c.key + (c.erase ? " (erased)" : ""));
              more.notify_all();
            },
            [this] {
              std::lock_guard lock{mutex};
              ++resyncs;
              more.notify_all();
            }};
  }

  std::vector<std::string> wait_for(size_t n) {
    std::unique_lock lock{mutex};
    more.wait_for(lock, 10s, [&] { return keys.size() >= n; });
    return keys;
  }
};

std::shared_ptr<adapters::pg_store> notifying_store(const std::string& url) {
  adapters::pg_store::options o;
  o.conninfo = url;
  o.pool = 2;
  o.notify = true;
  auto s = adapters::pg_store::open(std::move(o));
  REQUIRE_MESSAGE(s, detail_of(s.error()));
  return *s;
}

// Two stores on one fresh database, as two nodes, and "here"'s change feed.
struct two_nodes {
  std::string url = tessera::testing::throwaway_postgres::shared().fresh_database();
  std::shared_ptr<adapters::pg_store> here = notifying_store(url);
  std::shared_ptr<adapters::pg_store> there = notifying_store(url);
  heard h;
  prometheus::Registry registry;
  change_feed_metrics metrics{registry};
  std::unique_ptr<change_feed> feed;  // destroyed first: it calls into `h`

  void listen() {
    auto f = change_feed::listen(url, here->origin(), &metrics, 100ms);
    REQUIRE_MESSAGE(f, detail_of(f.error()));
    feed = std::move(*f);
  }
  void follow() {
    listen();
    feed->start(h.target());
  }
};

}  // namespace

TEST_SUITE("runtime.cluster.change_feed") {
  TEST_CASE("a notice names its writer, its last change number and its number of changes") {
    CHECK(parse_notice("ab12 17 3") == write_notice{"ab12", 17, 3});
    CHECK_FALSE(parse_notice("ab12 17"));
    CHECK_FALSE(parse_notice(" 17 3"));
    CHECK_FALSE(parse_notice("ab12 x 3"));
    CHECK_FALSE(parse_notice("ab12 2 3"));  // more changes than numbers
    CHECK_FALSE(parse_notice("ab12 5 0"));
    CHECK_FALSE(parse_notice("ab12 5 3 extra"));
  }

  TEST_CASE("the cursor reads the others' writes and skips its own") {
    feed_cursor cursor{"me", 10};
    SUBCASE("another node's write right after the last one handled is read") {
      auto r = cursor.on_notice({"them", 13, 3});
      CHECK(r.after == 10);
      CHECK(r.upto == 13);
      CHECK_FALSE(r.empty());
      CHECK(r.wanted(11));
      CHECK(r.wanted(13));
      CHECK_FALSE(r.wanted(14));
      CHECK(cursor.seen() == 13);
    }
    SUBCASE("its own write is not read") {
      auto r = cursor.on_notice({"me", 12, 2});
      CHECK(r.empty());
      CHECK(cursor.seen() == 12);
    }
    SUBCASE("after a gap everything missed is read, but not its own write") {
      auto r = cursor.on_notice({"me", 20, 2});
      CHECK_FALSE(r.empty());
      CHECK(r.wanted(11));
      CHECK(r.wanted(18));
      CHECK_FALSE(r.wanted(19));
      CHECK_FALSE(r.wanted(20));
    }
    SUBCASE("a notice at or below the last number handled changes nothing") {
      CHECK(cursor.on_notice({"them", 10, 1}).empty());
      CHECK(cursor.on_notice({"them", 7, 2}).empty());
      CHECK(cursor.seen() == 10);
    }
    SUBCASE("a catch-up reads everything after the last number handled as the others'") {
      auto r = cursor.catch_up(15);
      CHECK(r.after == 10);
      CHECK(r.upto == 15);
      CHECK(r.wanted(11));
      CHECK(cursor.seen() == 15);
      CHECK(cursor.catch_up(12).empty());  // never backwards
    }
  }

  TEST_CASE("a node's feed hands on every change another node commits, in order, and not its own") {
    two_nodes n;
    // A change committed before the feed starts is in the store already: not handed on.
    REQUIRE_FALSE(n.there->write({{"storage/before", "v1 1 0 0 {}"}}));
    n.listen();
    // Committed after the feed listens, before it starts: it waits for the start.
    REQUIRE_FALSE(n.there->write({{"storage/between", "x"}}));
    n.feed->start(n.h.target());

    REQUIRE_FALSE(n.there->write({{"storage/a", "x"}, {"panel/p", "y"}}));
    REQUIRE_FALSE(n.here->write({{"storage/mine", "z"}}));
    REQUIRE_FALSE(n.there->write({{"storage/a", {}, true}}));
    auto keys = n.h.wait_for(4);
    CHECK(keys == std::vector<std::string>{"storage/between", "storage/a", "panel/p",
                                           "storage/a (erased)"});
    // Its own write came between: it was skipped, not read.
    REQUIRE_FALSE(n.there->write({{"storage/b", "w"}}));
    CHECK(n.h.wait_for(5).back() == "storage/b");
    CHECK(n.metrics.changes->Value() == 5);
    CHECK(n.metrics.catch_ups->Value() == 0);
  }

  TEST_CASE("a write made without notices is caught up at the next notice") {
    two_nodes n;
    auto quiet = adapters::pg_store::open(n.url, 1);  // a server outside the cluster
    REQUIRE(quiet);
    n.follow();
    REQUIRE_FALSE((*quiet)->write({{"storage/unnoticed", "1"}}));
    REQUIRE_FALSE(n.there->write({{"storage/noticed", "2"}}));
    CHECK(n.h.wait_for(2) == std::vector<std::string>{"storage/unnoticed", "storage/noticed"});
    CHECK(n.metrics.catch_ups->Value() == 1);
  }

  TEST_CASE("a feed whose connection is cut reconnects and reads what it missed") {
    two_nodes n;
    n.follow();
    REQUIRE_FALSE(n.there->write({{"storage/first", "1"}}));
    REQUIRE(n.h.wait_for(1).size() == 1);
    // Every LISTEN connection of this database is terminated, as by a restart of PostgreSQL.
    auto killer = adapters::pg::connection::open(n.url, {});
    REQUIRE(killer);
    auto cut = (*killer)->exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' "
        "AND pid <> pg_backend_pid()");
    REQUIRE_MESSAGE(cut, detail_of(cut.error()));
    REQUIRE_FALSE(n.there->write({{"storage/while_away", "2"}}));
    REQUIRE_FALSE(n.there->write({{"storage/after", "3"}}));
    CHECK(n.h.wait_for(3) ==
          std::vector<std::string>{"storage/first", "storage/while_away", "storage/after"});
    CHECK(n.metrics.reconnects->Value() >= 1);
  }
}
