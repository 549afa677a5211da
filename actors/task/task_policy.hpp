// The scheduling decisions of one task, as values: which scheduled times are due, whether they
// are a misfire and what the misfire policy makes of them, what the overlap policy does with a
// due or a manual run, and what a redefinition changes. task_actor.cpp carries them out (runs,
// records, commits); the rules themselves are stated in task_actor.hpp.
//
// Contract: pure (no actors, no I/O, no clock: `now_ms` is an argument) and thread-safe. Times
// are ms since the epoch; cron schedules work in whole seconds, so a time's milliseconds are
// floored first.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/task/task_codec.hpp"
#include "runtime/cron.hpp"

namespace tessera::task {

// A due time may be this late and still run as scheduled (trigger "schedule").
inline constexpr int64_t misfire_grace_ms = 5000;

// The scheduled times of `s` after `after_ms` up to `now_ms`: the newest `keep` of them in
// order, and how many there are: exact up to 1000 more than `keep`, else `exact` is false and
// `count` is that lower bound. A long downtime of a frequent schedule costs about a thousand
// cron steps (a few ms), not one per missed time.
struct due_times {
  std::vector<int64_t> newest;
  size_t count = 0;
  bool exact = true;
};
due_times due_between(const cron::schedule& s, int64_t after_ms, int64_t now_ms, size_t keep);

// The next fire time to register: the first scheduled time after both the last one handled and
// now (0: the schedule never fires again).
int64_t next_fire(const cron::schedule& s, int64_t last_scheduled, int64_t now_ms);

// A run to start, or to queue when the overlap policy says so.
struct planned_run {
  std::string trigger;        // "schedule" | "catch_up" | "manual"
  int64_t scheduled_for = 0;  // 0: not scheduled (manual, or a record for several times)
};

// A scheduled time that does not run: written as a run record with status skipped.
struct planned_skip {
  planned_run run;
  std::string reason;  // error.kind: misfire | catch_up_limit | overlap | cancelled
  std::string message;
};

// What to do with the times due when a task wakes (a fire, its start, a redefinition).
struct due_plan {
  int64_t last_scheduled = 0;             // the newest time handled, written before any run
  std::optional<misfire_policy> misfire;  // set when the due times were a misfire
  std::optional<planned_run> run;         // one run that meets the overlap policy (on_due)
  std::vector<planned_run> queued;        // catch_up: run one after another, in order
  std::vector<planned_skip> skips;
};
due_plan plan_due(const cron::schedule& s, misfire_policy misfire, size_t max_catch_up,
                  int64_t last_scheduled, int64_t now_ms);

// What the overlap policy does with a run that is due (or asked for) now.
enum class overlap_action {
  start,   // run it now
  queue,   // it waits for the run in progress
  refuse,  // not run: a skipped record for a scheduled run, conflict for a manual one
};
struct overlap_decision {
  overlap_action action = overlap_action::start;
  std::string message;  // why it is refused
};
// `busy`: a run is in progress or waiting; `waiting`: one is already queued.
overlap_decision on_due(overlap_policy p, bool busy, bool waiting);
overlap_decision on_manual(overlap_policy p, const std::string& task_id, bool busy, bool waiting);

// What a redefinition from `old_rec` to `new_rec` changes in the scheduler state.
struct redefinition {
  bool retimed = false;        // schedule, zone changed or enabled again: times before now
                               // are not misfires of the new schedule
  bool stop_queued = false;    // scheduled runs still waiting are cancelled (skipped records)
  int64_t last_scheduled = 0;  // the state's new value
};
redefinition on_redefine(const task_record& old_rec, const task_record& new_rec,
                         int64_t last_scheduled, int64_t now_ms);

}  // namespace tessera::task
