#include "adapters/json/parse.hpp"

#include <doctest/doctest.h>

#include "adapters/error.hpp"

using namespace tessera;
using tessera::adapters::parse_json;

TEST_SUITE("adapters.json") {
  TEST_CASE("valid JSON within the depth limit parses") {
    auto v = parse_json(R"({"a":[1,{"b":"\"]}"}]})", 3);
    REQUIRE(v);
    CHECK((*v)["a"][1]["b"] == "\"]}");
  }

  TEST_CASE("nesting deeper than the limit is json_too_deep, brackets in strings do not count") {
    CHECK(code_of(parse_json("[[[[1]]]]", 3).error()) == errc::json_too_deep);
    CHECK(parse_json(R"(["[[[[[["])", 1));
  }

  TEST_CASE("a million open brackets are refused without recursion") {
    std::string deep(1'000'000, '[');
    CHECK(code_of(parse_json(deep, 64).error()) == errc::json_too_deep);
  }

  TEST_CASE("invalid UTF-8 is invalid_utf8 with its byte offset") {
    auto r = parse_json("{\"a\":\"\xC3\x28\"}", 8);
    CHECK(code_of(r.error()) == errc::invalid_utf8);
    CHECK(detail_of(r.error()).find("byte 6") != std::string::npos);
    CHECK(code_of(parse_json("\"\xED\xA0\x80\"", 8).error()) == errc::invalid_utf8);  // surrogate
    CHECK(code_of(parse_json("\"\xC0\xAF\"", 8).error()) == errc::invalid_utf8);      // overlong
    CHECK(parse_json("\"h\xC3\xA9llo \xF0\x9F\x98\x80\"", 8));
  }

  TEST_CASE("malformed JSON is malformed_json with nlohmann's position") {
    auto r = parse_json("{\"a\":", 8);
    CHECK(code_of(r.error()) == errc::malformed_json);
    CHECK(detail_of(r.error()).find("column") != std::string::npos);
    CHECK(code_of(parse_json("", 8).error()) == errc::malformed_json);
    CHECK(code_of(parse_json("{} {}", 8).error()) == errc::malformed_json);
  }
}
