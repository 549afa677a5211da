#include "adapters/sandbox/worker/python_host.hpp"

#include <pybind11/embed.h>

#include <nlohmann/json.hpp>

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
                             const call_limits& limits, bool& fresh_template) {
  try {
    py::dict l;
    l["memory_mb"] = limits.memory_mb;
    l["max_output_bytes"] = limits.max_output_bytes;
    l["max_log_bytes"] = limits.max_log_bytes;
    l["max_log_lines"] = limits.max_log_lines;
    l["max_json_depth"] = limits.max_json_depth;
    py::object out = runner().attr("run")(py::str(kind.data(), kind.size()),
                                          py::bytes(body.data(), body.size()), l);
    fresh_template = runner().attr("fresh_template").cast<bool>();
    return out.cast<std::string>();
  } catch (const py::error_already_set&) {
    // Only reachable when the runner itself broke (it catches everything else).
    return R"x({"ok":false,"error":{"kind":"handler_error","type":"RuntimeError",)x"
           R"x("message":"the handler broke the sandbox runner itself (did it replace parts )x"
           R"x(of json, sys or builtins?)"},"logs":[]})x";
  }
}

}  // namespace tessera::sandbox_worker
