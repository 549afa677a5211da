#include "actors/sandbox/supervisor.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

namespace tessera::sandbox {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

struct pending {
  call c;
  caf::typed_response_promise<call_result> promise;
  clock::time_point arrived;
  int64_t queue_wait_us = -1;  // arrival to a worker taking it; -1 while it waits
  bool answered = false;
};

// A warm call process on a slot's worker, as its last answer told (warm_pool.hpp).
struct warm_entry {
  int64_t pid = 0;
  int64_t calls = 0;
  int64_t uss_kib = -1;
  int64_t pss_kib = -1;
  clock::time_point last_used;
};

struct slot {
  caf::actor executor;
  std::map<std::string, warm_entry> warm;  // by reuse key
  std::string state = "starting";
  int64_t pid = 0;
  std::string reason;
  bool busy = false;
  std::shared_ptr<pending> current;  // the call on this slot's worker, answered at shutdown
  uint64_t calls = 0;
  uint64_t restarts = 0;
  bool started_once = false;
};

struct supervisor_state {
  supervisor_config cfg;
  std::vector<slot> slots;
  std::deque<pending> queue;
  bool ticking = false;
  bool stopping = false;
};

int64_t micros(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

class supervisor_logic {
 public:
  supervisor_logic(supervisor_actor::pointer self, std::shared_ptr<supervisor_state> st)
      : self_(self), st_(std::move(st)) {}

  void spawn_executor(size_t i) {
    auto& s = st_->slots[i];
    s.executor = self_->spawn<caf::detached>(executor, st_->cfg.executor, i,
                                             caf::actor_cast<caf::actor>(self_));
    s.state = "starting";
    s.busy = false;
    self_->monitor(s.executor);
  }

  void clamp(call& c) const {
    auto& cfg = st_->cfg;
    auto timeout = c.timeout_ms ? std::chrono::milliseconds(c.timeout_ms) : cfg.default_timeout;
    c.timeout_ms = static_cast<uint32_t>(std::min(timeout, cfg.max_timeout).count());
    c.memory_mb = std::min(c.memory_mb ? c.memory_mb : cfg.default_memory_mb, cfg.max_memory_mb);
  }

  void finish(pending& p, call_result r) {
    if (p.answered) return;
    p.answered = true;
    // A call answered without reaching a worker waited until now (a dispatched call's wait may
    // be 0 us; it must not count its run time as waiting).
    r.queue_wait_us = p.queue_wait_us >= 0 ? p.queue_wait_us : micros(clock::now() - p.arrived);
    if (auto* m = st_->cfg.executor.metrics) m->count_call(p.c.kind, r);
    p.promise.deliver(std::move(r));
  }

  bool all_crash_looping() const {
    for (auto& s : st_->slots)
      if (s.state != "crash_loop") return false;
    return !st_->slots.empty();
  }

  void enqueue(call c, caf::typed_response_promise<call_result> rp) {
    pending p{std::move(c), std::move(rp), clock::now()};
    clamp(p.c);
    if (st_->stopping)
      return finish(p, failed_result("unavailable", "SandboxUnavailable", "shutting down"));
    if (all_crash_looping())
      return finish(
          p, failed_result("unavailable", "SandboxUnavailable",
                           "every sandbox worker is crash-looping: " + st_->slots.front().reason));
    if (st_->queue.size() >= st_->cfg.queue_limit)
      return finish(p, failed_result("overloaded", "SandboxOverloaded",
                                     std::to_string(st_->queue.size()) +
                                         " calls are already waiting for a sandbox worker"));
    st_->queue.push_back(std::move(p));
    dispatch();
  }

  // The slot whose worker holds (or will hold) the warm process of calls with this key, so one
  // panel's calls find their process; calls without a key go to any slot.
  size_t home_slot(const std::string& key) const {
    return std::hash<std::string>{}(key) % st_->slots.size();
  }

  // The oldest queued call slot `i` should take: one without a key, one whose home is `i`, or
  // one whose home slot cannot serve now (starting or crash-looping).
  std::deque<pending>::iterator first_call_for(size_t i) {
    return std::find_if(st_->queue.begin(), st_->queue.end(), [&](const pending& p) {
      if (p.c.reuse_key.empty()) return true;
      size_t home = home_slot(p.c.reuse_key);
      return home == i || st_->slots[home].state != "idle";
    });
  }

  void dispatch() {
    expire();
    for (size_t i = 0; i < st_->slots.size() && !st_->queue.empty(); ++i) {
      auto& s = st_->slots[i];
      if (s.busy || s.state != "idle") continue;
      auto next = first_call_for(i);
      if (next == st_->queue.end()) continue;
      auto p = std::move(*next);
      st_->queue.erase(next);
      s.busy = true;
      ++s.calls;
      p.queue_wait_us = micros(clock::now() - p.arrived);
      auto timeout = std::chrono::milliseconds(p.c.timeout_ms) + st_->cfg.executor.answer_grace +
                     std::chrono::seconds(10);
      auto shared = std::make_shared<pending>(std::move(p));
      s.current = shared;
      self_->request(s.executor, timeout, run_atom::value, shared->c)
          .then([this, i, shared](call_result& r) { done(i, *shared, std::move(r)); },
                [this, i, shared](caf::error&) {
                  done(i, *shared,
                       failed_result("crashed", "SandboxError",
                                     "the sandbox executor did not answer"));
                });
    }
    publish();
    if (!st_->queue.empty() && !st_->ticking) {
      st_->ticking = true;
      self_->delayed_send(self_, 50ms, tick_atom::value);
    }
  }

  void done(size_t i, pending& p, call_result r) {
    if (i < st_->slots.size()) {
      st_->slots[i].busy = false;
      st_->slots[i].current.reset();
      if (!r.warm.empty()) track_warm(st_->slots[i], p.c, r.warm);
    }
    finish(p, std::move(r));
    dispatch();
  }

  // Answers calls that waited too long (the queue is in arrival order, so they are in front).
  void expire() {
    auto now = clock::now();
    bool hopeless = all_crash_looping();
    while (!st_->queue.empty() &&
           (hopeless || now - st_->queue.front().arrived > st_->cfg.queue_timeout)) {
      auto p = std::move(st_->queue.front());
      st_->queue.pop_front();
      finish(p, hopeless
                    ? failed_result("unavailable", "SandboxUnavailable",
                                    "every sandbox worker is crash-looping")
                    : failed_result("timeout", "TimeoutError",
                                    "no sandbox worker was free within " +
                                        std::to_string(st_->cfg.queue_timeout.count()) + " ms"));
    }
  }

  void on_tick() {
    st_->ticking = false;
    dispatch();
  }

  void on_event(size_t i, std::string state, int64_t pid, std::string reason) {
    if (i >= st_->slots.size()) return;
    auto& s = st_->slots[i];
    if (state == "starting") {
      if (s.started_once) ++s.restarts;  // every start after the first replaces a worker
      s.started_once = true;
      s.warm.clear();  // they died with their worker
      publish_warm();
    }
    s.state = std::move(state);
    s.pid = pid;
    if (!reason.empty()) s.reason = std::move(reason);  // the last failure, kept once healed
    dispatch();
  }

  void publish() {
    auto* m = st_->cfg.executor.metrics;
    if (!m) return;
    std::map<std::string, int> by_state;
    for (auto& s : st_->slots) ++by_state[s.busy ? "busy" : s.state];
    m->set_workers(by_state);
    m->set_queue_depth(st_->queue.size());
  }

  // The warm processes a call's answer reports: the one that ran it (kept or not), and the
  // ones its worker retired since its last answer.
  void track_warm(slot& s, const call& c, const std::string& text) {
    auto w = nlohmann::json::parse(text, nullptr, false);
    if (!w.is_object()) return;
    auto* m = st_->cfg.executor.metrics;
    auto number = [&](const char* key) {
      auto it = w.find(key);
      return it != w.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{-1};
    };
    if (!c.reuse_key.empty() && c.kind != call_kind::discard) {
      if (w.value("kept", false)) {
        auto& e = s.warm[c.reuse_key];
        e = {number("pid"), number("calls"), number("uss_kib"), number("pss_kib"), clock::now()};
      } else {
        s.warm.erase(c.reuse_key);
        if (m) m->count_warm_discarded(discard_reason(w));
      }
    }
    forget_retired(s, w.value("retired", nlohmann::json::array()));
  }

  // Warm processes a worker retired: [[reuse_key, reason, pid], ...].
  void forget_retired(slot& s, const nlohmann::json& retired) {
    auto* m = st_->cfg.executor.metrics;
    if (retired.is_array())
      for (auto& r : retired)
        if (r.is_array() && r.size() >= 2 && r[0].is_string() && r[1].is_string()) {
          // A record names the process's pid: the key may already have a newer process.
          auto it = s.warm.find(r[0].get<std::string>());
          bool same = r.size() < 3 || !r[2].is_number_integer() ||
                      (it != s.warm.end() && it->second.pid == r[2].get<int64_t>());
          if (it != s.warm.end() && same) s.warm.erase(it);
          if (m) m->count_warm_discarded(r[1].get<std::string>());
        }
    publish_warm();
  }

  void on_retired(size_t i, const std::string& text) {
    if (i < st_->slots.size())
      forget_retired(st_->slots[i], nlohmann::json::parse(text, nullptr, false));
  }

  static std::string discard_reason(const nlohmann::json& w) {
    auto text = w.value("discarded", std::string{"the call failed"});
    if (text == "the call failed") return "failed";
    if (text.find("CPU budget") != std::string::npos) return "cpu_budget";
    return "state_changed";
  }

  void publish_warm() {
    auto* m = st_->cfg.executor.metrics;
    if (!m) return;
    size_t n = 0;
    int64_t kib = 0;
    for (auto& s : st_->slots)
      for (auto& [_, e] : s.warm) {
        ++n;
        kib += std::max<int64_t>(0, e.uss_kib);
      }
    m->set_warm(n, kib);
  }

  std::string status() const {
    nlohmann::json warm = nlohmann::json::array();
    auto now = clock::now();
    auto idle_limit = std::chrono::milliseconds(st_->cfg.executor.reuse_idle_ms);
    for (size_t i = 0; i < st_->slots.size(); ++i)
      for (auto& [key, e] : st_->slots[i].warm) {
        if (now - e.last_used >= idle_limit) continue;  // retired by now
        auto opt = [](int64_t v) { return v >= 0 ? nlohmann::json(v) : nlohmann::json(nullptr); };
        warm.push_back({{"slot", i},
                        {"key", key},
                        {"pid", e.pid},
                        {"calls", e.calls},
                        {"idle_ms", micros(now - e.last_used) / 1000},
                        {"uss_kib", opt(e.uss_kib)},
                        {"pss_kib", opt(e.pss_kib)}});
      }
    nlohmann::json workers = nlohmann::json::array();
    for (size_t i = 0; i < st_->slots.size(); ++i) {
      auto& s = st_->slots[i];
      workers.push_back({{"slot", i},
                         {"state", s.busy ? "busy" : s.state},
                         {"pid", s.pid},
                         {"calls", s.calls},
                         {"restarts", s.restarts},
                         {"last_error", s.reason}});
    }
    return nlohmann::json{{"workers", workers}, {"queued", st_->queue.size()}, {"warm", warm}}
        .dump();
  }

  void on_down(const caf::down_msg& msg) {
    for (size_t i = 0; i < st_->slots.size(); ++i)
      if (st_->slots[i].executor.address() == msg.source && !st_->stopping) {
        spawn_executor(i);
        return;
      }
  }

  void stop() {
    st_->stopping = true;
    for (auto& s : st_->slots) {
      caf::anon_send(s.executor, stop_atom::value);
      if (s.current)
        finish(*s.current,
               failed_result("unavailable", "SandboxUnavailable", "shutting down during the call"));
    }
    while (!st_->queue.empty()) {
      auto p = std::move(st_->queue.front());
      st_->queue.pop_front();
      finish(p, failed_result("unavailable", "SandboxUnavailable", "shutting down"));
    }
  }

 private:
  supervisor_actor::pointer self_;
  std::shared_ptr<supervisor_state> st_;
};

}  // namespace

supervisor_actor::behavior_type sandbox_supervisor(supervisor_actor::pointer self,
                                                   supervisor_config cfg) {
  auto st = std::make_shared<supervisor_state>();
  st->cfg = std::move(cfg);
  st->slots.resize(std::max<size_t>(1, st->cfg.workers));
  auto logic = std::make_shared<supervisor_logic>(self, st);
  for (size_t i = 0; i < st->slots.size(); ++i) logic->spawn_executor(i);
  self->set_down_handler([logic](caf::down_msg& msg) { logic->on_down(msg); });
  self->set_exit_handler([self, logic](caf::exit_msg& msg) {
    logic->stop();
    self->quit(msg.reason);
  });
  return {
      [self, logic](run_atom, call& c) -> caf::result<call_result> {
        auto rp = self->make_response_promise<call_result>();
        logic->enqueue(std::move(c), rp);
        return rp;
      },
      [logic](status_atom) { return logic->status(); },
      [logic](worker_atom, size_t slot, std::string& state, int64_t pid, std::string& reason) {
        logic->on_event(slot, std::move(state), pid, std::move(reason));
      },
      [logic](warm_atom, size_t slot, std::string& retired) { logic->on_retired(slot, retired); },
      [logic](tick_atom) { logic->on_tick(); },
  };
}

supervisor_config supervisor_config::from_settings(const config::settings& s) {
  supervisor_config c;
  // Two per core: a call spends much of its time in wake-ups and pipe hops, not on a core, and
  // one slot serves its keys' calls one at a time (bench/README.md, 2026-12-03 late: 16 panels
  // 1,577 -> 2,032 actions/s from one to two per core; ~22 MiB PSS per worker).
  c.workers =
      s.sandbox_workers ? s.sandbox_workers : 2 * std::max(1u, std::thread::hardware_concurrency());
  if (!s.sandbox_executable.empty()) {
    c.executor.spawn.executable = s.sandbox_executable;
  } else {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    c.executor.spawn.executable =
        (ec ? std::filesystem::path{"."} : self.parent_path()) / "tessera-sandbox";
  }
  c.executor.spawn.level = s.sandbox_isolation == "process"  ? adapters::isolation::process
                           : s.sandbox_isolation == "gvisor" ? adapters::isolation::gvisor
                                                             : adapters::isolation::bwrap;
  c.executor.spawn.network = s.sandbox_network;
  c.executor.spawn.scratch_bytes = s.sandbox_scratch_bytes;
  c.executor.max_output_bytes = s.sandbox_max_output_bytes;
  c.executor.max_log_bytes = s.sandbox_max_log_bytes;
  c.executor.max_json_depth = s.max_json_depth;
  c.executor.reuse = s.sandbox_reuse == "panel";
  c.executor.reuse_max_calls = s.sandbox_reuse_max_calls;
  c.executor.reuse_idle_ms = static_cast<uint32_t>(s.sandbox_reuse_idle.count());
  c.executor.warm_processes = static_cast<uint32_t>((s.sandbox_warm_processes + c.workers - 1) /
                                                    std::max<size_t>(1, c.workers));
  c.default_timeout = s.sandbox_timeout;
  c.max_timeout = s.sandbox_max_timeout;
  c.default_memory_mb = s.sandbox_memory_mb;
  c.max_memory_mb = s.sandbox_max_memory_mb;
  c.queue_limit = s.sandbox_queue_limit;
  c.queue_timeout = s.sandbox_queue_timeout;
  return c;
}

}  // namespace tessera::sandbox
