// The compile check of a definition's code before it becomes current: the one sandbox call that
// panel and task creation and updates make.
//
// Contract: check_code() sends one `check` call to `sandbox` (the supervisor) and calls `done`
// exactly once on `self`, from an ordinary reply handler: no error when the template compiles
// (if any), the handler compiles and defines `require` (if any handler), or nothing was given;
// errc::sandbox_failed with the sandbox's JSON answer as detail otherwise; the request's own
// error (timeout, unavailable) when the sandbox did not answer.
#pragma once

#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "actors/sandbox/messages.hpp"
#include "adapters/error.hpp"

namespace tessera::sandbox {

struct code {
  std::string template_source;  // "" when there is none
  std::string handler;          // "" when there is none
  std::string require;          // the function the handler must define: on_action, on_schedule
};

// The body of the check call for `c` ("" when there is nothing to check).
std::string check_body(const code& c);

// `Self`: any event-based actor, typed or not.
template <class Self>
void check_code(Self* self, const sandbox_actor& sandbox, std::chrono::milliseconds timeout,
                const code& c, std::function<void(caf::error)> done) {
  auto body = check_body(c);
  if (body.empty()) return done({});
  self->request(sandbox, timeout, run_atom::value,
                call{call_kind::check, std::move(body), 0, 0, {}})
      .then(
          [done](call_result& res) {
            if (is_ok(res)) return done({});
            done(make_error(errc::sandbox_failed, res.body));
          },
          [done](caf::error& err) { done(err); });
}

}  // namespace tessera::sandbox
