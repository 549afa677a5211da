#include "web/router.hpp"

#include <algorithm>
#include <array>

#include "web/problem.hpp"

namespace tessera::web {
namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t start = 1;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    out.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool is_param(const std::string& segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

// Compares in time independent of where the strings differ.
bool same_secret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

router::router(std::string api_token, prometheus::Registry& registry)
    : api_token_(std::move(api_token)),
      requests_(prometheus::BuildCounter()
                    .Name("tessera_http_requests_total")
                    .Help("HTTP requests by route template, method and status")
                    .Register(registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("tessera_http_request_duration_seconds")
                     .Help("HTTP request duration from parsed request to response handed off")
                     .Register(registry)) {}

void router::add(std::string method, std::string pattern, route_handler handler) {
  auto segments = split_path(pattern);
  routes_.push_back(
      {std::move(method), std::move(pattern), std::move(segments), std::move(handler)});
}

bool router::authorized(const request& req) const {
  if (api_token_.empty()) return true;
  static constexpr std::string_view scheme = "Bearer ";
  if (req.authorization.size() <= scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(req.authorization[i])) !=
        std::tolower(static_cast<unsigned char>(scheme[i])))
      return false;
  return same_secret(req.authorization.substr(scheme.size()), api_token_);
}

responder router::instrument(const std::string& pattern, const std::string& method,
                             responder done) const {
  auto start = std::chrono::steady_clock::now();
  // Clients choose the method string: unknown ones share one label so metrics stay bounded.
  static const std::array<std::string_view, 7> known = {"GET",   "HEAD",   "POST",   "PUT",
                                                        "PATCH", "DELETE", "OPTIONS"};
  auto label = std::find(known.begin(), known.end(), method) != known.end() ? method : "other";
  return [this, pattern, method = std::move(label), start, done = std::move(done)](response r) {
    std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    requests_.Add({{"route", pattern}, {"method", method}, {"status", std::to_string(r.status)}})
        .Increment();
    durations_.Add({{"route", pattern}, {"method", method}}, adapters::latency_buckets())
        .Observe(elapsed.count());
    done(std::move(r));
  };
}

// True for /api and /ws and everything below them.
bool protected_path(std::string_view path) {
  for (std::string_view prefix : {"/api", "/ws"})
    if (path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/'))
      return true;
  return false;
}

void router::handle(request req, responder done) const {
  // HEAD is answered by the GET route; the connection drops the body.
  std::string method = req.method == "HEAD" ? "GET" : req.method;
  auto segments = split_path(req.path);
  const route* found = nullptr;
  path_params params;
  std::string allowed;
  const std::string* matched_pattern = nullptr;  // of a route whose method differs
  for (auto& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    path_params candidate;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      if (is_param(r.segments[i]))
        candidate.push_back(segments[i]);
      else
        match = r.segments[i] == segments[i];
    }
    if (!match) continue;
    if (r.method == method) {
      found = &r;
      params = std::move(candidate);
      break;
    }
    allowed += allowed.empty() ? r.method : ", " + r.method;
    matched_pattern = &r.pattern;
  }
  auto label = found ? found->pattern : matched_pattern ? *matched_pattern : "unmatched";
  auto reply = instrument(label, req.method, std::move(done));
  // Before anything that tells which paths exist.
  if (protected_path(req.path) && !authorized(req))
    return reply(problem(errc::unauthorized, "missing or wrong bearer token"));
  if (!found && allowed.empty()) return reply(problem(errc::not_found, "no route for " + req.path));
  if (!found) {
    auto r = problem(errc::method_not_allowed, req.method + " is not allowed on " + req.path);
    r.headers.emplace_back("Allow", allowed);
    return reply(std::move(r));
  }
  if (!query_decodable(req.query))
    return reply(problem(errc::invalid_argument, "bad percent-escape in the query string"));
  for (auto& p : params) {
    auto decoded = percent_decode(p);
    if (!decoded) return reply(problem(errc::invalid_argument, "bad percent-escape in path"));
    p = std::move(*decoded);
  }
  found->handler(req, params, std::move(reply));
}

}  // namespace tessera::web
