// `tessera cron next EXPR [--from ISO-8601] [--tz ZONE] [--count N]` and `tessera cron batch`.
//
// `next` prints the next N (default 5, 1-10000) fire times of EXPR strictly after --from
// (default now) in zone --tz (default UTC), one ISO-8601 timestamp with the zone's offset per
// line. `batch` reads JSON lines {"expr", "tz", "from", "count"} from stdin ("from" an ISO-8601
// string or epoch seconds, default now; "tz" default UTC; "count" default 5) and writes one
// JSON line per non-blank input: {"times": [...]} or {"error": "...", "field": "..."} (field
// "input" for a line that is not such an object). The grammar is docs/cron.md's.
// run_cron_command() returns the exit code: 0, or 2 after printing `tessera: <message>` to
// stderr for a bad expression, zone, --from or --count (batch reports those per line and
// exits 0).
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace tessera::web {

struct cron_options {
  bool next = false, batch = false;  // which subcommand ran
  std::string expression;
  std::string from;
  std::string tz = "UTC";
  int count = 5;
};

// Adds `cron` with its subcommands `next` and `batch` to `app`, parsing into `opts`.
CLI::App* add_cron_command(CLI::App& app, cron_options& opts);

int run_cron_command(const cron_options& opts);

}  // namespace tessera::web
