#include "web/request_guard.hpp"

#include <doctest/doctest.h>

#include "web/auth.hpp"

using namespace tessera::web;

namespace {

host_policy loopback_policy() {
  host_policy p;
  p.port = 8080;
  p.check_host = true;
  p.allowed_hosts = {"dash.example", "box:9000"};
  p.allowed_origins = {"https://dash.example"};
  return p;
}

// The status a target gets, 0 when it is taken; `path` receives what it was reduced to.
unsigned target_status(std::string_view target, std::string* path = nullptr) {
  request r;
  r.host = "127.0.0.1:8080";
  auto refusal = reduce_target(r, target, loopback_policy());
  if (path) *path = r.path;
  return refusal ? refusal->status : 0;
}

unsigned host_status(std::string host, unsigned version = 11) {
  request r;
  r.host = std::move(host);
  request_head h;
  h.version = version;
  auto refusal = check_host(r, h, loopback_policy());
  return refusal ? refusal->status : 0;
}

unsigned origin_status(std::string method, std::string_view origin, bool upgrade = false) {
  request r;
  r.method = std::move(method);
  r.host = "localhost:8080";
  request_head h;
  h.origin = origin;
  h.upgrade = upgrade;
  auto refusal = check_origin(r, h, loopback_policy());
  return refusal ? refusal->status : 0;
}

}  // namespace

TEST_SUITE("web.request_guard") {
  TEST_CASE("only an origin-form target, or an absolute one naming this server, is taken") {
    std::string path;
    CHECK(target_status("/api/storages?limit=1", &path) == 0);
    CHECK(path == "/api/storages");
    for (auto bad : {"Xapi/storages/todos", "api/storages", "*", "%2Fapi/storages", "",
                     "127.0.0.1:8080", "http://evil.example:8080/api/storages",
                     "http://127.0.0.1:9999/api/storages", "http://user@127.0.0.1:8080/api"})
      CHECK_MESSAGE(target_status(bad) == 400, bad);
    CHECK(target_status("http://127.0.0.1:8080/api/storages?x=1", &path) == 0);
    CHECK(path == "/api/storages");
    CHECK(target_status("HTTP://LOCALHOST:8080", &path) == 0);
    CHECK(path == "/");
  }

  TEST_CASE("on loopback only the loopback names with the port and the allowed hosts are served") {
    for (auto ok : {"localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LocalHost:8080",
                    "dash.example", "dash.example:443", "box:9000"})
      CHECK_MESSAGE(host_status(ok) == 0, ok);
    for (auto bad : {"evil.example:8080", "localhost:8081", "localhost", "127.0.0.2:8080",
                     "box:9001", "box", "localhost.evil.example:8080"})
      CHECK_MESSAGE(host_status(bad) == 421, bad);
  }

  TEST_CASE("HTTP/1.1 without Host is 400, HTTP/1.0 without Host is served") {
    CHECK(host_status("", 11) == 400);
    CHECK(host_status("", 10) == 0);
  }

  TEST_CASE("two Host headers are 400, whatever they say") {
    request r;
    r.host = "127.0.0.1:8080";
    request_head h;
    h.host_fields = 2;
    auto refusal = check_host(r, h, loopback_policy());
    REQUIRE(refusal);
    CHECK(refusal->status == 400);
  }

  TEST_CASE("port 80 serves the loopback names without a port") {
    auto p = loopback_policy();
    p.port = 80;
    CHECK(p.serves("localhost"));
    CHECK(p.serves("localhost:80"));
  }

  TEST_CASE("without host checking any Host is served") {
    host_policy p;
    CHECK(p.serves("anything.example:1"));
  }

  TEST_CASE("a state-changing request or upgrade from another origin is 403, others pass") {
    for (auto method : {"POST", "PUT", "PATCH", "DELETE"}) {
      CHECK(origin_status(method, "http://evil.example") == 403);
      CHECK(origin_status(method, "null") == 403);
      CHECK(origin_status(method, "http://localhost:3000") == 403);
      CHECK(origin_status(method, "http://localhost:8080") == 0);
      CHECK(origin_status(method, "https://dash.example") == 0);
      CHECK(origin_status(method, "") == 0);
    }
    CHECK(origin_status("GET", "http://evil.example", true) == 403);
    CHECK(origin_status("GET", "http://localhost:8080", true) == 0);
    CHECK(origin_status("GET", "http://evil.example") == 0);  // reads are refused by CORS
  }

  TEST_CASE("a request from another origin's page is foreign, so a cookie opens nothing") {
    request r;
    r.host = "localhost:8080";
    request_head h;
    CHECK_FALSE(foreign(r, h, loopback_policy()));
    h.sec_fetch_site = "same-origin";
    CHECK_FALSE(foreign(r, h, loopback_policy()));
    h.sec_fetch_site = "same-site";  // localhost:3000 is the same site as localhost:8080
    CHECK(foreign(r, h, loopback_policy()));
    h.sec_fetch_site = "cross-site";
    CHECK(foreign(r, h, loopback_policy()));
    h.origin = "http://localhost:8080";
    CHECK_FALSE(foreign(r, h, loopback_policy()));
    h.origin = "http://evil.example";
    CHECK(foreign(r, h, loopback_policy()));
  }

  TEST_CASE("JSON media types are application/json and the +json types, with parameters") {
    CHECK(json_media_type("application/json"));
    CHECK(json_media_type("Application/JSON; charset=utf-8"));
    CHECK(json_media_type("application/merge-patch+json"));
    CHECK_FALSE(json_media_type("text/plain"));
    CHECK_FALSE(json_media_type("application/x-www-form-urlencoded"));
    CHECK_FALSE(json_media_type("multipart/form-data; boundary=x"));
    CHECK_FALSE(json_media_type("text/json+html"));
    CHECK(form_media_type("application/x-www-form-urlencoded; charset=UTF-8"));
    CHECK_FALSE(form_media_type("text/plain"));
  }
}

TEST_SUITE("web.auth") {
  TEST_CASE("the token opens the API as a bearer, whatever the scheme's case, and nothing else") {
    authenticator auth{"0123456789abcdef-token"};
    CHECK(auth.bearer_ok("Bearer 0123456789abcdef-token"));
    CHECK(auth.bearer_ok("bearer 0123456789abcdef-token"));
    CHECK_FALSE(auth.bearer_ok("Bearer 0123456789abcdef-toke"));
    CHECK_FALSE(auth.bearer_ok("Bearer 0123456789abcdef-token "));
    CHECK_FALSE(auth.bearer_ok("Basic 0123456789abcdef-token"));
    CHECK_FALSE(auth.bearer_ok("Bearer "));
    CHECK_FALSE(auth.token_ok(""));
  }

  TEST_CASE("without a token everything is authorized and no token is right") {
    authenticator auth{""};
    CHECK(auth.authorized(request{}));
    CHECK_FALSE(auth.token_ok(""));
  }

  TEST_CASE("a session cookie opens the API for its own origin only, until it is closed") {
    authenticator auth{"0123456789abcdef-token"};
    auth.set_port(8080);
    request login;
    auto set_cookie = auth.open_session(login);
    CHECK(set_cookie.starts_with("tessera_session_8080="));
    CHECK(set_cookie.find("HttpOnly") != std::string::npos);
    CHECK(set_cookie.find("SameSite=Strict") != std::string::npos);
    CHECK(set_cookie.find("Secure") == std::string::npos);
    request r;
    r.cookie = "other=1; " + set_cookie.substr(0, set_cookie.find(';'));
    CHECK(auth.authorized(r));
    r.foreign = true;
    CHECK_FALSE(auth.authorized(r));
    r.foreign = false;
    request wrong = r;
    wrong.cookie.back() = wrong.cookie.back() == 'a' ? 'b' : 'a';
    CHECK_FALSE(auth.authorized(wrong));
    CHECK(auth.close_session(r).find("Max-Age=0") != std::string::npos);
    CHECK_FALSE(auth.authorized(r));
  }

  TEST_CASE("a session expires, and behind a TLS proxy its cookie is Secure") {
    authenticator auth{"0123456789abcdef-token", std::chrono::seconds(0)};
    request r;
    r.tls = true;
    auto set_cookie = auth.open_session(r);
    CHECK(set_cookie.find("; Secure") != std::string::npos);
    r.cookie = set_cookie.substr(0, set_cookie.find(';'));
    CHECK_FALSE(auth.authorized(r));
  }
}
