#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "adapters/json/parse.hpp"
#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

using namespace tessera::sandbox;

response result_response(const call_result& r) {
  if (is_ok(r)) return json_response(200, r.body);
  return sandbox_problem(r.outcome, r.body);
}

std::chrono::milliseconds ask_timeout(const sandbox_route_config& cfg, uint32_t timeout_ms) {
  return std::chrono::milliseconds(timeout_ms ? timeout_ms : cfg.default_timeout.count()) +
         cfg.queue_timeout + std::chrono::seconds(15);
}

// Reads an optional limit field; error text when present but not 1..max.
std::optional<std::string> read_limit(const nlohmann::json& body, const char* key, uint64_t max,
                                      uint32_t& out) {
  auto it = body.find(key);
  if (it == body.end()) return std::nullopt;
  if (!it->is_number_unsigned() || it->get<uint64_t>() < 1 || it->get<uint64_t>() > max)
    return std::string{"field '"} + key + "' must be a whole number from 1 to " +
           std::to_string(max);
  out = it->get<uint32_t>();
  return std::nullopt;
}

void run_call(const route_context& ctx, const sandbox_route_config& cfg,
              const sandbox::sandbox_actor& sup, call c, responder done) {
  ask<call_result>(
      *ctx.system, sup, ask_timeout(cfg, c.timeout_ms),
      [done](caf::expected<call_result> r) { done(r ? result_response(*r) : problem(r.error())); },
      run_atom::value, std::move(c));
}

void dry_run(const route_context& ctx, const sandbox_route_config& cfg,
             const sandbox::sandbox_actor& sup, const request& req, responder done) {
  auto body = adapters::parse_json(req.body, ctx.max_json_depth);
  if (!body) return done(problem(body.error()));
  if (!body->is_object())
    return done(problem(errc::invalid_argument, "body must be a JSON object"));
  static const std::vector<std::string> fields = {"kind",      "handler", "template", "action",
                                                  "payload",   "storage", "panel",    "timeout_ms",
                                                  "memory_mb", "reuse"};
  for (auto& [key, _] : body->items())
    if (std::find(fields.begin(), fields.end(), key) == fields.end())
      return done(problem(errc::invalid_argument, "unknown field '" + key + "'"));
  auto kind_it = body->find("kind");
  auto kind = kind_it != body->end() && kind_it->is_string()
                  ? parse_call_kind(kind_it->get<std::string>())
                  : std::nullopt;
  if (!kind || *kind == call_kind::check || *kind == call_kind::discard)
    return done(problem(errc::invalid_argument,
                        "field 'kind' must be one of action, schedule, render, init "
                        "(syntax checks are POST /api/sandbox/check)"));
  call c;
  c.kind = *kind;
  if (auto err = read_limit(*body, "timeout_ms", cfg.max_timeout.count(), c.timeout_ms))
    return done(problem(errc::invalid_argument, *err));
  if (auto err = read_limit(*body, "memory_mb", cfg.max_memory_mb, c.memory_mb))
    return done(problem(errc::invalid_argument, *err));
  // A dry run may name a warm process of its own ("api:" keys never meet a panel's or task's).
  if (auto r = body->find("reuse"); r != body->end()) {
    if (!r->is_string() || r->get<std::string>().empty() || r->get<std::string>().size() > 200)
      return done(problem(errc::invalid_argument,
                          "field 'reuse' must be a non-empty string of at most 200 characters"));
    c.reuse_key = "api:" + r->get<std::string>();
  }
  for (auto* key : {"kind", "timeout_ms", "memory_mb", "reuse"}) body->erase(key);
  if (auto s = body->find("storage"); s != body->end()) {
    if (!s->is_object())
      return done(problem(errc::invalid_argument, "field 'storage' must map ids to objects"));
    for (auto& [id, data] : s->items())
      if (!data.is_object())
        return done(problem(errc::invalid_argument, "storage '" + id + "' must be a JSON object"));
  }
  if (c.kind == call_kind::action && !body->contains("action"))
    return done(problem(errc::invalid_argument, "field 'action' is required for kind action"));
  for (auto* key : {"handler", "template", "action"})
    if (auto it = body->find(key); it != body->end() && !it->is_string())
      return done(
          problem(errc::invalid_argument, std::string{"field '"} + key + "' must be a string"));
  c.body = body->dump();
  run_call(ctx, cfg, sup, std::move(c), std::move(done));
}

void check(const route_context& ctx, const sandbox_route_config& cfg,
           const sandbox::sandbox_actor& sup, const request& req, responder done) {
  auto body = adapters::parse_json(req.body, ctx.max_json_depth);
  if (!body) return done(problem(body.error()));
  if (!body->is_object())
    return done(problem(errc::invalid_argument, "body must be a JSON object"));
  for (auto& [key, value] : body->items()) {
    if (key != "handler" && key != "template" && key != "require")
      return done(problem(errc::invalid_argument, "unknown field '" + key + "'"));
    if (!value.is_string())
      return done(problem(errc::invalid_argument, "field '" + key + "' must be a string"));
  }
  if (!body->contains("handler") && !body->contains("template"))
    return done(problem(errc::invalid_argument, "give 'handler', 'template' or both"));
  if (auto r = body->find("require"); r != body->end()) {
    auto fn = r->get<std::string>();
    if (fn != "on_action" && fn != "on_schedule" && fn != "on_init")
      return done(problem(errc::invalid_argument,
                          "field 'require' must be on_action, on_schedule or on_init"));
    if (!body->contains("handler"))
      return done(problem(errc::invalid_argument, "field 'require' needs a 'handler'"));
  }
  call c;
  c.kind = call_kind::check;
  c.body = body->dump();
  run_call(ctx, cfg, sup, std::move(c), std::move(done));
}

}  // namespace

void add_sandbox_routes(router& r, const route_context& ctx, const sandbox_route_config& cfg,
                        const sandbox::sandbox_actor& sup) {
  r.add("POST", "/api/sandbox/run",
        [ctx, cfg, sup](const request& req, const path_params&, responder done) {
          dry_run(ctx, cfg, sup, req, std::move(done));
        });
  r.add("POST", "/api/sandbox/check",
        [ctx, cfg, sup](const request& req, const path_params&, responder done) {
          check(ctx, cfg, sup, req, std::move(done));
        });
  r.add("GET", "/api/sandbox", [ctx, cfg, sup](const request&, const path_params&, responder done) {
    ask<std::string>(
        *ctx.system, sup, ctx.request_timeout,
        [done, isolation = cfg.isolation](caf::expected<std::string> status) {
          if (!status) return done(problem(status.error()));
          auto j = nlohmann::json::parse(*status, nullptr, false);
          j["isolation"] = isolation;
          done(json_response(200, j.dump()));
        },
        status_atom::value);
  });
}

}  // namespace tessera::web
