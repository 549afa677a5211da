#include "actors/panel/panel_codec.hpp"

#include <algorithm>

#include "actors/storage/fields.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::panel {
namespace {

using storage::read_storage_ids;
using storage::read_text;

caf::error bad(const std::string& message) { return make_error(errc::invalid_argument, message); }

caf::error set_field(panel_record& r, const std::string& key, const nlohmann::json& v,
                     const panel_limits& limits) {
  if (key == "title") return read_text(v, "title", r.title);
  if (key == "desc") return read_text(v, "desc", r.desc, 16 * 1024);
  if (key == "icon") return read_text(v, "icon", r.icon);
  if (key == "size") return read_text(v, "size", r.size);
  if (key == "storage_ids") return read_storage_ids(v, "panel", r.storage_ids);
  if (key == "template") return read_text(v, "template", r.template_, SIZE_MAX);
  if (key == "handler") return read_text(v, "handler", r.handler, SIZE_MAX);
  if (key == "timeout") return storage::read_timeout(v, r.timeout_ms, limits);
  if (key == "fresh_process") return storage::read_flag(v, "fresh_process", r.fresh_process);
  return bad("unknown field '" + key + "'");
}

}  // namespace

std::string panel_key(std::string_view id) { return std::string{key_prefix} + std::string{id}; }

caf::expected<panel_record> parse_new_panel(const nlohmann::json& body,
                                            const panel_limits& limits) {
  if (!body.is_object()) return bad("body must be a JSON object");
  auto id = body.find("id");
  if (id == body.end() || !id->is_string() || !storage::valid_storage_id(id->get<std::string>()))
    return bad("field 'id' must be a panel id: 1-128 characters of A-Z a-z 0-9 _ . -");
  panel_record r;
  r.id = id->get<std::string>();
  r.title = r.id;
  r.timeout_ms = limits.default_timeout_ms;
  for (auto& [key, value] : body.items()) {
    if (key == "id") continue;
    if (auto err = set_field(r, key, value, limits)) return err;
  }
  return r;
}

caf::expected<panel_record> apply_update(const panel_record& current, const nlohmann::json& body,
                                         const std::vector<std::string>& allowed,
                                         const panel_limits& limits) {
  if (!body.is_object()) return bad("body must be a JSON object");
  auto next = current;
  for (auto& [key, value] : body.items()) {
    if (auto err = storage::check_allowed(key, allowed)) return err;
    if (auto err = set_field(next, key, value, limits)) return err;
  }
  return next;
}

nlohmann::json metadata_json(const panel_record& r) {
  return {{"id", r.id},     {"title", r.title}, {"desc", r.desc},
          {"icon", r.icon}, {"size", r.size},   {"storage_ids", r.storage_ids}};
}

nlohmann::json summary_json(const panel_record& r) {
  auto j = metadata_json(r);
  j["timeout"] = static_cast<double>(r.timeout_ms) / 1000;
  j["fresh_process"] = r.fresh_process;
  j["version"] = r.version;
  j["created_at"] = runtime::iso8601(r.created_at);
  j["updated_at"] = runtime::iso8601(r.updated_at);
  return j;
}

nlohmann::json to_json(const panel_record& r) {
  auto j = summary_json(r);
  j["template"] = r.template_;
  j["handler"] = r.handler;
  return j;
}

std::string encode(const panel_record& r) {
  auto j = metadata_json(r);
  j["template"] = r.template_;
  j["handler"] = r.handler;
  j["timeout_ms"] = r.timeout_ms;
  j["fresh_process"] = r.fresh_process;
  j["version"] = r.version;
  j["created_at"] = r.created_at;  // ms since the epoch on disk; ISO-8601 in the API
  j["updated_at"] = r.updated_at;
  return j.dump();
}

std::optional<panel_record> decode(std::string_view value, const panel_limits& limits) {
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    panel_record r;
    r.id = j.at("id").get<std::string>();
    r.title = j.at("title").get<std::string>();
    r.desc = j.at("desc").get<std::string>();
    r.icon = j.at("icon").get<std::string>();
    r.size = j.at("size").get<std::string>();
    r.storage_ids = j.at("storage_ids").get<std::vector<std::string>>();
    r.template_ = j.at("template").get<std::string>();
    r.handler = j.at("handler").get<std::string>();
    r.timeout_ms = j.value("timeout_ms", limits.default_timeout_ms);
    r.fresh_process = j.value("fresh_process", false);
    r.version = j.at("version").get<int64_t>();
    r.created_at = j.at("created_at").get<int64_t>();
    r.updated_at = j.at("updated_at").get<int64_t>();
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

}  // namespace tessera::panel
