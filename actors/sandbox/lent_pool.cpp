#include "actors/sandbox/lent_pool.hpp"

#include <unistd.h>

#include <algorithm>

namespace tessera::sandbox {

std::string lend_key(const call& c) {
  return c.reuse_key + '|' + std::to_string(c.timeout_ms) + '|' + std::to_string(c.memory_mb);
}

std::optional<lent_process> lent_from(const nlohmann::json& warm, const std::vector<int>& fds,
                                      sandbox_wire::clock::time_point now) {
  if (fds.size() != 2 || !warm.is_object() || !warm.value("lent", false)) return std::nullopt;
  lent_process l;
  l.pid = warm.value("pid", int64_t{0});
  l.calls = warm.value("calls", int64_t{1});
  l.uss_kib = warm.value("uss_kib", int64_t{-1});
  l.pss_kib = warm.value("pss_kib", int64_t{-1});
  l.request_fd = fds[0];
  l.result_fd = fds[1];
  l.last_used = now;
  return l;
}

lent_process* lent_pool::find(const std::string& key) {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : &it->second;
}

std::optional<int64_t> lent_pool::adopt(std::string key, lent_process p) {
  std::optional<int64_t> replaced;
  if (auto old = by_key_.find(key); old != by_key_.end()) {
    replaced = old->second.pid;
    drop(old);
  }
  by_key_.emplace(std::move(key), p);
  return replaced;
}

void lent_pool::drop(const std::string& key) {
  if (auto it = by_key_.find(key); it != by_key_.end()) drop(it);
}

void lent_pool::drop(std::map<std::string, lent_process>::iterator it) {
  ::close(it->second.request_fd);
  ::close(it->second.result_fd);
  by_key_.erase(it);
}

void lent_pool::forget_retired(const nlohmann::json& retired) {
  if (!retired.is_array()) return;
  for (auto& r : retired) {
    if (!r.is_array() || r.size() < 3 || !r[2].is_number_integer()) continue;
    auto pid = r[2].get<int64_t>();
    auto it = std::find_if(by_key_.begin(), by_key_.end(),
                           [pid](const auto& entry) { return entry.second.pid == pid; });
    if (it != by_key_.end()) drop(it);
  }
}

std::vector<int64_t> lent_pool::take_idle(sandbox_wire::clock::time_point now,
                                          std::chrono::milliseconds idle) {
  std::vector<int64_t> pids;
  for (auto it = by_key_.begin(); it != by_key_.end();) {
    auto next = std::next(it);
    if (now - it->second.last_used >= idle) {
      pids.push_back(it->second.pid);
      drop(it);
    }
    it = next;
  }
  return pids;
}

nlohmann::json lent_pool::use(sandbox_wire::clock::time_point now) const {
  auto out = nlohmann::json::array();
  for (auto& [_, l] : by_key_)
    out.push_back({l.pid,
                   std::chrono::duration_cast<std::chrono::milliseconds>(now - l.last_used).count(),
                   l.calls});
  return out;
}

void lent_pool::clear() {
  while (!by_key_.empty()) drop(by_key_.begin());
}

}  // namespace tessera::sandbox
