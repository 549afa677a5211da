#include "actors/panel/panel_ops.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"

namespace tessera::panel {

using json = nlohmann::json;

void read_snapshot(caf::event_based_actor* self, const panel_env& env,
                   const std::vector<std::string>& ids,
                   std::function<void(caf::expected<snapshot>)> done) {
  storage::read_snapshot(self, env.storages, env.request_timeout, ids, std::move(done));
}

std::string call_body(const panel_record& r, const snapshot& s, const std::string* action,
                      const std::string* payload) {
  // Storage data and the payload are JSON text already: spliced in, not re-encoded.
  auto storage = storage::storage_object(s);
  std::string body = "{\"panel\":" + metadata_json(r).dump() +
                     ",\"template\":" + json(r.template_).dump() + ",\"storage\":" + storage;
  if (action) {
    body += ",\"handler\":" + json(r.handler).dump() + ",\"action\":" + json(*action).dump() +
            ",\"payload\":" + (payload && !payload->empty() ? *payload : "{}");
  }
  return body + "}";
}

void check_code(caf::event_based_actor* self, const panel_env& env, const panel_record& r,
                std::function<void(caf::error)> done) {
  json body = json::object();
  if (!r.template_.empty()) body["template"] = r.template_;
  if (!r.handler.empty()) {
    body["handler"] = r.handler;
    body["require"] = "on_action";
  }
  if (body.empty()) return done({});
  sandbox::call c{sandbox::call_kind::check, body.dump(), 0, 0, {}};
  self->request(env.sandbox, env.call_timeout, sandbox::run_atom::value, std::move(c))
      .then(
          [done](sandbox::call_result& res) {
            if (sandbox::is_ok(res)) return done({});
            done(make_error(errc::sandbox_failed, res.body));
          },
          [done](caf::error& err) { done(err); });
}

void ensure_storages(caf::event_based_actor* self, const panel_env& env,
                     const std::vector<std::string>& ids,
                     const std::map<std::string, std::string>& defaults,
                     std::function<void(caf::error)> done) {
  storage::create_missing(self, env.storages, env.request_timeout, ids, defaults, std::move(done));
}

}  // namespace tessera::panel
