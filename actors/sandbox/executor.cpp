#include "actors/sandbox/executor.hpp"

#include <unistd.h>

#include <caf/all.hpp>
#include <map>
#include <nlohmann/json.hpp>

#include "actors/sandbox/lent_pool.hpp"
#include "adapters/error.hpp"
#include "adapters/sandbox/call_answer.hpp"
#include "runtime/log.hpp"

namespace tessera::sandbox {
namespace {

namespace wire = tessera::sandbox_wire;
using wire::micros;
using namespace std::chrono_literals;

constexpr int crash_loop_after = 5;
constexpr auto liveness_check = 250ms;
constexpr size_t max_log_lines = 1000;  // the worker's limit (python_host.hpp, call_limits)
constexpr auto release_timeout = 5s;    // the zygote ends a released process within this

nlohmann::json header_of(const call& c, const executor_config& cfg) {
  nlohmann::json header = {
      {"kind", to_string(c.kind)},          {"timeout_ms", c.timeout_ms},
      {"memory_mb", c.memory_mb},           {"max_output_bytes", cfg.max_output_bytes},
      {"max_log_bytes", cfg.max_log_bytes}, {"max_json_depth", cfg.max_json_depth}};
  if (cfg.reuse && !c.reuse_key.empty()) {
    header["reuse_key"] = c.reuse_key;
    header["reuse_max_calls"] = cfg.reuse_max_calls;
    header["reuse_idle_ms"] = cfg.reuse_idle_ms;
    header["warm_processes"] = cfg.warm_processes;
  }
  return header;
}

std::string framed(const nlohmann::json& header, const std::string& body) {
  auto out = header.dump();
  out += '\n';
  out += body;
  return out;
}

std::chrono::milliseconds backoff(int failures) {
  if (failures <= 1) return 0ms;
  return std::min<std::chrono::milliseconds>(100ms * (1 << std::min(failures - 2, 7)), 10s);
}

class slot_runner {
 public:
  slot_runner(caf::blocking_actor* self, executor_config cfg, size_t slot, caf::actor sup)
      : self_(self), cfg_(std::move(cfg)), slot_(slot), supervisor_(std::move(sup)) {}

  void run() {
    while (!stopping_) {
      if (!worker_ && !start_worker()) continue;
      self_->receive(
          [&](run_atom, call& c) {
            self_->make_response_promise().deliver(execute(c));
            retire_idle_lent();
          },
          [&](stop_atom) { stopping_ = true; },
          caf::after(liveness_check) >>
              [&] {
                check_worker();
                retire_idle_lent();
              });
    }
    lent_.clear();
    worker_.reset();
  }

 private:
  void report(const char* state, const std::string& reason = {}) {
    int64_t pid = worker_ ? worker_->pid() : 0;
    caf::anon_send(supervisor_, worker_atom::value, slot_, std::string{state}, pid, reason);
  }

  void restart(const std::string& reason, const std::string& why) {
    if (cfg_.metrics) cfg_.metrics->count_restart(reason);
    runtime::log_error("sandbox worker " + std::to_string(slot_) + " replaced (" + reason +
                       "): " + why);
    lent_.clear();  // they die with their zygote
    worker_.reset();
    if (served_since_start_)
      failures_ = 1;
    else
      ++failures_;
  }

  // Starts a worker, or waits out a back-off; false when no worker is serving yet.
  bool start_worker() {
    if (auto delay = backoff(failures_); delay > 0ms) {
      report(failures_ >= crash_loop_after ? "crash_loop" : "backoff", last_error_);
      if (failures_ == crash_loop_after)
        runtime::log_error("sandbox worker " + std::to_string(slot_) +
                           " is crash-looping; retrying every " +
                           std::to_string(backoff(failures_ + 1).count()) + " ms: " + last_error_);
      wait(delay);
      if (stopping_) return false;
    }
    report("starting", last_error_);
    auto started = adapters::worker_process::start(cfg_.spawn);
    if (!started) {
      last_error_ = detail_of(started.error());
      restart("start_failed", last_error_);
      return false;
    }
    worker_ = std::move(*started);
    served_since_start_ = false;
    report("idle");
    return true;
  }

  // Sleeps for `delay` while answering calls with `unavailable` and honouring stop.
  void wait(std::chrono::milliseconds delay) {
    auto until = std::chrono::steady_clock::now() + delay;
    while (!stopping_) {
      auto left = until - std::chrono::steady_clock::now();
      if (left <= 0ms) return;
      self_->receive(
          [&](run_atom, call&) {
            self_->make_response_promise().deliver(
                failed_result("unavailable", "SandboxUnavailable",
                              "no sandbox worker is running: " + last_error_));
          },
          [&](stop_atom) { stopping_ = true; },
          caf::after(std::chrono::duration_cast<std::chrono::milliseconds>(left)) >> [] {});
    }
  }

  // Notices a worker that died while idle, so it is replaced before a call needs it.
  void check_worker() {
    if (worker_ && !worker_->alive()) {
      last_error_ = "the worker process exited while idle (" + worker_->exit_description() + ")";
      restart("crashed", last_error_);
    }
  }

  // Sends `payload`, replacing a worker that turns out to be dead first (the call never ran on
  // it, so it is safe to send again).
  wire::status send(const std::string& payload) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      check_worker();
      if (!worker_ && !start_worker()) return wire::status::closed;
      if (worker_->send(payload) == wire::status::ok) return wire::status::ok;
      worker_->kill();
      last_error_ = "the worker process was gone (" + worker_->exit_description() + ")";
      restart("crashed", last_error_);
    }
    return wire::status::closed;
  }

  call_result execute(const call& c) {
    auto started = wire::clock::now();
    bool reusable = cfg_.reuse && !c.reuse_key.empty() && c.kind != call_kind::discard;
    if (reusable) {
      auto key = lend_key(c);
      if (auto* l = lent_.find(key))
        if (auto direct = call_lent(key, *l, c)) return finish(std::move(*direct), started);
    }
    auto header = header_of(c, cfg_);
    if (reusable && worker_ && worker_->can_lend()) {
      header["lend"] = true;
      if (!lent_.empty()) header["lent_use"] = lent_.use(wire::clock::now());
    }
    if (send(framed(header, c.body)) != wire::status::ok)
      return failed_result("unavailable", "SandboxUnavailable",
                           "no sandbox worker is running: " + last_error_);
    std::string answer;
    auto deadline = started + std::chrono::milliseconds(c.timeout_ms) + cfg_.answer_grace;
    auto got = worker_->receive(answer, deadline);
    auto fds = worker_->take_fds();
    call_result result;
    if (got == wire::status::ok) {
      if (auto parsed = read_answer(std::move(answer))) {
        result = std::move(*parsed);
        served_since_start_ = true;
        failures_ = 0;
        adopt_lent(c, result, fds);
      } else {
        last_error_ = "the worker sent an answer that is not a response object";
        restart("protocol", last_error_);
        result = failed_result("crashed", "SandboxError", last_error_);
      }
    } else if (got == wire::status::timed_out) {
      last_error_ = "the worker did not answer within the call's timeout";
      restart("hung", last_error_);
      result = failed_result(
          "timeout", "TimeoutError",
          "the call did not finish within its timeout of " + std::to_string(c.timeout_ms) + " ms");
    } else {
      worker_->kill();
      last_error_ = "the worker process died during the call (" + worker_->exit_description() + ")";
      restart("crashed", last_error_);
      result = failed_result("crashed", "SandboxError", last_error_);
    }
    for (int fd : fds) ::close(fd);  // none left unless the answer did not lend them
    return finish(std::move(result), started);
  }

  call_result finish(call_result result, wire::clock::time_point started) {
    result.run_us = micros(wire::clock::now() - started);
    if (!retired_.empty()) {  // retirements the zygote told of outside a call's answer
      auto warm = nlohmann::json::parse(result.warm.empty() ? "{}" : result.warm, nullptr, false);
      if (warm.is_object()) {
        auto& list = warm["retired"];
        if (!list.is_array()) list = nlohmann::json::array();
        for (auto& r : retired_) list.push_back(std::move(r));
        result.warm = warm.dump();
      }
      retired_ = nlohmann::json::array();
    }
    if (worker_) report("idle");
    return result;
  }

  // --- lent warm processes -------------------------------------------------------------------
  // The zygote lends a process that stays warm (its answer says "lent" and carries its two
  // pipes); the key's next calls go to it directly, without the zygote's relay. The executor
  // validates its answers as the zygote would, and gives it back ("release") when it may not
  // serve again; the zygote ends it, and says how it ended when it did not answer.

  // Takes the pipes an answer carried, when the zygote lent the process that ran the call, and
  // forgets the lent processes the zygote says it retired.
  void adopt_lent(const call& c, const call_result& result, std::vector<int>& fds) {
    if (result.warm.empty()) return;
    auto warm = nlohmann::json::parse(result.warm, nullptr, false);
    if (!warm.is_object()) return;
    lent_.forget_retired(warm.value("retired", nlohmann::json::array()));
    auto l = lent_from(warm, fds, wire::clock::now());
    if (!l) return;
    fds.clear();                                       // the pool owns them now
    if (auto replaced = lent_.adopt(lend_key(c), *l))  // not expected: give it back
      release(*replaced, "replaced", c);
  }

  // Runs `c` on its lent process; nullopt when the process was gone before it saw the call
  // (the caller then runs it through the zygote).
  std::optional<call_result> call_lent(const std::string& key, lent_process& kept, const call& c) {
    auto l = kept;  // `kept` goes when the pool drops it
    auto sent_at = wire::clock::now();
    if (wire::write_frame(l.request_fd, framed(header_of(c, cfg_), c.body)) != wire::status::ok) {
      lent_.drop(key);
      release(l.pid, "gone", c);
      return std::nullopt;
    }
    size_t max_answer =
        wire::max_answer_bytes(cfg_.max_output_bytes, cfg_.max_log_bytes, max_log_lines);
    std::string text;
    auto got = wire::read_frame(l.result_fd, text, max_answer,
                                sent_at + std::chrono::milliseconds(c.timeout_ms));
    wire::call_report report;
    report.call_us = micros(wire::clock::now() - sent_at);
    report.reused = true;
    report.calls = l.calls + 1;
    std::optional<wire::call_answer> answer;
    if (got == wire::status::ok) answer = wire::split_answer(text);
    std::string body;
    if (answer) {
      report.cpu_us = answer->cpu_us;
      report.faults = answer->faults;
      report.compiled = answer->fresh;
      report.check_us = answer->check_us;
      report.kept = answer->keep;
      report.discarded = answer->spoiled;
      body = std::move(answer->json);
      if (answer->keep) {
        kept.calls = report.calls;
        kept.last_used = wire::clock::now();
        if (answer->uss_kib >= 0) {
          kept.uss_kib = answer->uss_kib;
          kept.pss_kib = answer->pss_kib;
        }
        report.pid = kept.pid;
        report.uss_kib = kept.uss_kib;
        report.pss_kib = kept.pss_kib;
        report.lent = true;
        if (kept.calls >= cfg_.reuse_max_calls) {
          lent_.drop(key);
          release(l.pid, "max_calls", c);
        }
      } else {
        lent_.drop(key);
        release(l.pid, "answered", c);
      }
    } else {
      lent_.drop(key);
      report.discarded = "the call failed";
      if (got == wire::status::timed_out) {
        release(l.pid, "timeout", c);
        body = wire::timeout_error(static_cast<int>(c.timeout_ms));
      } else if (got == wire::status::too_large) {
        release(l.pid, "output_limit", c);
        body = wire::output_limit_error(max_answer);
      } else {
        // It may still run (a handler that closed its own pipe): it gets what is left of the
        // call's time before the zygote kills it.
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            sent_at + std::chrono::milliseconds(c.timeout_ms) - wire::clock::now());
        body = release(l.pid, "no_answer", c, std::max<int64_t>(1, left.count()));
        if (body.empty())
          body = wire::error_json("crashed", "SandboxError",
                                  "the handler's process ended without answering");
      }
    }
    wire::close_answer(body, report);
    auto parsed = read_answer(std::move(body));
    if (!parsed)
      return failed_result("crashed", "SandboxError", "the call process sent a malformed answer");
    if (worker_) {  // not when a release found the worker broken and replaced it
      served_since_start_ = true;
      failures_ = 0;
    }
    return parsed;
  }

  // Gives lent process `pid` back to the zygote, which ends it: at once, or for a process that
  // ends by itself ("answered", "no_answer", "gone") after at most `wait_ms`. `c` is the call
  // it ran (its limits name the failure). Returns the zygote's account of how the process
  // ended when it gave no proper answer (an error answer), else "".
  std::string release(int64_t pid, const char* reason, const call& c, int64_t wait_ms = 1000) {
    if (!worker_) return {};
    nlohmann::json header = {{"kind", "release"},
                             {"pid", pid},
                             {"reason", reason},
                             {"wait_ms", wait_ms},
                             {"timeout_ms", std::max<uint32_t>(c.timeout_ms, 1)},
                             {"memory_mb", std::max<uint32_t>(c.memory_mb, 1)}};
    std::string answer;
    auto deadline = wire::clock::now() + std::chrono::milliseconds(wait_ms) + release_timeout;
    if (worker_->send(framed(header, "{}")) != wire::status::ok ||
        worker_->receive(answer, deadline) != wire::status::ok) {
      for (int fd : worker_->take_fds()) ::close(fd);
      worker_->kill();
      last_error_ = "the worker did not answer a release (" + worker_->exit_description() + ")";
      restart("protocol", last_error_);
      return {};
    }
    for (int fd : worker_->take_fds()) ::close(fd);
    auto j = nlohmann::json::parse(answer, nullptr, false);
    if (!j.is_object()) return {};
    if (auto warm = j.find("warm"); warm != j.end() && warm->is_object()) {
      lent_.forget_retired(warm->value("retired", nlohmann::json::array()));
      if (auto r = warm->find("retired"); r != warm->end() && r->is_array())
        for (auto& x : *r) retired_.push_back(x);
    }
    auto ended = j.find("ended");
    return ended != j.end() && ended->is_object() ? ended->dump() : std::string{};
  }

  // Gives back the lent processes idle for sandbox.reuse_idle_ms, at most every liveness_check.
  void retire_idle_lent() {
    auto now = wire::clock::now();
    if (lent_.empty() || now - last_idle_scan_ < liveness_check) return;
    last_idle_scan_ = now;
    auto idle = std::chrono::milliseconds(cfg_.reuse_idle_ms);
    call probe;
    probe.timeout_ms = 1000;
    probe.memory_mb = 1;
    for (auto pid : lent_.take_idle(now, idle)) release(pid, "idle", probe);
    if (!retired_.empty()) {
      caf::anon_send(supervisor_, warm_atom::value, slot_, retired_.dump());
      retired_ = nlohmann::json::array();
    }
  }

  caf::blocking_actor* self_;
  executor_config cfg_;
  size_t slot_;
  caf::actor supervisor_;
  std::unique_ptr<adapters::worker_process> worker_;
  lent_pool lent_;
  nlohmann::json retired_ = nlohmann::json::array();  // told by release answers, not sent yet
  wire::clock::time_point last_idle_scan_{};
  bool stopping_ = false;
  bool served_since_start_ = false;
  int failures_ = 0;
  std::string last_error_;
};

}  // namespace

std::string frame_payload(const call& c, const executor_config& cfg) {
  return framed(header_of(c, cfg), c.body);
}

std::optional<call_result> read_answer(std::string answer) {
  auto j = nlohmann::json::parse(answer, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  auto ok = j.find("ok");
  if (ok == j.end() || !ok->is_boolean()) return std::nullopt;
  call_result r;
  if (ok->get<bool>()) {
    r.outcome = "ok";
  } else {
    auto err = j.find("error");
    if (err == j.end() || !err->is_object() || !err->contains("kind") ||
        !(*err)["kind"].is_string())
      return std::nullopt;
    r.outcome = (*err)["kind"].get<std::string>();
  }
  if (auto warm = j.find("warm"); warm != j.end() && warm->is_object()) r.warm = warm->dump();
  r.body = std::move(answer);
  return r;
}

void executor(caf::blocking_actor* self, executor_config cfg, size_t slot, caf::actor supervisor) {
  slot_runner{self, std::move(cfg), slot, std::move(supervisor)}.run();
}

}  // namespace tessera::sandbox
