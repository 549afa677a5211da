#include "runtime/cluster/cluster_node.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/openssl/manager.hpp>
#include <thread>

#include "adapters/error.hpp"
#include "adapters/pg/member_table.hpp"
#include "runtime/log.hpp"

namespace tessera::runtime::cluster {
namespace {

// cluster.node_name, by default the host name and the HTTP port.
std::string node_name(const config::settings& s, uint16_t http_port) {
  if (!s.cluster.node_name.empty()) return s.cluster.node_name;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string{host} + ":" + std::to_string(http_port);
}

// What peers dial: cluster.advertise (its port 0: the port listened on), or the listen
// address.
std::string advertised(const config::cluster_settings& c, uint16_t port) {
  auto a =
      c.advertise.empty() ? std::optional{c.listen} : config::parse_listen_address(c.advertise);
  if (!a) a = c.listen;
  if (a->port == 0) a->port = port;
  return a->host + ":" + std::to_string(a->port);
}

}  // namespace

caf::error check_tls_files(const config::cluster_settings& c) {
  // CAF reads the files at each handshake and throws (a terminate on the accepting thread)
  // when it cannot use them: read them once now, the same way, and refuse to start instead.
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx{SSL_CTX_new(TLS_method()), SSL_CTX_free};
  auto fail = [](const std::string& what) {
    char reason[256] = {};
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    ERR_clear_error();
    return make_error(errc::invalid_argument, what + " (" + reason + ")");
  };
  if (!ctx) return fail("cannot set up TLS");
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), c.tls_cert.c_str()) != 1)
    return fail("cluster.tls_cert " + c.tls_cert + " is not a readable PEM certificate");
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), c.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail("cluster.tls_key " + c.tls_key +
                " cannot be used: not a readable PEM private key, or not cluster.tls_cert's");
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    return fail("cluster.tls_key does not belong to cluster.tls_cert");
  if (SSL_CTX_load_verify_locations(ctx.get(), c.tls_ca.c_str(), nullptr) != 1)
    return fail("cluster.tls_ca " + c.tls_ca + " is not a readable PEM certificate");
  return {};
}

caf::error configure_cluster_transport(caf::actor_system_config& cfg,
                                       const config::cluster_settings& c) {
  if (c.tls())
    if (auto err = check_tls_files(c)) return err;
  // No middleman heartbeat: over TLS, CAF 0.17 drops every connection after its
  // connection-timeout even while heartbeats flow (seen here with 200 ms / 1 s). A frozen
  // peer is found by the member table's lease instead, and every request to a peer has a
  // timeout; a killed one closes its sockets, which CAF reports as a down message at once.
  cfg.load<caf::io::middleman>();
  if (c.tls()) {
    cfg.load<caf::openssl::manager>();
    cfg.openssl_certificate = c.tls_cert;
    cfg.openssl_key = c.tls_key;
    cfg.openssl_cafile = c.tls_ca;
  }
  return {};
}

caf::expected<cluster_node> start_cluster_node(caf::actor_system& system, const config::settings& s,
                                               uint16_t http_port, membership_metrics& metrics,
                                               std::shared_ptr<placement> place,
                                               std::map<std::string, caf::actor> locals) {
  auto& c = s.cluster;
  auto name = node_name(s, http_port);
  std::string secret;
  {
    auto table = adapters::pg::member_table::open(s.postgres_url, c.lease);
    if (!table) return table.error();
    auto got = (*table)->secret();
    if (!got) return got.error();
    secret = std::move(*got);
  }
  auto peers = spawn_peers(system, {name, std::move(secret), std::move(place), std::move(locals),
                                    c.tls(), c.heartbeat, c.lease});
  auto stop_peers = [&] { caf::anon_send_exit(peers.local, caf::exit_reason::user_shutdown); };
  auto port = publish_node(peers.published, c.listen, c.tls());
  if (!port) {
    stop_peers();
    return make_error(errc::unavailable, "cannot listen for cluster nodes on " + c.listen.host +
                                             ":" + std::to_string(c.listen.port) + ": " +
                                             system.render(port.error()));
  }
  membership_config mc;
  mc.conninfo = s.postgres_url;
  mc.name = name;
  mc.address = advertised(c, *port);
  auto wildcard = s.listen.host == "0.0.0.0" || s.listen.host == "::";
  mc.http = (wildcard ? mc.address.substr(0, mc.address.rfind(':')) : s.listen.host) + ":" +
            std::to_string(http_port);
  mc.heartbeat = c.heartbeat;
  mc.lease = c.lease;
  mc.metrics = &metrics;
  auto membership = join_cluster(system, std::move(mc));
  if (!membership) {
    stop_peers();
    return membership.error();
  }
  caf::anon_send(peers.local, attach_atom::value, caf::actor_cast<caf::actor>(*membership));
  caf::anon_send(*membership, subscribe_atom::value, caf::actor_cast<caf::actor>(peers.local));
  cluster_node out{*membership, peers.local};

  // Alive once every older alive member answered (peers.hpp asks for it); until the deadline.
  auto deadline = std::chrono::steady_clock::now() +
                  std::max<std::chrono::milliseconds>(std::chrono::seconds(10), c.lease * 3);
  caf::scoped_actor self{system};
  std::vector<std::string> missing;
  while (std::chrono::steady_clock::now() < deadline) {
    std::string state;
    self->request(out.membership, c.lease, caf::get_atom::value)
        .receive([&](member_view& v) { state = v.self_state(); }, [](caf::error&) {});
    if (state == "alive") return out;
    self->request(out.peers, c.lease, reached_atom::value)
        .receive([&](std::vector<std::string>& m) { missing = std::move(m); }, [](caf::error&) {});
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string why;
  for (auto& m : missing) why += (why.empty() ? "" : "; ") + m;
  stop_cluster_node(system, out);
  return make_error(errc::unavailable,
                    "refused by the cluster: this node could not reach every alive member "
                    "within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                           std::max<std::chrono::milliseconds>(
                                               std::chrono::seconds(10), c.lease * 3))
                                           .count()) +
                        " s (" + (why.empty() ? "its row is not alive" : why) + ")");
}

void stop_cluster_node(caf::actor_system& system, cluster_node& node) {
  caf::scoped_actor self{system};
  self->request(node.membership, std::chrono::seconds(5), leave_atom::value)
      .receive([](bool) {}, [](caf::error&) {});
  caf::anon_send_exit(node.peers, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(node.membership, caf::exit_reason::user_shutdown);
}

}  // namespace tessera::runtime::cluster
