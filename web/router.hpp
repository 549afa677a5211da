// Matches requests to routes by method and path template ("/api/storages/{id}"), checks the
// bearer token on /api and /ws (and everything below them), and records per-route HTTP metrics.
//
// Contract: `handle` completes every request exactly once through `done`: the route's response,
// or problem+json 401 (token missing or wrong on a protected path, checked before anything
// that would tell which paths exist), 404 (no route), 405 with Allow (route exists, method
// does not). Path parameters are percent-decoded; an undecodable one is 400. Routes are
// added before the server starts; `handle` is then safe from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "adapters/metrics/registry.hpp"
#include "web/http_types.hpp"

namespace tessera::web {

using path_params = std::vector<std::string>;
using route_handler = std::function<void(const request&, const path_params&, responder)>;

class router {
 public:
  // `api_token` empty: no authentication.
  router(std::string api_token, prometheus::Registry& registry);

  void add(std::string method, std::string pattern, route_handler handler);

  void handle(request req, responder done) const;

  // True without a token configured, or when `req` carries `Authorization: Bearer <token>`.
  bool authorized(const request& req) const;

 private:
  struct route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    route_handler handler;
  };

  responder instrument(const std::string& pattern, const std::string& method, responder done) const;

  std::string api_token_;
  std::vector<route> routes_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
};

}  // namespace tessera::web
