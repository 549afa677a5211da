#include <caf/all.hpp>

#include "actors/storage/messages.hpp"
#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera::web {

void add_ops_routes(router& r, const route_context& ctx, const storage::directory_actor& directory,
                    adapters::metrics_registry registry) {
  r.add("GET", "/healthz",
        [](const request&, const path_params&, responder done) {
          done(json_response(200, R"({"status":"ok"})"));
        },
        {access::open});
  r.add("GET", "/readyz",
        [ctx, directory](const request&, const path_params&, responder done) {
          ask<bool>(
              *ctx.system, directory, std::chrono::milliseconds(1000),
              [done](caf::expected<bool> ok) {
                if (ok && *ok) return done(json_response(200, R"({"status":"ready"})"));
                done(problem(errc::unavailable, ok ? "the durable store does not answer"
                                                   : "the storage directory does not answer"));
              },
              storage::ready_atom::value);
        },
        {access::open});
  r.add("GET", "/metrics",
        [registry](const request&, const path_params&, responder done) {
          response res;
          res.content_type = "text/plain; version=0.0.4; charset=utf-8";
          res.body = adapters::exposition(*registry);
          done(std::move(res));
        },
        {access::metrics});
}

}  // namespace tessera::web
