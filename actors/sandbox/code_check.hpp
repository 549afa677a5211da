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
#include <caf/fwd.hpp>
#include <chrono>
#include <functional>
#include <string>

#include "actors/sandbox/messages.hpp"

namespace tessera::sandbox {

struct code {
  std::string template_source;  // "" when there is none
  std::string handler;          // "" when there is none
  std::string require;          // the function the handler must define: on_action, on_schedule
};

void check_code(caf::event_based_actor* self, const sandbox_actor& sandbox,
                std::chrono::milliseconds timeout, const code& c,
                std::function<void(caf::error)> done);

}  // namespace tessera::sandbox
