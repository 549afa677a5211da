// build/tessera-sandbox: the Python worker process. The server starts it (inside bubblewrap by
// default, see adapters/sandbox/worker_process.hpp) and speaks adapters/sandbox/wire.hpp on its
// stdin/stdout. Not meant to be run by hand, though it can be, for debugging:
//
//   tessera-sandbox [--scratch DIR] [--scratch-bytes N] [--network]
//
// Start-up: the first frame it writes is {"ready":true,"pid":N,"python":..,"jinja2":..}, or
// {"ready":false,"error":"..."} followed by exit status 1.
#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "adapters/sandbox/wire.hpp"
#include "adapters/sandbox/worker/confinement.hpp"
#include "adapters/sandbox/worker/python_host.hpp"
#include "adapters/sandbox/worker/zygote.hpp"

namespace {

using namespace tessera::sandbox_worker;

int fail(const std::string& message) {
  nlohmann::json j = {{"ready", false}, {"error", message}};
  tessera::sandbox_wire::write_frame(1, j.dump());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  zygote_options options;
  bool network = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--scratch" && i + 1 < argc)
      options.scratch_dir = argv[++i];
    else if (arg == "--scratch-bytes" && i + 1 < argc)
      options.scratch_bytes = std::stoull(argv[++i]);
    else if (arg == "--network")
      network = true;
    else
      return fail("unknown argument " + arg);
  }
  // No core dumps, no /proc/<pid>/mem or ptrace from call processes (same uid), die with the
  // server when it is not bubblewrap that ties us to it.
  ::prctl(PR_SET_DUMPABLE, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::signal(SIGPIPE, SIG_IGN);
  if (options.scratch_dir.empty()) {
    char cwd[4096];
    if (!::getcwd(cwd, sizeof cwd)) return fail("cannot read the working directory");
    options.scratch_dir = cwd;
  }
  if (::chdir(options.scratch_dir.c_str()) != 0)
    return fail("cannot enter scratch dir " + options.scratch_dir + ": " + std::strerror(errno));

  python_host python;
  if (auto err = python.start(); !err.empty()) return fail(err);
  confinement rules{network};
  if (!rules.ready()) return fail("cannot build the seccomp filter");

  auto ready = nlohmann::json::parse(python.versions_json());
  ready["huge_pages_bytes"] = getenv("TESSERA_NO_THP") ? 0 : collapse_to_huge_pages();
  ready["ready"] = true;
  ready["pid"] = ::getpid();
  if (tessera::sandbox_wire::write_frame(1, ready.dump()) != tessera::sandbox_wire::status::ok)
    return 1;
  return run_zygote(python, rules, options);
}
