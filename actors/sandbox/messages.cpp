#include "actors/sandbox/messages.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/all.hpp>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>

namespace tessera::sandbox {
namespace {
constexpr std::string_view kind_names[] = {"action", "schedule", "render",
                                           "init",   "check",    "discard"};
}

std::string_view to_string(call_kind k) { return kind_names[static_cast<size_t>(k)]; }

std::string reuse_key(std::string_view owner, std::string_view handler,
                      std::string_view template_source) {
  // Only this server compares keys, so std::hash (stable within one process) is enough; a
  // collision would only share a process between two versions of the same owner's code.
  char hashes[40];
  std::snprintf(hashes, sizeof hashes, ":%016zx%016zx", std::hash<std::string_view>{}(handler),
                std::hash<std::string_view>{}(template_source));
  return std::string{owner} + hashes;
}

std::optional<call_kind> parse_call_kind(std::string_view text) {
  for (size_t i = 0; i < std::size(kind_names); ++i)
    if (kind_names[i] == text) return static_cast<call_kind>(i);
  return std::nullopt;
}

void discard_warm(const sandbox_actor& sandbox, std::string key) {
  if (!sandbox || key.empty()) return;
  caf::anon_send(sandbox, run_atom::value, call{call_kind::discard, "{}", 0, 0, std::move(key)});
}

bool is_ok(const call_result& r) { return r.outcome == "ok"; }

call_result failed_result(std::string_view kind, std::string_view type,
                          const std::string& message) {
  nlohmann::json j = {{"ok", false},
                      {"error", {{"kind", kind}, {"type", type}, {"message", message}}},
                      {"logs", nlohmann::json::array()}};
  return {std::string{kind}, j.dump(), 0, 0, {}};
}

std::string error_kind(std::string_view answer) {
  auto parsed = nlohmann::json::parse(answer, nullptr, false);
  if (parsed.is_object())
    if (auto e = parsed.find("error"); e != parsed.end() && e->is_object())
      if (auto k = e->find("kind"); k != e->end() && k->is_string()) return k->get<std::string>();
  return "handler_error";
}

void add_sandbox_messages(caf::actor_system_config& cfg) {
  cfg.add_message_type<call>("sandbox_call");
  cfg.add_message_type<call_result>("sandbox_result");
}

}  // namespace tessera::sandbox
