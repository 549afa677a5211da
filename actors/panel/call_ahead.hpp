// A call made ahead: the sandbox call of a panel's next run, made while the run before it
// commits, on the state that commit will leave (docs/architecture.md, "Calls ahead").
// Pure: no actors; the panel actor owns one at a time.
//
// Contract:
// - `answer` is given the call's result once (nullopt when the call failed); a continuation
//   set in `waiting` before then gets it at that moment, exactly once. A result saying the
//   sandbox was `overloaded` or `unavailable` is kept as nullopt: the run makes its own call
//   rather than answer with a refusal that may no longer hold.
// - `same_state` says whether two snapshots hold the same storages at the same versions with
//   the same data: the run uses the answer only if the commit before it left exactly the
//   `state` the call saw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>

#include "actors/sandbox/messages.hpp"
#include "actors/storage/atomic_run.hpp"

namespace tessera::panel {

struct call_ahead {
  uint64_t first = 0;       // the arrival number of the first action it runs
  size_t count = 0;         // how many actions from there
  uint64_t definition = 0;  // the panel definition it was made for
  storage::snapshot state;  // the state it ran on
  bool answered = false;
  std::optional<sandbox::call_result> result;  // answered: nullopt when the call failed
  std::function<void(std::optional<sandbox::call_result>)> waiting;

  void answer(std::optional<sandbox::call_result> r);
  // Calls `k` with the result now if it is in, else once it comes.
  void when_answered(std::function<void(std::optional<sandbox::call_result>)> k);
};

bool same_state(const storage::snapshot& a, const storage::snapshot& b);

}  // namespace tessera::panel
