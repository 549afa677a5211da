// The proofs of the cluster's secret that hellos carry (peers.hpp).
#include "runtime/cluster/peers.hpp"

#include <doctest/doctest.h>

using tessera::runtime::cluster::hello_proof;

TEST_SUITE("runtime.cluster.peers") {
  TEST_CASE("a hello's proof holds only for its secret, role, name and generation") {
    auto secret = std::string(64, 'a');
    auto proof = hello_proof(secret, "hello", "b", 7);
    CHECK(proof.size() == 64);
    CHECK(proof == hello_proof(secret, "hello", "b", 7));
    CHECK(proof != hello_proof(std::string(64, 'c'), "hello", "b", 7));
    CHECK(proof != hello_proof(secret, "welcome", "b", 7));
    CHECK(proof != hello_proof(secret, "hello", "c", 7));
    CHECK(proof != hello_proof(secret, "hello", "b", 8));
    CHECK(hello_proof(secret, "hello", "b\n7", 1) != hello_proof(secret, "hello", "b", 71));
  }
}
