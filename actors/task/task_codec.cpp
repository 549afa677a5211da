#include "actors/task/task_codec.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "actors/storage/fields.hpp"
#include "actors/storage/messages.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::task {
namespace {

using storage::read_storage_ids;
using storage::read_text;

using json = nlohmann::json;

caf::error bad(const std::string& message) { return make_error(errc::invalid_argument, message); }

template <class Policy>
caf::error read_policy(const json& v, const char* field, Policy& out,
                       std::initializer_list<Policy> all) {
  std::string names;
  for (auto p : all) {
    if (v.is_string() && v.get<std::string>() == to_string(p)) {
      out = p;
      return {};
    }
    names += (names.empty() ? "" : ", ") + std::string{to_string(p)};
  }
  return bad(std::string{"field '"} + field + "' must be one of " + names);
}

caf::error set_field(task_record& r, const std::string& key, const json& v,
                     const task_limits& limits) {
  if (key == "name") return read_text(v, "name", r.name);
  if (key == "schedule") return read_text(v, "schedule", r.schedule);
  if (key == "timezone") return read_text(v, "timezone", r.timezone);
  if (key == "storage_ids") return read_storage_ids(v, "task", r.storage_ids);
  if (key == "handler") return read_text(v, "handler", r.handler, SIZE_MAX);
  if (key == "enabled") {
    if (!v.is_boolean()) return bad("field 'enabled' must be true or false");
    r.enabled = v.get<bool>();
    return {};
  }
  if (key == "overlap")
    return read_policy(v, "overlap", r.overlap,
                       {overlap_policy::skip, overlap_policy::queue_one, overlap_policy::allow});
  if (key == "misfire")
    return read_policy(v, "misfire", r.misfire,
                       {misfire_policy::run_once, misfire_policy::skip, misfire_policy::catch_up});
  if (key == "timeout") return storage::read_timeout(v, r.timeout_ms, limits);
  if (key == "fresh_process") return storage::read_flag(v, "fresh_process", r.fresh_process);
  return bad("unknown field '" + key + "'");
}

// The schedule and zone together: a bad one names the cron field.
caf::error check_schedule(const task_record& r) {
  if (r.schedule.empty()) return bad("field 'schedule' must be a cron expression");
  auto parsed = cron::parse(r.schedule, r.timezone);
  if (auto* err = std::get_if<cron::parse_error>(&parsed))
    return bad(std::string{err->field == "timezone" ? "field 'timezone': " : "field 'schedule': "} +
               err->message);
  return {};
}

std::string padded(int64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%012lld", static_cast<long long>(n));
  return buf;
}

json time_or_null(int64_t ms) { return ms ? json(runtime::iso8601(ms)) : json(nullptr); }

}  // namespace

std::string_view to_string(overlap_policy p) {
  switch (p) {
    case overlap_policy::skip:
      return "skip";
    case overlap_policy::queue_one:
      return "queue_one";
    case overlap_policy::allow:
      return "allow";
  }
  return "skip";
}

std::string_view to_string(misfire_policy p) {
  switch (p) {
    case misfire_policy::run_once:
      return "run_once";
    case misfire_policy::skip:
      return "skip";
    case misfire_policy::catch_up:
      return "catch_up";
  }
  return "run_once";
}

std::string task_key(std::string_view id) { return std::string{key_prefix} + std::string{id}; }
std::string state_key(std::string_view id) { return "taskstate/" + std::string{id}; }

caf::expected<task_record> parse_new_task(const json& body, const task_limits& limits) {
  if (!body.is_object()) return bad("body must be a JSON object");
  auto id = body.find("id");
  if (id == body.end() || !id->is_string() || !storage::valid_storage_id(id->get<std::string>()))
    return bad("field 'id' must be a task id: 1-128 characters of A-Z a-z 0-9 _ . -");
  task_record r;
  r.id = id->get<std::string>();
  r.name = r.id;
  r.timeout_ms = limits.default_timeout_ms;
  for (auto& [key, value] : body.items()) {
    if (key == "id") continue;
    if (auto err = set_field(r, key, value, limits)) return err;
  }
  if (!body.contains("schedule")) return bad("field 'schedule' is required (a cron expression)");
  if (r.handler.empty())
    return bad("field 'handler' is required (Python defining on_schedule(storage))");
  if (auto err = check_schedule(r)) return err;
  return r;
}

caf::expected<task_record> apply_update(const task_record& current, const json& body,
                                        const std::vector<std::string>& allowed,
                                        const task_limits& limits) {
  if (!body.is_object()) return bad("body must be a JSON object");
  auto next = current;
  for (auto& [key, value] : body.items()) {
    if (auto err = storage::check_allowed(key, allowed)) return err;
    if (auto err = set_field(next, key, value, limits)) return err;
  }
  if (next.handler.empty()) return bad("field 'handler' must not be empty");
  if (auto err = check_schedule(next)) return err;
  return next;
}

cron::schedule schedule_of(const task_record& r) {
  return std::get<cron::schedule>(cron::parse(r.schedule, r.timezone));
}

// The fields the record on disk and the API object have alike.
json definition_json(const task_record& r) {
  return {{"id", r.id},
          {"name", r.name},
          {"schedule", r.schedule},
          {"timezone", r.timezone},
          {"storage_ids", r.storage_ids},
          {"handler", r.handler},
          {"enabled", r.enabled},
          {"overlap", to_string(r.overlap)},
          {"misfire", to_string(r.misfire)},
          {"fresh_process", r.fresh_process},
          {"version", r.version}};
}

std::string encode(const task_record& r) {
  auto j = definition_json(r);
  j["timeout_ms"] = r.timeout_ms;
  j["created_at"] = r.created_at;  // ms since the epoch on disk; ISO-8601 in the API
  j["updated_at"] = r.updated_at;
  return j.dump();
}

std::optional<task_record> decode(std::string_view value, cron::schedule* parsed) {
  auto j = json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    task_record r;
    r.id = j.at("id").get<std::string>();
    r.name = j.at("name").get<std::string>();
    r.schedule = j.at("schedule").get<std::string>();
    r.timezone = j.at("timezone").get<std::string>();
    r.storage_ids = j.at("storage_ids").get<std::vector<std::string>>();
    r.handler = j.at("handler").get<std::string>();
    r.enabled = j.at("enabled").get<bool>();
    if (read_policy(j.at("overlap"), "overlap", r.overlap,
                    {overlap_policy::skip, overlap_policy::queue_one, overlap_policy::allow}) ||
        read_policy(j.at("misfire"), "misfire", r.misfire,
                    {misfire_policy::run_once, misfire_policy::skip, misfire_policy::catch_up}))
      return std::nullopt;
    r.timeout_ms = j.at("timeout_ms").get<int64_t>();
    r.fresh_process = j.value("fresh_process", false);
    r.version = j.at("version").get<int64_t>();
    r.created_at = j.at("created_at").get<int64_t>();
    r.updated_at = j.at("updated_at").get<int64_t>();
    auto s = cron::parse(r.schedule, r.timezone);
    if (!std::holds_alternative<cron::schedule>(s)) return std::nullopt;
    if (parsed) *parsed = std::get<cron::schedule>(std::move(s));
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::string encode(const task_state& s) {
  return json{{"last_scheduled", s.last_scheduled},
              {"run_seq", s.run_seq},
              {"last_run", s.last_run},
              {"last_status", s.last_status}}
      .dump();
}

std::optional<task_state> decode_state(std::string_view value) {
  auto j = json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    return task_state{j.at("last_scheduled").get<int64_t>(), j.at("run_seq").get<int64_t>(),
                      j.at("last_run").get<int64_t>(), j.at("last_status").get<std::string>()};
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

json to_json(const task_record& r, const task_state& s, int64_t next_run, bool running) {
  auto j = definition_json(r);
  j["timeout"] = static_cast<double>(r.timeout_ms) / 1000;
  j["status"] = running ? "running" : r.enabled ? "scheduled" : "disabled";
  j["last_run"] = time_or_null(s.last_run);
  j["last_status"] = s.last_status.empty() ? json(nullptr) : json(s.last_status);
  j["next_run"] = r.enabled ? time_or_null(next_run) : json(nullptr);
  j["created_at"] = runtime::iso8601(r.created_at);
  j["updated_at"] = runtime::iso8601(r.updated_at);
  return j;
}

std::string run_id(std::string_view task_id, int64_t seq) {
  return std::string{task_id} + ":" + std::to_string(seq);
}
std::string run_prefix(std::string_view task_id) { return "run/" + std::string{task_id} + "/"; }
std::string run_key(std::string_view task_id, int64_t seq) {
  return run_prefix(task_id) + padded(seq);
}
std::string claim_prefix(std::string_view task_id) {
  return "taskclaim/" + std::string{task_id} + "/";
}
std::string claim_key(std::string_view task_id, int64_t scheduled_for) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%013lld", static_cast<long long>(scheduled_for));
  return claim_prefix(task_id) + buf;
}
std::string running_key(std::string_view task_id, int64_t seq) {
  return std::string{running_prefix} + std::string{task_id} + "/" + padded(seq);
}

std::string encode(const run_record& r) {
  return json{{"task_id", r.task_id},
              {"seq", r.seq},
              {"trigger", r.trigger},
              {"scheduled_for", r.scheduled_for},
              {"started_at", r.started_at},
              {"finished_at", r.finished_at},
              {"status", r.status},
              {"error", r.error},
              {"changed_storages", r.changed_storages}}
      .dump();
}

std::optional<run_record> decode_run(std::string_view value) {
  auto j = json::parse(value, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  try {
    run_record r;
    r.task_id = j.at("task_id").get<std::string>();
    r.seq = j.at("seq").get<int64_t>();
    r.trigger = j.at("trigger").get<std::string>();
    r.scheduled_for = j.at("scheduled_for").get<int64_t>();
    r.started_at = j.at("started_at").get<int64_t>();
    r.finished_at = j.at("finished_at").get<int64_t>();
    r.status = j.at("status").get<std::string>();
    r.error = j.at("error");
    r.changed_storages = j.at("changed_storages").get<std::vector<std::string>>();
    return r;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

json to_json(const run_record& r, json logs) {
  return {{"run_id", run_id(r.task_id, r.seq)},
          {"task_id", r.task_id},
          {"trigger", r.trigger},
          {"scheduled_for", time_or_null(r.scheduled_for)},
          {"started_at", time_or_null(r.started_at)},
          {"finished_at", time_or_null(r.finished_at)},
          {"status", r.status},
          {"error", r.error},
          {"logs", std::move(logs)},
          {"changed_storages", r.changed_storages}};
}

}  // namespace tessera::task
