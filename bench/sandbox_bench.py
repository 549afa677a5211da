#!/usr/bin/python3
"""Sandbox executor benchmarks against a fresh build/tessera (default isolation: bwrap).

    /usr/bin/python3 bench/sandbox_bench.py [--runs 3] [--duration 6] [--workers 0]
                                            [--calls 300] [--isolation bwrap|gvisor|process]
                                            [--warm-keys 0] [--set KEY=VALUE ...]

Prints, as medians over `runs` fresh servers:
  throughput  trivial action calls/s (handler + template, through POST /api/sandbox/run and the
              executor actors) with wrk at 8 connections, and p50/p99 latency there;
  overhead    one client, calls back to back: round trip minus the handler's own run time
              (runner duration_ms), p50/p99; plus where a call's time goes (fork, the call
              process, its CPU time and page faults, as the worker reports them);
  render      renders/s of a 50-row table template (kind render), wrk at 8 connections;
  recovery    with one worker: a call killed by its timeout, then how long until the next call
              succeeds on the same slot; and a worker process SIGKILLed from outside, then how
              long until a call succeeds again (a whole new bwrap + Python worker).
The machine's CPU steal during each measurement is printed beside it.
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import pct, start_tessera, steal, steal_pct

REPO = Path(__file__).resolve().parents[1]
BINARY = os.environ.get("TESSERA_BIN", str(REPO / "build" / "tessera"))

TRIVIAL = {
    "kind": "action", "action": "inc", "payload": {}, "storage": {"counter": {"n": 1}},
    "handler": "def on_action(action, payload, storage):\n    storage['counter']['n'] += 1\n",
    "template": "<b>{{ counter.n }}</b>",
}
TABLE = {
    "kind": "render",
    "storage": {"rows": {"items": [{"name": "row %d" % i, "value": i * 1.5, "ok": i % 3 == 0}
                                   for i in range(50)]}},
    "template": "<table>{% for r in rows['items'] %}<tr><td>{{ r.name }}</td>"
                "<td>{{ '%.1f' % r.value }}</td><td>{{ 'yes' if r.ok else 'no' }}</td></tr>"
                "{% endfor %}</table>",
}
LOOP = {"kind": "schedule", "handler": "def on_schedule(storage):\n    while True:\n        pass\n",
        "timeout_ms": 200}
QUICK = {"kind": "schedule", "handler": "def on_schedule(storage):\n    pass\n"}


class Server:
    def __init__(self, *args):
        self.proc, self.port, self.dir = start_tessera(BINARY, *args)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        deadline = time.monotonic() + 30
        while not all(w["state"] == "idle" for w in self.get("/api/sandbox")["workers"]):
            if time.monotonic() > deadline:
                raise SystemExit("sandbox workers did not start")
            time.sleep(0.02)

    def post(self, path, body):
        self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())

    def get(self, path):
        self.conn.request("GET", path)
        return json.loads(self.conn.getresponse().read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", self.dir])


def wrk(port, body, seconds, connections=8, keys=0):
    """`keys` > 0: the calls cycle through that many warm keys ("reuse": "bench-<n>"), as that
    many panels would."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                "wrk.body = %s\n" % json.dumps(json.dumps(body)))
        if keys:
            bodies = [json.dumps(dict(body, reuse="bench-%d" % k)) for k in range(keys)]
            f.write("local bodies = {%s}\nlocal n = 0\n"
                    "request = function()\n  n = n + 1\n"
                    "  return wrk.format(nil, nil, nil, bodies[n %% %d + 1])\nend\n"
                    % (", ".join(json.dumps(b) for b in bodies), keys))
        script = f.name
    before = steal()
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency",
                          "-s", script, "http://127.0.0.1:%d/api/sandbox/run" % port],
                         capture_output=True, text=True).stdout
    os.unlink(script)
    if "Non-2xx" in out:
        raise SystemExit("wrk saw errors:\n" + out)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: ms(re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)" % p, out)) for p in ("50", "99")}
    return rps, lat["50"], lat["99"], steal_pct(before, steal())


def ms(m):
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def overhead(srv, calls, keys=0):
    rows = []
    before = steal()
    body = dict(TRIVIAL, reuse="bench-0") if keys else TRIVIAL
    for _ in range(calls):
        t = time.perf_counter()
        status, r = srv.post("/api/sandbox/run", body)
        rtt = (time.perf_counter() - t) * 1000
        assert status == 200, r
        rows.append((rtt, rtt - r["duration_ms"], r["zygote_us"]["fork"] / 1000,
                     r["zygote_us"]["call"] / 1000, r["process"]["cpu_us"] / 1000,
                     r["process"]["minor_faults"]))
    return rows, steal_pct(before, steal())


def recovery(srv):
    status, r = srv.post("/api/sandbox/run", LOOP)
    assert status == 422 and r["code"] == "timeout", r
    t = time.perf_counter()
    status, r = srv.post("/api/sandbox/run", QUICK)
    assert status == 200, r
    after_timeout = (time.perf_counter() - t) * 1000
    pid = srv.get("/api/sandbox")["workers"][0]["pid"]
    t = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    while True:
        status, r = srv.post("/api/sandbox/run", QUICK)
        if status == 200:
            break
    after_kill = (time.perf_counter() - t) * 1000
    return after_timeout, after_kill


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--workers", type=int, default=0, help="sandbox.workers (0: one per core)")
    ap.add_argument("--calls", type=int, default=300, help="sequential calls for the overhead")
    ap.add_argument("--isolation", default="bwrap", help="sandbox.isolation: bwrap|gvisor|process")
    ap.add_argument("--warm-keys", type=int, default=0,
                    help="calls carry one of this many reuse keys (warm processes, as panels' "
                         "calls do); 0: a fresh process per call")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another server setting (repeatable), e.g. runtime.scheduler_threads=2")
    a = ap.parse_args()
    extra = [x for kv in a.set for x in ("--set", kv)]
    results = {"throughput": [], "render": [], "overhead": [], "recovery": []}
    for run in range(a.runs):
        iso = ("--set", "sandbox.isolation=" + a.isolation, *extra)
        srv = Server("--set", "sandbox.workers=%d" % a.workers, *iso)
        try:
            srv.post("/api/sandbox/run", TRIVIAL)
            srv.post("/api/sandbox/run", TABLE)
            k = a.warm_keys
            results["throughput"].append(wrk(srv.port, TRIVIAL, a.duration, keys=k))
            results["render"].append(wrk(srv.port, TABLE, a.duration, keys=k))
            rows, st = overhead(srv, a.calls, keys=k)
            cols = list(zip(*rows))
            results["overhead"].append((pct(cols[1], 50), pct(cols[1], 99), pct(cols[0], 50),
                                        statistics.median(cols[2]), statistics.median(cols[3]),
                                        statistics.median(cols[4]), statistics.median(cols[5]),
                                        st))
        finally:
            srv.stop()
        srv = Server("--set", "sandbox.workers=1", *iso)
        try:
            results["recovery"].append(recovery(srv))
        finally:
            srv.stop()
        print("run %d done" % (run + 1), file=sys.stderr)

    med = lambda rows, i: statistics.median(r[i] for r in rows)
    t, r, o, rc = results["throughput"], results["render"], results["overhead"], results["recovery"]
    print("trivial action calls/s %.0f  p50 %.2f ms  p99 %.2f ms  (steal %.0f%%)"
          % (med(t, 0), med(t, 1), med(t, 2), med(t, 3)))
    print("50-row table renders/s %.0f  p50 %.2f ms  p99 %.2f ms  (steal %.0f%%)"
          % (med(r, 0), med(r, 1), med(r, 2), med(r, 3)))
    print("overhead (round trip - handler) p50 %.2f ms  p99 %.2f ms; round trip p50 %.2f ms"
          "  (steal %.0f%%)" % (med(o, 0), med(o, 1), med(o, 2), med(o, 7)))
    print("  per call, medians: fork %.2f ms (before the call), call process %.2f ms, "
          "its CPU %.2f ms, %d page faults" % (med(o, 3), med(o, 4), med(o, 5), med(o, 6)))
    print("serving again after a timeout kill %.1f ms; after SIGKILL of the worker %.1f ms"
          % (med(rc, 0), med(rc, 1)))


if __name__ == "__main__":
    main()
