// What a request must be before any route sees it: an origin-form target, a Host this server
// answers to, an Origin it trusts for anything that changes state, and a JSON body only as
// JSON. Pure functions of the request's head (no sockets, no Beast), so every rule is tested
// as a table in request_guard.test.cpp.
//
// Contract:
// - `reduce_target` sets `path` and `query` from the raw target. Origin-form ("/...") is taken
//   as it is; absolute-form ("http://host:port/...") only when its authority is a host this
//   server answers to, and it then replaces `host`. Anything else ("*", "api/...",
//   "Xapi/...", "%2Fapi", authority-form) is 400 `invalid_argument`.
// - `check_host`: HTTP/1.1 without Host, or more than one Host, is 400; a Host the policy
//   refuses is 421
//   `misdirected_request` (DNS rebinding: a page of evil.example resolved to 127.0.0.1).
// - `check_origin`: POST, PUT, PATCH, DELETE and WebSocket upgrades carrying an Origin other
//   than the server's own (http(s)://<Host>) or one allowed are 403 `cross_origin`. No Origin
//   (curl, scripts) passes.
// - `foreign`: true for a request a page of another origin made (see request::foreign).
// - `json_media_type` / `form_media_type`: whether a Content-Type names JSON
//   (application/json or any +json) / an HTML form (x-www-form-urlencoded).
// Thread-safe: a policy is immutable once built.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "web/http_types.hpp"

namespace tessera::web {

struct host_policy {
  uint16_t port = 0;                         // the bound port
  bool check_host = false;                   // loopback listen, or allowed_hosts set
  std::vector<std::string> allowed_hosts;    // lower-case "name" (any port) or "name:port"
  std::vector<std::string> allowed_origins;  // lower-case scheme://host[:port]

  // True when `authority` (a Host value) names this server: the loopback names with `port`
  // (no port when it is 80), or an allowed host; any authority when check_host is off.
  bool serves(std::string_view authority) const;
  // True for the server's own origin as seen through `host` (http:// or https://) and the
  // allowed origins.
  bool trusts_origin(std::string_view origin, std::string_view host) const;
};

// The raw request target and HTTP version as parsed, plus the headers the guard reads.
struct request_head {
  std::string_view target;
  unsigned version = 11;            // 10 or 11
  size_t host_fields = 0;           // Host headers in the request
  std::string_view origin;          // empty when absent
  std::string_view sec_fetch_site;  // empty when absent
  bool upgrade = false;             // a WebSocket upgrade
};

std::optional<response> reduce_target(request& r, std::string_view target,
                                      const host_policy& policy);

std::optional<response> check_host(const request& r, const request_head& head,
                                   const host_policy& policy);

std::optional<response> check_origin(const request& r, const request_head& head,
                                     const host_policy& policy);

bool foreign(const request& r, const request_head& head, const host_policy& policy);

bool json_media_type(std::string_view content_type);
bool form_media_type(std::string_view content_type);

}  // namespace tessera::web
