// A panel definition: validation of what clients send, the RocksDB record, the API views.
//
// Contract: the functions here are pure (no actors, no I/O). Validation errors are
// errc::invalid_argument with a message naming the field; nothing is changed on error.
#pragma once

#include <caf/expected.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/storage/fields.hpp"

namespace tessera::panel {

inline constexpr std::string_view key_prefix = "panel/";

struct panel_record {
  std::string id;
  std::string title;
  std::string desc;
  std::string icon;
  std::string size = "medium";
  std::vector<std::string> storage_ids;
  std::string template_;
  std::string handler;
  int64_t timeout_ms = 0;      // of each sandbox call (action, render)
  bool fresh_process = false;  // every call in a fresh process, even under sandbox.reuse=panel
  int64_t version = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

std::string panel_key(std::string_view id);

using panel_limits = storage::call_limits;

// A new panel from a POST body (`id` required; the rest defaults, `timeout` to
// limits.default_timeout_ms). Does not check the code.
caf::expected<panel_record> parse_new_panel(const nlohmann::json& body, const panel_limits& limits);

// Applies an update body to a copy of `current`. `allowed` lists the fields this route may
// change (PATCH: metadata, storage_ids and timeout; PUT template: template; PUT handler:
// handler).
caf::expected<panel_record> apply_update(const panel_record& current, const nlohmann::json& body,
                                         const std::vector<std::string>& allowed,
                                         const panel_limits& limits);

std::string encode(const panel_record& r);
// A record written before panels had `timeout` gets limits.default_timeout_ms.
std::optional<panel_record> decode(std::string_view value, const panel_limits& limits);

// The full API object, and the summary listed by GET /api/panels (both with `timeout` in
// seconds).
nlohmann::json to_json(const panel_record& r);
nlohmann::json summary_json(const panel_record& r);
// What templates see as `panel`, and what sandbox calls carry: the metadata without code.
nlohmann::json metadata_json(const panel_record& r);

}  // namespace tessera::panel
