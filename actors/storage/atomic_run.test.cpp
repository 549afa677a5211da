#include "actors/storage/atomic_run.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "actors/storage/storage_directory.hpp"
#include "actors/storage/test_storages.hpp"
#include "actors/storage/transaction.hpp"
#include "adapters/error.hpp"
#include "runtime/committer.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

// A sandbox whose "handler" adds 1 to n of every storage in the call's body (the snapshot as
// storage_object() writes it) and says how many calls it has served.
sandbox::sandbox_actor::behavior_type counting_sandbox(sandbox::sandbox_actor::pointer,
                                                       std::shared_ptr<int> calls) {
  return {
      [calls](sandbox::run_atom, sandbox::call& c) {
        ++*calls;
        auto state = json::parse(c.body);
        json changed = json::object();
        for (auto& [id, data] : state.items()) {
          data["n"] = data.value("n", 0) + 1;
          changed[id] = data;
        }
        return sandbox::call_result{"ok", json{{"changed", changed}}.dump(), 0, 0, ""};
      },
      [](sandbox::status_atom) { return std::string{"{}"}; },
  };
}

struct atomic_fixture : test_storages {
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  sandbox::sandbox_actor sandbox = sys.spawn(counting_sandbox, calls);
  std::chrono::milliseconds request_timeout = 5s;  // the runs' reads and commits
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  // Another writer's locked transaction, holding `id` until release().
  caf::actor lock(const std::string& id) {
    auto txn = sys.spawn(storage::transaction, storages, committer, 60s);
    REQUIRE(ask<std::vector<txn_entry>>(txn, lock_atom::value, std::vector<std::string>{id}));
    return txn;
  }

  void release(const caf::actor& txn) {
    REQUIRE(ask<caf::ok_atom>(txn, runtime::commit_atom::value, std::vector<txn_entry>{}));
  }

  int64_t version(const std::string& id) {
    auto r = ask<storage_record>(storages, read_atom::value, id);
    REQUIRE(r);
    return r->version;
  }

  storage_record replace(const std::string& id, const std::string& data) {
    auto r = ask<storage_record>(storages, replace_atom::value, id, data, version_list{});
    REQUIRE(r);
    return *r;
  }

  // One run over `ids` on an actor of its own; its outcome.
  caf::expected<atomic_outcome> run(std::vector<std::string> ids, std::optional<snapshot> known,
                                    atomic_hooks hooks = {},
                                    atomic_start::answer_source answer = {}) {
    auto result = std::make_shared<std::optional<caf::expected<atomic_outcome>>>();
    atomic_env env{storages, sandbox, committer, request_timeout, 5s, 16};
    env.deadline = deadline;
    // (An argument, as CAF 0.17 spawns a function without one through a null tuple pointer.)
    auto runner = sys.spawn(
        [=](caf::event_based_actor* a, int) -> caf::behavior {
          run_atomically(
              a, env, ids, "test",
              [](const snapshot& s) {
                return sandbox::call{sandbox::call_kind::action, storage_object(s), 0, 0, ""};
              },
              hooks, atomic_start{known, answer},
              [=](caf::expected<atomic_outcome> out) {
                *result = std::move(out);
                a->quit();
              });
          return {};
        },
        0);
    self->wait_for(runner);
    REQUIRE(result->has_value());
    return std::move(**result);
  }
};

}  // namespace

TEST_SUITE("actors.storage.atomic_run") {
  TEST_CASE_FIXTURE(atomic_fixture, "a run's outcome holds the data and versions it committed") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto out = run({"c"}, std::nullopt);
    REQUIRE(out);
    CHECK(out->conflicts == 0);
    CHECK(out->after.at("c").version == 2);
    CHECK(json::parse(out->after.at("c").data) == json{{"n", 2}});
    auto stored = ask<storage_record>(storages, read_atom::value, std::string{"c"});
    REQUIRE(stored);
    CHECK(stored->version == 2);
    CHECK(json::parse(stored->data) == json{{"n", 2}});
  }

  TEST_CASE_FIXTURE(atomic_fixture, "a run starts on the known state without reading it") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto first = run({"c"}, std::nullopt);
    REQUIRE(first);
    auto second = run({"c"}, first->after);
    REQUIRE(second);
    CHECK(*calls == 2);  // one call each: the known state was current
    CHECK(second->conflicts == 0);
    CHECK(json::parse(second->after.at("c").data) == json{{"n", 3}});
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a known state gone stale conflicts and the run re-runs on what is there") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto first = run({"c"}, std::nullopt);
    REQUIRE(first);
    replace("c", R"({"n":100})");  // version 3, unknown to the caller
    auto second = run({"c"}, first->after);
    REQUIRE(second);
    CHECK(second->conflicts == 1);
    CHECK(*calls == 3);  // the stale attempt's call, then the one on fresh state
    CHECK(second->after.at("c").version == 4);
    CHECK(json::parse(second->after.at("c").data) == json{{"n", 101}});
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a known state that names other storages than the run's is not used") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "a", std::string{R"({"n":1})"}));
    REQUIRE(ask<storage_record>(storages, create_atom::value, "b", std::string{R"({"n":5})"}));
    snapshot only_a{{"a", {R"({"n":1})", 1}}};
    auto out = run({"a", "b"}, only_a);
    REQUIRE(out);
    CHECK(out->conflicts == 0);
    CHECK(*calls == 1);
    CHECK(json::parse(out->after.at("a").data) == json{{"n", 2}});
    CHECK(json::parse(out->after.at("b").data) == json{{"n", 6}});
    CHECK(out->after.at("b").version == 2);
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a run over a missing storage creates it through a transaction") {
    auto out = run({"fresh"}, std::nullopt);
    REQUIRE(out);
    CHECK(json::parse(out->after.at("fresh").data) == json{{"n", 1}});
    auto stored = ask<storage_record>(storages, read_atom::value, std::string{"fresh"});
    REQUIRE(stored);
    CHECK(json::parse(stored->data) == json{{"n", 1}});
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "an answer obtained ahead on the known state commits without another call") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    std::optional<snapshot> ahead;
    atomic_hooks hooks;
    hooks.committing = [&](const snapshot& after) { ahead = after; };
    auto first = run({"c"}, std::nullopt, hooks);
    REQUIRE(first);
    REQUIRE(ahead);
    CHECK(ahead->at("c").version == first->after.at("c").version);
    CHECK(ahead->at("c").data == first->after.at("c").data);
    // The caller's own call on that state, as a panel makes it while the commit is on its way.
    auto forged = sandbox::call_result{"ok", R"({"changed":{"c":{"n":42}}})", 0, 0, ""};
    auto second = run({"c"}, *ahead, {}, [forged](auto k) { k(forged); });
    REQUIRE(second);
    CHECK(*calls == 1);
    CHECK(json::parse(second->after.at("c").data) == json{{"n", 42}});
    auto none = run({"c"}, second->after, {}, [](auto k) { k(std::nullopt); });
    REQUIRE(none);
    CHECK(*calls == 2);  // nullopt: the run made the call itself
    CHECK(json::parse(none->after.at("c").data) == json{{"n", 43}});
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "an answer obtained ahead on a state gone stale is dropped for a fresh run") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto first = run({"c"}, std::nullopt);
    REQUIRE(first);
    replace("c", R"({"n":100})");
    auto ahead = sandbox::call_result{"ok", R"({"changed":{"c":{"n":2}}})", 0, 0, ""};
    auto second = run({"c"}, first->after, {}, [ahead](auto k) { k(ahead); });
    REQUIRE(second);
    CHECK(second->conflicts == 1);
    CHECK(json::parse(second->after.at("c").data) == json{{"n", 101}});
  }

  TEST_CASE_FIXTURE(atomic_fixture, "an answer obtained ahead is checked like any other") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto first = run({"c"}, std::nullopt);
    REQUIRE(first);
    auto forged = sandbox::call_result{"ok", R"({"changed":{"other":{"n":2}}})", 0, 0, ""};
    auto out = run({"c"}, first->after, {}, [forged](auto k) { k(forged); });
    REQUIRE_FALSE(out);
    CHECK(code_of(out.error()) == errc::sandbox_failed);
    CHECK(json::parse(ask<storage_record>(storages, read_atom::value, std::string{"c"})->data) ==
          json{{"n", 2}});
  }

  TEST_CASE_FIXTURE(atomic_fixture, "only a run's first attempt announces its commit") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto first = run({"c"}, std::nullopt);
    REQUIRE(first);
    replace("c", R"({"n":100})");  // the known state goes stale: the first attempt conflicts
    int announced = 0;
    atomic_hooks hooks;
    hooks.committing = [&](const snapshot&) { ++announced; };
    auto second = run({"c"}, first->after, hooks);
    REQUIRE(second);
    CHECK(second->conflicts == 1);
    CHECK(announced == 1);  // the retry's commit is not announced: a call on it would be wasted
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a one-storage commit held up past the request timeout answers timeout and "
                    "writes nothing, even once the storage is free") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto txn = lock("c");
    request_timeout = 200ms;
    snapshot known{{"c", {R"({"n":1})", 1}}};  // current: the run goes straight to its replace
    auto out = run({"c"}, known);
    REQUIRE_FALSE(out);
    CHECK(code_of(out.error()) == errc::timeout);
    // The lock is released; the replace waiting behind it must not land now, or a client
    // retrying the action it was told timed out would apply it twice.
    release(txn);
    CHECK(version("c") == 1);
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a run whose caller stops waiting within the second kept back neither calls "
                    "nor commits") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    REQUIRE(ask<storage_record>(storages, create_atom::value, "d", std::string{R"({"n":1})"}));
    deadline = std::chrono::steady_clock::now() + 500ms;  // less than the second kept back
    SUBCASE("one storage (its replace)") {
      auto out = run({"c"}, std::nullopt);
      REQUIRE_FALSE(out);
      CHECK(code_of(out.error()) == errc::timeout);
    }
    SUBCASE("two storages (a transaction)") {
      auto out = run({"c", "d"}, std::nullopt);
      REQUIRE_FALSE(out);
      CHECK(code_of(out.error()) == errc::timeout);
    }
    CHECK(*calls == 0);
    CHECK(version("c") == 1);
    CHECK(version("d") == 1);
  }

  TEST_CASE_FIXTURE(atomic_fixture,
                    "a commit held up by a locked storage gives up by its caller's deadline, "
                    "not the request timeout, and writes nothing") {
    REQUIRE(ask<storage_record>(storages, create_atom::value, "c", std::string{R"({"n":1})"}));
    auto txn = lock("c");
    request_timeout = 30s;
    auto started = std::chrono::steady_clock::now();
    deadline = started + 2500ms;
    auto out = run({"c"}, snapshot{{"c", {R"({"n":1})", 1}}});
    REQUIRE_FALSE(out);
    CHECK(code_of(out.error()) == errc::timeout);
    auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited >= 1s);  // the replace was sent and waited (not refused before it)
    CHECK(waited < 5s);   // not request_timeout's 30 s
    release(txn);
    CHECK(version("c") == 1);
  }
}
