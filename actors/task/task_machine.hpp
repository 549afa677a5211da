// The state of one task actor (task_actor.hpp states its protocol), internal to actors/task.
// One class, its jobs in three files:
// - task_actor.cpp: the behaviour, start and stop, and scheduling (what falls due, and when
//   the scheduler should fire next, by task_policy.hpp's decisions);
// - task_runs.cpp: a run's life (manual or scheduled, started, executed, settled and written,
//   or skipped), its history's trimming, and the commits the actor sends;
// - task_definition.cpp: updates of the definition and the task's deletion with its history.
//
// Contract: everything runs on the actor (no locks); commits go through env.atomic.committer
// and are counted, so a deletion scans the history only once the commits already sent have
// landed. Once `deleted_` is set nothing new starts and finished runs write nothing.
#pragma once

#include <caf/all.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/common/definition_update.hpp"
#include "actors/task/task_actor.hpp"
#include "actors/task/task_policy.hpp"
#include "adapters/kv/kv_store.hpp"

namespace tessera::task {

class task_machine {
 public:
  using reply_promise = caf::typed_response_promise<std::string>;
  using ops_t = std::vector<adapters::write_op>;

  task_machine(caf::event_based_actor* self, task_env env, directory_impl directory, task_record r,
               task_state s, cron::schedule schedule);

  void start();
  void stopped();
  std::string view() const;

  // (fire_atom, at) from the scheduler: a stale time (superseded) is ignored.
  void fire(int64_t at);
  caf::result<std::string> run_now();
  caf::result<std::string> runs(int64_t before, uint32_t limit);
  caf::result<std::string> update(actors::update_request u);
  caf::result<std::string> erase();
  void placed();
  void changed_elsewhere(const std::string& record);

 private:
  // A run decided but not started (queued by queue_one or catch_up), or a manual one waiting.
  struct pending_run {
    planned_run run;
    std::optional<reply_promise> rp;
    int attempts = 0;  // starts lost to a run number another node took
  };

  // --- task_actor.cpp: scheduling
  std::string warm_key() const;
  bool owns() const { return !env_.owns_schedule || env_.owns_schedule(rec_.id); }
  // Reads the stored state (and the newest run's number) and takes what is newer there, then
  // `then` (also when the read failed: what is in memory stands).
  void reload_state(std::function<void()> then);
  caf::error gone() const;
  bool busy() const { return running_ > 0 || !pending_.empty(); }
  void count_enabled(bool on);
  void unschedule();
  void reschedule();
  void handle_due();
  void decide(planned_run run);
  void start_next();

  // --- task_runs.cpp: runs and commits
  void skip_run(const planned_skip& skip);
  void start_run(pending_run pending);
  void lost_start(pending_run pending, int64_t seq);
  void execute(std::shared_ptr<run_record> r);
  void finish_run(std::shared_ptr<run_record> r, caf::expected<storage::atomic_outcome> out);
  void trim(int64_t seq, std::function<void()> then);
  void cancel_queued();
  void commit(ops_t ops, std::function<void(caf::error)> done);
  void committed();

  // --- task_definition.cpp: updates and deletion
  void run_update(const actors::update_request& u, actors::definition_done done);
  void write(std::shared_ptr<task_record> candidate, actors::definition_done done);
  void erase_history();
  void erase_commit(ops_t ops);
  void erase_failed(const caf::error& err);
  void end();

  caf::event_based_actor* self_;
  task_env env_;
  directory_impl directory_;
  task_record rec_;
  task_state st_;
  cron::schedule schedule_;
  int64_t next_run_ = 0;  // registered with the scheduler, 0: none
  int running_ = 0;
  int in_gate_ = 0;  // runs counted in env_.gate
  bool deleted_ = false;
  bool owning_ = true;  // this node fires the task's schedule (env.owns_schedule)
  int commits_in_flight_ = 0;
  std::optional<reply_promise> erase_promise_;  // while the erase waits or commits
  bool counted_enabled_ = false;
  std::deque<pending_run> pending_;
  std::map<int64_t, reply_promise> waiting_;  // manual runs in flight, by seq
  actors::update_queue updates_;
};

}  // namespace tessera::task
