// For unit tests only: what a message between two nodes goes through. `round_trip(sys, x)`
// wraps `x` in a caf::message, writes it with CAF's binary serializer and reads it back in the
// same actor system, as a remote node registering the same types would. It is an error when the
// type is not registered (the reader cannot make a value of that name) or the bytes do not read
// back; a field that inspect() leaves out comes back with its default, which == then catches.
#pragma once

#include <caf/all.hpp>
#include <vector>

#include "adapters/error.hpp"

namespace tessera::runtime {

template <class T>
caf::expected<T> round_trip(caf::actor_system& sys, const T& x) {
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  auto msg = caf::make_message(x);
  if (auto err = sink(msg)) return err;
  caf::message back;
  caf::binary_deserializer source{sys, buf};
  if (auto err = source(back)) return err;
  if (!back.match_elements<T>()) return make_error(errc::internal, "read back another type");
  return back.get_as<T>(0);
}

}  // namespace tessera::runtime
