// Placement: which node of the cluster owns what, by rendezvous (highest random weight)
// hashing over the alive members. Every node computes the same owner from the same member
// list, and a member's loss moves only what it owned (to the next best of the others).
//
// Contract:
// - owner_of(key, members) is the member whose hash of (member, key) is the highest; a pure
//   function of its arguments, the same on every node and build (FNV-1a and a 64-bit mix,
//   not std::hash). Empty members: "".
// - placement holds this node's name and the alive members as its membership actor last read
//   them (thread-safe: actors on any thread ask it). owns(key) is true when this node is
//   alive and the owner; before the first view, or while this node is not alive (paused past
//   its lease, joining again), it owns nothing, so two nodes never both act as owner for
//   longer than one heartbeat plus a lease. Each set() that changes the alive members raises
//   the epoch.
// - set_gateways() keeps the node actors (node_actor.hpp) of the peers this node is connected
//   to, by name (peers.hpp publishes them); gateway_for(key) is the owner's when another
//   alive member owns `key` and is connected, else null: this node serves it (it owns it, or
//   the owner cannot be reached now, or there is no cluster view yet; the version fence keeps
//   two servers of one key from overwriting each other). on_gateway_lost() hears of each
//   gateway dropped.
// - follow_members spawns an actor that subscribes to the membership actor and keeps a
//   placement up to date, calling `changed` (on that actor) after each change of the members.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>
#include <caf/node_id.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cluster/membership.hpp"

namespace tessera::runtime::cluster {

std::string owner_of(std::string_view key, const std::vector<std::string>& members);

class placement {
 public:
  // `self` this node's name; `alive` the alive members' names (this node among them while it
  // is alive). False when nothing changed.
  bool set(std::string self, std::vector<std::string> alive);
  bool owns(std::string_view key) const;
  // `accepted`: the nodes whose forwarded requests this node serves (the peers connected, and
  // newer members that said hello before this node's view shows them alive).
  void set_gateways(std::map<std::string, caf::actor> by_name, std::vector<caf::node_id> accepted);
  caf::actor gateway_for(std::string_view key) const;
  // `lost` is called (on the caller's thread, outside the lock) with each gateway a later
  // set_gateways no longer holds: its node's connection was lost, or it was declared dead
  // (a frozen node keeps its connection open). Forwards waiting on it stop waiting.
  void on_gateway_lost(std::function<void(const caf::actor&)> lost);
  // The lease of `key` (an actor this node now serves as owner) is claimed through the
  // callback on_claim() set (membership.hpp claim_atom); nothing before it is set.
  void claim(const std::string& key) const;
  void on_claim(std::function<void(const std::string&)> claim);
  // Whether `node` is among the accepted (set_gateways).
  bool connected(const caf::node_id& node) const;
  uint64_t epoch() const;
  std::vector<std::string> members() const;

 private:
  mutable std::mutex mutex_;
  std::string self_;
  std::vector<std::string> alive_;  // sorted
  std::map<std::string, caf::actor> gateways_;
  std::vector<caf::node_id> accepted_;
  std::function<void(const caf::actor&)> lost_;
  std::function<void(const std::string&)> claim_;
  uint64_t epoch_ = 0;
};

// tessera_cluster_forwarded_requests_total{kind}, ..._forward_failures_total{kind} and
// tessera_cluster_forward_seconds{kind}: requests this node sent to their owner, those that
// got no answer, and their round trips.
struct forward_metrics {
  explicit forward_metrics(prometheus::Registry& registry);
  struct kind {
    prometheus::Counter* requests = nullptr;
    prometheus::Counter* failures = nullptr;
    prometheus::Histogram* seconds = nullptr;
  };
  kind storage;
  kind panel;
  kind task;
};

caf::actor follow_members(caf::actor_system& system, const membership_actor& membership,
                          std::shared_ptr<placement> place, std::function<void()> changed);

}  // namespace tessera::runtime::cluster
