#include "adapters/sandbox/worker_process.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "adapters/error.hpp"

namespace tessera::adapters {
namespace {

namespace wire = tessera::sandbox_wire;

constexpr const char* bwrap_path = "/usr/bin/bwrap";
constexpr const char* setpriv_path = "/usr/bin/setpriv";
constexpr const char* nobody = "65534";
constexpr const char* runsc_path = "/usr/bin/runsc";
constexpr const char* sandbox_exe = "/opt/tessera/tessera-sandbox";

std::vector<std::string> bwrap_argv(const worker_spawn_options& opts) {
  std::vector<std::string> argv;
  if (::geteuid() == 0)  // root in the sandbox must not be root on the host
    argv = {setpriv_path,
            std::string{"--reuid="} + nobody,
            std::string{"--regid="} + nobody,
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--"};
  std::vector<std::string> b = {
      bwrap_path, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
      "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink",
      "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--ro-bind-try", "/etc/ld.so.cache",
      "/etc/ld.so.cache", "--proc", "/proc", "--dev", "/dev", "--size",
      std::to_string(opts.scratch_bytes), "--tmpfs", "/scratch", "--chdir", "/scratch",
      // The executable is copied in from descriptor 3: its build directory may be unreadable
      // to the unprivileged uid (a 0700 temp dir, say).
      "--perms", "0555", "--file", "3", sandbox_exe, "--clearenv", "--setenv", "TZ", "UTC",
      "--setenv", "LANG", "C.UTF-8", "--setenv", "HOME", "/scratch", "--setenv", "TMPDIR",
      "/scratch", "--setenv", "PATH", "/usr/bin", "--remount-ro", "/", sandbox_exe, "--scratch",
      "/scratch", "--scratch-bytes", std::to_string(opts.scratch_bytes)};
  if (opts.network) {
    b.insert(b.begin() + 2, "--share-net");
    b.push_back("--network");
  }
  argv.insert(argv.end(), b.begin(), b.end());
  return argv;
}

// An OCI bundle for runsc: a read-only root holding only mount points, the /lib* and /bin
// symlinks and a copy of the worker; /usr bound read-only, /proc, a size-capped tmpfs at
// /scratch; uid 65534, no capabilities, new pid/network/ipc/uts/mount namespaces.
std::optional<std::string> write_gvisor_bundle(const std::string& dir,
                                               const worker_spawn_options& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path root = fs::path{dir} / "rootfs";
  for (auto* sub : {"usr", "opt/tessera", "scratch", "proc", "dev", "etc"})
    fs::create_directories(root / sub, ec);
  for (auto [link, target] :
       {std::pair{"lib", "usr/lib"}, {"lib64", "usr/lib64"}, {"bin", "usr/bin"}})
    fs::create_symlink(target, root / link, ec);
  fs::copy_file(opts.executable, root / "opt/tessera/tessera-sandbox", ec);
  if (ec) return "cannot copy " + opts.executable + " into the bundle: " + ec.message();
  fs::permissions(dir,
                  fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                      fs::perms::others_read | fs::perms::others_exec,
                  ec);
  auto scratch = std::to_string(opts.scratch_bytes);
  nlohmann::json no_caps = nlohmann::json::array();
  nlohmann::json config = {
      {"ociVersion", "1.0.0"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", 65534}, {"gid", 65534}}},
        {"args", {sandbox_exe, "--scratch", "/scratch", "--scratch-bytes", scratch}},
        {"env", {"PATH=/usr/bin", "TZ=UTC", "LANG=C.UTF-8", "HOME=/scratch", "TMPDIR=/scratch"}},
        {"cwd", "/scratch"},
        {"capabilities",
         {{"bounding", no_caps},
          {"effective", no_caps},
          {"inheritable", no_caps},
          {"permitted", no_caps},
          {"ambient", no_caps}}},
        {"noNewPrivileges", true}}},
      {"root", {{"path", "rootfs"}, {"readonly", true}}},
      {"hostname", "sandbox"},
      {"mounts",
       {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
        {{"destination", "/usr"},
         {"type", "bind"},
         {"source", "/usr"},
         {"options", {"rbind", "ro"}}},
        {{"destination", "/scratch"},
         {"type", "tmpfs"},
         {"source", "tmpfs"},
         {"options", {"size=" + scratch, "mode=1777"}}}}},
      {"linux",
       {{"namespaces",
         {{{"type", "pid"}},
          {{"type", "network"}},
          {{"type", "ipc"}},
          {{"type", "uts"}},
          {{"type", "mount"}}}}}}};
  if (opts.network) config["process"]["args"].push_back("--network");
  std::ofstream out{fs::path{dir} / "config.json"};
  out << config.dump(2);
  if (!out) return "cannot write " + dir + "/config.json";
  return std::nullopt;
}

std::vector<std::string> runsc_argv(const std::string& bundle, const std::string& id,
                                    bool network) {
  std::vector<std::string> argv = {runsc_path, network ? "--network=host" : "--network=none",
                                   "--root", bundle + "/state"};
  if (::geteuid() != 0) argv.push_back("--rootless");
  argv.insert(argv.end(), {"run", "--bundle", bundle, id});
  return argv;
}

// Runs a short helper command to completion (runsc delete); its output is discarded.
void run_quietly(std::vector<std::string> argv) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  char* envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  pid_t pid = -1;
  if (::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), envp) == 0)
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  posix_spawn_file_actions_destroy(&fa);
}

caf::error spawn_error(const std::string& what) {
  return make_error(errc::unavailable, "cannot start the sandbox worker: " + what);
}

}  // namespace

caf::expected<std::unique_ptr<worker_process>> worker_process::start(
    const worker_spawn_options& opts) {
  // A worker that dies makes our next write to its pipe raise SIGPIPE, whose default action
  // would end the server: take EPIPE as an error value instead.
  static const bool sigpipe_ignored = [] { return std::signal(SIGPIPE, SIG_IGN) != SIG_ERR; }();
  (void)sigpipe_ignored;
  if (::access(opts.executable.c_str(), X_OK) != 0)
    return spawn_error(opts.executable + " is not an executable file");
  bool sandboxed = opts.level == isolation::bwrap;
  if (sandboxed && ::access(bwrap_path, X_OK) != 0)
    return spawn_error("sandbox.isolation=bwrap needs bubblewrap (apt-get install bubblewrap)");
  if (opts.level == isolation::gvisor && ::access(runsc_path, X_OK) != 0)
    return spawn_error("sandbox.isolation=gvisor needs gVisor's runsc (apt-get install runsc)");
  std::unique_ptr<worker_process> w{new worker_process()};
  w->max_answer_bytes_ = opts.max_answer_bytes;

  std::vector<std::string> argv;
  std::vector<std::string> envp = {"PATH=/usr/bin:/bin", "TZ=UTC", "LANG=C.UTF-8"};
  if (sandboxed) {
    argv = bwrap_argv(opts);
  } else if (opts.level == isolation::gvisor) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tessera-gvisor-XXXXXX");
    if (!::mkdtemp(tmpl.data())) return spawn_error(std::string{"mkdtemp: "} + strerror(errno));
    w->bundle_dir_ = tmpl;
    static std::atomic<uint64_t> containers{0};
    w->container_id_ = "tessera-" + std::to_string(::getpid()) + "-" + std::to_string(++containers);
    if (auto err = write_gvisor_bundle(tmpl, opts)) return spawn_error(*err);
    argv = runsc_argv(tmpl, w->container_id_, opts.network);
  } else {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tessera-scratch-XXXXXX");
    if (!::mkdtemp(tmpl.data())) return spawn_error(std::string{"mkdtemp: "} + strerror(errno));
    w->scratch_dir_ = tmpl;
    argv = {opts.executable, "--scratch", tmpl, "--scratch-bytes",
            std::to_string(opts.scratch_bytes)};
    if (opts.network) argv.push_back("--network");
    envp.push_back("HOME=" + tmpl);
    envp.push_back("TMPDIR=" + tmpl);
  }

  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return spawn_error(strerror(errno));
  w->can_lend_ = opts.level != isolation::gvisor;
  int made = w->can_lend_ ? ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out)
                          : ::pipe2(out, O_CLOEXEC);
  if (made != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return spawn_error(strerror(errno));
  }
  int exe_fd = sandboxed ? ::open(opts.executable.c_str(), O_RDONLY | O_CLOEXEC) : -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  if (exe_fd >= 0) posix_spawn_file_actions_adddup2(&fa, exe_fd, 3);
  posix_spawn_file_actions_addclosefrom_np(&fa, exe_fd >= 0 ? 4 : 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> cargv, cenvp;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envp) cenvp.push_back(e.data());
  cenvp.push_back(nullptr);
  int rc = ::posix_spawn(&w->pid_, cargv[0], &fa, &attr, cargv.data(), cenvp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  ::close(out[1]);
  if (exe_fd >= 0) ::close(exe_fd);
  w->to_worker_ = in[1];
  w->from_worker_ = out[0];
  if (rc != 0) {
    w->pid_ = -1;
    return spawn_error(cargv[0] + std::string{": "} + strerror(rc));
  }
  ::fcntl(w->from_worker_, F_SETFL, O_NONBLOCK);

  std::string ready;
  auto got =
      wire::read_frame(w->from_worker_, ready, 1 << 16, wire::clock::now() + opts.start_timeout);
  if (got != wire::status::ok) {
    w->kill();
    return spawn_error(std::string{"no ready signal ("} + std::string{wire::to_string(got)} +
                       (w->exit_description_.empty() ? "" : ", " + w->exit_description_) +
                       "); see the server log for the worker's own message");
  }
  auto j = nlohmann::json::parse(ready, nullptr, false);
  if (!j.is_object() || !j.value("ready", false)) {
    auto why = j.is_object() ? j.value("error", std::string{"bad ready frame"}) : ready;
    w->kill();
    return spawn_error(why);
  }
  return w;
}

worker_process::~worker_process() {
  kill();
  for (int fd : fds_) ::close(fd);
  if (to_worker_ >= 0) ::close(to_worker_);
  if (from_worker_ >= 0) ::close(from_worker_);
  if (!bundle_dir_.empty()) {
    run_quietly({runsc_path, "--root", bundle_dir_ + "/state", "delete", "--force", container_id_});
    std::error_code ec;
    std::filesystem::remove_all(bundle_dir_, ec);
  }
  if (!scratch_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir_, ec);
  }
}

wire::status worker_process::exchange(std::string_view payload, std::string& answer,
                                      wire::clock::time_point deadline) {
  if (auto s = send(payload); s != wire::status::ok) return s;
  return receive(answer, deadline);
}

wire::status worker_process::send(std::string_view payload) {
  return wire::write_frame(to_worker_, payload);
}

wire::status worker_process::receive(std::string& answer, wire::clock::time_point deadline) {
  if (!can_lend_) return wire::read_frame(from_worker_, answer, max_answer_bytes_, deadline);
  return wire::read_frame_with_fds(from_worker_, answer, max_answer_bytes_, deadline, fds_);
}

void worker_process::kill() {
  if (pid_ <= 0) return;
  ::kill(-pid_, SIGKILL);  // the process group: bwrap or the worker, and any call process
  ::kill(pid_, SIGKILL);
  reap(true);
}

bool worker_process::alive() {
  if (pid_ > 0) reap(false);
  return pid_ > 0;
}

void worker_process::reap(bool block) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return;
  if (r == pid_) {
    if (WIFEXITED(status))
      exit_description_ = "exit status " + std::to_string(WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) {
      const char* name = sigabbrev_np(WTERMSIG(status));
      exit_description_ = std::string{"killed by SIG"} + (name ? name : "?");
    }
  }
  pid_ = -1;
}

}  // namespace tessera::adapters
