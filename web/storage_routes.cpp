#include <caf/all.hpp>
#include <charconv>
#include <nlohmann/json.hpp>

#include "actors/storage/messages.hpp"
#include "adapters/json/parse.hpp"
#include "runtime/clock.hpp"
#include "web/actor_bridge.hpp"
#include "web/if_match.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

using namespace tessera::storage;

std::string record_json(const storage_record& r) {
  std::string out = R"({"id":)";
  out += nlohmann::json(r.id).dump();
  out += R"(,"data":)";
  out += r.data;
  out += R"(,"version":)" + std::to_string(r.version);
  out += R"(,"created_at":")" + runtime::iso8601(r.created_at);
  out += R"(","updated_at":")" + runtime::iso8601(r.updated_at) + "\"}";
  return out;
}

response record_response(unsigned status, const storage_record& r) {
  auto res = json_response(status, record_json(r));
  res.headers.emplace_back("ETag", "\"" + std::to_string(r.version) + "\"");
  return res;
}

std::function<void(caf::expected<storage_record>)> reply_record(responder done,
                                                                unsigned status = 200) {
  return [done = std::move(done), status](caf::expected<storage_record> r) {
    done(r ? record_response(status, *r) : problem(r.error()));
  };
}

// The body as a JSON object with only `allowed` keys, `data` being an object when present.
caf::expected<nlohmann::json> parse_body(const route_context& ctx, const std::string& body,
                                         std::initializer_list<const char*> allowed,
                                         bool data_required) {
  auto value = adapters::parse_json(body, ctx.max_json_depth);
  if (!value) return value.error();
  if (!value->is_object()) return make_error(errc::invalid_argument, "body must be a JSON object");
  for (auto& [key, _] : value->items())
    if (std::find_if(allowed.begin(), allowed.end(), [&](auto a) { return key == a; }) ==
        allowed.end())
      return make_error(errc::invalid_argument, "unknown field '" + key + "'");
  auto data = value->find("data");
  if (data == value->end()) {
    if (data_required) return make_error(errc::invalid_argument, "field 'data' is required");
  } else if (!data->is_object()) {
    return make_error(errc::invalid_argument, "field 'data' must be a JSON object");
  }
  return value;
}

std::string data_text(const nlohmann::json& body) {
  auto data = body.find("data");
  return data == body.end() ? std::string{"{}"} : data->dump();
}

void list_storages(const route_context& ctx, const storage::directory_actor& dir,
                   const request& req, responder done) {
  uint32_t limit = 100;
  if (auto text = query_param(req.query, "limit")) {
    auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), limit);
    if (ec != std::errc{} || end != text->data() + text->size() || limit < 1 || limit > 1000)
      return done(problem(errc::invalid_argument, "limit must be a whole number from 1 to 1000"));
  }
  auto after = query_param(req.query, "after").value_or("");
  if (!after.empty() && !valid_storage_id(after))
    return done(problem(errc::invalid_argument, "after must be a storage id"));
  ask<storage_page>(
      *ctx.system, dir, ctx.request_timeout,
      [done](caf::expected<storage_page> page) {
        if (!page) return done(problem(page.error()));
        nlohmann::json items = nlohmann::json::array();
        for (auto& s : page->items)
          items.push_back({{"id", s.id},
                           {"version", s.version},
                           {"updated_at", runtime::iso8601(s.updated_at)}});
        nlohmann::json body = {{"storages", std::move(items)}};
        body["next_after"] =
            page->next_after.empty() ? nlohmann::json(nullptr) : nlohmann::json(page->next_after);
        done(json_response(200, body.dump()));
      },
      list_atom::value, after, limit);
}

void create_storage(const route_context& ctx, const storage::directory_actor& dir,
                    const request& req, responder done) {
  auto body = parse_body(ctx, req.body, {"id", "data"}, false);
  if (!body) return done(problem(body.error()));
  auto id = body->find("id");
  if (id == body->end() || !id->is_string())
    return done(problem(errc::invalid_argument, "field 'id' (a string) is required"));
  ask<storage_record>(*ctx.system, dir, ctx.request_timeout, reply_record(std::move(done), 201),
                      create_atom::value, id->get<std::string>(), data_text(*body));
}

}  // namespace

void add_storage_routes(router& r, const route_context& ctx, const storage::directory_actor& dir) {
  r.add("GET", "/api/storages", [ctx, dir](const request& req, const path_params&, responder done) {
    list_storages(ctx, dir, req, std::move(done));
  });
  r.add("POST", "/api/storages",
        [ctx, dir](const request& req, const path_params&, responder done) {
          create_storage(ctx, dir, req, std::move(done));
        });
  r.add("GET", "/api/storages/{id}",
        [ctx, dir](const request&, const path_params& p, responder done) {
          ask<storage_record>(*ctx.system, dir, ctx.request_timeout, reply_record(std::move(done)),
                              read_atom::value, p[0]);
        });
  // PUT and PATCH differ only in the message they send.
  auto write_route = [ctx, dir](auto atom) {
    return [ctx, dir, atom](const request& req, const path_params& p, responder done) {
      auto if_match = parse_if_match(req.if_match);
      if (!if_match) return done(problem(if_match.error()));
      auto body = parse_body(ctx, req.body, {"data"}, true);
      if (!body) return done(problem(body.error()));
      ask<storage_record>(*ctx.system, dir, ctx.request_timeout, reply_record(std::move(done)),
                          atom, p[0], data_text(*body), std::move(*if_match));
    };
  };
  r.add("PUT", "/api/storages/{id}", write_route(replace_atom::value));
  r.add("PATCH", "/api/storages/{id}", write_route(merge_atom::value));
  r.add("DELETE", "/api/storages/{id}",
        [ctx, dir](const request& req, const path_params& p, responder done) {
          auto if_match = parse_if_match(req.if_match);
          if (!if_match) return done(problem(if_match.error()));
          ask<storage_record>(
              *ctx.system, dir, ctx.request_timeout,
              [done](caf::expected<storage_record> erased) {
                done(erased ? json_response(200, R"({"success":true})") : problem(erased.error()));
              },
              erase_atom::value, p[0], std::move(*if_match));
        });
}

}  // namespace tessera::web
