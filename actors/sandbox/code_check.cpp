#include "actors/sandbox/code_check.hpp"

#include <nlohmann/json.hpp>

namespace tessera::sandbox {

std::string check_body(const code& c) {
  auto body = nlohmann::json::object();
  if (!c.template_source.empty()) body["template"] = c.template_source;
  if (!c.handler.empty()) {
    body["handler"] = c.handler;
    body["require"] = c.require;
  }
  return body.empty() ? std::string{} : body.dump();
}

}  // namespace tessera::sandbox
