#!/usr/bin/python3
"""Action round trip for the todo panel, against a fresh build/tessera per run.

    /usr/bin/python3 bench/panel_bench.py [--runs 3] [--duration 6] [--workers 0]
                                          [--connections 8] [--reuse panel|call]
                                          [--max-batch 64] [--panels 1] [--set KEY=VALUE ...]

--panels N (N > 1) measures instead N counter panels c0..cN-1, each bound to a storage of its
own, their `inc` action POSTed by wrk -t2 -c<connections> cycling through the panels: HTTP peak
only.

Each run starts a server with a fresh data dir, so the demo panel `todo-v2-demo` (bound to
storage `todos`) is loaded; one item is added (action `add` {"text": "x"}) and the load is the
action `toggle` {"id": <that item>}, which keeps the state one item long.

  HTTP       wrk -t2 -c<connections> POSTing /api/panels/todo-v2-demo/action for `duration`
             seconds: actions/s and p50/p99 from wrk's latency distribution; then "paced": twice
             the connections, each waiting between requests (wrk delay(), as
             bench/storage_bench.sh does) so that the rate is about half the peak.
  WebSocket  <connections> connections to /ws, not subscribed, each sending
             {"type":"action",...,"ref"} and waiting for its {"type":"result"} before the next:
             actions/s and p50/p99 of that round trip; then "paced": twice the connections, each
             sending on a fixed schedule so that the total rate is half the peak.

Prints a markdown table row per figure (medians over the runs) and the CPU steal share there.
The clients run on the same cores as the server (wrk is light; the WebSocket client is
Python, which takes more of the CPU per action).
"""
import argparse
import asyncio
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

import websockets

from benchlib import pct, start_tessera, steal, steal_pct

REPO = Path(__file__).resolve().parents[1]
BINARY = os.environ.get("TESSERA_BIN", str(REPO / "build" / "tessera"))
PANEL = "todo-v2-demo"
ACTION_PATH = "/api/panels/%s/action" % PANEL
RESULT_TIMEOUT = 30  # seconds a WebSocket action may wait for its result before the run fails


class Server:
    def __init__(self, *args):
        self.proc, self.port, self.dir = start_tessera(BINARY, *args)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.wait_for(lambda: all(w["state"] == "idle"
                                  for w in self.request("GET", "/api/sandbox")[1]["workers"]),
                      "sandbox workers to start")
        self.wait_for(lambda: self.request("GET", "/api/panels/" + PANEL)[0] == 200,
                      "the demo panel " + PANEL)

    def wait_for(self, predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for " + what)
            time.sleep(0.02)

    def request(self, method, path, body=None):
        self.conn.request(method, path, None if body is None else json.dumps(body),
                          {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        subprocess.run(["rm", "-rf", self.dir])


def add_item(srv):
    """Adds the one item the benchmark toggles; returns its id."""
    status, r = srv.request("POST", ACTION_PATH, {"action": "add", "payload": {"text": "x"}})
    if status != 200 or not r.get("success"):
        raise SystemExit("add failed: %d %s" % (status, r))
    status, r = srv.request("GET", "/api/storages/todos")
    items = [i for i in r["data"]["items"] if i.get("text") == "x"]
    if status != 200 or len(items) != 1 or "id" not in items[0]:
        raise SystemExit("cannot find the added item in storage todos: %s" % r)
    item = items[0]["id"]
    for _ in range(20):  # warm-up, and a check that toggle works
        status, r = srv.request("POST", ACTION_PATH, toggle(item))
        if status != 200 or not r.get("success"):
            raise SystemExit("toggle failed: %d %s" % (status, r))
    return item


def toggle(item):
    return {"action": "toggle", "payload": {"id": item}}


# --- HTTP (wrk) ---------------------------------------------------------------------------

WRK_COUNT_FAILURES = """\
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) failed = {} end
function response(status, headers, body)
  if status ~= 200 then failed[status] = (failed[status] or 0) + 1 end
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("failed")) do
      io.write(string.format("failed status %%d: %%d\\n", status, n))
    end
  end
end
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = %(body)s
local delay_ms = %(delay)d
if delay_ms > 0 then
  delay = function() return delay_ms end
end
""" + WRK_COUNT_FAILURES


def wrk(port, item, seconds, connections, delay_ms=0, script=None):
    """-> (successful actions/s, p50 ms, p99 ms, failed requests, steal %); the latencies are
    wrk's, over all requests. `script`: a wrk script of its own instead of toggling `item`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script or WRK_SCRIPT % {"body": json.dumps(json.dumps(toggle(item))),
                                        "delay": delay_ms})
        script = f.name
    before = steal()
    threads = min(2, connections)  # wrk needs at least one connection per thread
    out = subprocess.run(["wrk", "-t%d" % threads, "-c%d" % connections, "-d%ds" % seconds,
                          "--latency",
                          "-s", script, "http://127.0.0.1:%d%s" % (port, ACTION_PATH)],
                         capture_output=True, text=True).stdout
    st = steal_pct(before, steal())
    os.unlink(script)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise SystemExit("wrk failed:\n" + out)
    failed = sum(int(n) for n in re.findall(r"failed status \d+: (\d+)", out))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed += sum(int(x) for x in sock.groups()) if sock else 0
    if failed:
        print("wrk saw failed requests:\n" + out, file=sys.stderr)
    lat = {p: ms(re.search(r"\s%s%%\s+([\d.]+)(us|ms|s)\b" % p, out)) for p in ("50", "99")}
    total = int(re.search(r"(\d+) requests in", out).group(1))
    ok_rate = float(m.group(1)) * (total - min(failed, total)) / max(total, 1)
    return ok_rate, lat["50"], lat["99"], failed, st


def ms(m):
    value, unit = float(m.group(1)), m.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


COUNTER = "def on_action(action, payload, storage):\n    storage['%s']['n'] += 1\n"

MULTI_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"action": "inc", "payload": {}}'
local panels = %(panels)d
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/api/panels/c" .. (n %% panels) .. "/action")
end
""" + WRK_COUNT_FAILURES


def multi_panel_run(srv, a):
    """-> HTTP peak over a.panels counter panels (the wrk tuple)."""
    for k in range(a.panels):
        sid = "c%d" % k
        status, r = srv.request("POST", "/api/panels", {
            "id": sid, "storage_ids": [sid], "template": "<b>{{ %s.n }}</b>" % sid,
            "handler": COUNTER % sid})
        if status != 201:
            raise SystemExit("cannot create panel %s: %d %s" % (sid, status, r))
        srv.request("PATCH", "/api/storages/" + sid, {"data": {"n": 0}})
        for _ in range(3):
            status, r = srv.request("POST", "/api/panels/%s/action" % sid, {"action": "inc"})
            if status != 200:
                raise SystemExit("inc failed on %s: %d %s" % (sid, status, r))
    script = MULTI_SCRIPT % {"panels": a.panels}
    return wrk(srv.port, None, a.duration, a.connections, script=script)


def http_runs(srv, item, a):
    peak = wrk(srv.port, item, a.duration, a.connections)
    # Half the peak, as bench/storage_bench.sh: twice the connections (delay() counts whole ms,
    # so more connections give finer steps), each cycle (latency + delay) lasting
    # 2 * paced connections / peak.
    paced_connections = 2 * a.connections
    delay = max(1, int(round(2000.0 * paced_connections / max(peak[0], 1) - peak[1])))
    paced = wrk(srv.port, item, a.duration, paced_connections, delay)
    return peak, paced


# --- WebSocket ------------------------------------------------------------------------------

async def ws_connect(port, count):
    return [await websockets.connect("ws://127.0.0.1:%d/ws" % port, compression=None,
                                     max_size=None, ping_interval=None, close_timeout=1)
            for _ in range(count)]


async def ws_action(ws, item, ref, timeout=RESULT_TIMEOUT):
    """Sends one toggle and waits for its result: -> (result message, messages skipped)."""
    await ws.send(json.dumps({"type": "action", "panel": PANEL, "action": "toggle",
                              "payload": {"id": item}, "ref": ref}))
    skipped = 0
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if msg.get("type") == "result" and str(msg.get("ref")) == str(ref):
            return msg, skipped
        if msg.get("type") == "error":
            raise SystemExit("the server rejected an action message: %s" % msg)
        skipped += 1


async def ref_style(port, item):
    """Integer refs if the server takes them, else strings (the contract leaves the type open)."""
    ws = (await ws_connect(port, 1))[0]
    try:
        try:
            msg, _ = await ws_action(ws, item, 1, timeout=5)
            if msg.get("ok"):
                return int
        except (SystemExit, asyncio.TimeoutError):
            pass
        msg, _ = await ws_action(ws, item, "1")
        if not msg.get("ok"):
            raise SystemExit("a WebSocket toggle failed: %s" % msg)
        return str
    finally:
        await ws.close()


async def ws_load(port, item, seconds, connections, ref_type, rate=None):
    """`connections` clients sending toggles for `seconds`: back to back, or, with `rate`
    (actions/s in total), each on a fixed schedule of rate / connections per second,
    staggered. -> (successful actions/s, p50 ms, p99 ms of all round trips, failed, steal %)"""
    sockets = await ws_connect(port, connections)
    latencies, failed = [], []
    period = connections / rate if rate else 0.0
    loop = asyncio.get_running_loop()

    async def client(j, ws):
        n = 0
        next_send = start + j * period / connections
        while True:
            if period:
                wait = next_send - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                next_send = max(next_send + period, loop.time())
            t = time.perf_counter()
            if loop.time() >= end:
                return
            n += 1
            ref = "%d-%d" % (j, n) if ref_type is str else j * 10_000_000 + n
            msg, _ = await ws_action(ws, item, ref)
            latencies.append((time.perf_counter() - t) * 1000)
            if not msg.get("ok"):
                failed.append(msg.get("error", {}).get("code"))

    before = steal()
    start = loop.time()
    end = start + seconds
    await asyncio.gather(*(client(j, ws) for j, ws in enumerate(sockets)))
    elapsed = loop.time() - start
    st = steal_pct(before, steal())
    for ws in sockets:
        await ws.close()
    if failed:
        print("WebSocket actions failed: %s" % {c: failed.count(c) for c in set(failed)},
              file=sys.stderr)
    return ((len(latencies) - len(failed)) / elapsed, pct(latencies, 50), pct(latencies, 99),
            len(failed), st)


async def ws_runs(srv, item, a):
    ref_type = await ref_style(srv.port, item)
    peak = await ws_load(srv.port, item, a.duration, a.connections, ref_type)
    paced = await ws_load(srv.port, item, a.duration, 2 * a.connections, ref_type,
                          rate=peak[0] / 2)
    return peak, paced


# --- main -----------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds per measurement")
    ap.add_argument("--workers", type=int, default=0,
                    help="sandbox.workers (0: the server's default, two per core)")
    ap.add_argument("--reuse", default="panel", help="sandbox.reuse: panel|call")
    ap.add_argument("--max-batch", type=int, default=64, help="panels.max_batch (1: no batching)")
    ap.add_argument("--panels", type=int, default=1, help="N counter panels instead (HTTP peak)")
    ap.add_argument("--connections", type=int, default=8,
                    help="wrk connections / WebSocket clients at the peak (paced: twice)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="another server setting (repeatable), e.g. runtime.scheduler_threads=2")
    a = ap.parse_args()
    extra = [x for kv in a.set for x in ("--set", kv)]
    rows = {k: [] for k in ("http", "http paced", "ws", "ws paced")}
    for run in range(a.runs):
        srv = Server("--set", "sandbox.workers=%d" % a.workers, "--set", "sandbox.reuse=" + a.reuse,
                     "--set", "panels.max_batch=%d" % a.max_batch, *extra)
        try:
            if a.panels > 1:
                rows["http"].append(multi_panel_run(srv, a))
                continue
            item = add_item(srv)
            peak, paced = http_runs(srv, item, a)
            rows["http"].append(peak)
            rows["http paced"].append(paced)
            peak, paced = asyncio.run(ws_runs(srv, item, a))
            rows["ws"].append(peak)
            rows["ws paced"].append(paced)
        finally:
            srv.stop()
        print("run %d done" % (run + 1), file=sys.stderr)

    c = a.connections
    labels = {
        "http": "toggle over HTTP, peak (wrk -t2 -c%d)" % c,
        "http paced": "toggle over HTTP, paced at half the peak (wrk -t2 -c%d, delay())" % (2 * c),
        "ws": "toggle over WebSocket, peak (%d connections, back to back)" % c,
        "ws paced": "toggle over WebSocket, paced at half the peak (%d connections)" % (2 * c),
    }
    print("sandbox.reuse=%s panels.max_batch=%d" % (a.reuse, a.max_batch))
    print("panel %s, action toggle: %d runs of %d s, sandbox.workers=%d, %d cores"
          % (PANEL, a.runs, a.duration, a.workers, os.cpu_count()))
    print()
    print("| figure | actions/s | p50 | p99 | failed | steal |")
    print("|---|---|---|---|---|---|")
    med = lambda rs, i: statistics.median(r[i] for r in rs)
    if a.panels > 1:
        labels["http"] = "inc over HTTP across %d panels, peak (wrk -t2 -c%d)" % (a.panels, c)
    for key, rs in rows.items():
        if not rs:
            continue
        print("| %s | %s | %.2f ms | %.2f ms | %d | %.0f%% |"
              % (labels[key], format(round(med(rs, 0)), ","), med(rs, 1), med(rs, 2),
                 max(r[3] for r in rs), med(rs, 4)))


if __name__ == "__main__":
    main()
