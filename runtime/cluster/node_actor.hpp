// What a node publishes on cluster.listen (CAF's middleman, over TLS with cluster.tls_*), the
// other nodes' way in, and how nodes reach each other. The published actor is a gateway that
// hands the hello to the peers actor (peers.hpp), and forwarded requests to this node's
// directories, and answers nothing else.
//
// Protocol (node_actor):
//   (hello_atom, caller name, caller generation, caller's node actor, proof) -> (name,
//       generation, proof) of this node now (0 before it joined). A proof is the HMAC-SHA256
//       of the name and generation under the cluster's secret (member_table.hpp; peers.hpp's
//       hello_proof): a hello without a valid one is refused (unauthorized), and the caller
//       checks the answer's, so both sides know the other can read the cluster's database. The
//       newer of two members dials the older and says hello; the older keeps the caller's actor as
//       its way back (one connection per pair: over TLS, CAF 0.17 drops a pair's connection when
//       the second side dials too). Safe to repeat. The caller compares the answer with the member
//       row it dialled, so an address reused by another process is not mistaken for the member.
//   (forward_atom, kind, message) -> whatever `message` gets from this node's directory of
//       `kind` ("storage"), which it is delegated to: the requester (on the sending node)
//       gets the answer, and the directory, seeing a requester on another node, serves it
//       here (placement.hpp). An unknown kind: invalid_argument.
//
// Transport: `publish_node` binds the listen address (blocking, at start); `connect_atom`
// requests to `transport_of(system)` connect to a peer without blocking (a frozen peer would
// hold a blocking connect forever): CAF's middleman, or its OpenSSL manager with TLS.
#pragma once

#include <caf/fwd.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <string>

#include "config/settings.hpp"

namespace tessera::runtime::cluster {

using hello_atom = caf::atom_constant<caf::atom("hello")>;
using forward_atom = caf::atom_constant<caf::atom("forward")>;

using node_actor =
    caf::typed_actor<caf::replies_to<hello_atom, std::string, int64_t, caf::actor,
                                     std::string>::with<std::string, int64_t, std::string>,
                     caf::reacts_to<forward_atom, std::string, caf::message>>;

// Publishes `node` at `listen` (port 0 picks one); returns the port. Plain TCP unless `tls`.
caf::expected<uint16_t> publish_node(const node_actor& node, const config::listen_address& listen,
                                     bool tls);

// The actor that connects to peers: (connect_atom, host, port) -> (node_id, strong_actor_ptr,
// interfaces). CAF's middleman, or with `tls` its OpenSSL manager.
caf::io::middleman_actor transport_of(caf::actor_system& system, bool tls);

}  // namespace tessera::runtime::cluster
