#include "config/settings.hpp"

#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

using namespace tessera::config;

namespace {

std::string write_temp_toml(const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("tessera-settings-" + std::to_string(std::rand()) + ".toml");
  std::ofstream{path} << text;
  return path.string();
}

settings loaded(const sources& from) {
  auto result = load_settings(from);
  if (auto* err = std::get_if<load_error>(&result)) FAIL(err->message);
  return std::get<settings>(result);
}

std::string failure(const sources& from) {
  auto result = load_settings(from);
  REQUIRE(std::holds_alternative<load_error>(result));
  return std::get<load_error>(result).message;
}

}  // namespace

TEST_SUITE("config.settings") {
  TEST_CASE("the embedded defaults listen on loopback port 8080 with data in ./data") {
    auto s = loaded({});
    CHECK(s.listen.host == "127.0.0.1");
    CHECK(s.listen.port == 8080);
    CHECK(s.data_dir == "./data");
    CHECK_FALSE(s.sync);
    CHECK(s.max_body_bytes == 1048576);
  }

  TEST_CASE("flags override the environment, which overrides the file") {
    auto file = write_temp_toml(
        "[server]\nlisten = \"127.0.0.1:1001\"\nmax_json_depth = 7\n"
        "[storage]\nsync = true\n");
    sources from;
    from.config_file = file;
    from.environment = {{"TESSERA_SERVER_LISTEN", "127.0.0.1:1002"},
                        {"TESSERA_STORAGE_SYNC", "false"}};
    from.overrides = {{"server.listen", "127.0.0.1:1003"}};
    auto s = loaded(from);
    CHECK(s.listen.port == 1003);
    CHECK_FALSE(s.sync);
    CHECK(s.max_json_depth == 7);
    std::filesystem::remove(file);
  }

  TEST_CASE("an unknown key stops loading with a message naming it") {
    SUBCASE("in the file") {
      auto file = write_temp_toml("[server]\nlisten_port = 3\n");
      CHECK(failure({file, {}, {}}).find("server.listen_port") != std::string::npos);
      std::filesystem::remove(file);
    }
    SUBCASE("in the environment") {
      CHECK(
          failure({std::nullopt, {{"TESSERA_SERVER_NOPE", "1"}}, {}}).find("TESSERA_SERVER_NOPE") !=
          std::string::npos);
    }
    SUBCASE("on the command line") {
      CHECK(failure({std::nullopt, {}, {{"storage.nope", "1"}}}).find("storage.nope") !=
            std::string::npos);
    }
  }

  TEST_CASE("a bad value stops loading with a message naming the key and the value") {
    auto message = failure({std::nullopt, {}, {{"server.max_body_bytes", "lots"}}});
    CHECK(message.find("server.max_body_bytes") != std::string::npos);
    CHECK(message.find("lots") != std::string::npos);
    auto file = write_temp_toml("[storage]\nsync = \"maybe\"\n");
    CHECK(failure({file, {}, {}}).find("storage.sync") != std::string::npos);
    std::filesystem::remove(file);
  }

  TEST_CASE("a TOML syntax error names the file and line") {
    auto file = write_temp_toml("[server]\nlisten = \n");
    auto message = failure({file, {}, {}});
    CHECK(message.find(file) != std::string::npos);
    CHECK(message.find("line 2") != std::string::npos);
    std::filesystem::remove(file);
  }

  TEST_CASE("a non-loopback address needs a token or insecure") {
    CHECK(failure({std::nullopt, {}, {{"server.listen", "0.0.0.0:80"}}}).find("api_token") !=
          std::string::npos);
    CHECK(loaded({std::nullopt, {}, {{"server.listen", "0.0.0.0:80"}, {"server.insecure", "true"}}})
              .insecure);
    CHECK(loaded({std::nullopt,
                  {},
                  {{"server.listen", "0.0.0.0:80"}, {"server.api_token", "0123456789abcdef"}}})
              .api_token == "0123456789abcdef");
  }

  TEST_CASE("the postgres backend needs its URL; an unknown backend is named") {
    CHECK(loaded({}).backend == "rocksdb");
    CHECK(failure({std::nullopt, {}, {{"storage.backend", "postgres"}}})
              .find("storage.postgres_url") != std::string::npos);
    auto s = loaded({std::nullopt,
                     {{"TESSERA_STORAGE_POSTGRES_URL", "postgresql://u:pw@h/db"}},
                     {{"storage.backend", "postgres"}, {"storage.postgres_pool", "3"}}});
    CHECK(s.backend == "postgres");
    CHECK(s.postgres_url == "postgresql://u:pw@h/db");
    CHECK(s.postgres_pool == 3);
    auto message = failure({std::nullopt, {}, {{"storage.backend", "sqlite"}}});
    CHECK(message.find("storage.backend") != std::string::npos);
    CHECK(message.find("rocksdb") != std::string::npos);
    CHECK(failure({std::nullopt, {}, {{"storage.postgres_pool", "0"}}})
              .find("storage.postgres_pool") != std::string::npos);
  }

  TEST_CASE("the change sequence keeps a million changes unless told, and at least 1000") {
    CHECK(loaded({}).change_retention == 1'000'000);
    CHECK(loaded({std::nullopt, {}, {{"storage.change_retention", "5000"}}}).change_retention ==
          5000);
    CHECK(failure({std::nullopt, {}, {{"storage.change_retention", "999"}}})
              .find("storage.change_retention") != std::string::npos);
  }

  TEST_CASE("listen addresses parse host and port, IPv6 in brackets") {
    CHECK(parse_listen_address("localhost:0")->port == 0);
    CHECK(parse_listen_address("[::1]:8080")->host == "::1");
    CHECK_FALSE(parse_listen_address("8080"));
    CHECK_FALSE(parse_listen_address("host:70000"));
    CHECK_FALSE(parse_listen_address(":80"));
    CHECK_FALSE(parse_listen_address("::1:80"));
  }

  TEST_CASE("the shipped config file holds exactly the defaults") {
    sources from;
    from.config_file = std::string{TESSERA_SOURCE_DIR} + "/config/tessera.toml";
    auto s = loaded(from);
    auto d = loaded({});
    CHECK(s.listen.port == d.listen.port);
    CHECK(s.data_dir == d.data_dir);
    CHECK(s.backend == d.backend);
    CHECK(s.postgres_url == d.postgres_url);
    CHECK(s.postgres_pool == d.postgres_pool);
    CHECK(s.idle_passivate == d.idle_passivate);
    CHECK(s.request_timeout == d.request_timeout);
  }

  TEST_CASE("every key has an environment name") {
    CHECK(environment_name("server.api_token") == "TESSERA_SERVER_API_TOKEN");
    for (auto& key : setting_keys()) CHECK(!key.description.empty());
  }

  TEST_CASE("a token shorter than 16 characters stops loading with a message") {
    auto message = failure({std::nullopt, {}, {{"server.api_token", "fifteen-chars-x"}}});
    CHECK(message.find("server.api_token") != std::string::npos);
    CHECK(message.find("at least 16") != std::string::npos);
    CHECK(loaded({std::nullopt, {}, {{"server.api_token", "sixteen-chars-xx"}}}).api_token ==
          "sixteen-chars-xx");
  }

  TEST_CASE("allowed hosts and origins are lists, from a comma-separated value or a TOML array") {
    auto s = loaded({std::nullopt,
                     {{"TESSERA_SERVER_ALLOWED_HOSTS", "Dash.Example, box:8080 ,[::2]:81"}},
                     {{"server.allowed_origins", "https://dash.example,http://box:8080"}}});
    CHECK(s.allowed_hosts == std::vector<std::string>{"dash.example", "box:8080", "[::2]:81"});
    CHECK(s.allowed_origins == std::vector<std::string>{"https://dash.example", "http://box:8080"});
    auto file = write_temp_toml(
        "[server]\nallowed_hosts = [\"a.example\", \"b.example:9\"]\n"
        "allowed_origins = [\"http://a.example:9\"]\n");
    auto t = loaded({file, {}, {}});
    CHECK(t.allowed_hosts == std::vector<std::string>{"a.example", "b.example:9"});
    CHECK(t.allowed_origins == std::vector<std::string>{"http://a.example:9"});
    std::filesystem::remove(file);
  }

  TEST_CASE("a malformed host or origin names the key and the item") {
    CHECK(failure({std::nullopt, {}, {{"server.allowed_hosts", "a/b"}}}).find("'a/b'") !=
          std::string::npos);
    CHECK(failure({std::nullopt, {}, {{"server.allowed_hosts", "a:99999"}}})
              .find("server.allowed_hosts") != std::string::npos);
    for (auto bad : {"dash.example", "ftp://x", "http://x/path", "http://"})
      CHECK(failure({std::nullopt, {}, {{"server.allowed_origins", bad}}})
                .find("server.allowed_origins") != std::string::npos);
  }

  TEST_CASE("a cluster is off by default and needs the PostgreSQL backend") {
    auto s = loaded({});
    CHECK_FALSE(s.cluster.enabled);
    CHECK(s.cluster.listen.port == 0);
    CHECK(s.cluster.heartbeat == std::chrono::milliseconds(1000));
    CHECK(s.cluster.lease == std::chrono::milliseconds(3000));
    auto message = failure({std::nullopt, {}, {{"cluster.enabled", "true"}}});
    CHECK(message.find("storage.backend") != std::string::npos);
    auto on = loaded({std::nullopt,
                      {},
                      {{"storage.backend", "postgres"},
                       {"storage.postgres_url", "host=/tmp"},
                       {"cluster.enabled", "true"},
                       {"cluster.node_name", "node-1.eu:8080"}}});
    CHECK(on.cluster.enabled);
    CHECK(on.cluster.node_name == "node-1.eu:8080");
  }

  TEST_CASE("cluster settings that cannot work together stop loading with a message") {
    std::vector<std::pair<std::string, std::string>> pg = {{"storage.backend", "postgres"},
                                                           {"storage.postgres_url", "host=/tmp"},
                                                           {"cluster.enabled", "true"}};
    auto with = [&](std::vector<std::pair<std::string, std::string>> more) {
      auto all = pg;
      all.insert(all.end(), more.begin(), more.end());
      return failure({std::nullopt, {}, all});
    };
    SUBCASE("a lease shorter than two heartbeats") {
      CHECK(with({{"cluster.heartbeat_ms", "1000"}, {"cluster.lease_ms", "1500"}})
                .find("cluster.lease_ms") != std::string::npos);
    }
    SUBCASE("a non-loopback listen address without TLS") {
      CHECK(with({{"cluster.listen", "10.0.0.5:7000"}}).find("without TLS") != std::string::npos);
      auto insecure = pg;
      insecure.emplace_back("cluster.listen", "0.0.0.0:7000");
      insecure.emplace_back("cluster.advertise", "10.0.0.5:7000");
      insecure.emplace_back("server.insecure", "true");
      CHECK(loaded({std::nullopt, {}, insecure}).cluster.listen.host == "0.0.0.0");
    }
    SUBCASE("every interface without an address to advertise") {
      CHECK(with({{"cluster.listen", "0.0.0.0:7000"}, {"server.insecure", "true"}})
                .find("cluster.advertise") != std::string::npos);
      CHECK(with({{"cluster.advertise", "0.0.0.0:7000"}}).find("cluster.advertise") !=
            std::string::npos);
    }
    SUBCASE("a certificate without its key and authority") {
      CHECK(with({{"cluster.tls_cert", "/etc/node.pem"}}).find("all three") != std::string::npos);
    }
    SUBCASE("a node name with a space") {
      CHECK(failure({std::nullopt, {}, {{"cluster.node_name", "node one"}}})
                .find("cluster.node_name") != std::string::npos);
    }
  }
}
