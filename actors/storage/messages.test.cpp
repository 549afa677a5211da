#include "actors/storage/messages.hpp"

#include <doctest/doctest.h>

#include "actors/storage/storage_owner.hpp"
#include "runtime/committer.hpp"
#include "runtime/round_trip.hpp"
#include "runtime/system.hpp"

using namespace tessera;
using namespace tessera::storage;
using runtime::round_trip;

namespace {

struct fixture {
  runtime::system_config cfg{1, {add_storage_messages, runtime::add_committer_messages}};
  caf::actor_system sys{cfg};
};

template <class T>
void check_round_trip(caf::actor_system& sys, const T& x) {
  auto back = round_trip(sys, x);
  REQUIRE_MESSAGE(back, to_string(back.error()));
  CHECK(*back == x);
}

}  // namespace

TEST_CASE("every message of the storage area reads back equal after serialization") {
  fixture f;
  storage_record r{"orders", R"({"n":1,"s":"é"})", 7, 1700000000000, 1700000000500, 3};
  check_round_trip(f.sys, r);
  storage_summary s{"orders", 7, 1700000000500};
  check_round_trip(f.sys, s);
  check_round_trip(f.sys, std::vector<storage_summary>{s, {"b", 2, 3}});
  check_round_trip(f.sys, storage_page{{s, {"b", 2, 3}}, "b"});
  check_round_trip(f.sys, version_list{1, 5, -1});
  txn_entry t{"orders", 7, R"({"n":2})"};
  check_round_trip(f.sys, t);
  check_round_trip(f.sys, std::vector<txn_entry>{t, {"x", 0, "{}"}});
  check_round_trip(f.sys, stored_storage{true, "v1 3 1 2\n{}", false, ""});
  // The store's own (runtime::add_committer_messages).
  check_round_trip(f.sys,
                   std::vector<adapters::write_op>{
                       {"storage/a", "v1 1", false},
                       {"tombstone/storage/a", "", true},
                       {"storage/b", "v1 3", false, adapters::write_op::has_prefix, "v1 2 "}});
  check_round_trip(f.sys, adapters::change_page{{{7, "storage/a", false}, {8, "task/t", true}}, 9});
  check_round_trip(f.sys, std::vector<std::string>{"a", "", "c"});
  check_round_trip(f.sys, adapters::write_op{"storage/orders", "value", false});
  check_round_trip(f.sys, std::vector<adapters::write_op>{{"k", "", true}, {"k2", "v", false}});
}

TEST_CASE("a message of a type nobody registered does not read back") {
  runtime::system_config cfg{1, {}};
  caf::actor_system sys{cfg};
  auto back = round_trip(sys, storage_record{"orders", "{}", 1, 2, 3, 0});
  CHECK_FALSE(back);
}
