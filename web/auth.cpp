#include "web/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace tessera::web {

authenticator::digest sha256(std::string_view text) {
  authenticator::digest out{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
  return out;
}

bool same_digest(const authenticator::digest& a, const authenticator::digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

authenticator::authenticator(std::string_view token, std::chrono::seconds session_ttl,
                             size_t max_sessions)
    : enabled_(!token.empty()),
      token_digest_(sha256(token)),
      ttl_(session_ttl),
      max_sessions_(max_sessions) {}

bool authenticator::token_ok(std::string_view token) const {
  return enabled_ && same_digest(sha256(token), token_digest_);
}

bool authenticator::bearer_ok(std::string_view authorization) const {
  static constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return false;
  return token_ok(authorization.substr(scheme.size()));
}

std::optional<std::string> authenticator::session_cookie(const request& r) const {
  std::string_view rest = r.cookie;
  while (!rest.empty()) {
    auto semi = rest.find(';');
    auto pair = rest.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    auto eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == cookie_name_)
      return std::string{pair.substr(eq + 1)};
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  return std::nullopt;
}

bool authenticator::session_ok(const request& r) const {
  if (r.foreign) return false;
  auto value = session_cookie(r);
  if (!value) return false;
  auto key = sha256(*value);  // the map is searched by digest, never by the secret itself
  std::lock_guard lock{mutex_};
  auto it = sessions_.find(key);
  return it != sessions_.end() && it->second > clock::now();
}

bool authenticator::authorized(const request& r) const {
  return !enabled_ || bearer_ok(r.authorization) || session_ok(r);
}

std::string authenticator::cookie_attributes(const request& r) const {
  return std::string{"; Path=/; HttpOnly; SameSite=Strict"} + (r.tls ? "; Secure" : "");
}

std::string authenticator::open_session(const request& r) {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1)
    throw std::runtime_error("no randomness for a session id");
  static constexpr char hex[] = "0123456789abcdef";
  std::string value;
  for (auto b : bytes) {
    value += hex[b >> 4];
    value += hex[b & 15];
  }
  auto now = clock::now();
  {
    std::lock_guard lock{mutex_};
    std::erase_if(sessions_, [now](auto& s) { return s.second <= now; });
    while (sessions_.size() >= max_sessions_) {
      auto oldest = std::min_element(sessions_.begin(), sessions_.end(),
                                     [](auto& a, auto& b) { return a.second < b.second; });
      sessions_.erase(oldest);
    }
    sessions_[sha256(value)] = now + ttl_;
  }
  return cookie_name_ + "=" + value + cookie_attributes(r);
}

std::string authenticator::close_session(const request& r) {
  if (auto value = session_cookie(r)) {
    std::lock_guard lock{mutex_};
    sessions_.erase(sha256(*value));
  }
  return cookie_name_ + "=" + cookie_attributes(r) + "; Max-Age=0";
}

}  // namespace tessera::web
