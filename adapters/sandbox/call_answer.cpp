#include "adapters/sandbox/call_answer.hpp"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace tessera::sandbox_wire {

std::optional<call_answer> split_answer(std::string& frame) {
  auto nul = frame.rfind('\0');
  if (nul == std::string::npos || nul == 0) return std::nullopt;
  call_answer a;
  int fresh = 0, keep = 0, used = 0;
  long long cpu = 0, faults = 0, check = 0, uss = -1, pss = -1;
  if (std::sscanf(frame.c_str() + nul + 1, "%d %lld %lld %d %lld %lld %lld %n", &fresh, &cpu,
                  &faults, &keep, &check, &uss, &pss, &used) != 7)
    return std::nullopt;
  a.spoiled = frame.substr(nul + 1 + static_cast<size_t>(used));
  frame.resize(nul);
  if (frame.front() != '{' || frame.back() != '}' || !nlohmann::json::accept(frame))
    return std::nullopt;
  a.json = std::move(frame);
  a.fresh = fresh == 1;
  a.cpu_us = cpu;
  a.faults = faults;
  a.keep = keep == 1;
  a.check_us = check;
  a.uss_kib = uss;
  a.pss_kib = pss;
  return a;
}

size_t max_answer_bytes(size_t max_output_bytes, size_t max_log_bytes, size_t max_log_lines) {
  return 2 * max_output_bytes + 2 * max_log_bytes + 64 * max_log_lines + (64 << 10);
}

std::string error_json(std::string_view kind, std::string_view type, const std::string& message) {
  nlohmann::json j = {{"ok", false},
                      {"error", {{"kind", kind}, {"type", type}, {"message", message}}},
                      {"logs", nlohmann::json::array()}};
  return j.dump();
}

std::string timeout_error(int timeout_ms) {
  return error_json(
      "timeout", "TimeoutError",
      "the call did not finish within its timeout of " + std::to_string(timeout_ms) + " ms");
}

std::string output_limit_error(size_t max_answer) {
  return error_json("output_limit", "ValueError",
                    "the call's answer exceeded " + std::to_string(max_answer) + " bytes");
}

void close_answer(std::string& answer, const call_report& r) {
  if (answer.empty() || answer.back() != '}') return;
  answer.pop_back();
  auto n = [](int64_t v) { return std::to_string(v); };
  answer += R"(,"zygote_us":{"fork":)" + n(r.fork_us) + R"(,"call":)" + n(r.call_us) +
            R"(},"process":{"cpu_us":)" + n(r.cpu_us) + R"(,"minor_faults":)" + n(r.faults) +
            R"(,"compiled":)" + (r.compiled ? "true" : "false") + R"(},"warm":{"reused":)" +
            (r.reused ? "true" : "false") + R"(,"calls":)" + n(r.calls) + R"(,"kept":)" +
            (r.kept ? "true" : "false") + R"(,"check_us":)" + n(r.check_us);
  if (!r.discarded.empty()) answer += R"(,"discarded":)" + nlohmann::json(r.discarded).dump();
  if (r.pid >= 0) answer += R"(,"pid":)" + n(r.pid);
  if (r.uss_kib >= 0) answer += R"(,"uss_kib":)" + n(r.uss_kib) + R"(,"pss_kib":)" + n(r.pss_kib);
  if (r.lent) answer += R"(,"lent":true)";
  if (!r.retired_json.empty() && r.retired_json != "[]")
    answer += R"(,"retired":)" + r.retired_json;
  answer += "}}";
}

}  // namespace tessera::sandbox_wire
