// The registry of one kind's live actors (storages, panels, tasks), kept by that kind's
// directory actor: which actor serves which id, activation, forwarding, what happens when one
// stops, passivation, and stopping them all. A kind configures it with a small policy; where an
// actor lives is decided here and nowhere else (the cluster's placement goes here).
//
// Contract: an actor_directory belongs to one directory actor (`self`, typed or not) and is used
// only on it.
//   - add(id, a) registers an actor the kind spawned: monitored (not linked: CAF 0.17 keeps
//     links in a list that each unlink scans), counted live and activated in `metrics`.
//   - route(id) is the live actor for `id`, activated through policy.activate when the policy
//     allows it (null: `id` has no actor, which forward() answers with not_found); it counts the
//     message the caller is about to delegate and makes `id` the most recently used.
//   - Over policy.max_live live actors, each activation sends (passivate_atom) to the least
//     recently used; it answers with retire() once idle.
//   - retire(id, handled, sender) forgets `id` when `sender` is its live actor and `handled`
//     equals the messages delegated to it, so no request is lost or served by a stale instance;
//     true: the caller sends it its last message (retire). Until it exits it is still stopped
//     by stop_all().
//   - passivate(id) asks `id`'s live actor to passivate (the same handshake: it answers with
//     retire() once idle); nothing when it is not live.
//   - gone(id): the actor ended itself on purpose (deleted); its exit is then ignored.
//   - down(msg), the kind's down handler: an actor that stops while live is forgotten and
//     policy.stopped(id) is told (panels and tasks start it again from the store).
//   - stop_all() sends every actor, live or retiring, an exit (user_shutdown).
//   - reserve(id) claims an id about to be created: conflict while it is live or reserved;
//     release(id) ends the claim (the actor was added, or the creation failed).
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/fwd.hpp>
#include <caf/local_actor.hpp>
#include <caf/result.hpp>
#include <functional>
#include <list>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "adapters/error.hpp"
#include "runtime/actor_metrics.hpp"

namespace tessera::actors {

using passivate_atom = caf::atom_constant<caf::atom("passivate")>;

struct directory_policy {
  std::string kind;  // names it in errors: "panel 'x' does not exist"
  // Spawns the actor of an id route() does not know (not monitored yet), or a null handle when
  // the id has none. Unset: only add() makes actors live.
  std::function<caf::actor(const std::string& id)> activate;
  // Told after an actor stopped while live (a crash, not gone() or retire()); it is forgotten.
  std::function<void(const std::string& id)> stopped;
  size_t max_live = 0;  // 0: no limit
};

class actor_directory {
 public:
  actor_directory(caf::local_actor* self, directory_policy policy,
                  runtime::actor_kind_metrics metrics);

  void add(const std::string& id, caf::actor a);
  void reserve(size_t n);  // room for n live actors (a directory that loads many at start)
  caf::actor find(const std::string& id) const;
  caf::actor route(const std::string& id);
  bool retire(const std::string& id, uint64_t handled, const caf::strong_actor_ptr& sender);
  void passivate(const std::string& id);
  void gone(const std::string& id);
  // The same, told by `sender`: ignored unless it is the live actor of `id` (a report of an
  // actor replaced meanwhile, by one created again for the id, changes nothing).
  void gone(const std::string& id, const caf::strong_actor_ptr& sender);
  void down(const caf::down_msg& msg);
  void stop_all();
  size_t live() const { return live_.size(); }
  std::vector<std::string> live_ids() const;
  caf::error reserve(const std::string& id);
  void release(const std::string& id) { reserved_.erase(id); }

  caf::error not_found(const std::string& id) const;

  // The request `xs` delegated to `id`'s actor (which answers `Result`; a typed directory
  // names it), or not_found.
  template <class Result = caf::message, class... Ts>
  caf::result<Result> forward(const std::string& id, Ts&&... xs) {
    auto a = route(id);
    if (!a) return not_found(id);
    self_->delegate(a, std::forward<Ts>(xs)...);
    return caf::delegated<Result>{};
  }

 private:
  struct entry {
    caf::actor handle;
    uint64_t delegated = 0;
    std::list<std::string>::iterator recent;  // its place in recent_
  };

  void forget(std::unordered_map<std::string, entry>::iterator it);
  void ask_least_recent();

  caf::local_actor* self_;
  directory_policy policy_;
  runtime::actor_kind_metrics metrics_;
  std::unordered_map<std::string, entry> live_;
  std::list<std::string> recent_;  // live ids, most recently used first (with max_live only)
  // Every actor not yet exited, live or retiring, by address.
  std::unordered_map<caf::actor_addr, std::string> by_address_;
  std::unordered_set<std::string> reserved_;  // ids being created
};

}  // namespace tessera::actors
