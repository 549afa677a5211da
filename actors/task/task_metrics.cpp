#include "actors/task/task_metrics.hpp"

namespace tessera::task {
namespace {

double seconds(std::chrono::milliseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

task_metrics::task_metrics(prometheus::Registry& registry)
    : runs_(prometheus::BuildCounter()
                .Name("tessera_task_runs_total")
                .Help("Finished task runs by status (succeeded, failed, timed_out, skipped)")
                .Register(registry)),
      duration_(prometheus::BuildHistogram()
                    .Name("tessera_task_run_duration_seconds")
                    .Help("Task run time from start to its commit")
                    .Register(registry)
                    .Add({}, adapters::latency_buckets())),
      lag_(prometheus::BuildHistogram()
               .Name("tessera_task_schedule_lag_seconds")
               .Help("Start of a scheduled run minus its scheduled time")
               .Register(registry)
               .Add({}, adapters::latency_buckets())),
      misfires_(prometheus::BuildCounter()
                    .Name("tessera_task_misfires_total")
                    .Help("Scheduled times missed (server down or too late), by misfire policy")
                    .Register(registry)),
      skips_(prometheus::BuildCounter()
                 .Name("tessera_task_skips_total")
                 .Help("Scheduled runs skipped, by reason (overlap, misfire, catch_up_limit)")
                 .Register(registry)),
      enabled_(prometheus::BuildGauge()
                   .Name("tessera_tasks_enabled")
                   .Help("Enabled tasks")
                   .Register(registry)
                   .Add({})),
      queue_(prometheus::BuildGauge()
                 .Name("tessera_task_schedule_queue_size")
                 .Help("Tasks waiting in the scheduler's next-fire queue")
                 .Register(registry)
                 .Add({})) {}

void task_metrics::count_run(const std::string& status, std::chrono::milliseconds took) {
  runs_.Add({{"status", status}}).Increment();
  duration_.Observe(seconds(took));
}

void task_metrics::observe_lag(std::chrono::milliseconds lag) { lag_.Observe(seconds(lag)); }

}  // namespace tessera::task
