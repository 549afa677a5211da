// The membership actor: this node's part in the cluster's member table
// (adapters/pg/member_table.hpp). Detached (its own thread): every step is a PostgreSQL round
// trip, and its heartbeats must never wait behind the scheduler's work.
//
// What it does, every cluster.heartbeat_ms:
// - renews this node's heartbeat. When the table says this member is dead (the others
//   declared it so while it was paused or cut off), it joins again as a new member (a new
//   generation) and tells its subscribers; when another process has taken this node's name
//   meanwhile (a newer alive member of the same name), it logs why and stops the server
//   (SIGTERM to itself): two processes must never serve under one name.
// - declares dead every peer whose heartbeat is older than cluster.lease_ms (exactly one node
//   wins each, member_table.hpp), checking again just after the oldest alive peer's lease
//   ends, so a lost peer is found within lease_ms plus one round trip;
// - reads the members, keeps the view, and sends it to its subscribers.
// A step that cannot reach PostgreSQL is counted and retried at the next tick. While this
// node has not renewed its heartbeat for lease_ms, its view says so (`self_alive` false): the
// others may already have declared it dead.
//
// Protocol:
//   (get_atom) -> member_view                  the newest view (never waits for PostgreSQL)
//   (subscribe_atom, caf::actor) -> void       the view now and after every read (member_view)
//   (activate_atom, generation) -> bool        joining -> alive (once peers.hpp reached every
//                                              older alive member), replacing the earlier runs
//                                              of this node's name; false when `generation`
//                                              is not this node's current one, or not joining
//   (leave_atom) -> bool                       declares this member dead (a clean stop; the
//                                              others take over at once); false when
//                                              PostgreSQL could not be told. Then it quits.
//   (claim_atom, keys) -> void                 this node (alive) takes the leases of `keys`
//                                              (actor keys it now owns: "storage/<id>",
//                                              "task/<id>"; member_table.hpp `claim`). Claims
//                                              queued meanwhile go in one statement; a key
//                                              another generation held counts as a takeover.
//                                              Lost when PostgreSQL cannot be reached (the
//                                              lease is a record; versions are the fence).
#pragma once

#include <prometheus/registry.h>

#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tessera::adapters::pg {
class member_table;
}

namespace tessera::runtime::cluster {

struct member {
  std::string name;
  int64_t generation = 0;
  std::string state;    // "joining" (not yet connected to the alive members) | "alive" | "dead"
  std::string address;  // HOST:PORT of its CAF middleman
  std::string http;     // HOST:PORT of its HTTP server
  int64_t heartbeat_at_ms = 0;
  bool reachable = false;  // connected from the node that reports it (peers.hpp)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member& x) {
  return f(caf::meta::type_name("member"), x.name, x.generation, x.state, x.address, x.http,
           x.heartbeat_at_ms, x.reachable);
}

struct member_view {
  std::string self;
  int64_t generation = 0;   // this node's current generation
  bool self_alive = false;  // renewed within the lease
  std::vector<member> members;
  int64_t read_at_ms = 0;  // the database's clock when the members were read

  // The alive members (this node included while alive and self_alive), by name.
  std::vector<member> alive() const;
  // This node's state in its row ("joining" | "alive" | "dead"; "" before the first read).
  std::string self_state() const;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, member_view& x) {
  return f(caf::meta::type_name("member_view"), x.self, x.generation, x.self_alive, x.members,
           x.read_at_ms);
}

using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using activate_atom = caf::atom_constant<caf::atom("activate")>;
using claim_atom = caf::atom_constant<caf::atom("claim")>;

using membership_actor = caf::typed_actor<
    caf::replies_to<caf::get_atom>::with<member_view>, caf::reacts_to<subscribe_atom, caf::actor>,
    caf::replies_to<activate_atom, int64_t>::with<bool>, caf::replies_to<leave_atom>::with<bool>,
    caf::reacts_to<claim_atom, std::vector<std::string>>>;

// The per-node cluster metrics: tessera_cluster_members{state}, and the counters of
// heartbeats that failed, peers this node declared dead, rejoins, leases this node took
// (tessera_cluster_lease_claims_total) and those of them another member held
// (tessera_cluster_lease_takeovers_total).
struct membership_metrics {
  explicit membership_metrics(prometheus::Registry& registry);
  prometheus::Gauge* joining;
  prometheus::Gauge* alive;
  prometheus::Gauge* dead;
  prometheus::Counter* heartbeat_failures;
  prometheus::Counter* declared_dead;
  prometheus::Counter* rejoins;
  prometheus::Counter* lease_claims;
  prometheus::Counter* lease_takeovers;
};

struct membership_config {
  std::string conninfo;  // the PostgreSQL database of storage.postgres_url
  std::string name;      // cluster.node_name
  std::string address;   // what peers dial (cluster.advertise, its port resolved)
  std::string http;      // HOST:PORT of this node's HTTP server
  std::chrono::milliseconds heartbeat{1000};
  std::chrono::milliseconds lease{3000};
  membership_metrics* metrics = nullptr;  // outlives the actor
};

// Joins the cluster (a new joining member, before this returns: the caller learns a refusal at
// start; activate_atom makes it alive)
// and spawns the membership actor on a thread of its own. Errors: unavailable (PostgreSQL
// could not be reached), storage_failure.
caf::expected<membership_actor> join_cluster(caf::actor_system& system, membership_config cfg);

void add_cluster_messages(caf::actor_system_config& cfg);

}  // namespace tessera::runtime::cluster
