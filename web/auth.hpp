// Who may use the API: the bearer token of API clients, and the sessions of the page, which
// exchanges the token for an HttpOnly cookie at POST /login (no token ever travels in a URL).
//
// Contract:
// - Secrets are compared as SHA-256 digests in constant time, so neither the token's content
//   nor its length shows in timing; the token itself is not kept.
// - `authorized`: true without a token configured; else for `Authorization: Bearer <token>`,
//   or for a live session cookie on a request that is not `foreign` (a cookie a browser sends
//   along with another origin's request opens nothing).
// - Sessions live in memory (a restart logs the page out), expire `session_ttl` after login,
//   and at most `max_sessions` are kept (the oldest goes first).
// - The cookie's name carries the port: browsers share cookies across the ports of one host.
// Thread-safe (called from every I/O thread).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "web/http_types.hpp"

namespace tessera::web {

class authenticator {
 public:
  using digest = std::array<unsigned char, 32>;
  using clock = std::chrono::steady_clock;

  explicit authenticator(std::string_view token,
                         std::chrono::seconds session_ttl = std::chrono::hours(24 * 7),
                         size_t max_sessions = 10000);

  bool enabled() const { return enabled_; }

  // The token check of `Authorization: Bearer <token>` (scheme case-insensitive).
  bool bearer_ok(std::string_view authorization) const;
  bool token_ok(std::string_view token) const;
  bool session_ok(const request& r) const;
  bool authorized(const request& r) const;

  // After a right token: a new session; returns its Set-Cookie value.
  std::string open_session(const request& r);
  // Ends the request's session, if any; returns the Set-Cookie value that clears it.
  std::string close_session(const request& r);

  // Set by the server once the port is bound (before it serves).
  void set_port(uint16_t port) { cookie_name_ = "tessera_session_" + std::to_string(port); }
  const std::string& cookie_name() const { return cookie_name_; }

 private:
  std::optional<std::string> session_cookie(const request& r) const;
  std::string cookie_attributes(const request& r) const;

  bool enabled_;
  digest token_digest_{};
  std::chrono::seconds ttl_;
  size_t max_sessions_;
  std::string cookie_name_ = "tessera_session";
  mutable std::mutex mutex_;
  std::map<digest, clock::time_point> sessions_;  // digest of the cookie value -> expiry
};

// SHA-256 of `text`.
authenticator::digest sha256(std::string_view text);

// Compares in time independent of the contents.
bool same_digest(const authenticator::digest& a, const authenticator::digest& b);

}  // namespace tessera::web
