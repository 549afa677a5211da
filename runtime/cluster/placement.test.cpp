// Placement (placement.hpp): rendezvous hashing and what a node owns.
#include "runtime/cluster/placement.hpp"

#include <doctest/doctest.h>

#include <caf/all.hpp>
#include <map>

#include "runtime/system.hpp"

using namespace tessera::runtime::cluster;

namespace {

std::vector<std::string> keys(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("task/t" + std::to_string(i));
  return out;
}

}  // namespace

TEST_SUITE("runtime.cluster.placement") {
  TEST_CASE("every node computes the same owner whatever order it lists the members in") {
    std::vector<std::string> abc{"a", "b", "c"}, cab{"c", "a", "b"};
    for (auto& k : keys(200)) CHECK(owner_of(k, abc) == owner_of(k, cab));
    CHECK(owner_of("task/x", {}).empty());
    CHECK(owner_of("task/x", {"only"}) == "only");
  }

  TEST_CASE("keys spread over the members") {
    std::map<std::string, int> count;
    for (auto& k : keys(3000)) ++count[owner_of(k, {"a", "b", "c"})];
    REQUIRE(count.size() == 3);
    for (auto& [member, n] : count) CHECK_MESSAGE(n > 800, member << " owns " << n);
  }

  TEST_CASE("a member's loss moves only what it owned") {
    int moved = 0;
    for (auto& k : keys(1000)) {
      auto before = owner_of(k, {"a", "b", "c"});
      auto after = owner_of(k, {"a", "c"});
      if (before != "b") CHECK(after == before);
      if (before == "b") ++moved;
    }
    CHECK(moved > 0);
  }

  TEST_CASE("a node owns nothing before its first view or while it is not alive") {
    placement p;
    CHECK_FALSE(p.owns("task/x"));
    CHECK(p.set("a", {"a"}));
    CHECK(p.owns("task/x"));
    CHECK_FALSE(p.set("a", {"a"}));  // nothing changed: same epoch
    auto epoch = p.epoch();
    CHECK(p.set("a", {"b", "c"}));  // a paused past its lease: not among the alive
    CHECK(p.epoch() == epoch + 1);
    for (auto& k : keys(50)) CHECK_FALSE(p.owns(k));
  }

  TEST_CASE("of three alive nodes each owns exactly the keys owner_of gives it") {
    placement a, b, c;
    a.set("a", {"a", "b", "c"});
    b.set("b", {"c", "b", "a"});
    c.set("c", {"b", "a", "c"});
    for (auto& k : keys(300)) CHECK(int{a.owns(k)} + int{b.owns(k)} + int{c.owns(k)} == 1);
  }

  TEST_CASE("a gateway dropped or replaced is reported lost once, and the kept one is not") {
    tessera::runtime::system_config cfg{1, {}};
    caf::actor_system sys{cfg};
    // An argument each: CAF 0.17 dereferences a null argument tuple when a function actor is
    // spawned with none.
    auto idle = [](caf::event_based_actor*, int) -> caf::behavior { return {[](int) {}}; };
    auto b1 = sys.spawn(idle, 1), b2 = sys.spawn(idle, 2), c1 = sys.spawn(idle, 3);
    placement a;
    a.set("a", {"a", "b", "c"});
    std::vector<caf::actor> lost;
    a.on_gateway_lost([&](const caf::actor& g) { lost.push_back(g); });
    a.set_gateways({{"b", b1}, {"c", c1}}, {});
    CHECK(lost.empty());
    a.set_gateways({{"b", b2}, {"c", c1}}, {});  // b joined again: its old gateway is gone
    REQUIRE(lost.size() == 1);
    CHECK(lost[0] == b1);
    a.set_gateways({{"b", b2}}, {});  // c was declared dead
    REQUIRE(lost.size() == 2);
    CHECK(lost[1] == c1);
    a.set_gateways({{"b", b2}}, {});
    CHECK(lost.size() == 2);
    for (auto& h : {b1, b2, c1}) caf::anon_send_exit(h, caf::exit_reason::user_shutdown);
  }
}
