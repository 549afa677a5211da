// A minimal structured logger: one line per event on stderr, "time level message".
//
// Contract: thread-safe; lines from different threads never interleave. Callers never pass
// secrets (tokens, keys); nothing here redacts.
#pragma once

#include <string_view>

namespace tessera::runtime {

enum class log_level { debug, info, warning, error };

void log(log_level level, std::string_view message);

inline void log_info(std::string_view m) { log(log_level::info, m); }
inline void log_warning(std::string_view m) { log(log_level::warning, m); }
inline void log_error(std::string_view m) { log(log_level::error, m); }

}  // namespace tessera::runtime
