// The one table from tessera error codes to HTTP: status, stable `code` string and title, and
// the application/problem+json body (RFC 9457: type, title, status, detail, code).
//
// Contract: 5xx responses never carry internal details (the detail is replaced by a generic
// sentence; callers log the original). Every error response of the server is built here.
#pragma once

#include <string>

#include "adapters/error.hpp"
#include "web/http_types.hpp"

namespace tessera::web {

unsigned http_status(errc code);

response problem(errc code, const std::string& detail);

// A problem outside the errc table (sandbox results): `code` and `title` as given, and the
// members of the JSON object `extra` (e.g. {"error":{...},"logs":[...]}) added to the body.
response problem(unsigned status, std::string_view code, std::string_view title,
                 const std::string& detail, const std::string& extra);

// A failed sandbox call: the status and title of its outcome (syntax_error 400, handler_error
// 422, overloaded 503, ...), detail = the error's message, members `error` and `logs` from the
// worker's JSON `answer`.
response sandbox_problem(const std::string& outcome, const std::string& answer);

// For errors coming back from actors; logs 5xx details before hiding them. sandbox_failed
// errors become sandbox_problem() of the answer in their detail.
response problem(const caf::error& err);

}  // namespace tessera::web
