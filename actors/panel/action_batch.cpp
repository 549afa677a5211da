#include "actors/panel/action_batch.hpp"

namespace tessera::panel {

using json = nlohmann::json;

std::string batch_body(const panel_record& r, const storage::snapshot& s,
                       const std::vector<queued_action>& actions) {
  std::string body = "{\"panel\":" + metadata_json(r).dump() +
                     ",\"template\":" + json(r.template_).dump() +
                     ",\"storage\":" + storage::storage_object(s) +
                     ",\"handler\":" + json(r.handler).dump() + ",\"actions\":[";
  for (size_t i = 0; i < actions.size(); ++i) {
    if (i) body += ',';
    body += "{\"action\":" + json(actions[i].name).dump() + ",\"payload\":" +
            (actions[i].payload.empty() ? std::string{"{}"} : actions[i].payload) + '}';
  }
  return body + "]}";
}

std::optional<std::vector<action_outcome>> split_batch(const json& answer, size_t n,
                                                       const storage::snapshot& bound) {
  auto results = answer.find("results");
  if (results == answer.end() || !results->is_array() || results->size() != n) return {};
  std::vector<action_outcome> out;
  for (auto& r : *results) {
    if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) return {};
    action_outcome o;
    o.ok = r["ok"].get<bool>();
    if (auto logs = r.find("logs"); logs != r.end() && logs->is_array()) o.logs = *logs;
    if (o.ok) {
      if (auto changed = r.find("changed"); changed != r.end() && changed->is_array())
        for (auto& id : *changed)
          if (id.is_string() && bound.count(id.get<std::string>())) o.changed.push_back(id);
    } else {
      auto error = r.find("error");
      if (error == r.end() || !error->is_object()) return {};
      o.failure = json{{"ok", false}, {"error", *error}, {"logs", o.logs}}.dump();
    }
    out.push_back(std::move(o));
  }
  return out;
}

std::string action_reply(int64_t version, json changed, json logs, const json& answer) {
  json reply = {{"success", true},
                {"version", version},
                {"changed", std::move(changed)},
                {"logs", std::move(logs)}};
  auto html = answer.find("html");
  if (html != answer.end() && html->is_string()) {
    reply["html"] = *html;
  } else {
    reply["html"] = nullptr;
    if (auto e = answer.find("render_error"); e != answer.end()) reply["render_error"] = *e;
  }
  return reply.dump();
}

}  // namespace tessera::panel
