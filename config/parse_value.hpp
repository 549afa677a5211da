// The parsers behind the key table (settings.cpp, cluster_keys.cpp): each turns a textual value
// into a field of `settings`, or returns the message that says what was expected (without the
// key's name, which the caller adds). Plain C++, no state.
#pragma once

#include <charconv>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera::config::parse {

using apply_result = std::optional<std::string>;

template <class Int>
apply_result parse_int(const std::string& v, Int& out, Int min, Int max) {
  Int x{};
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (ec != std::errc{} || end != v.data() + v.size())
    return "expected a whole number, got '" + v + "'";
  if (x < min || x > max)
    return "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + v;
  out = x;
  return std::nullopt;
}

apply_result parse_bool(const std::string& v, bool& out);

apply_result parse_millis(const std::string& v, std::chrono::milliseconds& out, int64_t min,
                          int64_t max);

// A comma-separated list; items are trimmed and empty items dropped.
std::vector<std::string> split_list(const std::string& v);

// "name", "name:port", "[v6]" or "[v6]:port", lower-cased.
apply_result parse_host_list(const std::string& v, std::vector<std::string>& out);

// "http://name[:port]" or "https://...", lower-cased, no path.
apply_result parse_origin_list(const std::string& v, std::vector<std::string>& out);

}  // namespace tessera::config::parse
