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
  int64_t version = 0;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

std::string panel_key(std::string_view id);

// A new panel from a POST body (`id` required; the rest defaults). Does not check the code.
caf::expected<panel_record> parse_new_panel(const nlohmann::json& body);

// Applies an update body to a copy of `current`. `allowed` lists the fields this route may
// change (PATCH: metadata and storage_ids; PUT template: template; PUT handler: handler).
caf::expected<panel_record> apply_update(const panel_record& current, const nlohmann::json& body,
                                         const std::vector<std::string>& allowed);

std::string encode(const panel_record& r);
std::optional<panel_record> decode(std::string_view value);

// The full API object, and the summary listed by GET /api/panels.
nlohmann::json to_json(const panel_record& r);
nlohmann::json summary_json(const panel_record& r);
// What templates see as `panel`, and what sandbox calls carry: the metadata without code.
nlohmann::json metadata_json(const panel_record& r);

}  // namespace tessera::panel
