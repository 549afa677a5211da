#include "web/problem.hpp"

#include <nlohmann/json.hpp>

#include "actors/sandbox/messages.hpp"
#include "runtime/log.hpp"

namespace tessera::web {
namespace {

struct problem_entry {
  unsigned status;
  const char* title;
};

problem_entry entry(errc code) {
  switch (code) {
    case errc::ok:
      return {200, "OK"};
    case errc::invalid_argument:
      return {400, "Invalid argument"};
    case errc::malformed_json:
      return {400, "Malformed JSON"};
    case errc::invalid_utf8:
      return {400, "Invalid UTF-8"};
    case errc::json_too_deep:
      return {400, "JSON nested too deeply"};
    case errc::payload_too_large:
      return {413, "Payload too large"};
    case errc::headers_too_large:
      return {431, "Request header fields too large"};
    case errc::request_timeout:
      return {408, "Request timeout"};
    case errc::not_found:
      return {404, "Not found"};
    case errc::conflict:
      return {409, "Conflict"};
    case errc::precondition_failed:
      return {412, "Precondition failed"};
    case errc::unauthorized:
      return {401, "Unauthorized"};
    case errc::method_not_allowed:
      return {405, "Method not allowed"};
    case errc::timeout:
      return {503, "Timed out"};
    case errc::unavailable:
      return {503, "Service unavailable"};
    case errc::storage_failure:
      return {500, "Storage failure"};
    case errc::gone:
      return {410, "Gone"};
    case errc::sandbox_failed:  // shown by sandbox_problem(), with the outcome's own status
      return {422, "Handler error"};
    case errc::internal:
      return {500, "Internal error"};
  }
  return {500, "Internal error"};
}

}  // namespace

unsigned http_status(errc code) { return entry(code).status; }

response problem(errc code, const std::string& detail) {
  auto e = entry(code);
  std::string shown = detail;
  if (e.status >= 500 && code != errc::timeout && code != errc::unavailable)
    shown = "the server could not complete the request; see the server log";
  nlohmann::json body = {{"type", "urn:tessera:problem:" + std::string{to_string(code)}},
                         {"title", e.title},
                         {"status", e.status},
                         {"detail", shown},
                         {"code", to_string(code)}};
  response r;
  r.status = e.status;
  r.content_type = "application/problem+json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (code == errc::unauthorized) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

response problem(unsigned status, std::string_view code, std::string_view title,
                 const std::string& detail, const std::string& extra) {
  nlohmann::json body = {{"type", "urn:tessera:problem:" + std::string{code}},
                         {"title", title},
                         {"status", status},
                         {"detail", detail},
                         {"code", code}};
  auto members = nlohmann::json::parse(extra, nullptr, false);
  if (members.is_object())
    for (auto& [key, value] : members.items())
      if (!body.contains(key)) body[key] = value;
  response r;
  r.status = status;
  r.content_type = "application/problem+json";
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

namespace {

struct outcome_entry {
  unsigned status;
  const char* title;
};

// Sandbox outcomes on HTTP: the handler's own failures are 422 (the request was understood,
// the code it ran failed), a malformed call or code that does not compile 400, no capacity 503.
outcome_entry outcome_status(const std::string& outcome) {
  if (outcome == "bad_request") return {400, "Bad sandbox call"};
  if (outcome == "syntax_error") return {400, "Syntax error"};
  if (outcome == "invalid_handler") return {400, "Invalid handler"};
  if (outcome == "overloaded") return {503, "Sandbox overloaded"};
  if (outcome == "unavailable") return {503, "Sandbox unavailable"};
  if (outcome == "timeout") return {422, "Handler timed out"};
  if (outcome == "memory_limit") return {422, "Handler exceeded its memory limit"};
  if (outcome == "crashed") return {422, "Handler crashed"};
  if (outcome == "output_limit") return {422, "Handler output too large"};
  if (outcome == "invalid_result") return {422, "Handler result cannot be stored"};
  if (outcome == "template_error") return {422, "Template error"};
  return {422, "Handler error"};
}

}  // namespace

response sandbox_problem(const std::string& outcome, const std::string& answer) {
  auto parsed = nlohmann::json::parse(answer, nullptr, false);
  std::string detail = outcome;
  nlohmann::json extra = nlohmann::json::object();
  if (parsed.is_object()) {
    if (auto e = parsed.find("error"); e != parsed.end() && e->is_object()) {
      if (auto m = e->find("message"); m != e->end() && m->is_string() && !m->empty())
        detail = m->get<std::string>();  // the answer is untrusted: no exceptions on odd types
      extra["error"] = *e;
    }
    for (auto* key : {"logs", "version"})
      if (auto it = parsed.find(key); it != parsed.end()) extra[key] = *it;
  }
  auto entry = outcome_status(outcome);
  auto res = problem(entry.status, outcome, entry.title, detail, extra.dump());
  if (entry.status == 503) res.headers.emplace_back("Retry-After", "1");
  return res;
}

response problem(const caf::error& err) {
  auto code = code_of(err);
  auto detail = detail_of(err);
  if (code == errc::sandbox_failed) return sandbox_problem(sandbox::error_kind(detail), detail);
  if (http_status(code) >= 500) {
    runtime::log_error("request failed: " + std::string{to_string(code)} +
                       (detail.empty() ? "" : ": " + detail));
    if (code == errc::timeout && detail.empty()) detail = "the request timed out";
    if (code == errc::unavailable && detail.empty()) detail = "the server is unavailable";
  }
  return problem(code, detail);
}

}  // namespace tessera::web
