#include "actors/panel/call_ahead.hpp"

#include <utility>

namespace tessera::panel {

void call_ahead::answer(std::optional<sandbox::call_result> r) {
  if (answered) return;
  answered = true;
  // A sandbox that was busy or restarting ahead of time may not be by now: the run calls again.
  if (r && (r->outcome == "overloaded" || r->outcome == "unavailable")) r.reset();
  result = std::move(r);
  if (auto w = std::exchange(waiting, {})) w(result);
}

void call_ahead::when_answered(std::function<void(std::optional<sandbox::call_result>)> k) {
  if (answered) return k(result);
  waiting = std::move(k);
}

bool same_state(const storage::snapshot& a, const storage::snapshot& b) {
  if (a.size() != b.size()) return false;
  for (auto& [id, e] : a) {
    auto it = b.find(id);
    if (it == b.end() || it->second.version != e.version || it->second.data != e.data) return false;
  }
  return true;
}

}  // namespace tessera::panel
