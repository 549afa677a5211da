#include "actors/storage/fields.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"

namespace tessera::storage {
namespace {

caf::error bad(const std::string& message) { return make_error(errc::invalid_argument, message); }

}  // namespace

caf::error read_text(const nlohmann::json& v, const char* field, std::string& out, size_t limit) {
  if (!v.is_string()) return bad(std::string{"field '"} + field + "' must be a string");
  auto text = v.get<std::string>();
  if (text.size() > limit)
    return bad(std::string{"field '"} + field + "' is longer than " + std::to_string(limit));
  out = std::move(text);
  return {};
}

caf::error read_storage_ids(const nlohmann::json& v, std::string_view owner,
                            std::vector<std::string>& out) {
  if (!v.is_array()) return bad("field 'storage_ids' must be an array of storage ids");
  if (v.size() > max_storage_ids)
    return bad("a " + std::string{owner} + " binds at most " + std::to_string(max_storage_ids) +
               " storages");
  std::vector<std::string> ids;
  for (auto& item : v) {
    if (!item.is_string() || !valid_storage_id(item.get<std::string>()))
      return bad("storage_ids must hold storage ids (1-128 characters of A-Z a-z 0-9 _ . -)");
    if (std::find(ids.begin(), ids.end(), item.get<std::string>()) != ids.end())
      return bad("storage id '" + item.get<std::string>() + "' is listed twice");
    ids.push_back(item.get<std::string>());
  }
  out = std::move(ids);
  return {};
}

caf::error check_allowed(const std::string& key, const std::vector<std::string>& allowed) {
  if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) return {};
  std::string list;
  for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  return bad("unknown field '" + key + "' (this request may set: " + list + ")");
}

caf::error read_flag(const nlohmann::json& v, const char* field, bool& out) {
  if (!v.is_boolean()) return bad(std::string{"field '"} + field + "' must be true or false");
  out = v.get<bool>();
  return {};
}

caf::error read_timeout(const nlohmann::json& v, int64_t& out_ms, const call_limits& limits) {
  if (v.is_null()) {
    out_ms = limits.default_timeout_ms;
    return {};
  }
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0)
    return bad("field 'timeout' must be a positive number of seconds");
  auto ms = static_cast<int64_t>(std::llround(v.get<double>() * 1000));
  if (ms < 1 || ms > limits.max_timeout_ms) {
    char max[32];
    std::snprintf(max, sizeof max, "%g", static_cast<double>(limits.max_timeout_ms) / 1000);
    return bad(std::string{"field 'timeout' must be at most "} + max +
               " seconds (sandbox.max_timeout_ms)");
  }
  out_ms = ms;
  return {};
}

}  // namespace tessera::storage
