// tessera's runtime settings and where they come from.
//
// Contract: `load_settings` builds a `settings` from, lowest precedence first, the embedded
// defaults, a TOML file, `TESSERA_*` environment variables and command-line overrides. Every
// source is checked against one key table (`setting_keys()`), so an unknown key or a value of
// the wrong shape fails with a message that names the key and the source. On success nothing
// has been started; on failure nothing has been changed. No CAF here: this layer is plain C++.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tessera::config {

struct listen_address {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
};

// [cluster]: several servers on one PostgreSQL database as one cluster (docs/architecture.md,
// "Cluster").
struct cluster_settings {
  bool enabled = false;
  std::string node_name;                      // empty: the host name and the HTTP port
  listen_address listen{"127.0.0.1", 0};      // the CAF middleman's; port 0 picks one
  std::string advertise;                      // HOST:PORT peers dial; empty: the listen one
  std::chrono::milliseconds heartbeat{1000};  // a member's heartbeat period
  std::chrono::milliseconds lease{3000};      // a heartbeat older than this: declared dead
  std::string tls_cert, tls_key, tls_ca;      // PEM files; all three or none
  bool tls() const { return !tls_cert.empty(); }
};

struct settings {
  // [server]
  listen_address listen;
  std::string api_token;    // empty: no authentication (allowed on loopback only)
  bool insecure = false;    // allow a non-loopback bind without a token
  uint32_t io_threads = 0;  // 0: one per core
  uint64_t max_body_bytes = 1 << 20;
  uint32_t max_json_depth = 64;
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds shutdown_grace{5000};
  uint64_t max_connections = 10000;                    // HTTP + WebSocket; past it: 503, closed
  std::chrono::milliseconds header_timeout{10000};     // a request's head and body must arrive
  std::chrono::milliseconds ws_stall_timeout{10000};   // a WebSocket write stuck this long closes
  uint64_t ws_max_pending_bytes = 4 << 20;             // queued WebSocket output before closing
  std::chrono::milliseconds ws_idle_timeout{60000};    // silent this long: closed (ping at half)
  std::chrono::milliseconds keepalive_timeout{60000};  // an idle keep-alive connection closes
  // Host names served besides the loopback names (loopback listen: the only ones; otherwise,
  // when set, the only ones), as "name" (any port) or "name:port".
  std::vector<std::string> allowed_hosts;
  // Origins (scheme://host[:port]) besides the server's own whose state-changing requests and
  // WebSocket upgrades are accepted.
  std::vector<std::string> allowed_origins;
  bool metrics_public = false;  // /metrics without the token even when one is set
  // [storage]
  std::string backend = "rocksdb";  // "rocksdb" | "postgres"
  std::string data_dir = "./data";
  bool sync = false;         // fsync every commit
  std::string postgres_url;  // backend postgres: a libpq connection string or URL (secret)
  uint32_t postgres_pool = 8;
  uint64_t change_retention = 1'000'000;  // changes of the change sequence kept at least
  std::chrono::milliseconds idle_passivate{30000};
  uint64_t max_live = 100000;  // live storage actors; the least recently used beyond are passivated
  // [panels]
  bool panel_demos = true;  // import the demo panels on the first start of an empty data dir
  uint32_t panel_max_retries = 16;
  uint32_t panel_max_batch = 64;  // queued actions of one panel sent in one sandbox call
  // [tasks]
  uint32_t task_keep_runs = 100;  // newest runs kept per task (older ones and their logs go)
  uint32_t task_log_retention_days = 30;  // log lines older than this are deleted (hourly sweep)
  uint32_t task_max_catch_up = 10;        // runs a catch_up misfire makes at most
  std::string task_weather_url;           // the weather demo's source (empty: a generator)
  // [runtime]
  uint32_t scheduler_threads = 0;  // 0: CAF's default (one per core)
  // [sandbox]
  uint32_t sandbox_workers = 0;             // 0: two per core
  std::string sandbox_isolation = "bwrap";  // "bwrap" | "gvisor" | "process"
  std::string sandbox_executable;           // empty: tessera-sandbox beside the tessera binary
  bool sandbox_network = false;
  std::chrono::milliseconds sandbox_timeout{2000};
  std::chrono::milliseconds sandbox_max_timeout{30000};
  uint32_t sandbox_memory_mb = 256;
  uint32_t sandbox_max_memory_mb = 1024;
  uint64_t sandbox_max_output_bytes = 1 << 20;
  uint64_t sandbox_max_log_bytes = 64 << 10;
  uint64_t sandbox_scratch_bytes = 16 << 20;
  uint32_t sandbox_queue_limit = 1024;
  std::chrono::milliseconds sandbox_queue_timeout{5000};
  std::string sandbox_reuse = "panel";  // "panel" (a warm process per panel/task) | "call"
  uint32_t sandbox_reuse_max_calls = 10000;
  std::chrono::milliseconds sandbox_reuse_idle{60000};
  uint32_t sandbox_warm_processes = 64;
  // [cluster]
  cluster_settings cluster;
};

// The embedded defaults: the one place each default lives. Each area builds its options from a
// settings value with its own from_settings() (e.g. sandbox::supervisor_config::from_settings),
// and its tests start from these.
const settings& defaults();

// Waits derived from the settings, each defined here once:
// how long an actor waits for a storage read or a commit (server.request_timeout x 6: a REST
// request waits request_timeout for its answer, the work behind it may queue longer) ...
std::chrono::milliseconds actor_wait(const settings& s);
// ... and how long a request that runs user code may take: a worker's queue wait, the longest
// call (sandbox.queue_timeout_ms + sandbox.max_timeout_ms), and 15 s for reads and commits.
std::chrono::milliseconds user_code_wait(const settings& s);

// One configurable key: its dotted name, a one-line description, and how to apply a textual
// value (flags, environment) to `settings`. TOML values are converted to text first (an array of
// strings becomes its items joined by commas, the form list keys take everywhere).
struct setting_key {
  std::string name;         // "server.listen"
  std::string description;  // for --help and the commented default file
  // Applies `value`; returns an error message (without the key name) when it is malformed.
  std::optional<std::string> (*apply)(settings&, const std::string& value);
};

const std::vector<setting_key>& setting_keys();

// The [cluster] keys (cluster_keys.cpp), part of setting_keys().
std::vector<setting_key> cluster_setting_keys();

// Checks the [cluster] keys together (part of validate()).
std::optional<std::string> validate_cluster(const settings& s);

// "server.listen" -> "TESSERA_SERVER_LISTEN".
std::string environment_name(const std::string& key);

// Parses "host:port" ("[::1]:8080" for IPv6). Port 0 asks the OS for a free port.
std::optional<listen_address> parse_listen_address(const std::string& text);

bool is_loopback(const std::string& host);

// Where the values come from, lowest precedence first after the defaults.
struct sources {
  std::optional<std::string> config_file;          // path of a TOML file
  std::map<std::string, std::string> environment;  // e.g. from environ; non-TESSERA_ ignored
  std::vector<std::pair<std::string, std::string>> overrides;  // (key, value) from flags
};

struct load_error {
  std::string message;  // names the key and the source, e.g. "server.listen (flag): ..."
};

std::variant<settings, load_error> load_settings(const sources& from);

// Checks combinations that single keys cannot: a non-loopback bind needs a token or insecure.
// (A token shorter than 16 characters is refused by its key.)
std::optional<std::string> validate(const settings& s);

// The environment of this process as a map (only TESSERA_* entries).
std::map<std::string, std::string> tessera_environment();

}  // namespace tessera::config
