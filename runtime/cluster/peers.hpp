// The peers actor: this node's connections to the other alive members, over CAF's middleman.
// The node publishes a gateway to it that passes on only the hello (node_actor.hpp).
//
// It follows the membership actor's views. A member dials every alive member older than
// itself (a smaller generation) that it is not connected to, says hello, checks the answer
// (the name and generation of the member row it dialled), and watches the connection; the
// older member keeps the caller's node actor from the hello as its way back; every node actor
// connected is given to the placement (placement.hpp), by member name. After a loss the
// newer one dials again every cluster.heartbeat_ms. Every dial and hello has a timeout
// (cluster.lease_ms): a frozen peer never holds it. While this node is joining (at start, and
// after it joined again as a newer generation: then it says hello again over the connections
// it has) it asks the membership actor to make it alive as soon as every older alive member
// answered.
//
// Protocol (peers_actor, local):
//   (attach_atom, membership actor) -> no reply     the membership actor to ask (sent once)
//   member_view (membership.hpp's subscription) -> no reply
//   (get_atom) -> member_view: the newest view, each member's `reachable` as seen from here
//       (this node is reachable to itself)
//   (reached_atom) -> std::vector<std::string>: the older alive members not reached yet, each
//       "name at address: why" (empty: all answered); web/main.cpp shows them when a node
//       could not become alive in time.
#pragma once

#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/cluster/membership.hpp"
#include "runtime/cluster/node_actor.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::runtime::cluster {

using reached_atom = caf::atom_constant<caf::atom("reached")>;
using attach_atom = caf::atom_constant<caf::atom("attach")>;

using peers_actor =
    caf::typed_actor<caf::reacts_to<attach_atom, caf::actor>, caf::reacts_to<member_view>,
                     caf::replies_to<caf::get_atom>::with<member_view>,
                     caf::replies_to<reached_atom>::with<std::vector<std::string>>>;

struct peers_config {
  std::string name;    // this node's
  std::string secret;  // the cluster's (member_table.hpp): hellos carry proofs made with it
  std::shared_ptr<placement> place;          // told the connected peers' node actors (may be null)
  std::map<std::string, caf::actor> locals;  // the directories forwarded requests go to, by kind
  bool tls = false;
  std::chrono::milliseconds retry{1000};    // cluster.heartbeat_ms
  std::chrono::milliseconds timeout{3000};  // a dial's and a hello's, cluster.lease_ms
};

// The peers actor, and the gateway the node publishes (it ends with the peers actor).
struct spawned_peers {
  peers_actor local;
  node_actor published;
};

spawned_peers spawn_peers(caf::actor_system& system, peers_config cfg);

// HMAC-SHA256 under `secret` of `role` ("hello" or "welcome"), `name` and `generation`, in hex.
std::string hello_proof(const std::string& secret, std::string_view role, const std::string& name,
                        int64_t generation);

}  // namespace tessera::runtime::cluster
