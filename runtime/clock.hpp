// Wall-clock time as tessera stores and shows it.
//
// Contract: times are milliseconds since the Unix epoch (UTC) inside tessera and RFC 3339 /
// ISO-8601 UTC strings with millisecond precision ("2026-11-21T23:52:55.123Z") outside.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::runtime {

int64_t now_ms();

std::string iso8601(int64_t epoch_ms);

// Reads "YYYY-MM-DDTHH:MM:SS[.fff]" followed by "Z" or an offset ("+01:00", "-0530"), or a
// bare date "YYYY-MM-DD" (midnight UTC); fractions beyond milliseconds are truncated.
// nullopt for anything else, including out-of-range fields.
std::optional<int64_t> parse_iso8601(std::string_view text);

}  // namespace tessera::runtime
