#include "adapters/sandbox/worker/python_host.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pybind11/embed.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>
#include <vector>

#include "adapters/sandbox/worker/runner_source.hpp"

namespace py = pybind11;

namespace tessera::sandbox_worker {
namespace {

constexpr auto python_path = L"/usr/bin/python3.11";

py::object& runner() {
  static py::object* module = nullptr;
  if (!module) module = new py::object();  // lives as long as the process; never finalised
  return *module;
}

std::string describe(const py::error_already_set& e) { return e.what(); }

// The dicts a warm call process must find unchanged after a call, in the order they are
// checked: a holder before what it holds (sys.modules before a module's dict, a module's dict
// before its classes' and the objects it holds), so that, stopping at the first change, a dict
// is only read while its holder, hence the dict itself, is known to be alive. Borrowed pointers.
struct watched_dict {
  PyObject* dict;
  std::string what;  // for the discard reason: "module json", "class json.JSONEncoder"
};
std::vector<watched_dict>& watch_list() {
  static auto* list = new std::vector<watched_dict>();  // lives as long as the process
  return *list;
}

uint64_t version_of(PyObject* dict) {
  return reinterpret_cast<PyDictObject*>(dict)->ma_version_tag;
}

// The global counter's value now: a new dict is stamped with the next one.
uint64_t dict_counter_now() {
  PyObject* d = PyDict_New();
  uint64_t v = version_of(d);
  Py_DECREF(d);
  return v;
}

void list_watched_dicts() {
  auto& list = watch_list();
  list.clear();
  std::unordered_set<PyObject*> seen;
  auto add = [&](PyObject* dict, std::string what) {
    if (dict && PyDict_Check(dict) && seen.insert(dict).second)
      list.push_back({dict, std::move(what)});
  };
  PyObject* modules = PySys_GetObject("modules");
  add(PyModule_GetDict(PyImport_AddModule("sys")), "module sys");
  add(modules, "sys.modules");
  add(PyEval_GetBuiltins(), "builtins");
  Py_ssize_t pos = 0;
  PyObject *name, *module;
  while (PyDict_Next(modules, &pos, &name, &module))
    if (PyModule_Check(module) && PyUnicode_Check(name))
      add(PyModule_GetDict(module), std::string{"module "} + PyUnicode_AsUTF8(name));
  for (size_t index = 0, modules_end = list.size(); index < modules_end; ++index) {
    if (list[index].what.rfind("module ", 0) != 0) continue;
    std::string module_name = list[index].what.substr(7);
    pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(list[index].dict, &pos, &key, &value)) {
      if (!PyType_Check(value) || !PyUnicode_Check(key)) continue;
      auto* type = reinterpret_cast<PyTypeObject*>(value);
      if (!PyType_HasFeature(type, Py_TPFLAGS_HEAPTYPE)) continue;  // static types are read-only
      add(type->tp_dict, "class " + module_name + "." + PyUnicode_AsUTF8(key));
    }
  }
  try {
    add(runner().attr("_HANDLER_BUILTINS").ptr(), "the handlers' builtins");
    add(py::module_::import("os").attr("environ").attr("_data").ptr(), "os.environ");
  } catch (const py::error_already_set&) {
  }
}

// What the C side of the interpreter and the process looked like when the watch began.
struct process_baseline {
  uint64_t counter = 0;
  int recursion_limit = 0;
  std::string cwd;
  size_t environment = 0;
  int status_fd = -1;       // /proc/self/status, opened before the descriptors are recorded
  std::string signals;      // its SigBlk, SigIgn and SigCgt lines
  std::vector<pollfd> fds;  // 0..63 (RLIMIT_NOFILE is 64): which are open
};
process_baseline& baseline() {
  static process_baseline b;
  return b;
}

std::string working_directory() {
  char buf[4096];
  return ::getcwd(buf, sizeof buf) ? buf : "";
}

size_t environment_hash() {
  size_t h = 0;
  for (char** e = environ; e && *e; ++e) h = h * 1000003 ^ std::hash<std::string_view>{}(*e);
  return h;
}

// Which signals are blocked, ignored and caught: one pread of /proc/self/status (the kernel
// regenerates it), where asking sigaction for every signal costs 64 filtered system calls.
std::string signal_masks(int status_fd) {
  char buf[4096];
  ssize_t n = status_fd < 0 ? -1 : ::pread(status_fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "unreadable";
  std::string_view text(buf, static_cast<size_t>(n));
  std::string out;
  for (auto* name : {"SigBlk:", "SigIgn:", "SigCgt:"}) {
    auto at = text.find(name);
    if (at == std::string_view::npos) return "unreadable";
    out += text.substr(at, text.find('\n', at) - at);
  }
  return out;
}

std::vector<pollfd> descriptor_states() {
  std::vector<pollfd> fds(64);
  for (int i = 0; i < 64; ++i) fds[i] = {i, 0, 0};
  ::poll(fds.data(), fds.size(), 0);  // POLLNVAL marks a closed descriptor: one system call
  return fds;
}

}  // namespace

std::string python_host::start() {
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  PyConfig_SetString(&config, &config.program_name, python_path);
  PyConfig_SetString(&config, &config.executable, python_path);
  config.install_signal_handlers = 0;
  config.write_bytecode = 0;
  config.buffered_stdio = 0;
  try {
    py::initialize_interpreter(&config, 0, nullptr, false);
  } catch (const std::exception& e) {
    PyConfig_Clear(&config);
    return std::string{"cannot start Python: "} + e.what();
  }
  PyConfig_Clear(&config);
  try {
    auto types = py::module_::import("types");
    auto sys = py::module_::import("sys");
    py::object module = types.attr("ModuleType")("tessera_runner");
    sys.attr("modules")["tessera_runner"] = module;
    py::exec(runner_source, module.attr("__dict__"));
    module.attr("preload")();
    py::module_::import("gc").attr("collect")();
    py::module_::import("gc").attr("freeze")();
    runner() = std::move(module);
    list_watched_dicts();
  } catch (const py::error_already_set& e) {
    return "cannot load the handler runner: " + describe(e);
  }
  return {};
}

std::string python_host::versions_json() const {
  try {
    auto sys = py::module_::import("sys");
    auto jinja2 = py::module_::import("jinja2");
    return R"({"python":")" + py::str(sys.attr("version")).cast<std::string>().substr(0, 6) +
           R"(","jinja2":")" + jinja2.attr("__version__").cast<std::string>() + "\"}";
  } catch (const py::error_already_set&) {
    return "{}";
  }
}

void python_host::remember(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object()) return;
  try {
    py::object template_source = py::none(), handler_source = py::none();
    if (auto t = j.find("template"); t != j.end() && t->is_string())
      template_source = py::str(t->get<std::string>());
    if (auto h = j.find("handler"); h != j.end() && h->is_string())
      handler_source = py::str(h->get<std::string>());
    runner().attr("remember")(template_source, handler_source);
  } catch (const py::error_already_set&) {
  }
}

std::string python_host::run(std::string_view kind, std::string_view body,
                             const call_limits& limits, bool& fresh_template, bool& ok) {
  try {
    py::dict l;
    l["memory_mb"] = limits.memory_mb;
    l["max_output_bytes"] = limits.max_output_bytes;
    l["max_log_bytes"] = limits.max_log_bytes;
    l["max_log_lines"] = limits.max_log_lines;
    l["max_json_depth"] = limits.max_json_depth;
    py::object out = runner().attr("run")(py::str(kind.data(), kind.size()),
                                          py::bytes(body.data(), body.size()), l);
    py::object state = runner().attr("_state");
    fresh_template = state.attr("fresh_template").cast<bool>();
    ok = state.attr("ok").cast<bool>();
    return out.cast<std::string>();
  } catch (const py::error_already_set&) {
    ok = false;
    // Only reachable when the runner itself broke (it catches everything else).
    return R"x({"ok":false,"error":{"kind":"handler_error","type":"RuntimeError",)x"
           R"x("message":"the handler broke the sandbox runner itself (did it replace parts )x"
           R"x(of json, sys or builtins?)"},"logs":[]})x";
  }
}

void python_host::begin_reuse_watch() {
  auto& b = baseline();
  b.counter = dict_counter_now();
  b.recursion_limit = Py_GetRecursionLimit();
  b.cwd = working_directory();
  b.environment = environment_hash();
  if (b.status_fd < 0) b.status_fd = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  b.signals = signal_masks(b.status_fd);
  b.fds = descriptor_states();
}

std::string python_host::reuse_spoiled() const {
  auto& b = baseline();
  // A changed holder may have freed what it held: stop at the first change. The dicts are
  // scattered over the heap, so fetch a few ahead (a prefetch of freed memory cannot fault).
  auto& list = watch_list();
  for (size_t i = 0; i < list.size(); ++i) {
    if (i + 8 < list.size()) __builtin_prefetch(list[i + 8].dict);
    if (version_of(list[i].dict) > b.counter) return list[i].what + " changed";
  }
  PyThreadState* ts = PyThreadState_Get();
  if (ts->c_tracefunc || ts->c_profilefunc) return "a trace or profile function was set";
  if (Py_GetRecursionLimit() != b.recursion_limit) return "the recursion limit changed";
  if (working_directory() != b.cwd) return "the working directory changed";
  if (environment_hash() != b.environment) return "the environment changed";
  if (b.signals == "unreadable" || signal_masks(b.status_fd) != b.signals)
    return "a signal's disposition or the signal mask changed";
  auto fds = descriptor_states();
  for (size_t i = 0; i < fds.size(); ++i)
    if ((fds[i].revents & POLLNVAL) != (b.fds[i].revents & POLLNVAL))
      return "descriptor " + std::to_string(i) +
             ((fds[i].revents & POLLNVAL) ? " was closed" : " was opened");
  return {};
}

}  // namespace tessera::sandbox_worker
