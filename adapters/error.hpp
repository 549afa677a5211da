// tessera's error codes, travelling between actors as `caf::error` (category "tessera").
//
// They live in the lowest CAF-aware layer because adapters are where foreign errors (RocksDB
// statuses, JSON parse exceptions, later Python exceptions) become ours. The web layer maps each
// code to one HTTP status and stable string in web/problem.cpp; nothing else invents codes.
#pragma once

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <cstdint>
#include <string>
#include <string_view>

namespace tessera {

enum class errc : uint8_t {
  ok = 0,
  invalid_argument,     // a value the caller sent is malformed (message says which)
  malformed_json,       // body is not JSON
  invalid_utf8,         // body is not valid UTF-8
  json_too_deep,        // nesting over server.max_json_depth
  payload_too_large,    // body over server.max_body_bytes
  headers_too_large,    // request headers over the parser's limit
  request_timeout,      // a request's head or body did not arrive in server.header_timeout_ms
  not_found,            // no such resource
  conflict,             // already exists, or a concurrent change won
  precondition_failed,  // If-Match did not match
  unauthorized,         // missing or wrong bearer token
  method_not_allowed,   // route exists, method does not
  timeout,              // an actor or worker did not answer in time
  unavailable,          // shutting down, or a dependency is down
  storage_failure,      // RocksDB refused a read or write
  gone,                 // no longer kept (a change sequence read from before its retention)
  sandbox_failed,       // user code failed (detail: the sandbox's JSON answer, error.kind)
  internal,             // a bug: never shown in detail to clients
};

constexpr caf::atom_value error_category = caf::atom("tessera");

std::string_view to_string(errc code);

caf::error make_error(errc code, std::string detail = {});

// The tessera code of `err`; CAF's own request timeouts and dead receivers map to timeout and
// unavailable, anything else foreign to internal. A default-constructed error maps to ok.
errc code_of(const caf::error& err);

// The detail string given to make_error, or empty.
std::string detail_of(const caf::error& err);

}  // namespace tessera
