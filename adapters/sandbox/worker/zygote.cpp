#include "adapters/sandbox/worker/zygote.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "adapters/sandbox/call_answer.hpp"
#include "adapters/sandbox/wire.hpp"
#include "adapters/sandbox/worker/warm_pool.hpp"

namespace tessera::sandbox_worker {
namespace {

namespace wire = tessera::sandbox_wire;
using std::chrono::milliseconds;

constexpr int exit_out_of_memory = 3;
constexpr int exit_confinement_failed = 4;

struct call_header {
  std::string kind;
  int timeout_ms = 2000;
  call_limits limits;
  // Warm reuse: empty means a fresh process for this call. Otherwise the server's key (panel or
  // task id and code hashes); the zygote adds the limits, so one process serves one key only.
  std::string reuse_key;
  int reuse_max_calls = 10000;
  int reuse_idle_ms = 60000;
  int warm_processes = 64;
  // Lend a process that stays warm to the server (its pipes go out with the answer; fd 1 is a
  // Unix socket then), so the key's next calls skip the zygote.
  bool lend = false;
  // The server's use of its lent processes since it last said: [pid, idle_ms, calls] each.
  std::vector<std::array<int64_t, 3>> lent_use;
  // kind "release": the lent process `release_pid` is done, and how it ended for the server.
  int64_t release_pid = -1;
  std::string release_reason;
  int release_wait_ms = 1000;  // how long a process that ends by itself may take

  std::string warm_key() const {
    return reuse_key + '|' + std::to_string(timeout_ms) + '|' + std::to_string(limits.memory_mb) +
           '|' + std::to_string(limits.max_output_bytes) + '|' +
           std::to_string(limits.max_log_bytes) + '|' + std::to_string(limits.max_log_lines) + '|' +
           std::to_string(limits.max_json_depth);
  }
};

// A warm process may not use more CPU than this over its life (RLIMIT_CPU cannot be raised
// again under seccomp); it is retired before a call could reach the limit.
constexpr unsigned warm_cpu_budget_s = 600;

int64_t cpu_micros(const rusage& u) {
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 + u.ru_utime.tv_usec +
         u.ru_stime.tv_usec;
}

int64_t micros(wire::clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

using wire::error_json;

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

// A forked call process holds every descriptor the zygote had, among them the pipes of the
// warm processes of other keys (CLOEXEC only acts on exec): it keeps its own two and 0-2.
void close_inherited(int request_fd, int result_fd) {
  unsigned lo = static_cast<unsigned>(std::min(request_fd, result_fd));
  unsigned hi = static_cast<unsigned>(std::max(request_fd, result_fd));
  auto close_range = [](unsigned first, unsigned last) {
    if (first <= last && ::syscall(SYS_close_range, first, last, 0) != 0)
      for (unsigned fd = first; fd <= std::min(last, 4096u); ++fd) ::close(static_cast<int>(fd));
  };
  close_range(3, lo - 1);
  close_range(lo + 1, hi - 1);
  close_range(hi + 1, ~0u);
}

// Runs calls from `request_fd` until one may not be followed by another: a call without a
// reuse key, a failed call, a call that changed interpreter-wide state (python_host's watch),
// or a CPU budget too small for one more call. Each answer is one frame: the runner's JSON, a
// NUL (which JSON text never contains), and a trailer the zygote reads (below).
[[noreturn]] void call_process(python_host& python, const confinement& rules, int request_fd,
                               int result_fd, size_t address_space, size_t scratch_bytes,
                               const std::string& scratch_dir) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) ::_exit(exit_confinement_failed);
  ::dup2(null_fd, 0);
  ::dup2(null_fd, 1);
  ::dup2(null_fd, 2);
  if (null_fd > 2) ::close(null_fd);
  close_inherited(request_fd, result_fd);
  std::string payload;
  rusage before{};
  unsigned cpu_limit_s = 0;
  int smaps_fd = -1;  // /proc/self/smaps_rollup, for a warm process's memory
  wire::clock::time_point measured{};
  int64_t uss_kib = -1, pss_kib = -1;
  for (bool first = true;; first = false) {
    // EOF: the zygote is gone, shutting down, or retired this warm process.
    if (wire::read_frame(request_fd, payload, size_t{1} << 32, wire::clock::time_point::max()) !=
        wire::status::ok)
      ::_exit(0);
    auto parts = wire::split_request(payload);
    call_header header;
    std::string problem;
    if (!parse_header(parts.header, header, problem)) ::_exit(exit_confinement_failed);
    bool warm = !header.reuse_key.empty();
    if (first) {
      std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with EFBIG
      call_rlimits limits;
      limits.address_space_bytes = address_space + size_t(header.limits.memory_mb) * (1 << 20);
      cpu_limit_s = warm ? warm_cpu_budget_s : static_cast<unsigned>(header.timeout_ms / 1000 + 1);
      limits.cpu_seconds = cpu_limit_s;
      limits.file_size_bytes = scratch_bytes;
      if (warm) smaps_fd = ::open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
      if (!rules.apply(limits)) ::_exit(exit_confinement_failed);
      if (warm) python.begin_reuse_watch();
    }
    bool fresh = false, ok = false;
    try {
      auto response = python.run(header.kind, parts.body, header.limits, fresh, ok);
      rusage usage{};
      ::getrusage(RUSAGE_SELF, &usage);
      auto check_started = wire::clock::now();
      std::string spoiled = !warm ? "" : !ok ? "the call failed" : python.reuse_spoiled();
      auto check_us = micros(wire::clock::now() - check_started);
      auto cpu_s = cpu_micros(usage) / 1'000'000 + header.timeout_ms / 1000 + 2;
      if (warm && spoiled.empty() && cpu_s >= cpu_limit_s) spoiled = "its CPU budget is spent";
      bool keep = warm && spoiled.empty();
      if (keep && smaps_fd >= 0 &&
          (uss_kib < 0 || wire::clock::now() - measured >= std::chrono::seconds(1))) {
        char text[4096];
        auto n = ::pread(smaps_fd, text, sizeof text - 1, 0);
        if (n > 0 && parse_smaps_rollup({text, static_cast<size_t>(n)}, uss_kib, pss_kib))
          measured = wire::clock::now();
      }
      // The trailer: whether the zygote should cache this call's sources, this call's CPU time
      // and page faults, whether this process waits for another call, the private memory and
      // PSS it last measured (KiB, -1: not yet), and if it does not stay, why.
      response += '\0';
      response += (fresh ? "1 " : "0 ") + std::to_string(cpu_micros(usage) - cpu_micros(before)) +
                  " " + std::to_string(usage.ru_minflt - before.ru_minflt) +
                  (keep ? " 1 " : " 0 ") + std::to_string(check_us) + " " +
                  std::to_string(uss_kib) + " " + std::to_string(pss_kib) + " " + spoiled;
      before = usage;
      // A process that stays leaves the scratch dir empty for whatever runs next: with a lent
      // process the zygote does not see the call end. (No thread of the handler can outlive
      // the call: seccomp denies clone.)
      if (keep) empty_dir(scratch_dir);
      if (wire::write_frame(result_fd, response) != wire::status::ok || !keep) ::_exit(0);
    } catch (const std::bad_alloc&) {
      ::_exit(exit_out_of_memory);
    }
  }
}

spare fork_spare(python_host& python, const confinement& rules, size_t scratch_bytes,
                 const std::string& scratch_dir) {
  int req[2], res[2];
  if (::pipe2(req, O_CLOEXEC) != 0) return {};
  if (::pipe2(res, O_CLOEXEC) != 0) {
    ::close(req[0]);
    ::close(req[1]);
    return {};
  }
  size_t address_space = mapped_bytes();
  auto started = wire::clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(req[1]);
    ::close(res[0]);
    call_process(python, rules, req[0], res[1], address_space, scratch_bytes, scratch_dir);
  }
  ::close(req[0]);
  ::close(res[1]);
  if (pid < 0) {
    ::close(req[1]);
    ::close(res[0]);
    return {};
  }
  ::fcntl(res[0], F_SETFL, O_NONBLOCK);
  return {pid, req[1], res[0], micros(wire::clock::now() - started)};
}

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

void empty_dir(const std::string& dir) {
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::error_code rm;
    // A handler may have removed its own write permission: restore it, then remove.
    std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, rm);
    if (std::filesystem::remove_all(it->path(), rm) == static_cast<std::uintmax_t>(-1) || rm) {
      for (auto& sub : std::filesystem::recursive_directory_iterator(it->path(), rm))
        std::filesystem::permissions(sub.path(), std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::add, rm);
      std::filesystem::remove_all(it->path(), rm);
    }
  }
}

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
    for (auto& [pid, idle_ms, calls] : header.lent_use)
      warm.touch(static_cast<pid_t>(pid), milliseconds(idle_ms), static_cast<int>(calls));
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
    auto sent = lend_fds.empty() ? wire::write_frame(1, answer)
                                 : wire::write_frame_with_fds(1, answer, lend_fds);
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
