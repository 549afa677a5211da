#include "config/parse_value.hpp"

#include <algorithm>
#include <cctype>

namespace tessera::config::parse {
namespace {

bool host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

}  // namespace

apply_result parse_bool(const std::string& v, bool& out) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") {
    out = true;
    return std::nullopt;
  }
  if (v == "false" || v == "0" || v == "no" || v == "off") {
    out = false;
    return std::nullopt;
  }
  return "expected true or false, got '" + v + "'";
}

apply_result parse_millis(const std::string& v, std::chrono::milliseconds& out, int64_t min,
                          int64_t max) {
  int64_t ms = 0;
  if (auto err = parse_int<int64_t>(v, ms, min, max)) return err;
  out = std::chrono::milliseconds{ms};
  return std::nullopt;
}

std::vector<std::string> split_list(const std::string& v) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= v.size()) {
    auto comma = v.find(',', start);
    if (comma == std::string::npos) comma = v.size();
    auto item = v.substr(start, comma - start);
    auto first = item.find_first_not_of(" \t");
    auto last = item.find_last_not_of(" \t");
    if (first != std::string::npos) out.push_back(item.substr(first, last - first + 1));
    start = comma + 1;
  }
  return out;
}

apply_result parse_host_list(const std::string& v, std::vector<std::string>& out) {
  std::vector<std::string> hosts;
  for (auto item : split_list(v)) {
    std::transform(item.begin(), item.end(), item.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    auto port_at = item.front() == '[' ? item.find("]:") : item.rfind(':');
    auto name = port_at == std::string::npos
                    ? item
                    : item.substr(0, item.front() == '[' ? port_at + 1 : port_at);
    uint16_t port = 0;
    bool ok =
        !name.empty() && (name.front() == '[' ? name.back() == ']' && name.size() > 2
                                              : std::all_of(name.begin(), name.end(), host_char));
    if (ok && port_at != std::string::npos)
      ok = !parse_int<uint16_t>(item.substr(port_at + (item.front() == '[' ? 2 : 1)), port, 1,
                                65535);
    if (!ok) return "expected host names (name or name:port, comma-separated), got '" + item + "'";
    hosts.push_back(item);
  }
  out = std::move(hosts);
  return std::nullopt;
}

apply_result parse_origin_list(const std::string& v, std::vector<std::string>& out) {
  std::vector<std::string> origins;
  for (auto item : split_list(v)) {
    std::transform(item.begin(), item.end(), item.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    auto scheme_end = item.find("://");
    auto scheme = item.substr(0, scheme_end == std::string::npos ? 0 : scheme_end);
    std::vector<std::string> host;
    bool ok = (scheme == "http" || scheme == "https") &&
              !parse_host_list(item.substr(scheme_end + 3), host) && host.size() == 1;
    if (!ok)
      return "expected origins (scheme://host[:port], comma-separated, no path), got '" + item +
             "'";
    origins.push_back(item);
  }
  out = std::move(origins);
  return std::nullopt;
}

}  // namespace tessera::config::parse
