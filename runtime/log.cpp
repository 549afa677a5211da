#include "runtime/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>

#include "runtime/clock.hpp"

namespace tessera::runtime {

void log(log_level level, std::string_view message) {
  static std::mutex mutex;
  static constexpr const char* names[] = {"debug", "info", "warning", "error"};
  std::string line = iso8601(now_ms());
  line += ' ';
  line += names[static_cast<int>(level)];
  line += ' ';
  line += message;
  line += '\n';
  std::lock_guard<std::mutex> guard{mutex};
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace tessera::runtime
