// `tessera import-panel DIR`: sends a panel bundle in the seed's file layout (metadata.json,
// template.html, handler.py) to a running server's POST /api/panels/import.
#include "web/import_panel.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <variant>

namespace tessera::web {
namespace {

using json = nlohmann::json;

std::optional<std::string> read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) return std::nullopt;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

struct http_reply {
  int status = 0;
  std::string body;
};

// One HTTP/1.1 request with Connection: close; an error message on failure.
std::variant<http_reply, std::string> post(const std::string& host, const std::string& port,
                                           const std::string& target, const std::string& token,
                                           const std::string& body) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return "cannot resolve " + host + ": " + gai_strerror(rc);
  int fd = -1;
  for (auto* a = found; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return "cannot connect to " + host + ":" + port;
  // An IPv6 literal goes back into brackets: the server checks the Host it is named by.
  auto named = host.find(':') == std::string::npos ? host : "[" + host + "]";
  std::string req = "POST " + target + " HTTP/1.1\r\nHost: " + named + ":" + port +
                    "\r\nContent-Type: application/json\r\nConnection: close\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (size_t sent = 0; sent < req.size();) {
    auto n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      close(fd);
      return std::string{"the server closed the connection"};
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[8192];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    raw.append(buf, static_cast<size_t>(n));
  close(fd);
  auto head_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos)
    return std::string{"not an HTTP response"};
  http_reply r;
  r.status = std::atoi(raw.c_str() + 9);
  r.body = raw.substr(head_end + 4);
  return r;
}

}  // namespace

int import_panel(const import_options& opts) {
  auto dir = opts.dir;
  auto metadata_text = read_file(dir + "/metadata.json");
  if (!metadata_text) {
    std::cerr << "tessera: " << dir << "/metadata.json cannot be read\n";
    return 2;
  }
  auto metadata = json::parse(*metadata_text, nullptr, false);
  if (!metadata.is_object()) {
    std::cerr << "tessera: " << dir << "/metadata.json is not a JSON object\n";
    return 2;
  }
  json bundle = {{"metadata", metadata}};
  if (auto t = read_file(dir + "/template.html")) bundle["template"] = *t;
  if (auto h = read_file(dir + "/handler.py")) bundle["handler"] = *h;

  std::string url = opts.server;
  if (url.rfind("http://", 0) != 0) {
    std::cerr << "tessera: --server must be http://HOST:PORT, got '" << url << "'\n";
    return 2;
  }
  auto authority = url.substr(
      7, url.find('/', 7) == std::string::npos ? std::string::npos : url.find('/', 7) - 7);
  auto colon = authority.rfind(':');
  auto host = colon == std::string::npos ? authority : authority.substr(0, colon);
  auto port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto target = std::string{"/api/panels/import"} + (opts.replace ? "?replace=true" : "");
  auto result = post(host, port, target, opts.token, bundle.dump());
  if (auto* err = std::get_if<std::string>(&result)) {
    std::cerr << "tessera: " << *err << "\n";
    return 1;
  }
  auto& reply = std::get<http_reply>(result);
  auto body = json::parse(reply.body, nullptr, false);
  if (reply.status != 200) {
    std::string detail = body.is_object() ? body.value("detail", reply.body) : reply.body;
    std::cerr << "tessera: import of " << dir << " failed (" << reply.status << "): " << detail
              << "\n";
    return 1;
  }
  std::cout << "imported panel " << body.value("id", "?") << " (version "
            << body.value("version", 0) << ")\n";
  return 0;
}

}  // namespace tessera::web
