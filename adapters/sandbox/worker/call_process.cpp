#include "adapters/sandbox/worker/call_process.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include "adapters/sandbox/wire.hpp"
#include "adapters/sandbox/worker/call_header.hpp"

namespace tessera::sandbox_worker {
namespace {

namespace wire = tessera::sandbox_wire;
using wire::micros;

// A warm process may not use more CPU than this over its life (RLIMIT_CPU cannot be raised
// again under seccomp); it is retired before a call could reach the limit.
constexpr unsigned warm_cpu_budget_s = 600;

int64_t cpu_micros(const rusage& u) {
  return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000 + u.ru_utime.tv_usec +
         u.ru_stime.tv_usec;
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

}  // namespace

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

}  // namespace tessera::sandbox_worker
