#include "runtime/cluster/node_actor.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

namespace tessera::runtime::cluster {

caf::expected<uint16_t> publish_node(const node_actor& node, const config::listen_address& listen,
                                     bool tls) {
  if (tls) return caf::openssl::publish(node, listen.port, listen.host.c_str(), true);
  return caf::io::publish(node, listen.port, listen.host.c_str(), true);
}

caf::io::middleman_actor transport_of(caf::actor_system& system, bool tls) {
  return tls ? system.openssl_manager().actor_handle() : system.middleman().actor_handle();
}

}  // namespace tessera::runtime::cluster
