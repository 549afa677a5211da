// The membership table (member_table.hpp) on a throwaway PostgreSQL.
#include "adapters/pg/member_table.hpp"

#include <doctest/doctest.h>

#include <future>
#include <thread>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/pg/connection.hpp"
#include "tests/support/throwaway_postgres.hpp"

using namespace tessera;
using namespace tessera::adapters;
using namespace std::chrono_literals;

namespace {

// A fresh database with tessera's schema, and a table on it.
std::string fresh_cluster_database() {
  auto url = tessera::testing::throwaway_postgres::shared().fresh_database();
  auto store = pg_store::open(url, 1);
  REQUIRE_MESSAGE(store, detail_of(store.error()));
  return url;
}

std::unique_ptr<pg::member_table> table_on(const std::string& url) {
  auto t = pg::member_table::open(url);
  REQUIRE_MESSAGE(t, detail_of(t.error()));
  return std::move(*t);
}

const pg::member_row* find(const pg::member_list& l, int64_t generation) {
  for (auto& m : l.members)
    if (m.generation == generation) return &m;
  return nullptr;
}

}  // namespace

TEST_SUITE("adapters.pg.member_table") {
  TEST_CASE(
      "a node joins with a new generation, becomes alive once activated, and its heartbeat renews "
      "it") {
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto a = t->join("a", "127.0.0.1:7001", "127.0.0.1:8001");
    auto b = t->join("b", "127.0.0.1:7002", "127.0.0.1:8002");
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*b > *a);
    CHECK(find(t->list().value(), *a)->state == "joining");
    REQUIRE(t->activate(*a));
    CHECK(code_of(t->activate(*a).error()) == errc::conflict);  // already alive
    auto before = t->list();
    REQUIRE(before);
    REQUIRE(before->members.size() == 2);
    auto* ma = find(*before, *a);
    REQUIRE(ma);
    CHECK(ma->state == "alive");
    CHECK(ma->name == "a");
    CHECK(ma->address == "127.0.0.1:7001");
    CHECK(ma->http == "127.0.0.1:8001");
    CHECK(ma->heartbeat_at_ms <= before->now_ms);
    CHECK(before->now_ms - ma->heartbeat_at_ms < 60'000);
    std::this_thread::sleep_for(20ms);  // the database's clock must move for the check below
    REQUIRE(t->heartbeat(*a).value());
    auto after = t->list();
    CHECK(find(*after, *a)->heartbeat_at_ms > ma->heartbeat_at_ms);
  }

  TEST_CASE("a member past its lease is declared dead by exactly one of the racing nodes") {
    auto url = fresh_cluster_database();
    auto setup = table_on(url);
    auto victim = setup->join("victim", "v:1", "v:2");
    REQUIRE(victim);
    std::vector<int64_t> racers;
    std::vector<std::unique_ptr<pg::member_table>> tables;
    for (int i = 0; i < 4; ++i) {
      tables.push_back(table_on(url));
      racers.push_back(tables.back()->join("racer" + std::to_string(i), "r:1", "r:2").value());
    }
    SUBCASE("not while its heartbeat is fresh") {
      CHECK(tables[0]->expire(racers[0], 60s).value().empty());
      CHECK(find(setup->list().value(), *victim)->state == "joining");
    }
    SUBCASE("once it is older than the lease") {
      // The victim's last heartbeat an hour ago (by the database's clock), the racers' now.
      auto sql = pg::connection::open(url, {});
      REQUIRE(sql);
      REQUIRE(
          (*sql)->exec("UPDATE tessera_members SET heartbeat_at = now() - interval '1 hour'"
                       " WHERE generation = " +
                       std::to_string(*victim)));
      std::vector<std::vector<pg::member_row>> declared(tables.size());
      std::vector<std::thread> threads;
      for (size_t i = 0; i < tables.size(); ++i)
        threads.emplace_back([&, i] { declared[i] = tables[i]->expire(racers[i], 60s).value(); });
      for (auto& th : threads) th.join();
      int winners = 0;
      for (auto& d : declared)
        for (auto& m : d) {
          CHECK(m.generation == *victim);
          CHECK(m.name == "victim");
          ++winners;
        }
      CHECK(winners == 1);
      CHECK(find(setup->list().value(), *victim)->state == "dead");
      // A dead member never comes back: its heartbeat and its activation tell it so.
      CHECK_FALSE(setup->heartbeat(*victim).value());
      CHECK_FALSE(setup->activate(*victim));
      CHECK(find(setup->list().value(), *victim)->state == "dead");
    }
  }

  TEST_CASE("a node started again under its name replaces its earlier run once it is alive") {
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto first = t->join("a", "a:1", "a:2").value();
    REQUIRE(t->activate(first));
    auto second = t->join("a", "a:3", "a:4").value();
    // Joining replaces nothing: a process the cluster refuses never harms the running one.
    CHECK(find(t->list().value(), first)->state == "alive");
    CHECK(t->heartbeat(first).value());
    auto replaced = t->activate(second);
    REQUIRE(replaced);
    CHECK(*replaced == std::vector<int64_t>{first});
    auto l = t->list().value();
    CHECK(find(l, first)->state == "dead");
    CHECK(find(l, second)->state == "alive");
    CHECK(find(l, second)->address == "a:3");
    CHECK_FALSE(t->heartbeat(first).value());
  }

  TEST_CASE(
      "a lease passes to the claiming member with its epoch raised, and a claim it holds "
      "changes nothing") {
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto a = t->join("a", "a:1", "a:2").value();
    auto b = t->join("b", "b:1", "b:2").value();
    REQUIRE(t->activate(a));
    REQUIRE(t->activate(b));
    auto first = t->claim({"storage/x", "storage/y", "storage/x"}, "a", a);
    REQUIRE_MESSAGE(first, detail_of(first.error()));
    REQUIRE(first->size() == 2);
    CHECK((*first)[0].key == "storage/x");
    CHECK((*first)[0].epoch == 1);
    CHECK((*first)[0].previous == 0);
    CHECK(t->claim({"storage/x"}, "a", a).value().empty());  // held already
    auto taken = t->claim({"storage/x"}, "b", b);
    REQUIRE(taken);
    REQUIRE(taken->size() == 1);
    CHECK((*taken)[0].epoch == 2);
    CHECK((*taken)[0].previous == a);
    auto rows = t->leases("storage/");
    REQUIRE(rows);
    REQUIRE(rows->size() == 2);
    CHECK((*rows)[0].key == "storage/x");
    CHECK((*rows)[0].owner == "b");
    CHECK((*rows)[0].generation == b);
    CHECK((*rows)[0].epoch == 2);
    CHECK((*rows)[1].owner == "a");
    CHECK(t->leases("task/").value().empty());
  }

  TEST_CASE("a member that is not alive claims nothing, and a key with a line break is refused") {
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto a = t->join("a", "a:1", "a:2").value();  // joining
    CHECK(t->claim({"storage/x"}, "a", a).value().empty());
    REQUIRE(t->activate(a));
    REQUIRE_FALSE(t->leave(a));  // dead
    CHECK(t->claim({"storage/x"}, "a", a).value().empty());
    CHECK(t->leases("").value().empty());
    CHECK(code_of(t->claim({"bad\nkey"}, "a", a).error()) == errc::invalid_argument);
  }

  TEST_CASE("a member that leaves is dead for the others without waiting for its lease") {
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto a = t->join("a", "a:1", "a:2").value();
    REQUIRE_FALSE(t->leave(a));
    CHECK(find(t->list().value(), a)->state == "dead");
  }

  TEST_CASE("an unreachable database is unavailable, and the table serves again once it is back") {
    auto& pg = tessera::testing::throwaway_postgres::shared();
    auto url = fresh_cluster_database();
    auto t = table_on(url);
    auto a = t->join("a", "a:1", "a:2").value();
    pg.stop();
    auto lost = t->heartbeat(a);
    pg.start();
    REQUIRE_FALSE(lost);
    CHECK(code_of(lost.error()) == errc::unavailable);
    auto back = t->heartbeat(a);
    REQUIRE_MESSAGE(back, detail_of(back.error()));
    CHECK(*back);
  }

  TEST_CASE("a statement stuck behind a lock fails after the statement timeout") {
    auto url = fresh_cluster_database();
    auto t = pg::member_table::open(url, 300ms);
    REQUIRE(t);
    auto a = (*t)->join("a", "a:1", "a:2").value();
    auto holder = pg::connection::open(url, {});
    REQUIRE(holder);
    REQUIRE((*holder)->exec("BEGIN; UPDATE tessera_members SET http = 'held' WHERE generation = " +
                            std::to_string(a)));
    // Without the timeout the heartbeat waits for the lock: it is let go after 5 s, and the
    // heartbeat then succeeds, which fails the checks below instead of hanging the test.
    std::promise<void> answered;
    std::thread release{[&, done = answered.get_future()] {
      done.wait_for(5s);
      (void)(*holder)->exec("ROLLBACK");
    }};
    auto started = std::chrono::steady_clock::now();
    auto stuck = (*t)->heartbeat(a);
    auto took = std::chrono::steady_clock::now() - started;
    answered.set_value();
    release.join();
    CHECK_FALSE(stuck);
    CHECK(took < 4s);
    CHECK((*t)->heartbeat(a).value());  // the table serves again
  }

  TEST_CASE("the cluster's secret is made by the first node that asks and shared by every other") {
    auto url = fresh_cluster_database();
    auto first = table_on(url)->secret();
    REQUIRE_MESSAGE(first, detail_of(first.error()));
    CHECK(first->size() == 64);
    CHECK(table_on(url)->secret().value() == *first);
    CHECK(table_on(fresh_cluster_database())->secret().value() != *first);  // per database
  }
}
