#include <caf/all.hpp>
#include <charconv>
#include <nlohmann/json.hpp>

#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

// The resource a key of the layout (docs/architecture.md, "Key layout") is, or nothing for
// the server's own keys (runs, logs, tombstones, metadata).
std::optional<std::pair<const char*, std::string_view>> resource_of(std::string_view key) {
  for (const char* kind : {"storage", "panel", "task"}) {
    std::string_view k{kind};
    if (key.size() > k.size() + 1 && key.starts_with(k) && key[k.size()] == '/')
      return std::pair{kind, key.substr(k.size() + 1)};
  }
  return std::nullopt;
}

template <class T>
std::optional<T> number(const request& req, const char* name, T fallback, T low, T high) {
  auto text = query_param(req.query, name);
  if (!text) return fallback;
  T n{};
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc{} || end != text->data() + text->size() || n < low || n > high)
    return std::nullopt;
  return n;
}

}  // namespace

void add_change_routes(router& r, const route_context& ctx,
                       std::shared_ptr<adapters::kv_store> store) {
  r.add(
      "GET", "/api/changes", [ctx, store](const request& req, const path_params&, responder done) {
        auto after = number<uint64_t>(req, "after", 0, 0, INT64_MAX);
        if (!after) return done(problem(errc::invalid_argument, "after must be a change number"));
        auto limit = number<uint32_t>(req, "limit", 100, 1, 1000);
        if (!limit)
          return done(
              problem(errc::invalid_argument, "limit must be a whole number from 1 to 1000"));
        auto followed = query_param(req.query, "sequence");
        ask_blocking<adapters::change_page>(
            *ctx.system, ctx.readers, ctx.request_timeout,
            [done, from = *after, followed](caf::expected<adapters::change_page> page) {
              if (!page) return done(problem(page.error()));
              if (followed && *followed != page->sequence)
                return done(
                    problem(errc::gone, "the change sequence " + followed->substr(0, 64) +
                                            " is not this server's (" + page->sequence +
                                            "): its store was made anew (a migrate's target, say); "
                                            "read the current state and follow from " +
                                            std::to_string(page->last) +
                                            " with sequence=" + page->sequence));
              if (from > page->last)
                return done(
                    problem(errc::invalid_argument,
                            "after " + std::to_string(from) + " is beyond the newest change (" +
                                std::to_string(page->last) +
                                "): this is not the sequence you followed; read the current state "
                                "and follow from " +
                                std::to_string(page->last)));
              auto out = nlohmann::json::array();
              uint64_t next = from;
              for (auto& c : page->changes) {
                next = c.seq;
                auto res = resource_of(c.key);
                if (!res) continue;
                out.push_back({{"seq", c.seq},
                               {"kind", res->first},
                               {"id", res->second},
                               {"deleted", c.erase}});
              }
              nlohmann::json body{{"changes", std::move(out)},
                                  {"next", next},
                                  {"last", page->last},
                                  {"sequence", page->sequence}};
              done(json_response(
                  200, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
            },
            [store, from = *after, n = *limit] { return store->changes_after(from, n); });
      });
}

}  // namespace tessera::web
