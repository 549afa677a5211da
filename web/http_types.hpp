// HTTP requests and responses as the routes see them: plain structs, no Beast, so that route
// code compiles fast and can be tested without a socket.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::web {

struct request {
  std::string method;  // "GET", "PATCH", ...
  std::string path;    // percent-encoded, without the query (origin-form: starts with '/')
  std::string query;   // after '?', percent-encoded, may be empty
  std::string body;
  std::string authorization;
  std::string if_match;
  std::string host;          // the Host header (or the authority of an absolute-form target)
  std::string content_type;  // empty when absent
  std::string cookie;        // the Cookie header
  // The request comes from a page of another origin (an Origin that is neither the server's
  // own nor allowed, or Sec-Fetch-Site cross-site/same-site): a session cookie does not count.
  bool foreign = false;
  bool tls = false;  // X-Forwarded-Proto: https (a TLS proxy in front): cookies get Secure
};

struct response {
  unsigned status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Completes one request exactly once; may be called from any thread.
using responder = std::function<void(response)>;

// The value of `name` in a query string, percent-decoded; nullopt when absent or undecodable.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

// True when every name and value of the query string percent-decodes.
bool query_decodable(std::string_view query);

// Decodes %XX escapes (and '+' as space when `plus_is_space`); nullopt on a bad escape.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space = false);

response json_response(unsigned status, std::string body);

}  // namespace tessera::web
