#include "config/settings.hpp"

#include <arpa/inet.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

#include "config/parse_value.hpp"

extern char** environ;

namespace tessera::config {
namespace {

using namespace parse;

const std::vector<setting_key> keys = [] {
  std::vector<setting_key> all = {
      {"server.listen", "address to listen on, HOST:PORT (port 0 picks a free one)",
       [](settings& s, const std::string& v) -> apply_result {
         auto a = parse_listen_address(v);
         if (!a) return "expected HOST:PORT, got '" + v + "'";
         s.listen = *a;
         return std::nullopt;
       }},
      {"server.api_token", "bearer token required on /api and /ws (empty: none)",
       [](settings& s, const std::string& v) -> apply_result {
         if (!v.empty() && v.size() < 16)
           return "a token must be at least 16 characters (this one has " +
                  std::to_string(v.size()) + "); generate one with: openssl rand -hex 32";
         s.api_token = v;
         return std::nullopt;
       }},
      {"server.allowed_hosts",
       "Host names served besides localhost, 127.0.0.1 and [::1] (name or name:port, "
       "comma-separated); on a loopback address any other Host gets 421",
       [](settings& s, const std::string& v) { return parse_host_list(v, s.allowed_hosts); }},
      {"server.allowed_origins",
       "origins (scheme://host[:port], comma-separated) besides the server's own that may send "
       "POST/PUT/PATCH/DELETE and open /ws",
       [](settings& s, const std::string& v) { return parse_origin_list(v, s.allowed_origins); }},
      {"server.metrics_public", "serve /metrics without the token even when one is set",
       [](settings& s, const std::string& v) { return parse_bool(v, s.metrics_public); }},
      {"server.keepalive_timeout_ms", "an idle keep-alive connection is closed after this long",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.keepalive_timeout, 100, 3'600'000);
       }},
      {"server.insecure", "allow a non-loopback listen address without an api_token",
       [](settings& s, const std::string& v) { return parse_bool(v, s.insecure); }},
      {"server.io_threads", "HTTP I/O threads (0: one per core)",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.io_threads, 0, 256);
       }},
      {"server.max_body_bytes", "largest accepted request body in bytes (larger: 413)",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.max_body_bytes, 1, uint64_t{1} << 30);
       }},
      {"server.max_connections",
       "connections open at once, HTTP and WebSocket together (past it: 503, closed)",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.max_connections, 1, 1'000'000);
       }},
      {"server.header_timeout_ms",
       "a request whose head and body have not arrived in this time gets 408 and is closed",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.header_timeout, 100, 600'000);
       }},
      {"server.max_json_depth", "deepest accepted JSON nesting in a request body",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.max_json_depth, 1, 512);
       }},
      {"server.request_timeout_ms", "how long a request may wait for the actors",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.request_timeout, 1, 600'000);
       }},
      {"server.shutdown_grace_ms", "on SIGINT/SIGTERM, how long in-flight requests may finish",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.shutdown_grace, 0, 600'000);
       }},
      {"server.ws_stall_timeout_ms",
       "a WebSocket client whose next message cannot be written for this long is closed",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.ws_stall_timeout, 100, 3'600'000);
       }},
      {"server.ws_idle_timeout_ms",
       "a WebSocket client heard nothing from for this long is closed (pinged at half of it)",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.ws_idle_timeout, 200, 86'400'000);
       }},
      {"server.ws_max_pending_bytes",
       "WebSocket output queued for one client before it is closed as too slow",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.ws_max_pending_bytes, 65536, 1ull << 32);
       }},
      {"storage.backend",
       "where durable state lives: rocksdb (embedded) or postgres (postgres_url)",
       [](settings& s, const std::string& v) -> apply_result {
         if (v != "rocksdb" && v != "postgres") return "must be \"rocksdb\" or \"postgres\"";
         s.backend = v;
         return std::nullopt;
       }},
      {"storage.postgres_url",
       "the PostgreSQL database of backend postgres (libpq connection string or URL)",
       [](settings& s, const std::string& v) -> apply_result {
         s.postgres_url = v;
         return std::nullopt;
       }},
      {"storage.postgres_pool", "connections to PostgreSQL at most",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.postgres_pool, 1, 1024);
       }},
      {"storage.change_retention", "changes of the change sequence kept at least",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.change_retention, 1000, 1'000'000'000);
       }},
      {"storage.data_dir", "RocksDB data directory",
       [](settings& s, const std::string& v) -> apply_result {
         if (v.empty()) return "must not be empty";
         s.data_dir = v;
         return std::nullopt;
       }},
      {"storage.sync", "fsync every commit (power-loss durability)",
       [](settings& s, const std::string& v) { return parse_bool(v, s.sync); }},
      {"storage.max_live",
       "live storage actors at most; beyond it the least recently used are passivated",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.max_live, 1, 100'000'000);
       }},
      {"storage.idle_passivate_ms", "an idle storage actor is passivated after this long",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.idle_passivate, 10, 86'400'000);
       }},
      {"panels.demos", "import the demo panels on the first start of an empty data dir",
       [](settings& s, const std::string& v) { return parse_bool(v, s.panel_demos); }},
      {"panels.max_retries", "re-runs of an action whose commit conflicted, before 409",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.panel_max_retries, 0, 1000);
       }},
      {"panels.max_batch",
       "queued actions of one panel run in one sandbox call and one commit (1: one per call)",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.panel_max_batch, 1, 1024);
       }},
      {"tasks.keep_runs", "newest runs kept per task; older runs and their logs are deleted",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.task_keep_runs, 1, 1'000'000);
       }},
      {"tasks.log_retention_days", "task log lines older than this many days are deleted",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.task_log_retention_days, 1, 36'500);
       }},
      {"tasks.max_catch_up", "most runs a misfire with policy catch_up makes",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.task_max_catch_up, 1, 1000);
       }},
      {"tasks.weather_url",
       "URL the weather demo task fetches (needs sandbox.network); empty: a generator",
       [](settings& s, const std::string& v) -> apply_result {
         if (!v.empty() && v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0)
           return "expected an http:// or https:// URL, got '" + v + "'";
         s.task_weather_url = v;
         return std::nullopt;
       }},
      {"runtime.scheduler_threads", "CAF scheduler threads (0: one per core)",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.scheduler_threads, 0, 256);
       }},
      {"sandbox.workers", "Python worker processes (0: two per core)",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_workers, 0, 256);
       }},
      {"sandbox.isolation",
       "bwrap (namespaces + unprivileged uid), gvisor (runsc) or process (rlimits + seccomp)",
       [](settings& s, const std::string& v) -> apply_result {
         if (v != "bwrap" && v != "gvisor" && v != "process")
           return "expected bwrap, gvisor or process, got '" + v + "'";
         s.sandbox_isolation = v;
         return std::nullopt;
       }},
      {"sandbox.executable", "path of tessera-sandbox (empty: beside the tessera binary)",
       [](settings& s, const std::string& v) -> apply_result {
         s.sandbox_executable = v;
         return std::nullopt;
       }},
      {"sandbox.network", "let handlers open network connections",
       [](settings& s, const std::string& v) { return parse_bool(v, s.sandbox_network); }},
      {"sandbox.timeout_ms", "default wall-clock limit of one handler call",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.sandbox_timeout, 10, 3'600'000);
       }},
      {"sandbox.max_timeout_ms", "largest timeout a panel or task may ask for",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.sandbox_max_timeout, 10, 3'600'000);
       }},
      {"sandbox.memory_mb", "default memory limit of one handler call, MiB",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_memory_mb, 16, 65536);
       }},
      {"sandbox.max_memory_mb", "largest memory limit a panel or task may ask for, MiB",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_max_memory_mb, 16, 65536);
       }},
      {"sandbox.max_output_bytes", "largest changed-storage JSON, and largest HTML, of one call",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.sandbox_max_output_bytes, 1024, 1ull << 30);
       }},
      {"sandbox.max_log_bytes", "captured print/logging output kept per call",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.sandbox_max_log_bytes, 0, 64ull << 20);
       }},
      {"sandbox.scratch_bytes", "size of a worker's private scratch dir (tmpfs)",
       [](settings& s, const std::string& v) {
         return parse_int<uint64_t>(v, s.sandbox_scratch_bytes, 1 << 16, 1ull << 32);
       }},
      {"sandbox.queue_limit", "calls that may wait for a worker before new ones are refused",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_queue_limit, 1, 1 << 24);
       }},
      {"sandbox.queue_timeout_ms", "longest a call waits for a free worker",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.sandbox_queue_timeout, 1, 3'600'000);
       }},
      {"sandbox.reuse",
       "panel (a warm process serves one panel's or task's calls in a row) or call (a fresh "
       "process per call)",
       [](settings& s, const std::string& v) -> apply_result {
         if (v != "panel" && v != "call") return "expected panel or call, got '" + v + "'";
         s.sandbox_reuse = v;
         return std::nullopt;
       }},
      {"sandbox.reuse_max_calls", "calls one warm process serves before it is replaced",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_reuse_max_calls, 1, 1u << 30);
       }},
      {"sandbox.reuse_idle_ms", "a warm process idle this long is retired",
       [](settings& s, const std::string& v) {
         return parse_millis(v, s.sandbox_reuse_idle, 1, 86'400'000);
       }},
      {"sandbox.warm_processes", "warm processes kept in all (least recently used retired first)",
       [](settings& s, const std::string& v) {
         return parse_int<uint32_t>(v, s.sandbox_warm_processes, 0, 100000);
       }},
  };
  for (auto& k : cluster_setting_keys()) all.push_back(std::move(k));
  return all;
}();

const setting_key* find_key(const std::string& name) {
  auto it = std::find_if(keys.begin(), keys.end(), [&](auto& k) { return k.name == name; });
  return it == keys.end() ? nullptr : &*it;
}

std::optional<std::string> toml_value_text(const toml::node& node) {
  if (auto s = node.as_string()) return s->get();
  if (auto i = node.as_integer()) return std::to_string(i->get());
  if (auto b = node.as_boolean()) return b->get() ? "true" : "false";
  if (auto a = node.as_array()) {
    std::string joined;
    for (auto& item : *a) {
      auto text = item.as_string();
      if (!text || text->get().find(',') != std::string::npos) return std::nullopt;
      joined += (joined.empty() ? "" : ",") + text->get();
    }
    return joined;
  }
  return std::nullopt;
}

std::optional<load_error> apply(settings& s, const std::string& key, const std::string& value,
                                const std::string& source) {
  auto k = find_key(key);
  if (!k) return load_error{"unknown setting '" + key + "' (" + source + ")"};
  if (auto err = k->apply(s, value)) return load_error{key + " (" + source + "): " + *err};
  return std::nullopt;
}

std::optional<load_error> apply_toml(settings& s, const toml::table& table,
                                     const std::string& prefix, const std::string& file) {
  for (auto& [name, node] : table) {
    std::string key =
        prefix.empty() ? std::string{name.str()} : prefix + "." + std::string{name.str()};
    if (auto sub = node.as_table()) {
      // A non-empty unknown section is reported by its first key; an empty one here.
      auto section = key + ".";
      if (sub->empty() && std::none_of(keys.begin(), keys.end(),
                                       [&](auto& k) { return k.name.rfind(section, 0) == 0; }))
        return load_error{"unknown section [" + key + "] in " + file};
      if (auto err = apply_toml(s, *sub, key, file)) return err;
      continue;
    }
    auto text = toml_value_text(node);
    if (!find_key(key)) return load_error{"unknown setting '" + key + "' in " + file};
    if (!text)
      return load_error{key + " in " + file +
                        ": expected a string, integer, boolean or array of strings"};
    if (auto err = apply(s, key, *text, file)) return err;
  }
  return std::nullopt;
}

}  // namespace

const std::vector<setting_key>& setting_keys() { return keys; }

std::string environment_name(const std::string& key) {
  std::string out = "TESSERA_";
  for (char c : key) out += c == '.' ? '_' : static_cast<char>(std::toupper(c));
  return out;
}

std::optional<listen_address> parse_listen_address(const std::string& text) {
  std::string host;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return std::nullopt;
  }
  listen_address out;
  if (host.empty()) return std::nullopt;
  out.host = host;
  if (parse_int<uint16_t>(port, out.port, 0, 65535)) return std::nullopt;
  return out;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr v4{};
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

std::variant<settings, load_error> load_settings(const sources& from) {
  settings s;
  if (from.config_file) {
    toml::table table;
    try {
      table = toml::parse_file(*from.config_file);
    } catch (const toml::parse_error& e) {
      std::ostringstream msg;
      msg << "cannot read config file " << *from.config_file << ": " << e.description();
      if (e.source().begin.line > 0) msg << " (line " << e.source().begin.line << ")";
      return load_error{msg.str()};
    }
    if (auto err = apply_toml(s, table, "", *from.config_file)) return *err;
  }
  std::map<std::string, std::string> env_keys;  // environment name -> key
  for (auto& k : keys) env_keys[environment_name(k.name)] = k.name;
  for (auto& [name, value] : from.environment) {
    if (name.rfind("TESSERA_", 0) != 0 || name == "TESSERA_CONFIG") continue;
    auto it = env_keys.find(name);
    if (it == env_keys.end()) return load_error{"unknown environment variable " + name};
    if (auto err = apply(s, it->second, value, "environment " + name)) return *err;
  }
  for (auto& [key, value] : from.overrides)
    if (auto err = apply(s, key, value, "command line")) return *err;
  if (auto err = validate(s)) return load_error{*err};
  return s;
}

std::optional<std::string> validate(const settings& s) {
  if (!is_loopback(s.listen.host) && s.api_token.empty() && !s.insecure)
    return "refusing to listen on non-loopback address " + s.listen.host +
           " without server.api_token (--api-token); pass --insecure to do it anyway";
  if (s.backend == "postgres" && s.postgres_url.empty())
    return "storage.backend = \"postgres\" needs storage.postgres_url (a libpq connection "
           "string or a postgresql:// URL)";
  if (s.sandbox_timeout > s.sandbox_max_timeout)
    return "sandbox.timeout_ms must not exceed sandbox.max_timeout_ms";
  if (s.sandbox_memory_mb > s.sandbox_max_memory_mb)
    return "sandbox.memory_mb must not exceed sandbox.max_memory_mb";
  return validate_cluster(s);
}

std::map<std::string, std::string> tessera_environment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string entry{*e};
    auto eq = entry.find('=');
    if (eq == std::string::npos || entry.rfind("TESSERA_", 0) != 0) continue;
    out[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return out;
}

const settings& defaults() {
  static const settings embedded{};
  return embedded;
}

std::chrono::milliseconds actor_wait(const settings& s) { return s.request_timeout * 6; }

std::chrono::milliseconds user_code_wait(const settings& s) {
  return s.sandbox_max_timeout + s.sandbox_queue_timeout + std::chrono::seconds(15);
}

}  // namespace tessera::config
