// The [cluster] keys and their combined checks (settings.hpp's contract).
#include <algorithm>
#include <cctype>

#include "config/parse_value.hpp"
#include "config/settings.hpp"

namespace tessera::config {
namespace {

using namespace parse;

bool name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' ||
         c == ':';
}

apply_result parse_path(const std::string& v, std::string& out) {
  out = v;
  return std::nullopt;
}

}  // namespace

std::vector<setting_key> cluster_setting_keys() {
  return {
      {"cluster.enabled",
       "join the cluster of the servers on the same PostgreSQL database (needs storage.backend "
       "= postgres)",
       [](settings& s, const std::string& v) { return parse_bool(v, s.cluster.enabled); }},
      {"cluster.node_name",
       "this node's name among the members (letters, digits, - . _ :; empty: the host name and "
       "the HTTP port)",
       [](settings& s, const std::string& v) -> apply_result {
         if (v.size() > 128 || !std::all_of(v.begin(), v.end(), name_char))
           return "expected at most 128 letters, digits, '-', '.', '_' or ':', got '" + v + "'";
         s.cluster.node_name = v;
         return std::nullopt;
       }},
      {"cluster.listen",
       "HOST:PORT where this node listens for the other nodes (port 0 picks a free one)",
       [](settings& s, const std::string& v) -> apply_result {
         auto a = parse_listen_address(v);
         if (!a) return "expected HOST:PORT, got '" + v + "'";
         s.cluster.listen = *a;
         return std::nullopt;
       }},
      {"cluster.advertise",
       "HOST:PORT the other nodes use to reach this one (empty: the listen address; port 0: "
       "the port listened on)",
       [](settings& s, const std::string& v) -> apply_result {
         if (!v.empty() && !parse_listen_address(v)) return "expected HOST:PORT, got '" + v + "'";
         s.cluster.advertise = v;
         return std::nullopt;
       }},
      {"cluster.heartbeat_ms", "how often this node renews its membership",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.cluster.heartbeat, 50, 600'000);
       }},
      {"cluster.lease_ms",
       "a member whose last heartbeat is older than this is declared dead and its actors move",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.cluster.lease, 200, 3'600'000);
       }},
      {"cluster.tls_cert", "PEM certificate this node shows the other nodes (with tls_key, tls_ca)",
       [](settings& s, const std::string& v) { return parse_path(v, s.cluster.tls_cert); }},
      {"cluster.tls_key", "PEM private key of cluster.tls_cert",
       [](settings& s, const std::string& v) { return parse_path(v, s.cluster.tls_key); }},
      {"cluster.tls_ca",
       "PEM certificate authority; a node whose certificate it did not sign is refused",
       [](settings& s, const std::string& v) { return parse_path(v, s.cluster.tls_ca); }},
  };
}

std::optional<std::string> validate_cluster(const settings& s) {
  auto& c = s.cluster;
  int tls_files = !c.tls_cert.empty() + !c.tls_key.empty() + !c.tls_ca.empty();
  if (tls_files != 0 && tls_files != 3)
    return "cluster.tls_cert, cluster.tls_key and cluster.tls_ca go together: set all three "
           "or none";
  if (!c.enabled) return std::nullopt;
  if (s.backend != "postgres")
    return "cluster.enabled needs storage.backend = \"postgres\": the members of a cluster "
           "share their state, membership and schedules in one PostgreSQL database";
  if (c.lease < c.heartbeat * 2)
    return "cluster.lease_ms (" + std::to_string(c.lease.count()) +
           ") must be at least twice cluster.heartbeat_ms (" + std::to_string(c.heartbeat.count()) +
           "), or a member one late heartbeat behind is declared dead";
  auto wildcard = [](const std::string& host) {
    return host == "0.0.0.0" || host == "::" || host == "[::]";
  };
  if (wildcard(c.listen.host) && c.advertise.empty())
    return "cluster.listen " + c.listen.host +
           " is every interface: set cluster.advertise to the HOST:PORT the other nodes dial";
  if (auto a = parse_listen_address(c.advertise); a && wildcard(a->host))
    return "cluster.advertise must name an address the other nodes can dial, not " + a->host;
  if (!is_loopback(c.listen.host) && !c.tls() && !s.insecure)
    return "refusing to listen for cluster nodes on non-loopback address " + c.listen.host +
           " without TLS (cluster.tls_cert, cluster.tls_key, cluster.tls_ca); pass --insecure "
           "to do it anyway";
  return std::nullopt;
}

}  // namespace tessera::config
