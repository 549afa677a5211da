// Reading the fields that panel and task definitions share, from untrusted JSON.
//
// Contract: pure; a bad value is errc::invalid_argument with a message naming the field, and
// `out` is left unchanged.
#pragma once

#include <caf/error.hpp>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "config/settings.hpp"

namespace tessera::storage {

inline constexpr size_t max_text = 1024;       // names, titles, expressions
inline constexpr size_t max_storage_ids = 64;  // storages one panel or task may bind

// A string of at most `limit` bytes.
caf::error read_text(const nlohmann::json& v, const char* field, std::string& out,
                     size_t limit = max_text);

// true or false.
caf::error read_flag(const nlohmann::json& v, const char* field, bool& out);

// An array of distinct valid storage ids; `owner` ("panel", "task") names the binder.
caf::error read_storage_ids(const nlohmann::json& v, std::string_view owner,
                            std::vector<std::string>& out);

// Whether an update may set `key`: `allowed` lists the fields of the route (the error names
// them).
caf::error check_allowed(const std::string& key, const std::vector<std::string>& allowed);

// The sandbox time limits a panel or task may choose from (sandbox.timeout_ms and
// sandbox.max_timeout_ms).
struct call_limits {
  int64_t default_timeout_ms = 0;
  int64_t max_timeout_ms = 0;

  static call_limits from_settings(const config::settings& s) {
    return {s.sandbox_timeout.count(), s.sandbox_max_timeout.count()};
  }
};

// `timeout`: a positive number of seconds up to limits.max_timeout_ms, stored in ms; null
// means limits.default_timeout_ms.
caf::error read_timeout(const nlohmann::json& v, int64_t& out_ms, const call_limits& limits);

}  // namespace tessera::storage
