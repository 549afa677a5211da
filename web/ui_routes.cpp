#include <prometheus/counter.h>

#include <map>
#include <string_view>

#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera {
const std::map<std::string_view, std::string_view>& ui_files();  // generated (web/ui/)
}

namespace tessera::web {
namespace {

// The page's policy. Scripts: its own, and inline ones, because panel templates written for
// the origin app call actions from inline handlers (onclick="panelAction(...)"); nothing from
// another origin, no plugins, no <base>. Connections (fetch, WebSocket) to this origin only.
// Framing by this origin only. docs/architecture.md ("The page's security") says why.
constexpr const char* page_policy =
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'self'";
constexpr const char* login_policy =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'";

void add_page_headers(response& res, const char* policy, bool frame_self) {
  res.headers.emplace_back("Content-Security-Policy", policy);
  res.headers.emplace_back("X-Frame-Options", frame_self ? "SAMEORIGIN" : "DENY");
  res.headers.emplace_back("Referrer-Policy", "same-origin");
}

response page(std::string body, const char* policy, bool frame_self, unsigned status = 200) {
  response res;
  res.status = status;
  res.content_type = "text/html; charset=utf-8";
  res.body = std::move(body);  // Cache-Control: no-store, as every answer (http_server.hpp)
  add_page_headers(res, policy, frame_self);
  return res;
}

std::string login_page(std::string_view error) {
  std::string html{ui_files().at("login.html")};
  html.replace(html.find("{{error}}"), 9, error);  // a fixed sentence: nothing to escape
  return html;
}

response see_other(std::string set_cookie) {
  response res;
  res.status = 303;
  res.content_type = "text/plain; charset=utf-8";
  res.headers.emplace_back("Location", "/");
  if (!set_cookie.empty()) res.headers.emplace_back("Set-Cookie", std::move(set_cookie));
  return res;
}

}  // namespace

void add_ui_routes(router& r, prometheus::Registry& registry) {
  auto& logins = prometheus::BuildCounter()
                     .Name("tessera_logins_total")
                     .Help("POST /login by result: ok (a session began) or wrong_token")
                     .Register(registry);
  auto* ok = &logins.Add({{"result", "ok"}});
  auto* wrong = &logins.Add({{"result", "wrong_token"}});
  auto& auth = r.auth();
  std::string index{ui_files().at("index.html")};
  if (auth.enabled()) {
    static constexpr std::string_view marker = "<!--logout-->";
    index.replace(index.find(marker), marker.size(),
                  R"(<form id="logout" method="post" action="/logout">)"
                  R"(<button type="submit">sign out</button></form>)");
  }
  r.add("GET", "/",
        [&auth, index](const request& req, const path_params&, responder done) {
          if (!auth.authorized(req)) return done(page(login_page(""), login_policy, false));
          done(page(index, page_policy, true));
        },
        {access::open});
  r.add("GET", "/ui/app.js",
        [body = std::string{ui_files().at("app.js")}](const request&, const path_params&,
                                                      responder done) {
          response res;
          res.content_type = "text/javascript; charset=utf-8";
          res.body = body;
          res.headers.emplace_back("Cache-Control", "no-cache");
          done(std::move(res));
        },
        {access::open});
  r.add("POST", "/login",
        [&auth, ok, wrong](const request& req, const path_params&, responder done) {
          if (!auth.enabled()) return done(see_other(""));
          auto token = query_param(req.body, "token");
          if (!token || !auth.token_ok(*token)) {
            wrong->Increment();
            return done(page(login_page("Wrong token."), login_policy, false, 401));
          }
          ok->Increment();
          done(see_other(auth.open_session(req)));
        },
        {access::open, body_kind::form});
  r.add("POST", "/logout",
        [&auth](const request& req, const path_params&, responder done) {
          done(see_other(auth.enabled() ? auth.close_session(req) : ""));
        },
        {access::open, body_kind::form});
}

}  // namespace tessera::web
