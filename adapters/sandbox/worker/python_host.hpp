// The embedded CPython of build/tessera-sandbox and the runner module (runner.py) inside it.
//
// Contract: `start` initialises an isolated interpreter (no environment variables, no user site,
// no program directory on sys.path; sys.executable is Debian's /usr/bin/python3.11), loads
// runner.py from the string compiled into the binary and runs its preload(); it returns an error
// message on failure. `run` calls runner.run() and returns the response JSON; it never throws.
// Single-threaded: the zygote holds the GIL for its whole life, and a forked call process calls
// `after_fork_child` before touching Python. pybind11 stays inside python_host.cpp.
#pragma once

#include <string>
#include <string_view>

namespace tessera::sandbox_worker {

struct call_limits {
  int memory_mb = 256;
  size_t max_output_bytes = 1 << 20;
  size_t max_log_bytes = 64 << 10;
  size_t max_log_lines = 1000;
  unsigned max_json_depth = 64;
};

class python_host {
 public:
  // Empty on success, else what went wrong.
  std::string start();

  // Describes the interpreter for the ready frame: {"python": "...", "jinja2": "..."}.
  std::string versions_json() const;

  // No PyOS_BeforeFork/PyOS_AfterFork_* around the zygote's fork: they exist for processes with
  // other threads (locks another thread might hold, thread states to drop) and run the
  // Python-level at-fork hooks, which together cost a call process about 220 page faults
  // (a third of its life) here. The zygote has one thread, holds the GIL, is not importing when
  // it forks, and its pthread_self (hence threading's main-thread ident) is the same in the
  // child. The one hook that matters, reseeding `random`, runner.run() does itself.

  // `fresh_template` is set when the call compiled a template or handler the zygote has not
  // cached.
  // `ok` is set when the call succeeded (the runner answered {"ok": true}).
  std::string run(std::string_view kind, std::string_view body, const call_limits& limits,
                  bool& fresh_template, bool& ok);

  // Warm reuse (sandbox.reuse = "panel"). In a call process, `begin_reuse_watch` records the
  // interpreter-wide state once, before its first call; `reuse_spoiled` then says, after each
  // call, what a call changed that the next one could see: builtins (the real ones and the
  // handlers'), sys.modules, the dict of any loaded module or of a class defined in one (these
  // include sys's hooks: excepthook, displayhook, stdout), trace and profile functions, the
  // recursion limit, signal dispositions, the working directory, the environment, open
  // descriptors. Empty means nothing changed. It compares CPython 3.11's dict version tags
  // (stamped from one global counter at every change) against the counter's value when the
  // watch began: a few microseconds for a few thousand dicts, no walk of the heap. What it
  // cannot see: a mutation inside an object graph (a list held by a module, an instance's
  // attributes). The watched dicts are listed in the zygote (`start`), so the list is shared.
  void begin_reuse_watch();
  std::string reuse_spoiled() const;

  // Compiles a call's template and handler into the zygote's caches (after a call process
  // proved they compile), so later calls inherit them compiled. Best effort, never throws.
  void remember(const std::string& body);
};

}  // namespace tessera::sandbox_worker
