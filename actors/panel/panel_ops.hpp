// What the panel actor and the panel directory build for the sandbox from a panel: the body of a
// render or action call, its timeout, and the code a create or update checks. Pure.
#pragma once

#include <string>

#include "actors/panel/panel_codec.hpp"
#include "actors/sandbox/code_check.hpp"
#include "actors/sandbox/messages.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

using storage::snapshot;
using storage::snapshot_entry;
using storage::versions_of;

// The sandbox call body for `r` on `s`: a render when `action` is null, else an action.
std::string call_body(const panel_record& r, const snapshot& s, const std::string* action,
                      const std::string* payload);

// The timeout of `r`'s sandbox calls.
inline uint32_t call_timeout_ms(const panel_record& r) {
  return static_cast<uint32_t>(r.timeout_ms);
}

// The key under which `r`'s calls share a warm process while its code stays the same ("" when
// the panel asks for a fresh process per call).
inline std::string warm_key(const panel_record& r) {
  if (r.fresh_process) return {};
  return sandbox::reuse_key("panel:" + r.id, r.handler, r.template_);
}

// The code of `r` a create or update checks: its template, and its handler, which must define
// on_action.
inline sandbox::code code_to_check(const panel_record& r) {
  return {r.template_, r.handler, "on_action"};
}

}  // namespace tessera::panel
