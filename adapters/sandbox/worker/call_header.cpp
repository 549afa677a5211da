#include "adapters/sandbox/worker/call_header.hpp"

#include <nlohmann/json.hpp>

namespace tessera::sandbox_worker {

bool parse_header(std::string_view text, call_header& out, std::string& problem) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string()) {
    problem = "request header must be a JSON object with a string 'kind'";
    return false;
  }
  out.kind = j["kind"].get<std::string>();
  auto number = [&](const char* key, auto& field) {
    if (auto it = j.find(key); it != j.end() && it->is_number_unsigned())
      field = it->get<std::decay_t<decltype(field)>>();
  };
  number("timeout_ms", out.timeout_ms);
  number("memory_mb", out.limits.memory_mb);
  number("max_output_bytes", out.limits.max_output_bytes);
  number("max_log_bytes", out.limits.max_log_bytes);
  number("max_log_lines", out.limits.max_log_lines);
  number("max_json_depth", out.limits.max_json_depth);
  if (auto it = j.find("reuse_key"); it != j.end() && it->is_string())
    out.reuse_key = it->get<std::string>();
  number("reuse_max_calls", out.reuse_max_calls);
  number("reuse_idle_ms", out.reuse_idle_ms);
  number("warm_processes", out.warm_processes);
  if (auto it = j.find("lend"); it != j.end() && it->is_boolean()) out.lend = it->get<bool>();
  if (auto it = j.find("lent_use"); it != j.end() && it->is_array())
    for (auto& u : *it)
      if (u.is_array() && u.size() == 3 && u[0].is_number_integer() && u[1].is_number_integer() &&
          u[2].is_number_integer())
        out.lent_use.push_back({u[0].get<int64_t>(), u[1].get<int64_t>(), u[2].get<int64_t>()});
  if (auto it = j.find("pid"); it != j.end() && it->is_number_integer())
    out.release_pid = it->get<int64_t>();
  if (auto it = j.find("reason"); it != j.end() && it->is_string())
    out.release_reason = it->get<std::string>();
  number("wait_ms", out.release_wait_ms);
  if (out.timeout_ms <= 0 || out.limits.memory_mb <= 0) {
    problem = "timeout_ms and memory_mb must be positive";
    return false;
  }
  return true;
}

}  // namespace tessera::sandbox_worker
