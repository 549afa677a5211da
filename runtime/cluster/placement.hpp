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
// - follow_members spawns an actor that subscribes to the membership actor and keeps a
//   placement up to date, calling `changed` (on that actor) after each change of the members.
#pragma once

#include <caf/fwd.hpp>
#include <cstdint>
#include <functional>
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
  uint64_t epoch() const;
  std::vector<std::string> members() const;

 private:
  mutable std::mutex mutex_;
  std::string self_;
  std::vector<std::string> alive_;  // sorted
  uint64_t epoch_ = 0;
};

caf::actor follow_members(caf::actor_system& system, const membership_actor& membership,
                          std::shared_ptr<placement> place, std::function<void()> changed);

}  // namespace tessera::runtime::cluster
