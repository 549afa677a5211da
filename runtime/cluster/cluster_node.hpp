// This node's part in the cluster, started and stopped as one (web/main.cpp): the membership
// actor, and the peers actor, published on cluster.listen as the node actor.
//
// `start_cluster_node` runs at start, after the HTTP bind and before the first request: it
// publishes the node actor (the peers actor) (the port is part of the member's row), joins as a
// joining member, and waits until every alive member answered over CAF and the row is alive. It
// fails with a message when the listen address cannot be bound, PostgreSQL cannot be reached, or
// the node could not reach the others within max(10 s, 3 x cluster.lease_ms): a node without the
// cluster's CA, say (its TLS handshakes are refused). Then it leaves again (its row is dead).
// `stop_cluster_node` declares the member dead (the others take over at once) and stops the
// two actors.
#pragma once

#include <caf/fwd.hpp>

#include "config/settings.hpp"
#include "runtime/cluster/membership.hpp"
#include "runtime/cluster/node_actor.hpp"
#include "runtime/cluster/peers.hpp"
#include "runtime/cluster/placement.hpp"

namespace tessera::runtime::cluster {

struct cluster_node {
  membership_actor membership;
  peers_actor peers;  // also the published node actor
};

// `place` learns the connected peers' node actors; `locals` are the directories the node
// actor hands forwarded requests to, by kind (node_actor.hpp).
caf::expected<cluster_node> start_cluster_node(caf::actor_system& system, const config::settings& s,
                                               uint16_t http_port, membership_metrics& metrics,
                                               std::shared_ptr<placement> place,
                                               std::map<std::string, caf::actor> locals);

void stop_cluster_node(caf::actor_system& system, cluster_node& node);

// CAF's middleman (and with TLS its OpenSSL manager, with the certificate files, which are
// read once here: invalid_argument names a file that cannot be used, or a key that does not
// belong to the certificate). Call on the configuration before the actor system is made.
caf::error configure_cluster_transport(caf::actor_system_config& cfg,
                                       const config::cluster_settings& c);

}  // namespace tessera::runtime::cluster
