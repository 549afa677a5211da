#include <map>
#include <string_view>

#include "web/routes.hpp"

namespace tessera {
const std::map<std::string_view, std::string_view>& ui_files();  // generated (web/ui/)
}

namespace tessera::web {

void add_ui_routes(router& r) {
  auto serve = [](std::string_view file, const char* type) {
    return [body = std::string{ui_files().at(file)}, type](const request&, const path_params&,
                                                           responder done) {
      response res;
      res.content_type = type;
      res.body = body;
      res.headers.emplace_back("Cache-Control", "no-cache");
      res.headers.emplace_back("X-Content-Type-Options", "nosniff");
      done(std::move(res));
    };
  };
  r.add("GET", "/", serve("index.html", "text/html; charset=utf-8"));
  r.add("GET", "/ui/app.js", serve("app.js", "text/javascript; charset=utf-8"));
}

}  // namespace tessera::web
