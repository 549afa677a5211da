// The process-wide Prometheus registry and its text exposition.
//
// Contract: families are created once at start-up by the layer that owns them (runtime, actors,
// web) and updated from any thread (prometheus-cpp metrics are thread-safe). `exposition()`
// renders the Prometheus text format 0.0.4 that /metrics serves.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace tessera::adapters {

using metrics_registry = std::shared_ptr<prometheus::Registry>;

inline metrics_registry make_metrics_registry() { return std::make_shared<prometheus::Registry>(); }

std::string exposition(const prometheus::Registry& registry);

// Buckets in seconds from 50 µs to 10 s, for latencies of everything from a RocksDB write to a
// slow HTTP request.
const prometheus::Histogram::BucketBoundaries& latency_buckets();

}  // namespace tessera::adapters
