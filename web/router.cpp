#include "web/router.hpp"

#include <algorithm>
#include <array>

#include "web/problem.hpp"
#include "web/request_guard.hpp"

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

}  // namespace

router::router(std::shared_ptr<authenticator> auth, bool metrics_public,
               prometheus::Registry& registry)
    : auth_(std::move(auth)),
      metrics_public_(metrics_public),
      requests_(prometheus::BuildCounter()
                    .Name("tessera_http_requests_total")
                    .Help("HTTP requests by route template, method and status")
                    .Register(registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("tessera_http_request_duration_seconds")
                     .Help("HTTP request duration from parsed request to response handed off")
                     .Register(registry)) {}

void router::add(std::string method, std::string pattern, route_handler handler,
                 route_options options) {
  auto segments = split_path(pattern);
  routes_.push_back(
      {std::move(method), std::move(pattern), std::move(segments), std::move(handler), options});
}

// `r`: the route whose path matched (of any method), or null: then the token is needed.
bool router::may_use(const request& req, const route* r) const {
  auto who = r ? r->options.who : access::token;
  if (who == access::open || (who == access::metrics && metrics_public_)) return true;
  return auth_->authorized(req);
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

void router::handle(request req, responder done) const {
  // HEAD is answered by the GET route; the connection drops the body.
  std::string method = req.method == "HEAD" ? "GET" : req.method;
  auto segments = split_path(req.path);
  const route* found = nullptr;
  path_params params;
  std::string allowed;
  const route* matched_path = nullptr;  // a route whose path matched (method may differ)
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
    matched_path = &r;
  }
  auto label = found ? found->pattern : matched_path ? matched_path->pattern : "unmatched";
  auto reply = instrument(label, req.method, std::move(done));
  // Before anything that tells which paths exist.
  if (!may_use(req, found ? found : matched_path))
    return reply(problem(errc::unauthorized, "missing or wrong bearer token"));
  if (!found && allowed.empty()) return reply(problem(errc::not_found, "no route for " + req.path));
  if (!found) {
    auto r = problem(errc::method_not_allowed, req.method + " is not allowed on " + req.path);
    r.headers.emplace_back("Allow", allowed);
    return reply(std::move(r));
  }
  if (!req.body.empty() && !req.content_type.empty()) {
    bool form = found->options.body == body_kind::form;
    if (form ? !form_media_type(req.content_type) : !json_media_type(req.content_type))
      return reply(problem(415, "unsupported_media_type", "Unsupported media type",
                           std::string{"this route reads "} +
                               (form ? "an HTML form (application/x-www-form-urlencoded)"
                                     : "JSON (application/json)") +
                               ", not " + req.content_type,
                           "{}"));
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
