#include "adapters/sandbox/worker/warm_pool.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tessera::sandbox_worker {

using std::chrono::milliseconds;

bool parse_smaps_rollup(std::string_view text, int64_t& uss_kib, int64_t& pss_kib) {
  int64_t pss = -1, clean = -1, dirty = -1;
  while (!text.empty()) {
    auto end = text.find('\n');
    auto line = std::string{text.substr(0, end)};
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    long long v = 0;
    if (std::sscanf(line.c_str(), "Pss: %lld kB", &v) == 1) pss = v;
    if (std::sscanf(line.c_str(), "Private_Clean: %lld kB", &v) == 1) clean = v;
    if (std::sscanf(line.c_str(), "Private_Dirty: %lld kB", &v) == 1) dirty = v;
  }
  if (pss < 0 || clean < 0 || dirty < 0) return false;
  pss_kib = pss;
  uss_kib = clean + dirty;
  return true;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

std::optional<warm_process> warm_pool::take(const std::string& key) {
  for (size_t i = 0; i < pool_.size(); ++i)
    if (pool_[i].key == key) {
      if (pool_[i].lent) {
        retire_at(i, "replaced");
        return std::nullopt;
      }
      auto w = std::move(pool_[i]);
      pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(i));
      return w;
    }
  return std::nullopt;
}

std::optional<warm_process> warm_pool::release(pid_t pid) {
  for (auto it = pool_.begin(); it != pool_.end(); ++it)
    if (it->lent && it->process.pid == pid) {
      auto w = std::move(*it);
      pool_.erase(it);
      return w;
    }
  return std::nullopt;
}

void warm_pool::touch(const std::vector<std::array<int64_t, 3>>& use) {
  if (use.empty()) return;
  auto now = wire::clock::now();
  for (auto& [pid, idle_ms, calls] : use)
    for (auto& w : pool_)
      if (w.lent && w.process.pid == pid) {
        w.last_used = now - milliseconds(idle_ms);
        w.calls = static_cast<int>(calls);
      }
  std::stable_sort(pool_.begin(), pool_.end(), [](const warm_process& a, const warm_process& b) {
    return a.last_used > b.last_used;
  });
}

void warm_pool::record(const warm_process& w, const char* reason) {
  retired_.push_back({w.key.substr(0, w.key.find('|')), reason, w.process.pid});
}

void warm_pool::put(warm_process w, size_t capacity) {
  pool_.insert(pool_.begin(), std::move(w));
  while (pool_.size() > capacity) retire_at(pool_.size() - 1, "evicted");
}

void warm_pool::retire(warm_process& w, const char* reason) {
  pool_.push_back(std::move(w));
  retire_at(pool_.size() - 1, reason);
}

std::optional<milliseconds> warm_pool::retire_idle(milliseconds idle) {
  auto now = wire::clock::now();
  std::optional<milliseconds> next;
  for (size_t i = pool_.size(); i-- > 0;) {
    if (pool_[i].lent) continue;
    if (now - pool_[i].last_used >= idle) {
      retire_at(i, "idle");
      continue;
    }
    auto due =
        std::chrono::duration_cast<milliseconds>(pool_[i].last_used + idle - now) + milliseconds(1);
    if (!next || due < *next) next = due;
  }
  return next;
}

int warm_pool::discard(const std::string& reuse_key) {
  int n = 0;
  for (size_t i = pool_.size(); i-- > 0;)
    if (pool_[i].key.compare(0, reuse_key.size(), reuse_key) == 0 &&
        pool_[i].key.size() > reuse_key.size() && pool_[i].key[reuse_key.size()] == '|') {
      retire_at(i, "discarded");
      ++n;
    }
  return n;
}

void warm_pool::clear() {
  while (!pool_.empty()) retire_at(pool_.size() - 1, "stopped");
}

nlohmann::json warm_pool::list() const {
  auto now = wire::clock::now();
  auto out = nlohmann::json::array();
  for (auto& w : pool_) {
    nlohmann::json j = {
        {"key", w.key.substr(0, w.key.find('|'))},
        {"pid", w.process.pid},
        {"calls", w.calls},
        {"idle_ms", std::chrono::duration_cast<milliseconds>(now - w.last_used).count()}};
    j["uss_kib"] = w.uss_kib >= 0 ? nlohmann::json(w.uss_kib) : nlohmann::json(nullptr);
    j["pss_kib"] = w.pss_kib >= 0 ? nlohmann::json(w.pss_kib) : nlohmann::json(nullptr);
    out.push_back(std::move(j));
  }
  return out;
}

nlohmann::json warm_pool::drain_retired() {
  auto out = std::move(retired_);
  retired_ = nlohmann::json::array();
  return out;
}

void warm_pool::retire_at(size_t i, const char* reason) {
  auto& w = pool_[i];
  if (w.process.request_fd >= 0) ::close(w.process.request_fd);
  if (w.process.result_fd >= 0) ::close(w.process.result_fd);
  kill_and_reap(w.process.pid);
  record(w, reason);
  pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(i));
}

}  // namespace tessera::sandbox_worker
