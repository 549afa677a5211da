// Matches requests to routes by method and path template ("/api/storages/{id}"), decides who
// may use the route that matched, checks the body's media type, and records per-route HTTP
// metrics.
//
// Contract: `handle` completes every request exactly once through `done`: the route's response,
// or problem+json 401 (with a token configured, a request that is not authorized on a route
// that needs it; a path no route has needs it too, so a 401 comes before anything that would
// tell which paths exist), 404 (no route), 405 with Allow (route exists, method does not), 415
// (a body whose Content-Type is not the route's: JSON, or an HTML form for form routes; a body
// without Content-Type is taken as JSON). Authorization is decided on the matched route's
// `access`, never on the path's text. Path parameters are percent-decoded; an undecodable one
// is 400. Routes are added before the server starts; `handle` is then safe from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapters/metrics/registry.hpp"
#include "web/auth.hpp"
#include "web/http_types.hpp"

namespace tessera::web {

using path_params = std::vector<std::string>;
using route_handler = std::function<void(const request&, const path_params&, responder)>;

// Who may use a route when a token is configured.
enum class access {
  token,    // the bearer token or the page's session (the default: every /api route)
  open,     // anyone (the page, its script, /login, health probes)
  metrics,  // like token, unless server.metrics_public
};

// What a route's body is.
enum class body_kind { json, form };

struct route_options {
  access who = access::token;
  body_kind body = body_kind::json;
};

class router {
 public:
  router(std::shared_ptr<authenticator> auth, bool metrics_public, prometheus::Registry& registry);

  void add(std::string method, std::string pattern, route_handler handler,
           route_options options = {});

  void handle(request req, responder done) const;

  // True without a token configured, or for the token or a session (auth.hpp).
  bool authorized(const request& req) const { return auth_->authorized(req); }
  authenticator& auth() const { return *auth_; }

 private:
  struct route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    route_handler handler;
    route_options options;
  };

  responder instrument(const std::string& pattern, const std::string& method, responder done) const;
  bool may_use(const request& req, const route* r) const;

  std::shared_ptr<authenticator> auth_;
  bool metrics_public_;
  std::vector<route> routes_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
};

}  // namespace tessera::web
