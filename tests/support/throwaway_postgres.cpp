#include "tests/support/throwaway_postgres.hpp"

#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace tessera::testing {
namespace {

std::string newest_bin_dir() {
  std::string best;
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    auto bin = e.path() / "bin";
    if (std::filesystem::exists(bin / "initdb") && bin.string() > best) best = bin.string();
  }
  return best;
}

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

throwaway_postgres& throwaway_postgres::shared() {
  static throwaway_postgres server;
  return server;
}

throwaway_postgres::throwaway_postgres() {
  bin_ = newest_bin_dir();
  REQUIRE_MESSAGE(!bin_.empty(),
                  "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): run the "
                  "README's test command, which installs it");
  char tmpl[] = "/tmp/tessera-pg-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  dir_ = tmpl;
  as_postgres_ = ::geteuid() == 0;
  if (as_postgres_) {
    auto chown = "chown postgres: " + dir_;
    REQUIRE(std::system(chown.c_str()) == 0);
  }
  auto out = run(bin_ + "/initdb -D " + dir_ + "/data -U postgres -A trust --no-sync -E UTF8");
  REQUIRE_MESSAGE(std::filesystem::exists(dir_ + "/data/PG_VERSION"), "initdb failed: " << out);
  start();
}

throwaway_postgres::~throwaway_postgres() {
  if (running_) stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string throwaway_postgres::run(const std::string& command) const {
  std::string full = (as_postgres_ ? "runuser -u postgres -- " : "") + command + " 2>&1";
  std::string out;
  if (FILE* p = ::popen(full.c_str(), "r")) {
    std::array<char, 4096> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
    ::pclose(p);
  }
  return out;
}

void throwaway_postgres::start() {
  auto out = run(bin_ + "/pg_ctl -D " + dir_ + "/data -l " + dir_ + "/log -w -o \"-k " + dir_ +
                 " -p 5432 -c listen_addresses='' -c fsync=off\" start");
  running_ = std::filesystem::exists(dir_ + "/data/postmaster.pid");
  REQUIRE_MESSAGE(running_, "PostgreSQL did not start: " << out << read_file(dir_ + "/log"));
}

void throwaway_postgres::stop() {
  run(bin_ + "/pg_ctl -D " + dir_ + "/data -m fast -w stop");
  running_ = false;
}

std::string throwaway_postgres::conninfo(const std::string& database) const {
  return "host=" + dir_ + " port=5432 user=postgres dbname=" + database;
}

std::string throwaway_postgres::fresh_database() {
  auto name = "t" + std::to_string(::getpid()) + "_" + std::to_string(++next_db_);
  auto out = run(bin_ + "/psql \"" + conninfo() + "\" -q -c 'CREATE DATABASE " + name + "'");
  INFO(out);
  return conninfo(name);
}

}  // namespace tessera::testing
