"""The cron library against two independent implementations, through `tessera cron batch`.

A seeded (deterministic) corpus of generated expressions and start instants goes to tessera and
to a reference: python3-croniter (Debian) for plain 5-field UTC expressions, and the npm
package croner (tests/e2e/cron_oracle, pinned; scripts/dev.sh installs it) for seconds, names,
L/W/LW/#, refusals, and time zones including daylight-saving transitions. Every answer must
agree exactly except where a named, deliberate difference (docs/cron.md, "Oracle tests")
excludes it; the test reports how many cases each exclusion took.
"""
import json
import random
import re
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from harness import BINARY, REPO, run_tessera

ORACLE = REPO / "tests" / "e2e" / "cron_oracle"
SEED = 20261201
UTC = timezone.utc
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata",
         "America/St_Johns", "Europe/Dublin", "Australia/Lord_Howe", "Pacific/Chatham",
         "America/Sao_Paulo", "Asia/Tehran", "Pacific/Apia"]
MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
WEEKDAYS = "SUN MON TUE WED THU FRI SAT".split()

# Deliberate differences (each also listed in docs/cron.md).
CRONITER_FULL_DAY_FIELD = ("croniter treats a day field listing every value (1-31, 0-6, */1) "
                           "as `*`, so it ANDs where tessera applies the either-day rule")
CRONER_DST_GAP = ("croner moves a time skipped by a spring-forward jump by the gap's length "
                  "(02:30 -> 03:30) and can then go back in time; tessera fires at the end of "
                  "the gap: answers from the first forward jump on are not compared")

CRONITER_BIG_STEP = ("croniter accepts a step larger than its field (`*/8` in day-of-week, "
                     "`*/25` in hours); tessera refuses it, as croner does")
CRONITER_SUN_RANGE_END = ("croniter reads SUN ending a day-of-week range as 0 (`0-SUN` is Sunday "
                          "only); tessera and croner read it as 7 (`FRI-SUN` works)")
CRONITER_GIVES_UP = ("croniter raises CroniterBadDateError when the day-of-month never occurs in "
                     "the chosen months (`31` in November) although day-of-week still fires")
CRONITER_MONTH_END_CARRY = ("croniter carries a day the month lacks into the next month (Feb 31 "
                            "-> Mar 3) and skips the first days of that month when the search "
                            "starts late in a month")
CRONER_MONTH_END_CARRY = ("croner 10 skips the first days of the next month when the search "
                          "starts late in a month and has to carry past its end")
CRONER_HALF_HOUR_FALL_BACK = ("when clocks go back by 30 minutes (Australia/Lord_Howe) croner "
                              "fires a repeated time at its second occurrence; tessera at its "
                              "first: answers from that change on are not compared")
CRONER_NO_A_STEP = ("croner refuses `a/n` (`5/20`), which tessera reads as `a-max/n` like "
                    "croniter: the croner corpus has no `a/n` (the croniter corpus has)")
CRONER_LW_IN_LIST = ("croner 10 reads `LW` only as the whole day-of-month field and refuses it "
                     "in a list (`LW,15`)")
CRONER_NEVER_FIRES = ("croner accepts an expression that can never fire (`0 0 30 2 *`) and "
                      "returns no times; tessera refuses it (field day-of-month)")


def croner_difference(q, ours, theirs):
    dom = q["expr"].split()[-3] if len(q["expr"].split()) >= 5 else ""
    if theirs[1] is not None and "LW" in dom.upper() and "," in dom:
        return CRONER_LW_IN_LIST
    if ours[1] == "day-of-month" and theirs[0] == []:
        return CRONER_NEVER_FIRES
    return None


def tessera_batch(queries):
    """Answers of `tessera cron batch`: (epoch seconds list, None) or (None, field)."""
    text = "".join(json.dumps(q) + "\n" for q in queries)
    proc = subprocess.run([BINARY, "cron", "batch"], input=text, capture_output=True, text=True,
                          timeout=300, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(queries), proc.stderr
    out = []
    for line in lines:
        a = json.loads(line)
        if "times" in a:
            out.append(([int(datetime.fromisoformat(t).timestamp()) for t in a["times"]], None))
        else:
            out.append((None, a["field"]))
    return out


def croner_batch(queries):
    if not (ORACLE / "node_modules" / "croner").is_dir():
        pytest.fail("croner is not installed: npm install --prefix tests/e2e/cron_oracle")
    text = "".join(json.dumps(q) + "\n" for q in queries)
    proc = subprocess.run(["node", str(ORACLE / "croner_next.mjs")], input=text,
                          capture_output=True, text=True, timeout=300, check=True)
    return [(a.get("times"), a.get("error")) for a in map(json.loads, proc.stdout.splitlines())]


def iso(t, tz="UTC"):
    return datetime.fromtimestamp(t, ZoneInfo(tz)).isoformat()


def describe(q, ours, theirs, oracle):
    show = lambda a: a[1] if a[0] is None else [iso(t, q["tz"]) for t in a[0]]
    return (f"expr {q['expr']!r} tz {q['tz']} from {iso(q['from'], q['tz'])}:\n"
            f"    tessera: {show(ours)}\n    {oracle}: {show(theirs)}")


# ---- the corpus ---------------------------------------------------------------------------

def number_field(rng, lo, hi, names=None, a_step=False):
    def val(v):
        if names and v < len(names) + lo and rng.random() < 0.25:
            name = names[v - (1 if names is MONTHS else 0)]
            return rng.choice([name, name.lower(), name.capitalize()])
        return str(v)

    def item():
        kind = rng.random()
        if kind < 0.35:
            return val(rng.randint(lo, hi))
        a = rng.randint(lo, hi)
        b = rng.randint(a, hi)
        if kind < 0.6:
            return f"{val(a)}-{val(b)}"
        if kind < 0.75:
            return f"*/{rng.randint(1, min(hi - lo + 1, 15))}"
        if kind < 0.9 or not a_step:
            return f"{val(a)}-{val(b)}/{rng.randint(1, max(1, b - a + 1))}"
        return f"{a}/{rng.randint(1, hi - lo + 1)}"

    if rng.random() < 0.3:
        return "*"
    return ",".join(item() for _ in range(rng.choice([1, 1, 1, 2, 3])))


def dom_field(rng, specials):
    if specials and rng.random() < 0.4:
        items = [rng.choice(["L", "LW", f"{rng.randint(1, 31)}W", str(rng.randint(1, 28))])
                 for _ in range(rng.choice([1, 1, 2]))]
        return ",".join(items)
    return number_field(rng, 1, 31)


def dow_field(rng, specials):
    if specials and rng.random() < 0.4:
        def one():
            w = rng.randint(0, 7)
            w = rng.choice([str(w), WEEKDAYS[w % 7]])
            return rng.choice([f"{w}L", f"{w}#{rng.randint(1, 5)}", str(rng.randint(0, 6))])
        return ",".join(one() for _ in range(rng.choice([1, 1, 2])))
    return number_field(rng, 0, 7, WEEKDAYS)


def expression(rng, seconds=False, specials=False, a_step=False):
    fields = [number_field(rng, 0, 59, a_step=a_step), number_field(rng, 0, 23, a_step=a_step),
              dom_field(rng, specials), number_field(rng, 1, 12, MONTHS, a_step=a_step),
              dow_field(rng, specials)]
    if rng.random() < 0.5:  # keep a good share of dense schedules
        fields[0] = rng.choice(["*", "*/5", "0", "30"])
    if seconds:
        fields.insert(0, rng.choice(["*", "*/10", "0", "15,45", number_field(rng, 0, 59)]))
    return " ".join(fields)


def transitions(tz, years):
    """The instants (epoch seconds) at which `tz` changes its UTC offset, with the change."""
    zone = ZoneInfo(tz)
    off = lambda t: datetime.fromtimestamp(t, zone).utcoffset()
    out = []
    t = int(datetime(years[0], 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(years[-1] + 1, 1, 1, tzinfo=UTC).timestamp())
    while t < end:
        if off(t) != off(t + 6 * 3600):
            a, b = t, t + 6 * 3600  # bisect to the second
            while b - a > 1:
                m = (a + b) // 2
                a, b = (m, b) if off(m) == off(t) else (a, m)
            out.append((b, off(b) - off(a)))
        t += 6 * 3600
    return out


def random_instant(rng, first_year, last_year):
    a = datetime(first_year, 1, 1, tzinfo=UTC).timestamp()
    b = datetime(last_year, 12, 31, tzinfo=UTC).timestamp()
    return int(rng.uniform(a, b))


# ---- croniter: plain 5-field UTC ------------------------------------------------------------

def field_values(field, lo, hi, names=()):
    """The values a plain field lists (numbers, names, ranges, steps)."""
    num = lambda x: names.index(x.upper()) + (1 if names is MONTHS else 0) if x.upper() in names \
        else int(x)
    values = set()
    for item in field.split(","):
        base, _, step = item.partition("/")
        if base == "*":
            a, b = lo, hi
        elif "-" in base:
            a, b = (num(x) for x in base.split("-"))
            b = 7 if names is WEEKDAYS and b == 0 else b  # FRI-SUN
        else:
            a = num(base)
            b = hi if step else a
        values.update(range(a, b + 1, int(step or 1)))
    return {v % 7 for v in values} if names is WEEKDAYS else values


def early_next_month(times, start, tz):
    """The times in the first three days of the month after `start`'s (local)."""
    nxt = (start.month % 12 + 1, start.year + (start.month == 12))
    local = lambda t: datetime.fromtimestamp(t, ZoneInfo(tz))
    return {t for t in times or [] if (local(t).month, local(t).year) == nxt and local(t).day <= 3}


def croniter_difference(expr, ours=None, theirs=None, start=None):
    f = expr.split()
    if re.search(r"-sun\b", f[4], re.I):
        return CRONITER_SUN_RANGE_END
    if theirs and theirs[1] and "CroniterBadDateError" in theirs[1] and ours[0]:
        return CRONITER_GIVES_UP
    if theirs and ours[0] and theirs[0] and start.day >= 20 and \
            early_next_month(ours[0], start, "UTC") - early_next_month(theirs[0], start, "UTC"):
        return CRONITER_MONTH_END_CARRY
    limits = [60, 24, 31, 12, 7]
    if any(int(step) > limit for field, limit in zip(f, limits)
           for step in re.findall(r"/(\d+)", field)):
        return CRONITER_BIG_STEP
    if f[2] != "*" and f[4] != "*" and (field_values(f[2], 1, 31) >= set(range(1, 32)) or
                                        field_values(f[4], 0, 7, WEEKDAYS) >= set(range(7))):
        return CRONITER_FULL_DAY_FIELD
    return None


def test_plain_utc_expressions_agree_with_croniter():
    rng = random.Random(SEED)
    queries = []
    for _ in range(2500):
        expr = expression(rng, a_step=True)
        for _ in range(3):
            queries.append({"expr": expr, "tz": "UTC", "from": random_instant(rng, 1990, 2060),
                            "count": 6})
    ours = tessera_batch(queries)
    excluded, mismatches = Counter(), []
    for q, a in zip(queries, ours):
        if reason := croniter_difference(q["expr"]):
            excluded[reason] += 1
            continue
        it = croniter(q["expr"], datetime.fromtimestamp(q["from"], UTC))
        try:
            theirs = ([int(it.get_next(datetime).timestamp()) for _ in range(q["count"])], None)
        except Exception as e:  # noqa: BLE001 - shown in the failure message
            theirs = (None, f"{type(e).__name__}: {e}")
        start = datetime.fromtimestamp(q["from"], UTC)
        if a != theirs and (reason := croniter_difference(q["expr"], a, theirs, start)):
            excluded[reason] += 1
        elif a != theirs:
            mismatches.append(describe(q, a, theirs, "croniter"))
    print(f"croniter: {len(queries)} queries, excluded {dict(excluded)}")
    assert not mismatches, f"{len(mismatches)} differences:\n" + "\n".join(mismatches[:15])
    assert sum(excluded.values()) < len(queries) / 10


# ---- croner: seconds, specials, names, zones, refusals --------------------------------------

def croner_queries(rng):
    queries = []
    gaps = {tz: [t for t, d in transitions(tz, range(2000, 2046)) if d > timedelta(0)]
            for tz in ZONES}
    changes = {tz: transitions(tz, range(2000, 2046)) for tz in ZONES}
    for i in range(3000):
        tz = ZONES[i % len(ZONES)] if i % 3 else "UTC"
        expr = expression(rng, seconds=rng.random() < 0.3, specials=True)  # CRONER_NO_A_STEP
        for _ in range(3):
            if changes[tz] and rng.random() < 0.5:  # just before a DST change
                t, _ = rng.choice(changes[tz])
                start = t - rng.randint(0, 3 * 86400)
            else:
                start = random_instant(rng, 2000, 2045)
            queries.append({"expr": expr, "tz": tz, "from": start, "count": 8})
    return queries, gaps


def cut(mine, theirs, instant):
    """Both answers without the times from `instant` on; whether that removed any."""
    if instant is None or not any(t >= instant for t in mine + theirs):
        return mine, theirs, False
    return [t for t in mine if t < instant], [t for t in theirs if t < instant], True


def compare_croner(queries, gaps):
    """gaps: zone -> instants of forward jumps (empty: no DST exclusions needed)."""
    half_hour_back = {tz: [t - 1800 for t, d in transitions(tz, range(2000, 2046))
                           if -timedelta(hours=1) < d < timedelta(0)] for tz in gaps}
    ours, theirs = tessera_batch(queries), croner_batch(queries)
    excluded, mismatches = Counter(), []
    for q, a, (times, error) in zip(queries, ours, theirs):
        if reason := croner_difference(q, a, (times, error)):
            excluded[reason] += 1
            continue
        if error is not None or a[0] is None:
            if (error is None) != (a[0] is not None):
                mismatches.append(describe(q, a, (times, error), "croner"))
            continue
        after = lambda instants: next((t for t in instants if t > q["from"]), None)
        mine, times, gap_cut = cut(a[0], times, after(gaps.get(q["tz"], [])))
        mine, times, back_cut = cut(mine, times, after(half_hour_back.get(q["tz"], [])))
        excluded.update([CRONER_DST_GAP] * gap_cut + [CRONER_HALF_HOUR_FALL_BACK] * back_cut)
        start = datetime.fromtimestamp(q["from"], ZoneInfo(q["tz"]))
        early = early_next_month(mine, start, q["tz"]) - early_next_month(times, start, q["tz"])
        if start.day >= 20 and early:
            excluded[CRONER_MONTH_END_CARRY] += 1
            mine = [t for t in mine if t not in early]
            n = min(len(mine), len(times))
            mine, times = mine[:n], times[:n]
        if mine != times:
            mismatches.append(describe(q, (mine, None), (times, None), "croner"))
    return excluded, mismatches


def test_seconds_specials_and_zones_agree_with_croner():
    queries, gaps = croner_queries(random.Random(SEED + 1))
    excluded, mismatches = compare_croner(queries, gaps)
    print(f"croner: {len(queries)} queries, excluded {dict(excluded)}")
    assert not mismatches, f"{len(mismatches)} differences:\n" + "\n".join(mismatches[:15])


def test_refusals_agree_with_croner():
    bad = ["61 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *", "* * * 13 *",
           "* * * * 8", "*/0 * * * *", "*/61 * * * *", "* */25 * * *", "* * */32 * *",
           "* * * */13 *", "5-2 * * * *", "* * * FOO *", "* * * * FUNDAY", "* * * * 5#6",
           "* * * * 5#0", "* * * *", "* * * * * * * *", "a * * * *", "1,,2 * * * *",
           "* * 32W * *", "* * * * L", "@reboot", "@sometimes", "* * 30 2 *", "60 * * * * *",
           "*/60 * * * *", "* */24 * * *", "* * */31 * *", "* * * */12 *", "* * * * */7"]
    queries = [{"expr": e, "tz": "UTC", "from": 1767225600, "count": 3} for e in bad]
    queries += [{"expr": "* * * * *", "tz": "Mars/Olympus_Mons", "from": 1767225600, "count": 1}]
    excluded, mismatches = compare_croner(queries, {})
    assert excluded == {CRONER_NEVER_FIRES: 1}
    assert not mismatches, f"{len(mismatches)} differences:\n" + "\n".join(mismatches)


# ---- the CLI ------------------------------------------------------------------------------

def test_cron_next_prints_times_with_the_zones_offset():
    r = run_tessera("cron", "next", "30 2 * * *", "--tz", "America/New_York", "--from",
                    "2026-03-07T00:00:00Z", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00",
                                     "2026-03-09T02:30:00-04:00"]


def test_cron_next_defaults_to_five_times_from_now_in_utc():
    r = run_tessera("cron", "next", "@hourly")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 5, r.stderr
    first = datetime.fromisoformat(lines[0])
    assert lines[0].endswith("+00:00") and first.minute == 0
    assert timedelta(0) < first - datetime.now(UTC) <= timedelta(hours=1)


@pytest.mark.parametrize("args, message", [
    (["61 * * * *"], 'tessera: minute field "61": 61 is out of range 0-59'),
    (["* * * * *", "--tz", "Nope/Nowhere"], 'tessera: timezone "Nope/Nowhere": unknown IANA'),
    (["* * * * *", "--from", "yesterday"], 'tessera: from "yesterday" is not an ISO-8601'),
    (["* * * * *", "--count", "10001"], "tessera: count 10001 must be in 1-10000"),
])
def test_cron_next_refuses_bad_input_with_exit_2(args, message):
    r = run_tessera("cron", "next", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith(message), r.stderr


def test_cron_batch_answers_each_line_with_times_or_an_error_naming_the_field():
    lines = [{"expr": "0 9 * * *", "tz": "Europe/Berlin", "from": "2026-03-28T00:00:00Z",
              "count": 2},
             {"expr": "0 0 * 13 *"}, {"expr": "@daily", "tz": "Atlantis/Capital"}]
    proc = subprocess.run([BINARY, "cron", "batch"], capture_output=True, text=True, timeout=30,
                          input="\n".join(map(json.dumps, lines)) + "\nnot json\n")
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0
    assert answers[0] == {"times": ["2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00"]}
    assert answers[1]["field"] == "month" and "13" in answers[1]["error"]
    assert answers[2]["field"] == "timezone"
    assert answers[3]["field"] == "input"
    assert len(answers) == 4
