#include "adapters/sandbox/worker/zygote.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "adapters/sandbox/wire.hpp"

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
};

int64_t cpu_micros(const rusage& u) {
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 + u.ru_utime.tv_usec +
         u.ru_stime.tv_usec;
}

int64_t micros(wire::clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

std::string error_json(std::string_view kind, std::string_view type, const std::string& message) {
  nlohmann::json j = {{"ok", false},
                      {"error", {{"kind", kind}, {"type", type}, {"message", message}}},
                      {"logs", nlohmann::json::array()}};
  return j.dump();
}

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
  if (out.timeout_ms <= 0 || out.limits.memory_mb <= 0) {
    problem = "timeout_ms and memory_mb must be positive";
    return false;
  }
  return true;
}

// A spare call process: forked ahead of its call, it waits for the request frame, confines
// itself with that call's limits, runs it and exits.
struct spare {
  pid_t pid = -1;
  int request_fd = -1;  // write end: the zygote forwards the request here
  int result_fd = -1;   // read end: the answer
  int64_t fork_us = 0;
};

[[noreturn]] void call_process(python_host& python, const confinement& rules, int request_fd,
                               int result_fd, size_t address_space, size_t scratch_bytes) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) ::_exit(exit_confinement_failed);
  ::dup2(null_fd, 0);
  ::dup2(null_fd, 1);
  ::dup2(null_fd, 2);
  if (null_fd > 2) ::close(null_fd);
  std::string payload;
  if (wire::read_frame(request_fd, payload, size_t{1} << 32, wire::clock::time_point::max()) !=
      wire::status::ok)
    ::_exit(0);  // the zygote is gone or shutting down: nothing to answer
  ::close(request_fd);
  auto parts = wire::split_request(payload);
  call_header header;
  std::string problem;
  if (!parse_header(parts.header, header, problem)) ::_exit(exit_confinement_failed);
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with EFBIG instead
  call_rlimits limits;
  limits.address_space_bytes = address_space + size_t(header.limits.memory_mb) * (1 << 20);
  limits.cpu_seconds = static_cast<unsigned>(header.timeout_ms / 1000 + 1);
  limits.file_size_bytes = scratch_bytes;
  if (!rules.apply(limits)) ::_exit(exit_confinement_failed);
  bool fresh = false;
  try {
    auto response = python.run(header.kind, parts.body, header.limits, fresh);
    // The trailer after a NUL (which JSON text never contains): whether the zygote should
    // cache this call's sources, and what the process cost so far. Then close, so the zygote
    // sees EOF and answers without waiting for this process's exit.
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    response += '\0';
    response += (fresh ? "1 " : "0 ") + std::to_string(cpu_micros(usage)) + " " +
                std::to_string(usage.ru_minflt);
    wire::write_all(result_fd, response);
    ::close(result_fd);
  } catch (const std::bad_alloc&) {
    ::_exit(exit_out_of_memory);
  }
  ::_exit(0);
}

spare fork_spare(python_host& python, const confinement& rules, size_t scratch_bytes) {
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
    call_process(python, rules, req[0], res[1], address_space, scratch_bytes);
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

// A well-formed answer from the call process: the JSON object, the trailer's numbers.
struct call_answer {
  std::string json;
  bool fresh = false;
  int64_t cpu_us = 0;
  int64_t faults = 0;
};

std::optional<call_answer> split_answer(std::string& out) {
  auto nul = out.rfind('\0');
  if (nul == std::string::npos || nul == 0) return std::nullopt;
  call_answer a;
  int fresh = 0;
  long long cpu = 0, faults = 0;
  if (std::sscanf(out.c_str() + nul + 1, "%d %lld %lld", &fresh, &cpu, &faults) != 3)
    return std::nullopt;
  out.resize(nul);
  if (out.front() != '{' || out.back() != '}' || !nlohmann::json::accept(out)) return std::nullopt;
  a.json = std::move(out);
  a.fresh = fresh == 1;
  a.cpu_us = cpu;
  a.faults = faults;
  return a;
}

// Runs one call on `sp` (consumed). When the call process answered properly, the answer goes
// out before the process is reaped (`pending_reap` is set; its exit is not the caller's wait).
std::string run_call(spare& sp, const call_header& header, std::string_view payload, bool& fresh,
                     pid_t& pending_reap) {
  fresh = false;
  pending_reap = -1;
  if (sp.pid < 0)
    return error_json("crashed", "OSError", std::string{"fork: "} + std::strerror(errno));
  auto started = wire::clock::now();
  auto deadline = started + milliseconds(header.timeout_ms);
  auto sent = wire::write_frame(sp.request_fd, payload);
  ::close(sp.request_fd);
  std::string out;
  // Room for the storages and the HTML (each up to the limit) plus logs and JSON framing.
  size_t max_answer = 2 * header.limits.max_output_bytes + 2 * header.limits.max_log_bytes +
                      64 * header.limits.max_log_lines + (64 << 10);
  auto got =
      sent != wire::status::ok ? sent : wire::read_to_end(sp.result_fd, out, max_answer, deadline);
  ::close(sp.result_fd);
  auto answered = wire::clock::now();
  pid_t pid = sp.pid;
  auto fork_us = sp.fork_us;
  sp = {};
  std::optional<call_answer> answer;
  if (got == wire::status::ok) answer = split_answer(out);
  std::string result;
  int64_t cpu_us = 0, faults = 0;
  if (answer) {
    ::kill(pid, SIGKILL);  // it has nothing left to do but exit; make sure it does
    pending_reap = pid;
    fresh = answer->fresh;
    cpu_us = answer->cpu_us;
    faults = answer->faults;
    result = std::move(answer->json);
  } else if (got == wire::status::timed_out) {
    reap(pid, answered);
    result = error_json("timeout", "TimeoutError",
                        "the call did not finish within its timeout of " +
                            std::to_string(header.timeout_ms) + " ms");
  } else if (got == wire::status::too_large) {
    reap(pid, answered);
    result = error_json("output_limit", "ValueError",
                        "the call's answer exceeded " + std::to_string(max_answer) + " bytes");
  } else {
    // No proper answer: how the process ended says why (it may still be running if a handler
    // closed the pipe itself; it gets until the deadline).
    int status = reap(pid, deadline);
    bool exited_cleanly = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    result = !exited_cleanly ? classify_exit(status, header)
                             : error_json("crashed", "SandboxError",
                                          "the call process sent a malformed answer (did the "
                                          "handler write to or close its descriptors?)");
  }
  // Where the time went, for the benchmarks' overhead figures: the fork (done before the call
  // arrived), the call process from receiving the request to its answer, and the CPU time and
  // page faults of the call process until it answered.
  result.pop_back();
  result += R"(,"zygote_us":{"fork":)" + std::to_string(fork_us) + R"(,"call":)" +
            std::to_string(micros(answered - started)) + R"(},"process":{"cpu_us":)" +
            std::to_string(cpu_us) + R"(,"minor_faults":)" + std::to_string(faults) + "}}";
  return result;
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
  auto next = fork_spare(python, rules, options.scratch_bytes);
  for (;;) {
    auto got =
        wire::read_frame(0, payload, options.max_request_bytes, wire::clock::time_point::max());
    if (got != wire::status::ok) {
      if (next.pid > 0) {
        ::kill(next.pid, SIGKILL);
        ::waitpid(next.pid, nullptr, 0);
      }
      return got == wire::status::closed ? 0 : 1;
    }
    auto parts = wire::split_request(payload);
    call_header header;
    std::string problem;
    bool fresh = false;
    pid_t pending_reap = -1;
    bool ran = parse_header(parts.header, header, problem);
    std::string answer = ran ? run_call(next, header, payload, fresh, pending_reap)
                             : error_json("bad_request", "ValueError", problem);
    if (wire::write_frame(1, answer) != wire::status::ok) return 1;
    // Off the caller's path: reap, clean up, learn the sources, fork the next call's process.
    if (pending_reap > 0)
      while (::waitpid(pending_reap, nullptr, 0) < 0 && errno == EINTR) {
      }
    empty_dir(options.scratch_dir);
    if (fresh) python.remember(std::string{parts.body});
    if (ran) next = fork_spare(python, rules, options.scratch_bytes);
  }
}

}  // namespace tessera::sandbox_worker
