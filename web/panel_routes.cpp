#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/panel/messages.hpp"
#include "adapters/json/parse.hpp"
#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/route_helpers.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

using namespace tessera::panel;
using json = nlohmann::json;

const std::vector<std::string> metadata_fields = {"title",       "desc",    "icon",         "size",
                                                  "storage_ids", "timeout", "fresh_process"};

std::function<void(caf::expected<std::string>)> reply(responder done, unsigned status = 200) {
  return json_reply(std::move(done), status, "id");
}

struct panel_routes {
  route_context ctx;
  panel::directory_actor panels;

  template <class... Ts>
  void ask_panels(std::chrono::milliseconds timeout, responder done, unsigned status, Ts... xs) {
    ask<std::string>(*ctx.system, panels, timeout, reply(std::move(done), status), xs...);
  }

  void update(const request& req, const std::string& id, const std::vector<std::string>& allowed,
              responder done) {
    auto u = parse_update(ctx, req, done);
    if (!u) return;
    ask_panels(ctx.slow_timeout, std::move(done), 200, update_atom::value, id, std::move(u->body),
               allowed, std::move(u->if_match));
  }

  // GET /api/panels/{id}/template or /handler: one field of the panel object.
  void get_field(const std::string& id, std::string field, responder done) {
    ask<std::string>(
        *ctx.system, panels, ctx.request_timeout,
        [done, field](caf::expected<std::string> r) {
          if (!r) return done(problem(r.error()));
          auto panel = json::parse(*r, nullptr, false);
          done(json_response(200, json{{field, panel.value(field, "")}}.dump()));
        },
        get_atom::value, id);
  }

  void action(const request& req, const std::string& id, responder done) {
    auto body = object_body(ctx, req, done);
    if (!body) return;
    for (auto& [key, _] : body->items())
      if (key != "action" && key != "payload")
        return done(problem(errc::invalid_argument, "unknown field '" + key + "'"));
    auto name = body->find("action");
    if (name == body->end() || !name->is_string() || name->get<std::string>().empty())
      return done(problem(errc::invalid_argument, "field 'action' must be a non-empty string"));
    auto payload = body->find("payload");
    std::string payload_text = payload == body->end() ? "{}" : payload->dump();
    ask_panels(ctx.slow_timeout, std::move(done), 200, action_atom::value, id,
               name->get<std::string>(), payload_text);
  }
};

}  // namespace

void add_panel_routes(router& r, const route_context& ctx, const panel::directory_actor& panels) {
  auto p = std::make_shared<panel_routes>(panel_routes{ctx, panels});
  auto fast = ctx.request_timeout;
  r.add("GET", "/api/panels", [p, fast](const request&, const path_params&, responder done) {
    p->ask_panels(fast, std::move(done), 200, list_atom::value);
  });
  r.add("POST", "/api/panels", [p](const request& req, const path_params&, responder done) {
    auto body = object_body(p->ctx, req, done);
    if (!body) return;
    p->ask_panels(p->ctx.slow_timeout, std::move(done), 201, create_atom::value, body->dump());
  });
  r.add("POST", "/api/panels/import", [p](const request& req, const path_params&, responder done) {
    auto body = object_body(p->ctx, req, done);
    if (!body) return;
    auto replace = query_param(req.query, "replace");
    p->ask_panels(p->ctx.slow_timeout, std::move(done), 200, import_atom::value, body->dump(),
                  replace && (*replace == "true" || *replace == "1"));
  });
  r.add("GET", "/api/panels/{id}", [p, fast](const request&, const path_params& a, responder done) {
    p->ask_panels(fast, std::move(done), 200, get_atom::value, a[0]);
  });
  r.add("PATCH", "/api/panels/{id}", [p](const request& req, const path_params& a, responder done) {
    p->update(req, a[0], metadata_fields, std::move(done));
  });
  r.add("DELETE", "/api/panels/{id}",
        [p, fast](const request&, const path_params& a, responder done) {
          p->ask_panels(fast, std::move(done), 200, erase_atom::value, a[0]);
        });
  for (std::string field : {"template", "handler"}) {
    auto path = "/api/panels/{id}/" + field;
    r.add("GET", path, [p, field](const request&, const path_params& a, responder done) {
      p->get_field(a[0], field, std::move(done));
    });
    r.add("PUT", path, [p, field](const request& req, const path_params& a, responder done) {
      auto body = object_body(p->ctx, req, done);
      if (!body) return;
      if (body->size() != 1 || !body->contains(field))
        return done(problem(errc::invalid_argument, "body must be {\"" + field + "\": \"...\"}"));
      p->update(req, a[0], {field}, std::move(done));
    });
  }
  r.add("GET", "/api/panels/{id}/render",
        [p](const request&, const path_params& a, responder done) {
          p->ask_panels(p->ctx.slow_timeout, std::move(done), 200, render_atom::value, a[0]);
        });
  r.add("POST", "/api/panels/{id}/action",
        [p](const request& req, const path_params& a, responder done) {
          p->action(req, a[0], std::move(done));
        });
  r.add("GET", "/api/panels/{id}/export",
        [p](const request&, const path_params& a, responder done) {
          p->ask_panels(p->ctx.slow_timeout, std::move(done), 200, export_atom::value, a[0]);
        });
}

}  // namespace tessera::web
