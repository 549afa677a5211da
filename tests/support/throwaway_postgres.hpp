// A throwaway PostgreSQL server for tests: initdb in a temp dir (about a second), listening
// on a unix socket in that dir only (no TCP port), removed when the test binary exits. As
// root it runs as the `postgres` user (PostgreSQL refuses root), as shared/notes/platform.md
// describes; the machine's own cluster is never touched.
//
// Contract: `shared()` starts one server per test process on first use; a failure to start
// fails the calling test with PostgreSQL's log (the setup command installs the package, so
// a missing PostgreSQL is a broken machine, not a skipped test). `fresh_database` makes an
// empty database for one test; `stop`/`start` take the server away and bring it back (the
// same data) for outage tests.
#pragma once

#include <string>

namespace tessera::testing {

class throwaway_postgres {
 public:
  static throwaway_postgres& shared();

  // A libpq connection string for `database` on this server.
  std::string conninfo(const std::string& database = "postgres") const;
  // Creates an empty database and returns its connection string.
  std::string fresh_database();

  void stop();
  void start();

  ~throwaway_postgres();

 private:
  throwaway_postgres();
  std::string run(const std::string& command) const;  // as the server's owner; its output

  std::string dir_;
  std::string bin_;
  bool as_postgres_ = false;
  bool running_ = false;
  int next_db_ = 0;
};

}  // namespace tessera::testing
