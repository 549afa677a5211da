#include "adapters/kv/kv_store.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "adapters/error.hpp"
#include "adapters/kv/pg_store.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "adapters/kv/test_backends.hpp"
#include "adapters/pg/connection.hpp"
#include "tests/support/throwaway_postgres.hpp"

using namespace tessera;
using namespace tessera::adapters;
using tessera::testing::throwaway_postgres;
using namespace tessera::adapters::testing;

namespace {

std::vector<std::string> keys_of(const kv_rows& rows) {
  std::vector<std::string> out;
  for (auto& [k, _] : rows) out.push_back(k);
  return out;
}

void put(kv_store& s, std::vector<std::string> keys) {
  std::vector<write_op> ops;
  for (auto& k : keys) ops.push_back({k, "v:" + k});
  REQUIRE_FALSE(s.write(ops));
}

}  // namespace

TEST_SUITE("adapters.kv_store") {
  TEST_CASE("a missing key reads as nothing, not as an error, on every backend") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      auto v = b.store->get("storage/none");
      REQUIRE(v);
      CHECK_FALSE(v->has_value());
    }
  }

  TEST_CASE("a batch's writes and deletes all land, a later op on a key winning") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      REQUIRE_FALSE(b.store->write({{"a", "1"}, {"b", "2"}, {"a", "3"}}));
      REQUIRE_FALSE(b.store->write({{"b", "", true},
                                    {"c", std::string("x\0y", 3)},
                                    {"c", "", true},
                                    {"c", std::string("\0\xff", 2)}}));
      CHECK(b.store->get("a")->value() == "3");
      CHECK_FALSE(b.store->get("b")->has_value());
      CHECK(b.store->get("c")->value() == std::string("\0\xff", 2));  // bytes, not text
      CHECK_FALSE(b.store->write({}));
    }
  }

  TEST_CASE("a scan keeps to its prefix, in bytewise key order, after a key and up to a limit") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      put(*b.store, {"run/a/2", "run/a/10", "run/a\xff", "run/b/1", "run/", "ru", "rup",
                     std::string("run/a/\0", 7), "run/a/\xc3\xa9"});
      auto all = b.store->scan("run/a/", "", 100);
      REQUIRE(all);
      CHECK(keys_of(*all) == std::vector<std::string>{std::string("run/a/\0", 7), "run/a/10",
                                                      "run/a/2", "run/a/\xc3\xa9"});
      CHECK((*all)[1].second == "v:run/a/10");
      auto after = b.store->scan("run/a/", "10", 100);
      CHECK(keys_of(*after) == std::vector<std::string>{"run/a/2", "run/a/\xc3\xa9"});
      auto first = b.store->scan("run/", "", 2);
      CHECK(keys_of(*first) == std::vector<std::string>{"run/", std::string("run/a/\0", 7)});
      auto high = b.store->scan("run/a\xff", "", 10);
      CHECK(keys_of(*high) == std::vector<std::string>{"run/a\xff"});
      CHECK(b.store->scan("zzz/", "", 10)->empty());
      CHECK(b.store->scan("run/", "", 0)->empty());
    }
  }

  TEST_CASE("a range is half open, forward or newest first, up to a limit") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      put(*b.store, {"log/001", "log/002", "log/003", "log/004", "m"});
      CHECK(keys_of(*b.store->range("log/002", "log/004", 10, false)) ==
            std::vector<std::string>{"log/002", "log/003"});
      CHECK(keys_of(*b.store->range("log/", "log/\xff", 3, true)) ==
            std::vector<std::string>{"log/004", "log/003", "log/002"});
      CHECK(b.store->range("log/004", "log/001", 10, false)->empty());
      CHECK(b.store->range("log/002", "log/002", 10, true)->empty());
    }
  }

  TEST_CASE("flush and healthy answer on every backend") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      CHECK_FALSE(b.store->flush());
      CHECK(b.store->healthy());
    }
  }
}

TEST_SUITE("adapters.kv_store") {
  TEST_CASE("a read view sees the store as it was when taken, and takes no writes") {
    for (auto& b : backends()) {
      CAPTURE(b.name);
      put(*b.store, {"k/a", "k/b"});
      auto view = b.store->read_view();
      REQUIRE_MESSAGE(view, detail_of(view.error()));
      REQUIRE_FALSE(b.store->write({{"k/a", "changed"}, {"k/b", "", true}, {"k/c", "new"}}));
      CHECK((*view)->get("k/a")->value() == "v:k/a");
      CHECK((*view)->get("k/b")->value() == "v:k/b");
      CHECK_FALSE((*view)->get("k/c")->has_value());
      CHECK(keys_of(*(*view)->scan("k/", "", 10)) == std::vector<std::string>{"k/a", "k/b"});
      CHECK(keys_of(*(*view)->range("k/", "k0", 10, true)) ==
            std::vector<std::string>{"k/b", "k/a"});
      auto feed = (*view)->changes_after(0, 10);
      REQUIRE(feed);
      CHECK(feed->last == 2);  // the view's moment: the three later changes are not in it
      CHECK(feed->changes.size() == 2);
      auto same = (*view)->read_view();  // a view of a view is the same moment
      REQUIRE(same);
      CHECK_FALSE((*same)->get("k/c")->has_value());
      auto refused = (*view)->write({{"k/d", "x"}});
      REQUIRE(refused);
      CHECK(code_of(refused) == errc::invalid_argument);
      CHECK(b.store->get("k/a")->value() == "changed");
      CHECK(keys_of(*b.store->scan("k/", "", 10)) == std::vector<std::string>{"k/a", "k/c"});
    }
  }
}

TEST_SUITE("adapters.kv_store") {
  TEST_CASE("a conditional write applies only while its keys are as expected, else none of it") {
    auto create = [](std::string key, std::string value) {
      write_op op{std::move(key), std::move(value)};
      op.expect = write_op::absent;
      return op;
    };
    auto from = [](std::string key, std::string value, std::string prefix, bool erase = false) {
      write_op op{std::move(key), std::move(value), erase};
      op.expect = write_op::has_prefix;
      op.prefix = std::move(prefix);
      return op;
    };
    for (auto& b : backends()) {
      CAPTURE(b.name);
      REQUIRE_FALSE(b.store->write({create("storage/a", "v1 1 a"), create("storage/b", "v1 1 b")}));
      // A create of an existing key fails, and takes the rest of its write with it.
      auto again = b.store->write({{"other", "x"}, create("storage/a", "v1 1 again")});
      CHECK(code_of(again) == errc::conflict);
      CHECK_FALSE(b.store->get("other")->has_value());
      CHECK(b.store->get("storage/a")->value() == "v1 1 a");
      // An update from the version it read applies; one from a stale version does not.
      REQUIRE_FALSE(b.store->write({from("storage/a", "v1 2 a", "v1 1 ")}));
      auto stale = b.store->write(
          {from("storage/b", "v1 2 b", "v1 1 "), from("storage/a", "v1 2 lost", "v1 1 ")});
      CHECK(code_of(stale) == errc::conflict);
      CHECK(b.store->get("storage/a")->value() == "v1 2 a");
      CHECK(b.store->get("storage/b")->value() == "v1 1 b");
      // "v1 1 " does not match version 10 or 11: the prefix holds the space.
      REQUIRE_FALSE(b.store->write({{"storage/c", "v1 11 c"}}));
      CHECK(code_of(b.store->write({from("storage/c", "x", "v1 1 ")})) == errc::conflict);
      // A delete with a condition; a condition on a key that is gone fails.
      REQUIRE_FALSE(b.store->write({from("storage/a", "", "v1 2 ", true)}));
      CHECK_FALSE(b.store->get("storage/a")->has_value());
      CHECK(code_of(b.store->write({from("storage/a", "v1 3 a", "v1 2 ")})) == errc::conflict);
      // A condition sees the ops before it in the same write, on every backend.
      REQUIRE_FALSE(
          b.store->write({{"storage/d", "v1 1 d"}, from("storage/d", "v1 2 d", "v1 1 ")}));
      CHECK(b.store->get("storage/d")->value() == "v1 2 d");
      CHECK(code_of(b.store->write({{"storage/d", "v1 5 d"}, from("storage/d", "x", "v1 2 ")})) ==
            errc::conflict);
      CHECK(b.store->get("storage/d")->value() == "v1 2 d");
      // Conditions take no numbers when they fail: the feed holds the writes that applied.
      auto feed = b.store->changes_after(0, 100);
      REQUIRE(feed);
      CHECK(feed->changes.size() == 7);
    }
  }
}

TEST_SUITE("adapters.pg_store") {
  TEST_CASE(
      "servers writing one key from the same version: exactly one wins, the others conflict") {
    auto url = throwaway_postgres::shared().fresh_database();
    std::vector<std::shared_ptr<pg_store>> servers{
        fresh_pg(2, 1'000'000, url), fresh_pg(2, 1'000'000, url), fresh_pg(2, 1'000'000, url)};
    for (int round = 0; round < 20; ++round) {
      auto key = "storage/k" + std::to_string(round);
      std::atomic<int> won{0}, conflicts{0}, other{0};
      std::vector<std::thread> threads;
      for (size_t i = 0; i < servers.size(); ++i)
        threads.emplace_back([&, i] {
          write_op create{key, "v1 1 by " + std::to_string(i)};
          create.expect = write_op::absent;
          auto err = servers[i]->write({create});
          if (!err)
            ++won;
          else if (code_of(err) == errc::conflict)
            ++conflicts;
          else
            ++other;
        });
      for (auto& t : threads) t.join();
      CHECK(won == 1);
      CHECK(conflicts == 2);
      CHECK(other == 0);
      threads.clear();
      won = conflicts = 0;
      for (size_t i = 0; i < servers.size(); ++i)
        threads.emplace_back([&, i] {
          write_op update{key, "v1 2 by " + std::to_string(i)};
          update.expect = write_op::has_prefix;
          update.prefix = "v1 1 ";
          auto err = servers[i]->write({update});
          if (!err)
            ++won;
          else if (code_of(err) == errc::conflict)
            ++conflicts;
          else
            ++other;
        });
      for (auto& t : threads) t.join();
      CHECK(won == 1);
      CHECK(conflicts == 2);
      CHECK(other == 0);
    }
  }

  TEST_CASE("a batch that fails in PostgreSQL writes none of its ops") {
    auto s = fresh_pg();
    // A key larger than a btree entry may be (about 2,700 bytes, after compression: so it
    // must not compress) fails inside PostgreSQL.
    std::string huge;
    uint32_t x = 12345;
    for (int i = 0; i < 10000; ++i) huge += static_cast<char>((x = x * 1103515245 + 12345) >> 24);
    auto err = s->write({{"kept?", "1"}, {huge, "2"}, {"after", "3"}});
    REQUIRE(err);
    CHECK(detail_of(err).find("PostgreSQL") != std::string::npos);
    CHECK_FALSE(s->get("kept?")->has_value());
    CHECK_FALSE(s->get("after")->has_value());
    CHECK_FALSE(s->write({{"next", "4"}}));  // the connection serves the next batch
    CHECK(s->get("next")->value() == "4");
  }

  TEST_CASE("a batch of many thousand ops goes in one pipeline without blocking either side") {
    auto s = fresh_pg(1);
    std::vector<write_op> ops;
    for (int i = 0; i < 20000; ++i)
      ops.push_back({"k/" + std::to_string(100000 + i), std::string(200, 'v')});
    REQUIRE_FALSE(s->write(ops));
    CHECK(s->scan("k/", "", 100000)->size() == 20000);
  }

  TEST_CASE("a second server on the same database finds the schema and the data") {
    auto url = throwaway_postgres::shared().fresh_database();
    {
      auto a = pg_store::open(url);
      REQUIRE(a);
      REQUIRE_FALSE((*a)->write({{"meta/started", "1"}}));
    }
    auto b = pg_store::open(url);
    REQUIRE(b);
    CHECK((*b)->get("meta/started")->value() == "1");
  }

  TEST_CASE("servers starting together on an empty database create the schema once") {
    auto url = throwaway_postgres::shared().fresh_database();
    std::vector<std::thread> threads;
    std::atomic<int> opened{0};
    for (int i = 0; i < 4; ++i)
      threads.emplace_back([&] {
        if (pg_store::open(url)) ++opened;
      });
    for (auto& t : threads) t.join();
    CHECK(opened == 4);
  }

  TEST_CASE("a schema newer than the server knows is refused, naming both versions") {
    auto url = throwaway_postgres::shared().fresh_database();
    REQUIRE(pg_store::open(url));
    auto c = pg::connection::open(url, {});
    REQUIRE(c);
    REQUIRE((*c)->exec("UPDATE tessera_schema SET version = 99"));
    auto again = pg_store::open(url);
    REQUIRE_FALSE(again);
    auto detail = detail_of(again.error());
    CHECK(detail.find("version 99") != std::string::npos);
    CHECK(detail.find("(" + std::to_string(pg_store::schema_version) + ")") != std::string::npos);
  }

  TEST_CASE("an unreachable server is named by its URL, with the password masked") {
    auto s = pg_store::open("postgresql://tessera:s3cret-pw@127.0.0.1:1/db?connect_timeout=2");
    REQUIRE_FALSE(s);
    auto detail = detail_of(s.error());
    CHECK(detail.find("postgresql://tessera:***@127.0.0.1:1/db") != std::string::npos);
    CHECK(detail.find("s3cret-pw") == std::string::npos);
  }

  TEST_CASE("PostgreSQL gone fails calls; back again, the store serves by itself") {
    auto s = fresh_pg(2);
    REQUIRE_FALSE(s->write({{"before", "1"}}));
    auto& server = throwaway_postgres::shared();
    server.stop();
    auto during = s->get("before");
    CHECK_FALSE(during);
    CHECK_FALSE(s->healthy());
    CHECK(s->write({{"lost", "1"}}));
    server.start();
    auto after = s->get("before");
    REQUIRE_MESSAGE(after, detail_of(after.error()));
    CHECK(after->value() == "1");
    CHECK_FALSE(s->get("lost")->has_value());  // refused, so not written
    CHECK_FALSE(s->write({{"after", "2"}}));
    CHECK(s->healthy());
    CHECK(s->reconnects() >= 1);
  }

  TEST_CASE("healthy answers at once while every connection is busy") {
    auto s = fresh_pg(1);
    std::vector<write_op> ops;
    for (int i = 0; i < 60000; ++i)
      ops.push_back({"h/" + std::to_string(i), std::string(100, 'v')});
    std::atomic<bool> done{false};
    std::thread writer([&] {
      CHECK_FALSE(s->write(ops));
      done = true;
    });
    while (s->in_use() == 0 && !done) std::this_thread::yield();
    REQUIRE_FALSE(done);  // 60,000 writes take far longer than noticing the lent connection
    auto start = std::chrono::steady_clock::now();
    CHECK(s->healthy());
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(50));
    CHECK_FALSE(done);  // it answered while the connection was still lent
    writer.join();
    CHECK(s->healthy());
  }

  TEST_CASE("the pool lends at most its size and the rest wait for a connection") {
    auto s = fresh_pg(2);
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    std::atomic<size_t> most{0};
    for (int t = 0; t < 8; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          if (s->write({{"t" + std::to_string(t), std::to_string(i)}})) ++failures;
          auto used = s->in_use();
          for (auto m = most.load(); used > m && !most.compare_exchange_weak(m, used);) {
          }
        }
      });
    for (auto& t : threads) t.join();
    CHECK(failures == 0);
    CHECK(most <= 2);
    CHECK(s->in_use() == 0);
    CHECK(s->get("t7")->value() == "49");
  }
}

TEST_SUITE("adapters.pg mask_password") {
  TEST_CASE("a URL's password is masked, the rest kept") {
    CHECK(pg::mask_password("postgres://u:pw@h:5432/db") == "postgres://u:***@h:5432/db");
    CHECK(pg::mask_password("postgresql://u@h/db") == "postgresql://u@h/db");
    CHECK(pg::mask_password("postgresql://u:p%40w@h/db?sslmode=require&password=x2") ==
          "postgresql://u:***@h/db?sslmode=require&password=***");
    CHECK(pg::mask_password("postgresql:///db?password=abc&user=u") ==
          "postgresql:///db?password=***&user=u");
  }

  TEST_CASE("a key=value string's password is masked, quoted or not") {
    CHECK(pg::mask_password("host=h password=secret dbname=d") == "host=h password=*** dbname=d");
    CHECK(pg::mask_password("password = 'a b\\' c' host=h") == "password = *** host=h");
    CHECK(pg::mask_password("host=h port=5432 dbname=d") == "host=h port=5432 dbname=d");
  }

  TEST_CASE("what libpq would read as a password is masked, however it is written") {
    for (std::string s : {"postgres://u:se?cret@h/db", "postgresql://u@h/db?pass%77ord=secret",
                          "postgresql://u@h/db?sslpassword=secret", "password=\tsecret host=h",
                          "sslpassword=secret host=h", "dbname='x' password=secret"}) {
      CAPTURE(s);
      auto masked = pg::mask_password(s);
      CHECK(masked.find("secret") == std::string::npos);
      CHECK(masked.find("cret") == std::string::npos);
    }
  }

  TEST_CASE("a string libpq cannot read is not shown at all") {
    for (std::string s :
         {"Postgres://u:pw-secret@h", "postgres://u:50%off-secret@h", "host=h mypassword=secret"}) {
      CAPTURE(s);
      CHECK(pg::mask_password(s).find("secret") == std::string::npos);
    }
  }

  TEST_CASE("a connection string libpq cannot read fails the start without showing it") {
    auto s = pg_store::open("postgres://u:50%off-secret@h/db");
    REQUIRE_FALSE(s);
    CHECK(detail_of(s.error()).find("secret") == std::string::npos);
    CHECK(detail_of(s.error()).find("libpq can read") != std::string::npos);
  }
}
