#include <caf/all.hpp>
#include <ctime>
#include <nlohmann/json.hpp>

#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

// Unix milliseconds as RFC 3339 UTC ("2026-12-07T15:04:05.123Z").
std::string rfc3339(int64_t ms) {
  std::time_t secs = ms / 1000;
  std::tm t{};
  gmtime_r(&secs, &t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

nlohmann::json view_json(const runtime::cluster::member_view& v) {
  auto members = nlohmann::json::array();
  for (auto& m : v.members)
    members.push_back({{"name", m.name},
                       {"generation", m.generation},
                       {"state", m.state},
                       {"address", m.address},
                       {"http", m.http},
                       {"heartbeat_at", rfc3339(m.heartbeat_at_ms)},
                       {"reachable", m.reachable}});
  return {{"enabled", true},
          {"self", v.self},
          {"generation", v.generation},
          {"self_alive", v.self_alive},
          {"members", std::move(members)}};
}

}  // namespace

void add_cluster_routes(router& r, const route_context& ctx,
                        std::optional<runtime::cluster::peers_actor> peers) {
  r.add("GET", "/api/cluster", [ctx, peers](const request&, const path_params&, responder done) {
    if (!peers)
      return done(json_response(
          200, nlohmann::json{{"enabled", false}, {"members", nlohmann::json::array()}}.dump()));
    ask<runtime::cluster::member_view>(
        *ctx.system, *peers, ctx.request_timeout,
        [done](caf::expected<runtime::cluster::member_view> v) {
          if (!v) return done(problem(v.error()));
          done(json_response(200, view_json(*v).dump()));
        },
        caf::get_atom::value);
  });
}

}  // namespace tessera::web
