#include "adapters/sandbox/worker/zygote.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

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
  if (out.timeout_ms <= 0 || out.limits.memory_mb <= 0) {
    problem = "timeout_ms and memory_mb must be positive";
    return false;
  }
  return true;
}

[[noreturn]] void call_process(python_host& python, const confinement& rules,
                               const call_header& header, std::string_view body, int result_fd,
                               size_t address_space, size_t scratch_bytes) {
  python.after_fork_child();
  int null_fd = ::open("/dev/null", O_RDWR);
  if (null_fd < 0) ::_exit(exit_confinement_failed);
  ::dup2(null_fd, 0);
  ::dup2(null_fd, 1);
  ::dup2(null_fd, 2);
  if (null_fd > 2) ::close(null_fd);
  std::signal(SIGXFSZ, SIG_IGN);  // a write past the file size limit fails with EFBIG instead
  call_rlimits limits;
  limits.address_space_bytes = address_space + size_t(header.limits.memory_mb) * (1 << 20);
  limits.cpu_seconds = static_cast<unsigned>(header.timeout_ms / 1000 + 1);
  limits.file_size_bytes = scratch_bytes;
  if (!rules.apply(limits)) ::_exit(exit_confinement_failed);
  try {
    auto response = python.run(header.kind, body, header.limits);
    wire::write_all(result_fd, response);
  } catch (const std::bad_alloc&) {
    ::_exit(exit_out_of_memory);
  }
  ::_exit(0);
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string{"SIG"} + abbrev : "signal " + std::to_string(sig);
}

// What the zygote answers when the call process did not produce a valid answer itself.
std::string classify_exit(int status, const call_header& header) {
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
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
    return error_json(
        "timeout", "TimeoutError",
        "the call used up its CPU time limit (" + std::to_string(header.timeout_ms) + " ms)");
  return error_json("crashed", signal_name(sig),
                    "the handler's process was killed by " + signal_name(sig) +
                        (sig == SIGSEGV ? " (a segmentation fault)" : ""));
}

std::string run_call(python_host& python, const confinement& rules, const call_header& header,
                     std::string_view body, size_t scratch_bytes) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return error_json("crashed", "OSError", std::string{"pipe: "} + std::strerror(errno));
  size_t address_space = mapped_bytes();
  auto started = wire::clock::now();
  python.before_fork();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    call_process(python, rules, header, body, fds[1], address_space, scratch_bytes);
  }
  python.after_fork_parent();
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    return error_json("crashed", "OSError", std::string{"fork: "} + std::strerror(errno));
  }
  ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::string out;
  // Room for the storages and the HTML (each up to the limit) plus logs and JSON framing.
  size_t max_answer = 2 * header.limits.max_output_bytes + 2 * header.limits.max_log_bytes +
                      64 * header.limits.max_log_lines + (64 << 10);
  auto got = wire::read_to_end(fds[0], out, max_answer, started + milliseconds(header.timeout_ms));
  ::close(fds[0]);
  if (got != wire::status::ok) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got == wire::status::timed_out)
    return error_json("timeout", "TimeoutError",
                      "the call did not finish within its timeout of " +
                          std::to_string(header.timeout_ms) + " ms");
  if (got == wire::status::too_large)
    return error_json("output_limit", "ValueError",
                      "the call's answer exceeded " + std::to_string(max_answer) + " bytes");
  bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (clean_exit && !out.empty()) return out;
  return classify_exit(status, header);
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
  for (;;) {
    auto got =
        wire::read_frame(0, payload, options.max_request_bytes, wire::clock::time_point::max());
    if (got == wire::status::closed) return 0;
    if (got != wire::status::ok) return 1;  // the server went away mid-frame, or a protocol bug
    auto parts = wire::split_request(payload);
    call_header header;
    std::string problem;
    std::string answer = parse_header(parts.header, header, problem)
                             ? run_call(python, rules, header, parts.body, options.scratch_bytes)
                             : error_json("bad_request", "ValueError", problem);
    empty_dir(options.scratch_dir);
    if (wire::write_frame(1, answer) != wire::status::ok) return 1;
  }
}

}  // namespace tessera::sandbox_worker
