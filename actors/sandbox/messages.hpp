// Messages of the sandbox area: a call for a Python worker and its result.
//
// A call's body is the JSON object runner.py expects for its kind (see docs/architecture.md,
// "Sandbox"): handler source, action, payload, storage (id -> data), panel, template. It stays
// JSON text end to end: the web layer or a panel actor writes it once and the executor frames
// it for the worker without re-encoding.
#pragma once

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::sandbox {

using run_atom = caf::atom_constant<caf::atom("run")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;

// `discard` is no user code: it retires the warm processes of `reuse_key` (whatever their
// limits), when its owner's code changed or the owner was deleted.
enum class call_kind : uint8_t { action, schedule, render, init, check, discard };

std::string_view to_string(call_kind k);
std::optional<call_kind> parse_call_kind(std::string_view text);

struct call {
  call_kind kind = call_kind::check;
  std::string body = "{}";  // JSON object for runner.py
  uint32_t timeout_ms = 0;  // 0: sandbox.timeout_ms; clamped to sandbox.max_timeout_ms
  uint32_t memory_mb = 0;   // 0: sandbox.memory_mb; clamped to sandbox.max_memory_mb
  // Under sandbox.reuse = "panel", calls with the same non-empty key may share one warm
  // process (one panel's or task's code and limits: see reuse_key()); empty: a fresh process.
  std::string reuse_key;
  friend bool operator==(const call&, const call&) = default;
};

// The key under which one owner's calls share a warm process: the owner ("panel:<id>",
// "task:<id>") and hashes of its handler and template, so changed code gets a new process.
std::string reuse_key(std::string_view owner, std::string_view handler,
                      std::string_view template_source);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, call& x) {
  return f(caf::meta::type_name("sandbox_call"), x.kind, x.body, x.timeout_ms, x.memory_mb,
           x.reuse_key);
}

// Every call gets exactly one result. `outcome` is "ok" or the error kind: handler_error,
// template_error, syntax_error, invalid_handler, invalid_result, output_limit, memory_limit,
// timeout, crashed, bad_request, overloaded (queue full), unavailable (no worker can start, or
// shutting down). `body` is the worker's JSON answer ({"ok", ..., "error", "logs"}), or one the
// server wrote in the same shape when the worker could not answer.
struct call_result {
  std::string outcome;
  std::string body;
  int64_t queue_wait_us = 0;
  int64_t run_us = 0;
  // The answer's "warm" object as JSON text ("" when it has none): reused, calls, kept, pid,
  // uss_kib, pss_kib, discarded, and "retired": [[key, reason], ...] (warm_pool.hpp).
  std::string warm;
  friend bool operator==(const call_result&, const call_result&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, call_result& x) {
  return f(caf::meta::type_name("sandbox_result"), x.outcome, x.body, x.queue_wait_us, x.run_us,
           x.warm);
}

bool is_ok(const call_result& r);

// What a client may ask the sandbox (supervisor.hpp has the protocol): run a call, or read the
// workers' status (JSON text). Panels, tasks, routes and the definition check hold this handle.
using sandbox_actor = caf::typed_actor<caf::replies_to<run_atom, call>::with<call_result>,
                                       caf::replies_to<status_atom>::with<std::string>>;

// Tells `sandbox` (the supervisor) to retire the warm processes of `key` (a discard call whose
// answer nobody waits for): the owner's code or limits changed, or the owner was deleted.
void discard_warm(const sandbox_actor& sandbox, std::string key);

// A result the server writes itself: {"ok":false,"error":{kind,type,message},"logs":[]}.
call_result failed_result(std::string_view kind, std::string_view type, const std::string& message);

// The error kind of a failed call's JSON answer ("handler_error" when it names none).
std::string error_kind(std::string_view answer);

void add_sandbox_messages(caf::actor_system_config& cfg);

}  // namespace tessera::sandbox
