// The sandbox wire: length-prefixed frames over a pipe, spoken between the server and
// build/tessera-sandbox (and inside the worker, between its zygote and a call's process).
//
// A frame is a 4-byte big-endian length followed by that many bytes. A request frame is one
// line of header JSON ({"id","kind","timeout_ms","memory_mb",...}), a newline, then the call's
// body JSON; a response frame is one JSON object (see docs/architecture.md, "Sandbox").
//
// Contract: functions never throw and work on blocking or non-blocking descriptors alike; they
// retry EINTR and EAGAIN. `read_frame` waits at most until `deadline`; a frame longer than
// `max_bytes` is refused without reading its body (the stream is then unusable: close it). No
// CAF here, so the worker executable stays small. Safe from any thread on distinct descriptors.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::sandbox_wire {

enum class status : uint8_t { ok, closed, timed_out, too_large, io_error };

std::string_view to_string(status s);

using clock = std::chrono::steady_clock;

// A duration in whole microseconds, as the answers report times.
inline int64_t micros(clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

status write_all(int fd, std::string_view bytes);
status write_frame(int fd, std::string_view payload);

// Reads one frame into `out`. `closed` means a clean EOF before any byte of the frame.
status read_frame(int fd, std::string& out, size_t max_bytes, clock::time_point deadline);

// Descriptor passing, for a Unix socket (the zygote lends a warm process's pipes to the
// server this way): `write_frame_with_fds` sends `fds` (SCM_RIGHTS) with the frame's first
// byte; `read_frame_with_fds` reads a frame as `read_frame` does and appends the descriptors
// that came with it to `fds` (close-on-exec). On a pipe both behave as the plain calls, with
// no descriptors.
status write_frame_with_fds(int fd, std::string_view payload, const std::vector<int>& fds);
status read_frame_with_fds(int fd, std::string& out, size_t max_bytes, clock::time_point deadline,
                           std::vector<int>& fds);

// Reads until EOF or `max_bytes` (then too_large), waiting at most until `deadline`.
status read_to_end(int fd, std::string& out, size_t max_bytes, clock::time_point deadline);

// A request frame split into its header line and body.
struct request_parts {
  std::string_view header;
  std::string_view body;
};
request_parts split_request(std::string_view payload);

}  // namespace tessera::sandbox_wire
