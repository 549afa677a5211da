// Small pieces the JSON route tables share.
//
// Contract: `object_body` either returns the request body as a JSON object (parsed within
// ctx.max_json_depth) or has already answered the request with the problem; `json_reply`
// completes a request with an actor's JSON text reply, or its error as problem+json, and adds
// `ETag: "<version>"` when the reply is an object holding `version` and `marker` (the field
// that says it is a whole resource, e.g. "id" for panels, "schedule" for tasks).
#pragma once

#include <caf/expected.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "actors/storage/messages.hpp"
#include "web/routes.hpp"

namespace tessera::web {

std::optional<nlohmann::json> object_body(const route_context& ctx, const request& req,
                                          const responder& done);

// The parts of a PATCH/PUT every resource actor takes: the body object as text and the
// If-Match versions; nullopt when the request has already been answered with the problem.
struct update_request {
  std::string body;
  storage::version_list if_match;
};
std::optional<update_request> parse_update(const route_context& ctx, const request& req,
                                           const responder& done);

std::function<void(caf::expected<std::string>)> json_reply(responder done, unsigned status,
                                                           std::string marker);

}  // namespace tessera::web
