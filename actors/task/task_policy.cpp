#include "actors/task/task_policy.hpp"

#include <algorithm>
#include <deque>

#include "runtime/clock.hpp"

namespace tessera::task {
namespace {

int64_t floor_s(int64_t ms) { return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000); }

int64_t seconds_of(cron::time_point t) {
  return static_cast<int64_t>(t.time_since_epoch().count());
}

std::optional<int64_t> next_after_s(const cron::schedule& s, int64_t after_s) {
  auto t = s.next_after(cron::time_point{std::chrono::seconds{after_s}});
  if (!t) return std::nullopt;
  return seconds_of(*t);
}

planned_skip skip_of(planned_run run, std::string reason, std::string message) {
  return {std::move(run), std::move(reason), std::move(message)};
}

}  // namespace

due_times due_between(const cron::schedule& s, int64_t after_ms, int64_t now_ms, size_t keep) {
  due_times out;
  keep = std::max<size_t>(keep, 1);
  auto after_s = floor_s(after_ms), now_s = floor_s(now_ms);
  if (now_s <= after_s) return out;
  // Counted exactly up to a cap, so a message can say how many passed; past it, the newest are
  // found in a window that grows back from now, so a long downtime of a frequent schedule
  // costs a few thousand cron steps, not one per missed time.
  const size_t cap = keep + 1000;
  std::deque<int64_t> newest;
  for (auto t = next_after_s(s, after_s); t && *t <= now_s; t = next_after_s(s, *t)) {
    if (++out.count == cap) break;
    newest.push_back(*t * 1000);
    if (newest.size() > keep) newest.pop_front();
  }
  if (out.count < cap) {
    out.newest.assign(newest.begin(), newest.end());
    return out;
  }
  out.exact = false;
  for (int64_t window = 16;; window *= 16) {
    auto start = std::max(after_s, now_s - window);
    newest.clear();
    size_t found = 0;
    for (auto t = next_after_s(s, start); t && *t <= now_s; t = next_after_s(s, *t)) {
      ++found;
      newest.push_back(*t * 1000);
      if (newest.size() > keep) newest.pop_front();
    }
    if (start == after_s || found >= keep) {
      out.newest.assign(newest.begin(), newest.end());
      return out;
    }
  }
}

int64_t next_fire(const cron::schedule& s, int64_t last_scheduled, int64_t now_ms) {
  auto t = next_after_s(s, floor_s(std::max(last_scheduled, now_ms)));
  return t ? *t * 1000 : 0;
}

due_plan plan_due(const cron::schedule& s, misfire_policy misfire, size_t max_catch_up,
                  int64_t last_scheduled, int64_t now_ms) {
  due_plan plan;
  plan.last_scheduled = last_scheduled;
  size_t keep = misfire == misfire_policy::catch_up ? std::max<size_t>(max_catch_up, 1) : 1;
  auto due = due_between(s, last_scheduled, now_ms, keep);
  if (due.count == 0) return plan;
  auto newest = due.newest.back();
  plan.last_scheduled = std::max(last_scheduled, newest);
  if (due.count == 1 && due.exact && now_ms - newest <= misfire_grace_ms) {
    plan.run = planned_run{"schedule", newest};
    return plan;
  }
  plan.misfire = misfire;
  auto missed = (due.exact ? "" : "at least ") + std::to_string(due.count);
  switch (misfire) {
    case misfire_policy::run_once:
      plan.run = planned_run{"catch_up", newest};
      break;
    case misfire_policy::skip:
      plan.skips.push_back(skip_of({"catch_up", newest}, "misfire",
                                   missed + " scheduled time(s) passed unrun (the latest " +
                                       runtime::iso8601(newest) + "); misfire policy is skip"));
      break;
    case misfire_policy::catch_up:
      if (due.count > due.newest.size())
        plan.skips.push_back(skip_of({"catch_up", 0}, "catch_up_limit",
                                     "catch-up runs only the newest " +
                                         std::to_string(due.newest.size()) + " of " + missed +
                                         " missed scheduled times; the older ones are skipped"));
      for (auto at : due.newest) plan.queued.push_back({"catch_up", at});
      break;
  }
  return plan;
}

overlap_decision on_due(overlap_policy p, bool busy, bool waiting) {
  if (!busy || p == overlap_policy::allow) return {overlap_action::start, {}};
  if (p == overlap_policy::queue_one && !waiting) return {overlap_action::queue, {}};
  return {overlap_action::refuse, p == overlap_policy::skip
                                      ? "the previous run was still running (overlap policy skip)"
                                      : "a run was already waiting (overlap policy queue_one)"};
}

overlap_decision on_manual(overlap_policy p, const std::string& task_id, bool busy, bool waiting) {
  auto d = on_due(p, busy, waiting);
  if (d.action == overlap_action::refuse)
    d.message = p == overlap_policy::skip
                    ? "task '" + task_id + "' is running and its overlap policy is skip"
                    : "task '" + task_id + "' already has a run waiting (queue_one)";
  return d;
}

redefinition on_redefine(const task_record& old_rec, const task_record& new_rec,
                         int64_t last_scheduled, int64_t now_ms) {
  redefinition r;
  r.retimed = new_rec.schedule != old_rec.schedule || new_rec.timezone != old_rec.timezone ||
              (new_rec.enabled && !old_rec.enabled);
  r.stop_queued = r.retimed || (!new_rec.enabled && old_rec.enabled);
  r.last_scheduled = r.retimed ? std::max(last_scheduled, now_ms) : last_scheduled;
  return r;
}

}  // namespace tessera::task
