#include "adapters/sandbox/worker/zygote.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "adapters/sandbox/call_answer.hpp"
#include "adapters/sandbox/wire.hpp"
#include "adapters/sandbox/worker/call_header.hpp"
#include "adapters/sandbox/worker/call_process.hpp"
#include "adapters/sandbox/worker/warm_pool.hpp"

namespace tessera::sandbox_worker {
namespace {

namespace wire = tessera::sandbox_wire;
using std::chrono::milliseconds;
using wire::micros;

using wire::error_json;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string{"SIG"} + abbrev : "signal " + std::to_string(sig);
}

// What the zygote answers when the call process did not produce a valid answer itself.
std::string classify_exit(int status, const call_header& header) {
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    if (code == 0)
      return error_json("crashed", "SandboxError", "the handler's process exited before answering");
    if (code == exit_out_of_memory)
      return error_json("memory_limit", "MemoryError",
                        "the call used more than its memory limit of " +
                            std::to_string(header.limits.memory_mb) + " MiB");
    if (code == exit_confinement_failed)
      return error_json("crashed", "SandboxError", "the sandbox could not confine the call");
    return error_json(
        "crashed", "SystemExit",
        "the handler's process exited with status " + std::to_string(code) + " before answering");
  }
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  if (sig == SIGXCPU || sig == SIGKILL)
    return error_json("timeout", "TimeoutError",
                      "the call did not finish within its timeout of " +
                          std::to_string(header.timeout_ms) + " ms (wall clock or CPU time)");
  return error_json("crashed", signal_name(sig),
                    "the handler's process was killed by " + signal_name(sig) +
                        (sig == SIGSEGV ? " (a segmentation fault)" : ""));
}

// Waits for `pid` to exit until `deadline`, then kills it; returns its wait status.
int reap(pid_t pid, wire::clock::time_point deadline) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return 0;
    if (wire::clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      return status;
    }
    ::usleep(200);
  }
}

// What happened to the process that ran a call, for the answer's "process" member.
struct call_outcome {
  bool fresh = false;        // the call compiled sources the zygote has not cached
  bool kept = false;         // the process stays warm for its key
  bool undelivered = false;  // the request could not be written: the process was already gone
  pid_t pending_reap = -1;   // answered properly: reap after the answer goes out
  std::string spoiled;       // why a process with a reuse key was not kept
  int64_t check_us = 0;
  int64_t uss_kib = -1;  // the process's memory as it last measured itself
  int64_t pss_kib = -1;
  wire::call_report report;  // the figures of the call (fork, call, CPU, faults, compiled)
};

// What the zygote answers for a process that ended without a proper answer: how it ended says
// why (`status` from waitpid).
std::string unanswered_error(int status, const call_header& header) {
  bool exited_cleanly = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return !exited_cleanly ? classify_exit(status, header)
                         : error_json("crashed", "SandboxError",
                                      "the call process sent a malformed answer (did the "
                                      "handler write to or close its descriptors?)");
}

// Runs one call on `sp`. When the process may serve its key again (`out.kept`), `sp` stays
// intact; otherwise it is consumed: killed, and reaped now or (`pending_reap`) after the answer.
std::string run_call(spare& sp, const call_header& header, std::string_view payload,
                     call_outcome& out) {
  out = {};
  if (sp.pid < 0)
    return error_json("crashed", "OSError", std::string{"fork: "} + std::strerror(errno));
  auto started = wire::clock::now();
  auto deadline = started + milliseconds(header.timeout_ms);
  auto sent = wire::write_frame(sp.request_fd, payload);
  out.undelivered = sent != wire::status::ok;
  std::string answer_text;
  size_t max_answer = wire::max_answer_bytes(
      header.limits.max_output_bytes, header.limits.max_log_bytes, header.limits.max_log_lines);
  auto got = sent != wire::status::ok
                 ? sent
                 : wire::read_frame(sp.result_fd, answer_text, max_answer, deadline);
  auto answered = wire::clock::now();
  std::optional<wire::call_answer> answer;
  if (got == wire::status::ok) answer = wire::split_answer(answer_text);
  bool keep = answer && answer->keep && !header.reuse_key.empty();
  pid_t pid = sp.pid;
  auto fork_us = sp.fork_us;
  sp.fork_us = 0;
  if (!keep) {
    ::close(sp.request_fd);
    ::close(sp.result_fd);
    sp = {};
  }
  std::string result;
  int64_t cpu_us = 0, faults = 0;
  if (answer) {
    if (!keep) {
      ::kill(pid, SIGKILL);  // it has nothing left to do but exit; make sure it does
      out.pending_reap = pid;
    }
    out.kept = keep;
    out.fresh = answer->fresh;
    out.spoiled = std::move(answer->spoiled);
    out.check_us = answer->check_us;
    out.uss_kib = answer->uss_kib;
    out.pss_kib = answer->pss_kib;
    cpu_us = answer->cpu_us;
    faults = answer->faults;
    result = std::move(answer->json);
  } else if (got == wire::status::timed_out) {
    reap(pid, answered);
    result = wire::timeout_error(header.timeout_ms);
  } else if (got == wire::status::too_large) {
    reap(pid, answered);
    result = wire::output_limit_error(max_answer);
  } else {
    // No proper answer: how the process ended says why (it may still be running if a handler
    // closed the pipe itself; it gets until the deadline).
    result = unanswered_error(reap(pid, deadline), header);
  }
  if (!answer && !header.reuse_key.empty()) out.spoiled = "the call failed";
  // Where the time went, for the benchmarks' overhead figures: the fork (done before the call
  // arrived; 0 for a warm process), the call from sending the request to its answer, and the CPU
  // time and page faults of the call process for this call, and whether it had to compile its
  // sources (false when the zygote or the warm process itself already held them compiled).
  out.report.fork_us = fork_us;
  out.report.call_us = micros(answered - started);
  out.report.cpu_us = cpu_us;
  out.report.faults = faults;
  out.report.compiled = out.fresh;
  return result;
}

// Waits for the next request on fd 0, retiring idle warm processes meanwhile.
bool wait_for_request(warm_pool& warm, milliseconds idle) {
  for (;;) {
    auto next_due = warm.retire_idle(idle);
    pollfd p{0, POLLIN, 0};
    int r = ::poll(&p, 1, next_due ? static_cast<int>(next_due->count()) : -1);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// A lent process the server is done with (kind "release"): ends it and answers how it ended.
// The server sends one when the process answered but may not stay ("answered": it exits by
// itself), gave no proper answer ("no_answer": the answer says why, as for a relayed call),
// took too long or answered too much ("timeout", "output_limit"), is idle or served its
// maximum ("idle", "max_calls": recorded as retirements), was gone when the server wrote
// to it ("gone"), or was lent twice for one key ("replaced"). A process that ends by itself
// gets `wait_ms` (what was left of its call's time) before it is killed.
std::string release(warm_pool& warm, const call_header& header) {
  auto w = warm.release(static_cast<pid_t>(header.release_pid));
  std::string ended = "null";
  if (w) {
    const auto& why = header.release_reason;
    pid_t pid = w->process.pid;
    if (why == "answered" || why == "no_answer" || why == "gone") {
      int status = reap(pid, wire::clock::now() + milliseconds(header.release_wait_ms));
      if (why == "no_answer") ended = unanswered_error(status, header);
    } else {
      kill_and_reap(pid);
    }
    if (why == "idle" || why == "max_calls") warm.record(*w, why.c_str());
  }
  return std::string{R"({"ok":true,"released":)"} + (w ? "true" : "false") + R"(,"ended":)" +
         ended + R"(,"logs":[],"warm":{"retired":)" + warm.drain_retired().dump() + "}}";
}

}  // namespace

int run_zygote(python_host& python, const confinement& rules, const zygote_options& options) {
  std::string payload;
  auto next = fork_spare(python, rules, options.scratch_bytes, options.scratch_dir);
  warm_pool warm;
  milliseconds idle{60000};
  for (;;) {
    auto got = wait_for_request(warm, idle)
                   ? wire::read_frame(0, payload, options.max_request_bytes,
                                      wire::clock::time_point::max())
                   : wire::status::io_error;
    if (got != wire::status::ok) {
      warm.clear();
      if (next.pid > 0) kill_and_reap(next.pid);
      return got == wire::status::closed ? 0 : 1;
    }
    auto parts = wire::split_request(payload);
    call_header header;
    std::string problem;
    call_outcome outcome;
    bool ran = parse_header(parts.header, header, problem);
    warm.touch(header.lent_use);
    std::string answer;
    std::vector<int> lend_fds;
    bool used_spare = false;
    if (!ran) {
      answer = error_json("bad_request", "ValueError", problem);
    } else if (header.kind == "discard") {  // the key's code changed or its owner is gone
      int n = warm.discard(header.reuse_key);
      answer = R"({"ok":true,"discarded":)" + std::to_string(n) +
               R"(,"logs":[],"warm":{"retired":)" + warm.drain_retired().dump() + "}}";
    } else if (header.kind == "release") {
      answer = release(warm, header);
    } else {
      idle = milliseconds(std::max(1, header.reuse_idle_ms));
      std::optional<warm_process> w;
      int calls_before = 0;
      if (!header.reuse_key.empty()) w = warm.take(header.warm_key());
      if (w) {
        calls_before = w->calls;
        answer = run_call(w->process, header, payload, outcome);
        // A warm process that died while idle never saw the request: run it on a fresh one.
        if (outcome.undelivered) w.reset();
      }
      if (!w) {
        used_spare = true;
        calls_before = 0;
        w = warm_process{header.warm_key(), next, 0, {}};
        answer = run_call(w->process, header, payload, outcome);
      }
      auto& report = outcome.report;
      report.reused = calls_before > 0;
      report.calls = calls_before + 1;
      report.kept = outcome.kept;
      report.check_us = outcome.check_us;
      report.discarded = outcome.spoiled;
      if (outcome.kept) {
        w->calls = calls_before + 1;
        w->last_used = wire::clock::now();
        if (outcome.uss_kib >= 0) {
          w->uss_kib = outcome.uss_kib;
          w->pss_kib = outcome.pss_kib;
        }
        report.pid = w->process.pid;
        report.uss_kib = w->uss_kib;
        report.pss_kib = w->pss_kib;
        if (w->calls >= header.reuse_max_calls) {
          warm.retire(*w, "max_calls");  // served its maximum
        } else {
          if (header.lend) {
            // The server calls it directly from now on; the zygote keeps only its pid.
            lend_fds = {w->process.request_fd, w->process.result_fd};
            w->process.request_fd = w->process.result_fd = -1;
            w->lent = true;
            report.lent = true;
          }
          warm.put(std::move(*w), static_cast<size_t>(std::max(0, header.warm_processes)));
        }
      }
      report.retired_json = warm.drain_retired().dump();
      wire::close_answer(answer, report);
    }
    auto sent = wire::write_frame_with_fds(1, answer, lend_fds);  // a plain frame without fds
    for (int fd : lend_fds) ::close(fd);
    if (sent != wire::status::ok) return 1;
    // Off the caller's path: reap, clean up, learn the sources, fork the next call's process.
    if (outcome.pending_reap > 0)
      while (::waitpid(outcome.pending_reap, nullptr, 0) < 0 && errno == EINTR) {
      }
    empty_dir(options.scratch_dir);
    if (outcome.fresh) python.remember(std::string{parts.body});
    if (used_spare) next = fork_spare(python, rules, options.scratch_bytes, options.scratch_dir);
  }
}

}  // namespace tessera::sandbox_worker
