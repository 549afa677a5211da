// A call process's answer frame, and the members the sandbox adds to the answer before the
// server's callers see it. Shared by the two ends that talk to a call process: the zygote,
// which relays a call to a process it forked, and the server's executor, which talks to a warm
// process the zygote lent it (docs/architecture.md, "Sandbox": lent warm processes).
//
// An answer frame is the runner's JSON object, a NUL (which JSON text never contains), and a
// trailer of the call process's own figures: "<compiled> <cpu_us> <minor_faults> <keep>
// <check_us> <uss_kib> <pss_kib> <why it does not stay>".
//
// Contract: pure functions, no I/O, no CAF (the worker executable links this too). They never
// throw.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera::sandbox_wire {

// A well-formed answer from a call process.
struct call_answer {
  std::string json;      // the runner's JSON object
  bool fresh = false;    // the call compiled sources the zygote has not cached
  int64_t cpu_us = 0;    // the process's CPU time for this call
  int64_t faults = 0;    // and its minor page faults
  bool keep = false;     // the process waits for another call of its key
  int64_t check_us = 0;  // what the state check after the call cost
  int64_t uss_kib = -1;  // memory as the process last measured itself (-1: not yet)
  int64_t pss_kib = -1;
  std::string spoiled;  // if it does not stay, why (empty for a call without a reuse key)
};

// Splits an answer frame into the JSON object and the trailer; nullopt when the frame is not
// a JSON object followed by a well-formed trailer (a handler that wrote on its descriptors, a
// process that died half-way). Consumes `frame`.
std::optional<call_answer> split_answer(std::string& frame);

// How many bytes an answer may take for these limits: room for the storages and the HTML (each
// up to the output limit) plus the logs and the JSON framing.
size_t max_answer_bytes(size_t max_output_bytes, size_t max_log_bytes, size_t max_log_lines);

// {"ok":false,"error":{"kind","type","message"},"logs":[]}, the shape of every failed call.
std::string error_json(std::string_view kind, std::string_view type, const std::string& message);
std::string timeout_error(int timeout_ms);
std::string output_limit_error(size_t max_answer);

// What the sandbox reports beside the runner's own answer.
struct call_report {
  int64_t fork_us = 0;  // forking the process (0 for a warm process: forked before the call)
  int64_t call_us = 0;  // sending the request to receiving the answer
  int64_t cpu_us = 0;
  int64_t faults = 0;
  bool compiled = false;
  // The warm process ("warm" member): whether it served calls before this one, how many it
  // has served with this one, whether it stays, and if not why.
  bool reused = false;
  int64_t calls = 1;
  bool kept = false;
  int64_t check_us = 0;
  std::string discarded;
  int64_t pid = -1;  // in the sandbox's pid namespace; -1: not reported (the process is gone)
  int64_t uss_kib = -1;
  int64_t pss_kib = -1;
  bool lent = false;         // the server holds the process's pipes and calls it directly
  std::string retired_json;  // [[key, reason, pid], ...] retired since the last answer, or ""
};

// Closes `answer` (a JSON object's text) with the members "zygote_us": {fork, call},
// "process": {cpu_us, minor_faults, compiled} and "warm": {reused, calls, kept, check_us,
// discarded?, pid?, uss_kib?, pss_kib?, lent?, retired?}.
void close_answer(std::string& answer, const call_report& r);

}  // namespace tessera::sandbox_wire
