#include "actors/task/run_history.hpp"

#include <nlohmann/json.hpp>

#include "actors/task/run_log.hpp"
#include "actors/task/task_codec.hpp"

namespace tessera::task {

using json = nlohmann::json;
using ops_t = std::vector<adapters::write_op>;

caf::expected<int64_t> newest_run_seq(const adapters::kv_store& store, const std::string& task_id) {
  auto rows = store.range(run_key(task_id, 0), run_prefix(task_id) + "~", 1, true);
  if (!rows) return rows.error();
  if (rows->empty()) return int64_t{0};
  auto r = decode_run(rows->front().second);
  return r ? r->seq : int64_t{0};
}

caf::expected<std::string> runs_page(const adapters::kv_store& store, const std::string& task_id,
                                     int64_t before_seq, uint32_t limit) {
  auto from = run_key(task_id, 0);
  auto to = before_seq > 0 ? run_key(task_id, before_seq) : run_prefix(task_id) + "~";
  auto rows = store.range(from, to, limit, true);
  if (!rows) return rows.error();
  json out = json::array();
  int64_t last = 0;
  for (auto& [_, value] : *rows) {
    auto r = decode_run(value);
    if (!r) continue;
    auto logs = run_logs(store, r->task_id, r->seq);
    out.push_back(to_json(*r, logs ? std::move(*logs) : json::array()));
    last = r->seq;
  }
  json next = rows->size() == limit && last > 1 ? json(last) : json(nullptr);
  return json{{"runs", std::move(out)}, {"next_cursor", std::move(next)}}.dump();
}

ops_t trim_ops(const adapters::kv_store& store, const std::string& task_id, int64_t newest_seq,
               uint32_t keep_runs, const std::function<bool(int64_t)>& held) {
  ops_t ops;
  // The newest claims are kept (a race between two owners is about the latest times).
  auto prefix = claim_prefix(task_id);
  if (auto claims = store.range(prefix, prefix + "~", kept_claims * 2, false);
      claims && claims->size() > kept_claims)
    for (size_t i = 0; i + kept_claims < claims->size(); ++i)
      ops.push_back({(*claims)[i].first, {}, true});
  auto below = newest_seq - static_cast<int64_t>(keep_runs) + 1;
  if (below <= 1) return ops;
  auto rows = store.range(run_key(task_id, 0), run_key(task_id, below), 64, false);
  if (!rows) return ops;
  for (auto& [_, value] : *rows) {
    auto r = decode_run(value);
    if (!r || r->status == "running" || (held && held(r->seq))) continue;
    if (auto more = erase_run_ops(store, task_id, r->seq))
      ops.insert(ops.end(), more->begin(), more->end());
  }
  return ops;
}

caf::expected<ops_t> erase_task_ops(const adapters::kv_store& store, const std::string& task_id) {
  ops_t ops{{task_key(task_id), {}, true}, {state_key(task_id), {}, true}};
  for (auto prefix :
       {run_prefix(task_id), std::string{running_prefix} + task_id + "/", claim_prefix(task_id)}) {
    auto rows = store.scan(prefix, "", 100'000'000);
    if (!rows) return rows.error();
    for (auto& [key, _] : *rows) ops.push_back({key, {}, true});
  }
  auto logs = erase_task_log_ops(store, task_id);
  if (!logs) return logs.error();
  ops.insert(ops.end(), logs->begin(), logs->end());
  return ops;
}

}  // namespace tessera::task
