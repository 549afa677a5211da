#include "actors/task/task_run.hpp"

#include "actors/task/run_log.hpp"
#include "adapters/error.hpp"
#include "runtime/clock.hpp"

namespace tessera::task {

using json = nlohmann::json;

run_record begin_run(const std::string& task_id, int64_t seq, const planned_run& run,
                     int64_t now_ms, std::string status) {
  run_record r;
  r.task_id = task_id;
  r.seq = seq;
  r.trigger = run.trigger;
  r.scheduled_for = run.scheduled_for;
  r.started_at = now_ms;
  if (status != "running") r.finished_at = now_ms;
  r.status = std::move(status);
  return r;
}

std::function<sandbox::call(const storage::snapshot&)> schedule_call(const task_record& t,
                                                                     const run_record& r,
                                                                     std::string warm_key) {
  auto body = json{{"handler", t.handler},
                   {"task",
                    {{"id", t.id},
                     {"name", t.name},
                     {"schedule", t.schedule},
                     {"timezone", t.timezone},
                     {"trigger", r.trigger},
                     {"scheduled_for",
                      r.scheduled_for ? json(runtime::iso8601(r.scheduled_for)) : json(nullptr)}}}};
  // Everything but the storage, without its closing brace: the storage data is JSON text
  // already and is spliced in, not re-encoded.
  auto head = body.dump();
  head.pop_back();
  auto timeout = static_cast<uint32_t>(t.timeout_ms);
  return [head = std::move(head), timeout, key = std::move(warm_key)](const storage::snapshot& s) {
    return sandbox::call{sandbox::call_kind::schedule,
                         head + ",\"storage\":" + storage::storage_object(s) + "}", timeout, 0,
                         key};
  };
}

json settle_run(run_record& r, const caf::expected<storage::atomic_outcome>& out, int64_t now_ms) {
  r.finished_at = now_ms;
  if (out) {
    r.status = "succeeded";
    auto changed = out->answer.find("changed");
    if (changed != out->answer.end() && changed->is_object())
      for (auto& [id, _] : changed->items()) r.changed_storages.push_back(id);
    return out->answer.value("logs", json::array());
  }
  if (code_of(out.error()) != errc::sandbox_failed) {
    r.status = "failed";
    r.error = {{"kind", std::string{to_string(code_of(out.error()))}},
               {"message", detail_of(out.error())}};
    return json::array();
  }
  auto answer = json::parse(detail_of(out.error()), nullptr, false);
  auto error = answer.is_object() ? answer.value("error", json::object()) : json::object();
  if (!error.is_object()) error = json::object();
  r.status = string_member(error, "kind", "handler_error") == "timeout" ? "timed_out" : "failed";
  r.error = error;
  return answer.is_object() ? answer.value("logs", json::array()) : json::array();
}

}  // namespace tessera::task
