#include "actors/sandbox/executor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "adapters/error.hpp"
#include "runtime/log.hpp"

namespace tessera::sandbox {
namespace {

namespace wire = tessera::sandbox_wire;
using namespace std::chrono_literals;

constexpr int crash_loop_after = 5;
constexpr auto liveness_check = 250ms;

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
      self_->receive([&](run_atom, call& c) { self_->make_response_promise().deliver(execute(c)); },
                     [&](stop_atom) { stopping_ = true; },
                     caf::after(liveness_check) >> [&] { check_worker(); });
    }
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
    if (send(frame_payload(c, cfg_)) != wire::status::ok)
      return failed_result("unavailable", "SandboxUnavailable",
                           "no sandbox worker is running: " + last_error_);
    std::string answer;
    auto deadline = started + std::chrono::milliseconds(c.timeout_ms) + cfg_.answer_grace;
    auto got = worker_->receive(answer, deadline);
    call_result result;
    if (got == wire::status::ok) {
      if (auto parsed = read_answer(std::move(answer))) {
        result = std::move(*parsed);
        served_since_start_ = true;
        failures_ = 0;
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
    result.run_us =
        std::chrono::duration_cast<std::chrono::microseconds>(wire::clock::now() - started).count();
    if (worker_) report("idle");
    return result;
  }

  caf::blocking_actor* self_;
  executor_config cfg_;
  size_t slot_;
  caf::actor supervisor_;
  std::unique_ptr<adapters::worker_process> worker_;
  bool stopping_ = false;
  bool served_since_start_ = false;
  int failures_ = 0;
  std::string last_error_;
};

}  // namespace

std::string frame_payload(const call& c, const executor_config& cfg) {
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
  auto out = header.dump();
  out += '\n';
  out += c.body;
  return out;
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
