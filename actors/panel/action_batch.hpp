// Batched actions: the actions queued for one panel go to its warm process in one sandbox call
// (runner.py's batch: each action runs in a fresh module namespace on the state the ones before
// it left; one that fails is undone), and the answer is split into one reply per action.
// Pure: no actors, no I/O.
//
// Contract:
// - `batch_body` is the call body of an action call with "actions":[{"action","payload"}]
//   instead of "action"/"payload"; payloads are JSON text, spliced in as they are.
// - `split_batch` reads the untrusted answer of such a call. It gives one outcome per action,
//   in order, or nullopt when the answer is not a batch answer for that many actions (a
//   hostile handler can forge its output): the caller then runs the actions one at a time.
// - `action_reply` is the reply of one committed action: {"success":true,"version","changed",
//   "logs","html"} (html null and "render_error" set when the render after it failed).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "actors/panel/panel_codec.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

struct queued_action {
  std::string name;
  std::string payload;  // JSON text ("" means {})
};

std::string batch_body(const panel_record& r, const storage::snapshot& s,
                       const std::vector<queued_action>& actions);

struct action_outcome {
  bool ok = false;
  nlohmann::json changed = nlohmann::json::array();  // ok: ids it changed, bound ones only
  nlohmann::json logs = nlohmann::json::array();
  std::string failure;  // !ok: the sandbox_failed detail, {"ok":false,"error","logs"}
};

std::optional<std::vector<action_outcome>> split_batch(const nlohmann::json& answer, size_t n,
                                                       const storage::snapshot& bound);

// `answer` supplies html / render_error (the render after the action, or after its batch).
std::string action_reply(int64_t version, nlohmann::json changed, nlohmann::json logs,
                         const nlohmann::json& answer);

}  // namespace tessera::panel
