#include "runtime/cron.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace tessera;

namespace {

cron::schedule must_parse(std::string_view expr, std::string_view zone = "UTC") {
  auto r = cron::parse(expr, zone);
  if (auto* e = std::get_if<cron::parse_error>(&r)) FAIL(e->message);
  return std::get<cron::schedule>(r);
}

cron::time_point at(std::string_view iso) {
  auto t = cron::parse_iso8601(iso);
  REQUIRE(t);
  return *t;
}

// The next `n` fire times after `from`, formatted in the schedule's zone.
std::vector<std::string> next(std::string_view expr, std::string_view from, size_t n = 3,
                              std::string_view zone = "UTC") {
  auto s = must_parse(expr, zone);
  std::vector<std::string> out;
  auto t = s.next_after(at(from));
  for (; t && out.size() < n; t = s.next_after(*t)) out.push_back(cron::format_iso8601(*t, zone));
  return out;
}

using times = std::vector<std::string>;

cron::parse_error refused(std::string_view expr, std::string_view zone = "UTC") {
  auto r = cron::parse(expr, zone);
  REQUIRE(std::holds_alternative<cron::parse_error>(r));
  return std::get<cron::parse_error>(r);
}

}  // namespace

TEST_SUITE("runtime.cron") {
  TEST_CASE("every minute fires at the start of each following minute") {
    CHECK(next("* * * * *", "2026-01-01T00:00:30Z") == times{"2026-01-01T00:01:00+00:00",
                                                             "2026-01-01T00:02:00+00:00",
                                                             "2026-01-01T00:03:00+00:00"});
  }

  TEST_CASE("the next fire time is strictly after the given instant") {
    CHECK(next("0 12 * * *", "2026-01-01T12:00:00Z", 1) == times{"2026-01-02T12:00:00+00:00"});
  }

  TEST_CASE("a list fires on each of its values") {
    CHECK(next("0 8,12,18 * * *", "2026-01-01T09:00:00Z") == times{"2026-01-01T12:00:00+00:00",
                                                                   "2026-01-01T18:00:00+00:00",
                                                                   "2026-01-02T08:00:00+00:00"});
  }

  TEST_CASE("a step over a range fires on every nth value of that range") {
    CHECK(next("0 9-17/4 * * *", "2026-01-01T00:00:00Z") == times{"2026-01-01T09:00:00+00:00",
                                                                  "2026-01-01T13:00:00+00:00",
                                                                  "2026-01-01T17:00:00+00:00"});
    CHECK(next("*/20 * * * *", "2026-01-01T00:00:00Z") == times{"2026-01-01T00:20:00+00:00",
                                                                "2026-01-01T00:40:00+00:00",
                                                                "2026-01-01T01:00:00+00:00"});
  }

  TEST_CASE("a step from a single value runs to the end of the field") {
    CHECK(next("5/20 * * * *", "2026-01-01T00:00:00Z") == times{"2026-01-01T00:05:00+00:00",
                                                                "2026-01-01T00:25:00+00:00",
                                                                "2026-01-01T00:45:00+00:00"});
  }

  TEST_CASE("month and weekday names are accepted in any case") {
    CHECK(next("0 0 1 jan,Jul *", "2026-01-15T00:00:00Z", 2) ==
          times{"2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"});
    CHECK(next("0 0 * * mon-WED", "2026-01-01T00:00:00Z") ==  // 2026-01-01 is a Thursday
          times{"2026-01-05T00:00:00+00:00", "2026-01-06T00:00:00+00:00",
                "2026-01-07T00:00:00+00:00"});
  }

  TEST_CASE("weekday 0 and 7 both mean Sunday") {
    const times sundays{"2026-01-04T00:00:00+00:00", "2026-01-11T00:00:00+00:00"};
    CHECK(next("0 0 * * 0", "2026-01-01T00:00:00Z", 2) == sundays);
    CHECK(next("0 0 * * 7", "2026-01-01T00:00:00Z", 2) == sundays);
    CHECK(next("0 0 * * SUN", "2026-01-01T00:00:00Z", 2) == sundays);
    CHECK(next("0 0 * * 6-7", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00"});
    CHECK(next("0 0 * * FRI-SUN", "2026-01-01T00:00:00Z", 4) ==
          times{"2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00",
                "2026-01-04T00:00:00+00:00", "2026-01-09T00:00:00+00:00"});
  }

  TEST_CASE("a question mark means any day") {
    CHECK(next("0 0 ? * MON", "2026-01-01T00:00:00Z", 1) == times{"2026-01-05T00:00:00+00:00"});
    CHECK(next("0 0 1 * ?", "2026-01-01T00:00:00Z", 1) == times{"2026-02-01T00:00:00+00:00"});
  }

  TEST_CASE("restricting both day fields fires on a day matching either") {
    // The 13th of each month or any Friday: Fri 2 Jan, Fri 9 Jan, Tue 13 Jan, Fri 16 Jan.
    CHECK(next("0 0 13 * FRI", "2026-01-01T00:00:00Z", 4) ==
          times{"2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00",
                "2026-01-13T00:00:00+00:00", "2026-01-16T00:00:00+00:00"});
    SUBCASE("a stepped day-of-month counts as restricted") {
      CHECK(next("0 0 */10 * FRI", "2026-01-01T00:00:00Z", 3) ==
            times{"2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00",
                  "2026-01-11T00:00:00+00:00"});
    }
  }

  TEST_CASE("an unrestricted day-of-month leaves the choice to day-of-week") {
    CHECK(next("0 0 * * FRI", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00"});
    CHECK(next("0 0 13 * *", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"});
  }

  TEST_CASE("L is the last day of the month and L-n n days before it") {
    CHECK(next("0 0 L * *", "2026-01-01T00:00:00Z", 3) == times{"2026-01-31T00:00:00+00:00",
                                                                "2026-02-28T00:00:00+00:00",
                                                                "2026-03-31T00:00:00+00:00"});
    CHECK(next("0 0 L 2 *", "2027-03-01T00:00:00Z", 1) == times{"2028-02-29T00:00:00+00:00"});
    CHECK(next("0 0 L-2 * *", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-29T00:00:00+00:00", "2026-02-26T00:00:00+00:00"});
  }

  TEST_CASE("nW is the weekday nearest to day n without leaving the month") {
    // 2026-02-15 is a Sunday -> Monday 16; 2026-08-15 a Saturday -> Friday 14.
    CHECK(next("0 0 15W 2,8 *", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-02-16T00:00:00+00:00", "2026-08-14T00:00:00+00:00"});
    // 2026-08-01 is a Saturday: the nearest weekday inside August is Monday the 3rd.
    CHECK(next("0 0 1W 8 *", "2026-01-01T00:00:00Z", 1) == times{"2026-08-03T00:00:00+00:00"});
    // 2026-05-31 is a Sunday: Friday the 29th; 31W never fires in 30-day months.
    CHECK(next("0 0 31W * *", "2026-04-01T00:00:00Z", 2) ==
          times{"2026-05-29T00:00:00+00:00", "2026-07-31T00:00:00+00:00"});
  }

  TEST_CASE("LW is the last weekday of the month") {
    // 2026-01-31 is a Saturday, 2026-05-31 a Sunday.
    CHECK(next("0 0 LW 1,5,6 *", "2026-01-01T00:00:00Z", 3) == times{"2026-01-30T00:00:00+00:00",
                                                                     "2026-05-29T00:00:00+00:00",
                                                                     "2026-06-30T00:00:00+00:00"});
  }

  TEST_CASE("LW can be combined with plain days in a list") {
    CHECK(next("0 0 LW,15 1 *", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-15T00:00:00+00:00", "2026-01-30T00:00:00+00:00"});
  }

  TEST_CASE("wL is the last such weekday and w#n the nth of the month") {
    CHECK(next("0 0 * * 5L", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00"});
    CHECK(next("0 0 * * FRI#3", "2026-01-01T00:00:00Z", 2) ==
          times{"2026-01-16T00:00:00+00:00", "2026-02-20T00:00:00+00:00"});
    // A fifth Monday: March, June and August 2026 have one.
    CHECK(next("0 0 * * 1#5", "2026-01-01T00:00:00Z", 3) == times{"2026-03-30T00:00:00+00:00",
                                                                  "2026-06-29T00:00:00+00:00",
                                                                  "2026-08-31T00:00:00+00:00"});
  }

  TEST_CASE("L, W and # count as restrictions for the either-day rule") {
    // Last day of the month or any Monday.
    CHECK(next("0 0 L * MON", "2026-01-26T12:00:00Z", 2) ==
          times{"2026-01-31T00:00:00+00:00", "2026-02-02T00:00:00+00:00"});
  }

  TEST_CASE("every macro expands to its five-field schedule") {
    const auto from = "2026-01-01T12:34:56Z";
    CHECK(next("@yearly", from, 1) == times{"2027-01-01T00:00:00+00:00"});
    CHECK(next("@annually", from, 1) == times{"2027-01-01T00:00:00+00:00"});
    CHECK(next("@monthly", from, 1) == times{"2026-02-01T00:00:00+00:00"});
    CHECK(next("@weekly", from, 1) == times{"2026-01-04T00:00:00+00:00"});
    CHECK(next("@daily", from, 1) == times{"2026-01-02T00:00:00+00:00"});
    CHECK(next("@midnight", from, 1) == times{"2026-01-02T00:00:00+00:00"});
    CHECK(next("@hourly", from, 1) == times{"2026-01-01T13:00:00+00:00"});
    CHECK(next("  @Daily\n", from, 1) == times{"2026-01-02T00:00:00+00:00"});
    CHECK(must_parse(" @hourly ").expression() == "@hourly");
  }

  TEST_CASE("six fields put seconds first") {
    auto s = must_parse("*/15 30 9 * * *");
    CHECK(s.has_seconds());
    CHECK_FALSE(must_parse("30 9 * * *").has_seconds());
    CHECK(next("*/15 30 9 * * *", "2026-01-01T09:30:20Z") == times{"2026-01-01T09:30:30+00:00",
                                                                   "2026-01-01T09:30:45+00:00",
                                                                   "2026-01-02T09:30:00+00:00"});
  }

  TEST_CASE("errors name the field and quote the bad part") {
    auto check = [](std::string_view expr, std::string_view field, std::string_view text) {
      auto e = refused(expr);
      CHECK(e.field == field);
      CHECK_MESSAGE(e.message.find(text) != std::string::npos, e.message);
    };
    check("61 * * * *", "minute", R"(minute field "61": 61 is out of range 0-59)");
    check("60 * * * * *", "second", R"(second field "60": 60 is out of range 0-59)");
    check("0 24 * * *", "hour", R"(hour field "24")");
    check("0 0 0 * *", "day-of-month", "0 is out of range 1-31");
    check("0 0 1 13 *", "month", "13 is out of range 1-12");
    check("0 0 1 FOO *", "month", R"("FOO" is not a number or a month name)");
    check("0 0 * * 8", "day-of-week", "8 is out of range 0-7");
    check("0 0 * * FRI#6", "day-of-week", R"("FRI#6")");
    check("*/0 * * * *", "minute", "step");
    check("0 5-2 * * *", "hour", "range start 5 is greater than its end 2");
    check("0 1,,2 * * *", "hour", "empty list item");
    check("* * * *", "expression", "has 4 fields");
    check("", "expression", "has 0 fields");
    check("@reboot", "expression", "@reboot is not a schedule");
    check("@often", "expression", "unknown macro");
    check("0 0 30 2 *", "day-of-month", "never fires");
    check("0 0 31 4,6,9,11 *", "day-of-month", "never fires");
    auto z = refused("* * * * *", "Mars/Olympus_Mons");
    CHECK(z.field == "timezone");
    CHECK(z.message == R"(timezone "Mars/Olympus_Mons": unknown IANA time zone)");
  }

  TEST_CASE("a leap-day schedule waits for the next leap year") {
    CHECK(next("0 0 29 2 *", "2026-01-01T00:00:00Z", 2) ==
          times{"2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"});
    // 2100 is not a leap year.
    CHECK(next("0 0 29 2 *", "2097-01-01T00:00:00Z", 1) == times{"2104-02-29T00:00:00+00:00"});
  }

  TEST_CASE("a rare schedule is found decades ahead") {
    // A fifth Friday in February needs a leap year whose February starts on a Friday.
    CHECK(next("0 0 * 2 5#5", "2026-01-01T00:00:00Z", 2) ==
          times{"2036-02-29T00:00:00+00:00", "2064-02-29T00:00:00+00:00"});
  }

  TEST_CASE("the search stops at the end of year 9999") {
    auto s = must_parse("0 0 1 1 *");
    CHECK(s.next_after(at("9999-06-01T00:00:00Z")) == std::nullopt);
    CHECK(cron::format_iso8601(*s.next_after(at("9998-06-01T00:00:00Z")), "UTC") ==
          "9999-01-01T00:00:00+00:00");
    CHECK(cron::schedule{}.next_after(at("2026-01-01")) == std::nullopt);
  }

  TEST_CASE("a schedule runs on the wall clock of its zone") {
    CHECK(next("0 9 * * *", "2026-03-28T12:00:00Z", 2, "Europe/Berlin") ==
          times{"2026-03-29T09:00:00+02:00", "2026-03-30T09:00:00+02:00"});
    CHECK(next("0 9 1 12 *", "2026-06-01T00:00:00Z", 1, "Europe/Berlin") ==
          times{"2026-12-01T09:00:00+01:00"});
    CHECK(must_parse("* * * * *", "Europe/Berlin").zone() == "Europe/Berlin");
  }

  TEST_CASE("a time skipped by the spring-forward jump fires once at the end of the gap") {
    // New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00Z).
    CHECK(next("30 2 * * *", "2026-03-07T12:00:00Z", 2, "America/New_York") ==
          times{"2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"});
    CHECK(next("*/15 2 * * *", "2026-03-08T00:00:00Z", 2, "America/New_York") ==
          times{"2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"});
    CHECK(next("*/30 * * * *", "2026-03-08T06:15:00Z", 3, "America/New_York") ==
          times{"2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00"});
    SUBCASE("asking from inside the gap's instant does not fire it again") {
      auto s = must_parse("30 2 * * *", "America/New_York");
      CHECK(cron::format_iso8601(*s.next_after(at("2026-03-08T07:00:00Z")), "UTC") ==
            "2026-03-09T06:30:00+00:00");
      CHECK(cron::format_iso8601(*s.next_after(at("2026-03-08T06:59:59Z")), "UTC") ==
            "2026-03-08T07:00:00+00:00");
    }
  }

  TEST_CASE("a time repeated by the fall-back hour fires once, at its first occurrence") {
    // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST (06:00Z).
    CHECK(next("30 1 * * *", "2026-10-31T12:00:00Z", 2, "America/New_York") ==
          times{"2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"});
    CHECK(next("0 * * * *", "2026-11-01T03:30:00Z", 3, "America/New_York") ==
          times{"2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00",
                "2026-11-01T02:00:00-05:00"});
    SUBCASE("asking from inside the second pass skips the rest of the repeated hour") {
      CHECK(next("*/20 * * * *", "2026-11-01T06:10:00Z", 2, "America/New_York") ==
            times{"2026-11-01T02:00:00-05:00", "2026-11-01T02:20:00-05:00"});
    }
  }

  TEST_CASE("daylight saving time continues past the zone file's last transition in 2037") {
    CHECK(next("0 12 1 7 *", "2040-01-01T00:00:00Z", 1, "America/New_York") ==
          times{"2040-07-01T12:00:00-04:00"});
    CHECK(next("30 2 * * *", "2050-03-12T12:00:00Z", 1, "America/New_York") ==
          times{"2050-03-13T03:00:00-04:00"});
    CHECK(next("0 12 1 1 *", "2045-06-01T00:00:00Z", 1, "Australia/Sydney") ==
          times{"2046-01-01T12:00:00+11:00"});
  }

  TEST_CASE("ISO-8601 times are read with or without an offset") {
    const auto nine = at("2026-12-01T09:00:00Z");
    CHECK(cron::parse_iso8601("2026-12-01T10:00:00+01:00") == nine);
    CHECK(cron::parse_iso8601("2026-12-01T03:30:00-0530") == nine);
    CHECK(cron::parse_iso8601("2026-12-01T09:00:00.999Z") == nine);
    CHECK(cron::parse_iso8601("2026-12-01T10:00:00", "Europe/Berlin") == nine);
    CHECK(cron::parse_iso8601("2026-12-01T10:00", "Europe/Berlin") == nine);
    CHECK(cron::parse_iso8601("2026-12-01") == at("2026-12-01T00:00:00Z"));
    CHECK(cron::parse_iso8601("2026-03-08T02:30:00", "America/New_York") ==
          at("2026-03-08T07:00:00Z"));
    for (auto bad : {"", "tomorrow", "2026-13-01", "2026-02-29", "2026-12-01T25:00:00Z",
                     "2026-12-01T09:00:00+1", "2026-12-01T09:00:00Zjunk"})
      CHECK_MESSAGE(cron::parse_iso8601(bad) == std::nullopt, bad);
    CHECK(cron::parse_iso8601("2026-12-01T10:00:00", "No/Such_Zone") == std::nullopt);
  }

  TEST_CASE("ISO-8601 output carries the zone's offset and never Z") {
    const auto t = at("2026-12-01T08:00:00Z");
    CHECK(cron::format_iso8601(t, "UTC") == "2026-12-01T08:00:00+00:00");
    CHECK(cron::format_iso8601(t, "Europe/Berlin") == "2026-12-01T09:00:00+01:00");
    CHECK(cron::format_iso8601(t, "Asia/Kolkata") == "2026-12-01T13:30:00+05:30");
    CHECK(cron::format_iso8601(t, "America/St_Johns") == "2026-12-01T04:30:00-03:30");
  }
}
