#include "actors/panel/panel_ops.hpp"

#include <nlohmann/json.hpp>

namespace tessera::panel {

using json = nlohmann::json;

std::string call_body(const panel_record& r, const snapshot& s, const std::string* action,
                      const std::string* payload) {
  // Storage data and the payload are JSON text already: spliced in, not re-encoded.
  auto storage = storage::storage_object(s);
  std::string body = "{\"panel\":" + metadata_json(r).dump() +
                     ",\"template\":" + json(r.template_).dump() + ",\"storage\":" + storage;
  if (action) {
    body += ",\"handler\":" + json(r.handler).dump() + ",\"action\":" + json(*action).dump() +
            ",\"payload\":" + (payload && !payload->empty() ? *payload : "{}");
  }
  return body + "}";
}

}  // namespace tessera::panel
