#include "actors/storage/storage_directory.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "actors/storage/storage_codec.hpp"
#include "adapters/error.hpp"
#include "adapters/kv/rocks_store.hpp"
#include "adapters/kv/test_backends.hpp"
#include "runtime/blocking_pool.hpp"
#include "runtime/committer.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace std::chrono_literals;

namespace {

struct fixture {
  std::filesystem::path data_dir =
      std::filesystem::temp_directory_path() /
      ("tessera-dir-test-" + std::to_string(::getpid()) + "-" + std::to_string(std::rand()));
  std::shared_ptr<adapters::kv_store> store =
      *adapters::rocks_store::open({data_dir.string(), /*sync=*/true, nullptr});
  std::shared_ptr<prometheus::Registry> registry = adapters::make_metrics_registry();
  runtime::actor_metrics metrics{*registry};
  runtime::actor_kind_metrics kind = metrics.for_kind("storage");
  runtime::system_config cfg{2, {add_storage_messages, runtime::add_committer_messages}};
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  runtime::committer_actor committer = runtime::spawn_committer(sys, store);

  directory_impl start(std::chrono::milliseconds idle = 30s, size_t max_live = 0) {
    return sys.spawn(storage_directory,
                     storage_env{store, idle, nullptr, committer, 5s, {}, max_live}, kind);
  }

  template <class T = storage_record, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dst, Ts&&... xs) {
    caf::expected<T> out = make_error(errc::internal, "no reply");
    self->request(dst, 5s, std::forward<Ts>(xs)...)
        .receive([&](T& r) { out = std::move(r); }, [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  ~fixture() {
    caf::anon_send(committer, runtime::stop_atom::value);
    self->send_exit(caf::actor_cast<caf::actor>(self), caf::exit_reason::normal);
    std::filesystem::remove_all(data_dir);
  }
};

nlohmann::json data_of(const caf::expected<storage_record>& r) {
  REQUIRE(r);
  return nlohmann::json::parse(r->data);
}

// A store whose point reads fail while `failing` is set (a cancelled query, say), and
// otherwise read through to `inner`.
struct flaky_reads final : adapters::testing::forwarding_store {
  std::atomic<bool> failing{false};
  std::atomic<int> gets{0};
  explicit flaky_reads(std::shared_ptr<adapters::kv_store> s) : forwarding_store(std::move(s)) {}
  caf::expected<std::optional<std::string>> get(std::string_view key) const override {
    ++const_cast<std::atomic<int>&>(gets);
    if (failing) return make_error(errc::storage_failure, "canceling statement (57014)");
    return inner->get(key);
  }
};

template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

}  // namespace

TEST_SUITE("actors.storage") {
  TEST_CASE_FIXTURE(fixture,
                    "a load that failed answers its error, and the next request loads again") {
    auto dir = start();
    REQUIRE(ask(dir, create_atom::value, std::string{"s"}, std::string{R"({"n":1})"}));
    auto flaky = std::make_shared<flaky_reads>(store);
    auto readers = runtime::blocking_pool::start(sys, 1);
    auto env = storage_env{flaky, 30s, nullptr, committer, 5s, {}, 0, readers};
    auto second = sys.spawn(storage_directory, env, kind);  // a fresh actor for "s": it loads
    flaky->failing = true;
    auto failed = ask(second, read_atom::value, std::string{"s"});
    REQUIRE_FALSE(failed);
    CHECK(code_of(failed.error()) == errc::storage_failure);
    CHECK(detail_of(failed.error()).find("57014") != std::string::npos);
    flaky->failing = false;
    auto again = ask(second, read_atom::value, std::string{"s"});
    REQUIRE_MESSAGE(again, detail_of(again.error()));
    CHECK(data_of(again) == nlohmann::json{{"n", 1}});
    auto loads = flaky->gets.load();
    REQUIRE(ask(second, merge_atom::value, std::string{"s"}, std::string{R"({"m":2})"},
                version_list{}));
    CHECK(flaky->gets == loads);  // loaded once it succeeded: writes need no reads
    self->send_exit(second, caf::exit_reason::user_shutdown);
    readers->stop();
  }

  TEST_CASE_FIXTURE(fixture, "a created storage reads back at version 1") {
    auto storages = start();
    auto created = ask(storages, create_atom::value, std::string{"s"}, std::string{R"({"a":1})"});
    REQUIRE(created);
    CHECK(created->version == 1);
    CHECK(created->created_at == created->updated_at);
    CHECK(data_of(ask(storages, read_atom::value, std::string{"s"})) == nlohmann::json{{"a", 1}});
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "creating an existing storage is a conflict and changes nothing") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"}, std::string{R"({"a":1})"}));
    auto again = ask(storages, create_atom::value, std::string{"s"}, std::string{R"({"a":2})"});
    CHECK(code_of(again.error()) == errc::conflict);
    CHECK(data_of(ask(storages, read_atom::value, std::string{"s"}))["a"] == 1);
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a merge sets top-level keys and removes keys set to null") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"},
                std::string{R"({"a":1,"b":{"x":1},"c":3})"}));
    auto merged = ask(storages, merge_atom::value, std::string{"s"},
                      std::string{R"({"b":{"y":2},"c":null,"d":4})"}, version_list{});
    CHECK(merged->version == 2);
    CHECK(data_of(merged) == nlohmann::json::parse(R"({"a":1,"b":{"y":2},"d":4})"));
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a stale If-Match is rejected with precondition_failed") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"}, std::string{"{}"}));
    REQUIRE(ask(storages, replace_atom::value, std::string{"s"}, std::string{R"({"v":2})"},
                version_list{1}));
    SUBCASE("replace") {
      auto r = ask(storages, replace_atom::value, std::string{"s"}, std::string{R"({"v":3})"},
                   version_list{1});
      CHECK(code_of(r.error()) == errc::precondition_failed);
    }
    SUBCASE("erase") {
      CHECK(code_of(ask(storages, erase_atom::value, std::string{"s"}, version_list{1}).error()) ==
            errc::precondition_failed);
    }
    auto now = ask(storages, read_atom::value, std::string{"s"});
    CHECK(now->version == 2);
    CHECK(data_of(now)["v"] == 2);
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a write is on disk when it is acknowledged") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"}, std::string{R"({"k":"v"})"}));
    auto raw = store->get(storage_key("s"));
    REQUIRE(raw);
    REQUIRE(*raw);
    CHECK(decode("s", **raw)->data == R"({"k":"v"})");
    REQUIRE(ask(storages, erase_atom::value, std::string{"s"}, version_list{}));
    CHECK_FALSE(*store->get(storage_key("s")));
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "an invalid id is refused before any actor is activated") {
    auto storages = start();
    CHECK(code_of(ask(storages, read_atom::value, std::string{"a/b"}).error()) ==
          errc::invalid_argument);
    CHECK(kind.activations->Value() == 0);
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "idle storages are passivated and reactivated from RocksDB") {
    auto storages = start(20ms);
    for (int i = 0; i < 20; ++i)
      REQUIRE(
          ask(storages, create_atom::value, "s" + std::to_string(i), std::string{R"({"i":1})"}));
    CHECK(eventually([&] { return kind.live->Value() == 0; }));
    CHECK(kind.passivations->Value() == 20);
    auto back = ask(storages, merge_atom::value, std::string{"s7"}, std::string{R"({"j":2})"},
                    version_list{1});
    CHECK(back->version == 2);
    CHECK(data_of(back) == nlohmann::json{{"i", 1}, {"j", 2}});
    CHECK(kind.activations->Value() == 21);
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "listing pages through ids in order") {
    auto storages = start();
    for (auto id : {"c", "a", "b", "e", "d"})
      REQUIRE(ask(storages, create_atom::value, std::string{id}, std::string{"{}"}));
    std::vector<std::string> seen;
    std::string after;
    do {
      auto page = ask<storage_page>(storages, list_atom::value, after, uint32_t{2});
      REQUIRE(page);
      for (auto& s : page->items) seen.push_back(s.id);
      after = page->next_after;
    } while (!after.empty());
    CHECK(seen == std::vector<std::string>{"a", "b", "c", "d", "e"});
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a write through the group committer is durable when acknowledged") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"}, std::string{R"({"k":1})"}));
    auto merged = ask(storages, merge_atom::value, std::string{"s"}, std::string{R"({"k":2})"},
                      version_list{1});
    CHECK(merged->version == 2);
    CHECK(decode("s", **store->get(storage_key("s")))->data == R"({"k":2})");
    CHECK(code_of(ask(storages, create_atom::value, std::string{"s"}, std::string{"{}"}).error()) ==
          errc::conflict);
    REQUIRE(ask(storages, erase_atom::value, std::string{"s"}, version_list{2}));
    CHECK_FALSE(*store->get(storage_key("s")));
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "concurrent writes through the committer all land in order") {
    auto storages = start();
    for (int i = 0; i < 8; ++i)
      REQUIRE(ask(storages, create_atom::value, "c" + std::to_string(i), std::string{"{}"}));
    // Send 8 x 25 merges before waiting for any reply, so that commits queue up and batch.
    auto merge = [&](int i, int n) {
      return self->request(storages, 5s, merge_atom::value, "c" + std::to_string(i),
                           nlohmann::json{{"k" + std::to_string(n), n}}.dump(), version_list{});
    };
    std::vector<decltype(merge(0, 0))> pending;
    for (int n = 0; n < 25; ++n)
      for (int i = 0; i < 8; ++i) pending.push_back(merge(i, n));
    int replies = 0;
    for (auto& reply : pending)
      reply.receive([&](storage_record&) { ++replies; },
                    [](caf::error& e) { FAIL(caf::to_string(e)); });
    CHECK(replies == 200);
    for (int i = 0; i < 8; ++i) {
      auto r = ask(storages, read_atom::value, "c" + std::to_string(i));
      CHECK(r->version == 26);
      CHECK(data_of(r).size() == 25);
    }
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "writes that arrive together on one storage each get their version") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"hot"}, std::string{"{}"}));
    // 100 merges in flight at once: they queue behind the commit in progress and
    // go to disk in batches, each acknowledged with the version its own change made.
    auto merge = [&](int n) {
      return self->request(storages, 5s, merge_atom::value, std::string{"hot"},
                           nlohmann::json{{"k" + std::to_string(n), n}}.dump(), version_list{});
    };
    std::vector<decltype(merge(0))> pending;
    for (int n = 0; n < 100; ++n) pending.push_back(merge(n));
    std::vector<int64_t> versions;
    for (auto& reply : pending)
      reply.receive([&](storage_record& r) { versions.push_back(r.version); },
                    [](caf::error& e) { FAIL(caf::to_string(e)); });
    std::vector<int64_t> expected(100);
    std::iota(expected.begin(), expected.end(), 2);
    CHECK(versions == expected);  // in arrival order, none shared, none skipped
    auto stored = decode("hot", **store->get(storage_key("hot")));
    CHECK(stored->version == 101);
    CHECK(nlohmann::json::parse(stored->data).size() == 100);
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a stale If-Match in a batch fails alone and the others land") {
    auto storages = start();
    REQUIRE(ask(storages, create_atom::value, std::string{"s"}, std::string{"{}"}));
    auto a = self->request(storages, 5s, merge_atom::value, std::string{"s"},
                           std::string{R"({"a":1})"}, version_list{1});
    auto b = self->request(storages, 5s, merge_atom::value, std::string{"s"},
                           std::string{R"({"b":1})"}, version_list{1});  // stale after a
    auto c = self->request(storages, 5s, merge_atom::value, std::string{"s"},
                           std::string{R"({"c":1})"}, version_list{2});
    a.receive([](storage_record& r) { CHECK(r.version == 2); },
              [](caf::error& e) { FAIL(caf::to_string(e)); });
    b.receive([](storage_record&) { FAIL("a stale If-Match was accepted"); },
              [](caf::error& e) { CHECK(code_of(e) == errc::precondition_failed); });
    c.receive([](storage_record& r) { CHECK(r.version == 3); },
              [](caf::error& e) { FAIL(caf::to_string(e)); });
    CHECK(data_of(ask(storages, read_atom::value, std::string{"s"})) ==
          nlohmann::json{{"a", 1}, {"c", 1}});
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "a storage created again continues from its erased version") {
    auto storages = start(20ms);
    REQUIRE(ask(storages, create_atom::value, std::string{"r"}, std::string{"{}"}));
    REQUIRE(ask(storages, merge_atom::value, std::string{"r"}, std::string{R"({"x":1})"},
                version_list{}));
    REQUIRE(ask(storages, erase_atom::value, std::string{"r"}, version_list{2}));
    CHECK(eventually([&] { return kind.live->Value() == 0; }));  // the tombstone is on disk
    auto again = ask(storages, create_atom::value, std::string{"r"}, std::string{"{}"});
    CHECK(again->version == 3);
    CHECK_FALSE(*store->get(tombstone_key("r")));  // removed by the create's batch
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }

  TEST_CASE_FIXTURE(fixture, "beyond max_live the least recently used storages are passivated") {
    auto storages = start(30s, 10);
    for (int i = 0; i < 50; ++i)
      REQUIRE(ask(storages, create_atom::value, "m" + std::to_string(i), std::string{"{}"}));
    CHECK(eventually([&] { return kind.live->Value() <= 10; }));
    CHECK(kind.passivations->Value() >= 40);
    // The most recent stayed; an early one comes back from RocksDB.
    for (int i : {49, 0}) {
      auto r = ask(storages, read_atom::value, "m" + std::to_string(i));
      REQUIRE(r);
      CHECK(r->version == 1);
    }
    caf::anon_send_exit(storages, caf::exit_reason::user_shutdown);
  }
}
