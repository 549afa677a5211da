#include "web/request_guard.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "web/problem.hpp"

namespace tessera::web {
namespace {

std::string lower(std::string_view text) {
  std::string out{text};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Splits "name:port" / "[v6]:port" into name and port text (empty when absent).
std::pair<std::string_view, std::string_view> split_authority(std::string_view authority) {
  auto colon = authority.starts_with('[') ? authority.find("]:") : authority.rfind(':');
  if (colon == std::string_view::npos) return {authority, {}};
  if (authority.starts_with('[')) ++colon;
  return {authority.substr(0, colon), authority.substr(colon + 1)};
}

bool changes_state(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH" || method == "DELETE";
}

std::string_view media_type(std::string_view content_type) {
  auto type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return type;
}

}  // namespace

bool host_policy::serves(std::string_view authority) const {
  if (!check_host) return true;
  auto host = lower(authority);
  auto [name, port_text] = split_authority(host);
  bool our_port = port_text.empty() ? port == 80 : port_text == std::to_string(port);
  static constexpr std::array<std::string_view, 3> loopback = {"localhost", "127.0.0.1", "[::1]"};
  if (our_port && std::find(loopback.begin(), loopback.end(), name) != loopback.end()) return true;
  return std::any_of(allowed_hosts.begin(), allowed_hosts.end(), [&](const std::string& entry) {
    bool entry_has_port = !split_authority(entry).second.empty();
    return entry_has_port ? entry == host : entry == name;
  });
}

bool host_policy::trusts_origin(std::string_view origin, std::string_view host) const {
  auto o = lower(origin);
  auto h = lower(host);
  if (!h.empty() && (o == "http://" + h || o == "https://" + h)) return true;
  return std::find(allowed_origins.begin(), allowed_origins.end(), o) != allowed_origins.end();
}

std::optional<response> reduce_target(request& r, std::string_view target,
                                      const host_policy& policy) {
  auto scheme_end = target.find("://");
  auto scheme = lower(target.substr(0, scheme_end == std::string_view::npos ? 0 : scheme_end));
  if (scheme == "http" || scheme == "https") {
    auto rest = target.substr(scheme_end + 3);
    auto authority = rest.substr(0, rest.find_first_of("/?"));
    if (authority.empty() || authority.find('@') != std::string_view::npos ||
        !policy.serves(authority))
      return problem(errc::invalid_argument,
                     "an absolute-form request target must name this server");
    r.host = std::string{authority};
    rest.remove_prefix(authority.size());
    target = rest;
    if (target.empty() || target.front() == '?') {
      r.path.assign(1, '/');
      if (!target.empty()) r.query = std::string{target.substr(1)};
      return std::nullopt;
    }
  }
  if (target.empty() || target.front() != '/')
    return problem(errc::invalid_argument, "the request target must be a path starting with '/'");
  auto q = target.find('?');
  r.path = std::string{target.substr(0, q)};
  if (q != std::string_view::npos) r.query = std::string{target.substr(q + 1)};
  return std::nullopt;
}

std::optional<response> check_host(const request& r, const request_head& head,
                                   const host_policy& policy) {
  if (head.host_fields > 1) return problem(errc::invalid_argument, "more than one Host");
  if (r.host.empty()) {
    if (head.version >= 11) return problem(errc::invalid_argument, "HTTP/1.1 requires a Host");
    return std::nullopt;  // HTTP/1.0 without Host: no browser, so no rebinding
  }
  if (policy.serves(r.host)) return std::nullopt;
  return problem(421, "misdirected_request", "Misdirected request",
                 "this server does not answer to that Host; add the name to "
                 "server.allowed_hosts to serve it",
                 "{}");
}

std::optional<response> check_origin(const request& r, const request_head& head,
                                     const host_policy& policy) {
  if (head.origin.empty() || !(head.upgrade || changes_state(r.method))) return std::nullopt;
  if (policy.trusts_origin(head.origin, r.host)) return std::nullopt;
  return problem(403, "cross_origin", "Forbidden",
                 "requests from another origin are refused; add it to server.allowed_origins "
                 "to accept it",
                 "{}");
}

bool foreign(const request& r, const request_head& head, const host_policy& policy) {
  if (!head.origin.empty()) return !policy.trusts_origin(head.origin, r.host);
  return head.sec_fetch_site == "cross-site" || head.sec_fetch_site == "same-site";
}

bool json_media_type(std::string_view content_type) {
  auto type = lower(media_type(content_type));
  return type == "application/json" ||
         (type.starts_with("application/") && type.ends_with("+json"));
}

bool form_media_type(std::string_view content_type) {
  return lower(media_type(content_type)) == "application/x-www-form-urlencoded";
}

}  // namespace tessera::web
