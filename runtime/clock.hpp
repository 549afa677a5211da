// Wall-clock time as tessera stores and shows it.
//
// Contract: times are milliseconds since the Unix epoch (UTC) inside tessera and RFC 3339 /
// ISO-8601 UTC strings with millisecond precision ("2026-11-21T23:52:55.123Z") outside.
#pragma once

#include <cstdint>
#include <string>

namespace tessera::runtime {

int64_t now_ms();

std::string iso8601(int64_t epoch_ms);

}  // namespace tessera::runtime
