#include "actors/sandbox/code_check.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "adapters/error.hpp"

namespace tessera::sandbox {

void check_code(caf::event_based_actor* self, const sandbox_actor& sandbox,
                std::chrono::milliseconds timeout, const code& c,
                std::function<void(caf::error)> done) {
  auto body = nlohmann::json::object();
  if (!c.template_source.empty()) body["template"] = c.template_source;
  if (!c.handler.empty()) {
    body["handler"] = c.handler;
    body["require"] = c.require;
  }
  if (body.empty()) return done({});
  self->request(sandbox, timeout, run_atom::value, call{call_kind::check, body.dump(), 0, 0, {}})
      .then(
          [done](call_result& res) {
            if (is_ok(res)) return done({});
            done(make_error(errc::sandbox_failed, res.body));
          },
          [done](caf::error& err) { done(err); });
}

}  // namespace tessera::sandbox
