#include "actors/panel/panel_metrics.hpp"

namespace tessera::panel {
namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace

panel_metrics::panel_metrics(prometheus::Registry& registry)
    : actions_(prometheus::BuildCounter()
                   .Name("tessera_panel_actions_total")
                   .Help("Panel actions by result (ok or the error kind)")
                   .Register(registry)),
      action_latency_(prometheus::BuildHistogram()
                          .Name("tessera_panel_action_duration_seconds")
                          .Help("Panel action latency: queue, storage reads, sandbox, commit")
                          .Register(registry)
                          .Add({}, adapters::latency_buckets())),
      renders_(prometheus::BuildCounter()
                   .Name("tessera_panel_renders_total")
                   .Help("Panel renders (outside actions) by result")
                   .Register(registry)),
      render_latency_(prometheus::BuildHistogram()
                          .Name("tessera_panel_render_duration_seconds")
                          .Help("Panel render latency: storage reads and the sandbox render")
                          .Register(registry)
                          .Add({}, adapters::latency_buckets())),
      coalesced_(prometheus::BuildCounter()
                     .Name("tessera_panel_renders_coalesced_total")
                     .Help("Storage changes whose render was skipped for a later one")
                     .Register(registry)
                     .Add({})),
      ahead_(prometheus::BuildCounter()
                 .Name("tessera_panel_calls_ahead_total")
                 .Help("Sandbox calls made for a panel's next run while the run before it "
                       "commits: made, and used (the others were dropped for a fresh run)")
                 .Register(registry)),
      ahead_made_(ahead_.Add({{"outcome", "made"}})),
      ahead_used_(ahead_.Add({{"outcome", "used"}})),
      conflicts_(prometheus::BuildCounter()
                     .Name("tessera_panel_commit_conflicts_total")
                     .Help("Action commits refused because a bound storage changed meanwhile")
                     .Register(registry)
                     .Add({})),
      retries_(prometheus::BuildCounter()
                   .Name("tessera_panel_commit_retries_total")
                   .Help("Actions re-run on fresh state after a commit conflict")
                   .Register(registry)
                   .Add({})),
      locked_runs_(prometheus::BuildCounter()
                       .Name("tessera_panel_locked_runs_total")
                       .Help("Actions run with their storages locked after too many conflicts")
                       .Register(registry)
                       .Add({})),
      batch_sizes_(
          prometheus::BuildHistogram()
              .Name("tessera_panel_action_batch_size")
              .Help("Actions per sandbox call, for calls of two actions or more")
              .Register(registry)
              .Add({}, prometheus::Histogram::BucketBoundaries{2, 4, 8, 16, 32, 64, 128, 256})) {}

void panel_metrics::count_action(const std::string& result,
                                 std::chrono::steady_clock::duration took) {
  actions_.Add({{"result", result}}).Increment();
  action_latency_.Observe(seconds(took));
}

void panel_metrics::count_render(const std::string& result,
                                 std::chrono::steady_clock::duration took) {
  renders_.Add({{"result", result}}).Increment();
  render_latency_.Observe(seconds(took));
}

}  // namespace tessera::panel
