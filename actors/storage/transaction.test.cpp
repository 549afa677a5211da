#include "actors/storage/transaction.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "actors/storage/storage_directory.hpp"
#include "actors/storage/test_storages.hpp"
#include "adapters/error.hpp"
#include "runtime/committer.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::storage;
using namespace std::chrono_literals;

namespace {

struct txn_fixture : test_storages {
  storage_record create(const std::string& id, const std::string& data) {
    auto r = ask<storage_record>(storages, create_atom::value, id, data);
    REQUIRE(r);
    return *r;
  }

  nlohmann::json data(const std::string& id) {
    auto r = ask<storage_record>(storages, read_atom::value, id);
    REQUIRE(r);
    return nlohmann::json::parse(r->data);
  }

  int64_t version(const std::string& id) {
    auto r = ask<storage_record>(storages, read_atom::value, id);
    return r ? r->version : 0;
  }

  caf::actor transaction() { return sys.spawn(storage::transaction, storages, committer, 5s); }

  caf::error commit(std::vector<txn_entry> entries) {
    auto r = ask<caf::ok_atom>(transaction(), runtime::commit_atom::value, std::move(entries));
    return r ? caf::error{} : r.error();
  }
};

}  // namespace

TEST_SUITE("actors.storage.transaction") {
  TEST_CASE_FIXTURE(txn_fixture, "storages at their expected versions all change together") {
    create("a", R"({"n":1})");
    create("b", R"({"n":2})");
    CHECK_FALSE(commit({{"b", 1, R"({"n":3})"}, {"a", 1, R"({"n":0})"}}));
    CHECK(data("a") == nlohmann::json{{"n", 0}});
    CHECK(data("b") == nlohmann::json{{"n", 3}});
    CHECK(version("a") == 2);
    CHECK(version("b") == 2);
  }

  TEST_CASE_FIXTURE(txn_fixture, "one stale version is a conflict and changes nothing") {
    create("a", R"({"n":1})");
    create("b", R"({"n":2})");
    auto err = commit({{"a", 1, R"({"n":9})"}, {"b", 7, R"({"n":9})"}});
    CHECK(code_of(err) == errc::conflict);
    CHECK(data("a") == nlohmann::json{{"n", 1}});
    CHECK(data("b") == nlohmann::json{{"n", 2}});
  }

  TEST_CASE_FIXTURE(txn_fixture, "a storage that was only read must still be at its version") {
    create("a", R"({"n":1})");
    create("b", R"({"n":2})");
    CHECK(code_of(commit({{"a", 1, R"({"n":5})"}, {"b", 2, ""}})) == errc::conflict);
    CHECK(data("a") == nlohmann::json{{"n", 1}});
    CHECK_FALSE(commit({{"a", 1, R"({"n":5})"}, {"b", 1, ""}}));
    CHECK(data("a") == nlohmann::json{{"n", 5}});
    CHECK(version("b") == 1);
  }

  TEST_CASE_FIXTURE(txn_fixture, "expected version 0 creates a storage that does not exist") {
    CHECK_FALSE(commit({{"fresh", 0, R"({"x":true})"}}));
    CHECK(data("fresh") == nlohmann::json{{"x", true}});
    CHECK(code_of(commit({{"fresh", 0, R"({"x":false})"}})) == errc::conflict);
  }

  TEST_CASE_FIXTURE(txn_fixture, "a storage named twice is refused") {
    create("a", "{}");
    CHECK(code_of(commit({{"a", 1, "{}"}, {"a", 1, "{}"}})) == errc::invalid_argument);
  }

  TEST_CASE_FIXTURE(txn_fixture, "a locked transaction hands over the data and holds writers") {
    create("a", R"({"n":1})");
    auto txn = transaction();
    auto held =
        ask<std::vector<txn_entry>>(txn, lock_atom::value, std::vector<std::string>{"a", "m"});
    REQUIRE(held);
    REQUIRE(held->size() == 2);
    CHECK((*held)[0].id == "a");
    CHECK((*held)[0].expected == 1);
    CHECK((*held)[1].id == "m");
    CHECK((*held)[1].expected == 0);  // absent: {} at version 0
    // A write sent while locked waits and lands after the transaction's.
    caf::expected<storage_record> patched = make_error(errc::internal, "no reply");
    // (An argument, because CAF 0.17 dereferences a null tuple for a function actor without.)
    auto writer = sys.spawn(
        [&](caf::event_based_actor* w, directory_actor to) {
          w->request(to, 5s, merge_atom::value, std::string{"a"}, std::string{R"({"p":1})"},
                     version_list{})
              .then([&](storage_record& r) { patched = r; }, [&](caf::error& e) { patched = e; });
        },
        storages);
    auto done = ask<caf::ok_atom>(
        txn, runtime::commit_atom::value,
        std::vector<txn_entry>{{"a", 0, R"({"n":2})"}, {"m", 0, R"({"made":1})"}});
    CHECK(done);
    self->wait_for(writer);
    REQUIRE(patched);
    CHECK(patched->version == 3);
    CHECK(data("a") == nlohmann::json{{"n", 2}, {"p", 1}});
    CHECK(data("m") == nlohmann::json{{"made", 1}});
  }

  TEST_CASE_FIXTURE(txn_fixture, "a locked transaction without writes releases unchanged") {
    create("a", R"({"n":1})");
    auto txn = transaction();
    REQUIRE(ask<std::vector<txn_entry>>(txn, lock_atom::value, std::vector<std::string>{"a"}));
    CHECK(ask<caf::ok_atom>(txn, runtime::commit_atom::value, std::vector<txn_entry>{}));
    CHECK(version("a") == 1);
    CHECK(data("a") == nlohmann::json{{"n", 1}});
  }

  TEST_CASE_FIXTURE(txn_fixture, "locks are released at once when the requester goes away") {
    create("a", R"({"n":1})");
    auto txn = sys.spawn(storage::transaction, storages, committer, 60s);  // a long deadline
    auto locked = std::make_shared<std::atomic<bool>>(false);
    auto requester = sys.spawn(
        [locked](caf::event_based_actor* r, caf::actor t) {
          r->request(t, 60s, lock_atom::value, std::vector<std::string>{"a"})
              .then([r, locked](std::vector<txn_entry>&) {
                *locked = true;
                r->quit();  // gone before the commit step
              });
        },
        txn);
    self->wait_for(requester);
    REQUIRE(*locked);
    // Within the fixture's 5 s, not at the transaction's 60 s deadline.
    CHECK(data("a") == nlohmann::json{{"n", 1}});
    CHECK(version("a") == 1);
  }

  TEST_CASE_FIXTURE(txn_fixture,
                    "a batch with the committer when the deadline passes is awaited, not "
                    "reported as timed out") {
    create("a", R"({"n":1})");
    // A committer that takes 400 ms, past the transaction's 100 ms deadline, then commits.
    using later_atom = caf::atom_constant<caf::atom("later")>;
    // (The committer is an argument, as CAF 0.17 spawns a function without one through a null
    // tuple pointer, which UBSan reports.)
    auto slow = sys.spawn(
        [](caf::event_based_actor* a, runtime::committer_actor real) -> caf::behavior {
          using held = std::pair<std::vector<adapters::write_op>, caf::response_promise>;
          auto waiting = std::make_shared<std::vector<held>>();
          return {[=](runtime::commit_atom, std::vector<adapters::write_op>& ops) {
                    waiting->emplace_back(std::move(ops), a->make_response_promise());
                    a->delayed_send(a, 400ms, later_atom::value);
                  },
                  [=](later_atom) {
                    for (auto& [ops, rp] : *waiting)
                      a->request(real, 5s, runtime::commit_atom::value, std::move(ops))
                          .then([rp](caf::ok_atom) mutable { rp.deliver(caf::ok_atom::value); },
                                [rp](caf::error& e) mutable { rp.deliver(e); });
                    waiting->clear();
                  }};
        },
        committer);
    auto txn = sys.spawn(storage::transaction, storages,
                         caf::actor_cast<runtime::committer_actor>(slow), 100ms);
    auto out = ask<caf::ok_atom>(txn, runtime::commit_atom::value,
                                 std::vector<txn_entry>{{"a", 1, R"({"n":2})"}});
    CHECK(out);
    CHECK(data("a") == nlohmann::json{{"n", 2}});
    CHECK(version("a") == 2);
  }
}
