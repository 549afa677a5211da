#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/storage/messages.hpp"
#include "actors/task/messages.hpp"
#include "actors/task/task_directory.hpp"
#include "adapters/json/parse.hpp"
#include "runtime/clock.hpp"
#include "web/actor_bridge.hpp"
#include "web/problem.hpp"
#include "web/route_helpers.hpp"
#include "web/routes.hpp"

namespace tessera::web {
namespace {

using namespace tessera::task;
using json = nlohmann::json;

const std::vector<std::string> patch_fields = {"name",        "schedule", "timezone",
                                               "storage_ids", "enabled",  "overlap",
                                               "misfire",     "timeout",  "fresh_process"};

std::function<void(caf::expected<std::string>)> reply(responder done, unsigned status = 200) {
  return json_reply(std::move(done), status, "schedule");
}

// A positive integer query parameter within [1, max], or `fallback` when absent.
std::optional<int64_t> int_param(const request& req, const char* name, int64_t fallback,
                                 int64_t max, const responder& done) {
  auto text = query_param(req.query, name);
  if (!text) return fallback;
  size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(*text, &used);
  } catch (const std::exception&) {
  }
  if (used != text->size() || n < 1 || n > max) {
    done(problem(errc::invalid_argument,
                 std::string{name} + " must be an integer from 1 to " + std::to_string(max)));
    return std::nullopt;
  }
  return n;
}

struct task_routes {
  route_context ctx;
  task::directory_actor tasks;

  template <class... Ts>
  void ask_tasks(std::chrono::milliseconds timeout, responder done, unsigned status, Ts... xs) {
    ask<std::string>(*ctx.system, tasks, timeout, reply(std::move(done), status), xs...);
  }

  void update(const request& req, const std::string& id, const std::vector<std::string>& allowed,
              responder done) {
    auto u = parse_update(ctx, req, done);
    if (!u) return;
    ask_tasks(ctx.slow_timeout, std::move(done), 200, update_atom::value, id, std::move(u->body),
              allowed, std::move(u->if_match));
  }
};

}  // namespace

void add_task_routes(router& r, const route_context& ctx, const task::directory_actor& tasks) {
  auto p = std::make_shared<task_routes>(task_routes{ctx, tasks});
  auto fast = ctx.request_timeout;
  r.add("GET", "/api/tasks", [p, fast](const request& req, const path_params&, responder done) {
    auto limit = query_param(req.query, "limit") ? int_param(req, "limit", 0, 1000, done)
                                                 : std::optional<int64_t>{0};
    if (!limit) return;
    auto after = query_param(req.query, "after").value_or("");
    if (!after.empty() && !storage::valid_storage_id(after))
      return done(problem(errc::invalid_argument, "after must be a task id"));
    p->ask_tasks(fast * 6, std::move(done), 200, list_atom::value, after,
                 static_cast<uint32_t>(*limit));
  });
  r.add("POST", "/api/tasks", [p](const request& req, const path_params&, responder done) {
    auto body = object_body(p->ctx, req, done);
    if (!body) return;
    p->ask_tasks(p->ctx.slow_timeout, std::move(done), 201, create_atom::value, body->dump());
  });
  r.add("GET", "/api/tasks/{id}", [p, fast](const request&, const path_params& a, responder done) {
    p->ask_tasks(fast, std::move(done), 200, get_atom::value, a[0]);
  });
  r.add("PATCH", "/api/tasks/{id}", [p](const request& req, const path_params& a, responder done) {
    p->update(req, a[0], patch_fields, std::move(done));
  });
  r.add("DELETE", "/api/tasks/{id}",
        [p, fast](const request&, const path_params& a, responder done) {
          p->ask_tasks(fast * 6, std::move(done), 200, erase_atom::value, a[0]);
        });
  r.add("GET", "/api/tasks/{id}/handler",
        [p, fast](const request&, const path_params& a, responder done) {
          ask<std::string>(
              *p->ctx.system, p->tasks, fast,
              [done](caf::expected<std::string> task) {
                if (!task) return done(problem(task.error()));
                auto t = json::parse(*task, nullptr, false);
                done(json_response(200, json{{"handler", t.value("handler", "")}}.dump()));
              },
              get_atom::value, a[0]);
        });
  r.add("PUT", "/api/tasks/{id}/handler",
        [p](const request& req, const path_params& a, responder done) {
          auto body = object_body(p->ctx, req, done);
          if (!body) return;
          if (body->size() != 1 || !body->contains("handler"))
            return done(problem(errc::invalid_argument, "body must be {\"handler\": \"...\"}"));
          p->update(req, a[0], {"handler"}, std::move(done));
        });
  r.add("POST", "/api/tasks/{id}/run", [p](const request&, const path_params& a, responder done) {
    p->ask_tasks(p->ctx.slow_timeout, std::move(done), 200, run_atom::value, a[0]);
  });
  r.add("GET", "/api/tasks/{id}/runs",
        [p, fast](const request& req, const path_params& a, responder done) {
          auto limit = int_param(req, "limit", 20, 100, done);
          if (!limit) return;
          auto cursor = int_param(req, "cursor", INT64_MAX, INT64_MAX, done);
          if (!cursor) return;
          p->ask_tasks(fast * 6, std::move(done), 200, runs_atom::value, a[0],
                       *cursor == INT64_MAX ? int64_t{0} : *cursor, static_cast<uint32_t>(*limit));
        });
  r.add("GET", "/api/logs", [p, fast](const request& req, const path_params&, responder done) {
    log_params params{query_param(req.query, "task_id"), query_param(req.query, "level"),
                      query_param(req.query, "since"), query_param(req.query, "until"),
                      query_param(req.query, "limit")};
    auto q = parse_log_query(params);
    if (!q) return done(problem(q.error()));
    p->ask_tasks(fast * 6, std::move(done), 200, logs_atom::value, *q);
  });
  r.add("DELETE", "/api/logs", [p, fast](const request& req, const path_params&, responder done) {
    auto before = query_param(req.query, "before");
    if (!before)
      return done(problem(errc::invalid_argument,
                          "DELETE /api/logs needs ?before=<ISO-8601 time> (entries created "
                          "before it are deleted)"));
    auto at = runtime::parse_iso8601(*before);
    if (!at)
      return done(problem(
          errc::invalid_argument,
          "before must be an ISO-8601 time such as 2026-12-01T09:00:00Z, got '" + *before + "'"));
    auto task_id = query_param(req.query, "task_id").value_or("");
    p->ask_tasks(fast * 12, std::move(done), 200, purge_atom::value, *at, task_id);
  });
}

}  // namespace tessera::web
