// Steps the panel actor and the panel directory share: reading the bound storages, building a
// sandbox call, compile-checking a panel's code, creating missing storages.
//
// Contract: each function runs on the calling actor and calls `done` exactly once on it, from
// an ordinary reply handler (never awaited: CAF 0.17 mishandles an await issued inside an
// awaited reply's handler).
#pragma once

#include <caf/fwd.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "actors/panel/panel_actor.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

using storage::snapshot;
using storage::snapshot_entry;
using storage::versions_of;

// Reads every storage in `ids` (a missing one is {} at version 0).
void read_snapshot(caf::event_based_actor* self, const panel_env& env,
                   const std::vector<std::string>& ids,
                   std::function<void(caf::expected<snapshot>)> done);

// The sandbox call body for `r` on `s`: a render when `action` is null, else an action.
std::string call_body(const panel_record& r, const snapshot& s, const std::string* action,
                      const std::string* payload);

// The timeout of `r`'s sandbox calls.
inline uint32_t call_timeout_ms(const panel_record& r) {
  return static_cast<uint32_t>(r.timeout_ms);
}

// Compiles the template and handler of `r` (the handler must define on_action). A failure is
// errc::sandbox_failed with the sandbox's answer.
void check_code(caf::event_based_actor* self, const panel_env& env, const panel_record& r,
                std::function<void(caf::error)> done);

// Creates each storage of `ids` that does not exist, with its data from `defaults` (JSON
// object text) or {}; existing ones are left as they are.
void ensure_storages(caf::event_based_actor* self, const panel_env& env,
                     const std::vector<std::string>& ids,
                     const std::map<std::string, std::string>& defaults,
                     std::function<void(caf::error)> done);

}  // namespace tessera::panel
