#include "web/route_helpers.hpp"

#include "adapters/json/parse.hpp"
#include "web/if_match.hpp"
#include "web/problem.hpp"

namespace tessera::web {

std::optional<nlohmann::json> object_body(const route_context& ctx, const request& req,
                                          const responder& done) {
  auto body = adapters::parse_json(req.body, ctx.max_json_depth);
  if (!body) {
    done(problem(body.error()));
    return std::nullopt;
  }
  if (!body->is_object()) {
    done(problem(errc::invalid_argument, "body must be a JSON object"));
    return std::nullopt;
  }
  return std::move(*body);
}

std::optional<update_request> parse_update(const route_context& ctx, const request& req,
                                           const responder& done) {
  auto body = object_body(ctx, req, done);
  if (!body) return std::nullopt;
  auto if_match = parse_if_match(req.if_match);
  if (!if_match) {
    done(problem(if_match.error()));
    return std::nullopt;
  }
  return update_request{body->dump(), std::move(*if_match)};
}

std::function<void(caf::expected<std::string>)> json_reply(responder done, unsigned status,
                                                           std::string marker) {
  return
      [done = std::move(done), status, marker = std::move(marker)](caf::expected<std::string> r) {
        if (!r) return done(problem(r.error()));
        auto res = json_response(status, std::move(*r));
        auto parsed = nlohmann::json::parse(res.body, nullptr, false);
        if (parsed.is_object() && parsed.contains(marker) && parsed.contains("version") &&
            parsed["version"].is_number_integer())
          res.headers.emplace_back("ETag",
                                   "\"" + std::to_string(parsed["version"].get<int64_t>()) + "\"");
        done(std::move(res));
      };
}

}  // namespace tessera::web
