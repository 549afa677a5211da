"""Tasks at scale: 100,000 enabled tasks with mixed cron expressions on one node.

Measures (medians of --runs rounds):
  - server memory (RSS) with every task loaded and scheduled, and per task over an empty server;
  - schedule rebuild on restart: from exec until every task is back in the scheduler's
    next-fire queue (tessera_task_schedule_queue_size), and until the HTTP port listens;
  - fire lag when --burst tasks fall due in the same second: started_at - scheduled_for of
    their runs (trivial handlers, no storages), p50/p99/max;
  - the sandbox-bound run throughput of that burst: runs finished per second.

    /usr/bin/python3 bench/task_bench.py [--tasks 100000] [--burst 1000] [--runs 3]
"""
import argparse
import datetime
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import pct, steal, steal_pct

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANDLER = "def on_schedule(storage):\n    pass\n"
# Mixed expressions, none due during the benchmark (they fire at night, monthly, yearly ...).
BACKGROUND = [
    ("0 3 * * *", "UTC"), ("30 2 * * *", "Europe/Berlin"), ("0 4 * * MON-FRI", "America/New_York"),
    ("15 1 1 * *", "UTC"), ("0 0 L * *", "Asia/Taipei"), ("0 5 * * 5L", "UTC"),
    ("0 0 1 1 *", "UTC"), ("@yearly", "Australia/Sydney"), ("0 2 15W * *", "UTC"),
    ("0 4 * * 1#2", "Europe/London"), ("30 3 */2 * *", "UTC"), ("0 1 * JAN,JUL SUN", "UTC"),
]


class Server:
    def __init__(self, binary, data_dir):
        self.binary, self.data_dir, self.proc = binary, data_dir, None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        env["TESSERA_PANELS_DEMOS"] = "false"
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
             "--set", "server.max_body_bytes=1048576"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.search(r"tessera listening on \S+:(\d+)$", line.strip())
        if not m:
            self.proc.kill()
            raise SystemExit("tessera did not start: " + line)
        self.listening_after = time.monotonic() - t0
        self.started = t0
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.port = int(m.group(1))
        return self

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def conn(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def request(self, method, path, body=None, conn=None):
        c = conn or self.conn()
        c.request(method, path, json.dumps(body) if body is not None else None,
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, json.loads(data) if data else None

    def metric(self, name):
        _, _ = None, None
        c = self.conn()
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0


def parallel(n_threads, items, work):
    """Runs work(conn, item) over items on n_threads keep-alive connections."""
    lock = threading.Lock()
    it = iter(items)
    errors = []

    def loop(srv):
        conn = srv.conn()
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                break
            try:
                work(conn, item)
            except Exception as e:  # reported after the run
                errors.append(e)
                conn = srv.conn()
        conn.close()
    return loop, errors


def create_tasks(srv, specs, threads=8):
    def work(conn, spec):
        status, body = srv.request("POST", "/api/tasks", spec, conn)
        if status != 201:
            raise RuntimeError(f"create {spec['id']}: {status} {body}")
    loop, errors = parallel(threads, specs, work)
    ts = [threading.Thread(target=loop, args=(srv,)) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} creates failed, first: {errors[0]}")


def wait_queue(srv, n, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.metric("tessera_task_schedule_queue_size") >= n:
            return time.monotonic() - srv.started
        time.sleep(0.01)
    raise SystemExit(f"the queue never reached {n}")


def iso(ms):
    return datetime.datetime.fromisoformat(ms.replace("Z", "+00:00")).timestamp()


def burst(srv, ids, lead=8.0):
    """Moves the tasks `ids` to one second `lead` s ahead and collects their runs."""
    at = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + \
        datetime.timedelta(seconds=lead)
    expr = f"{at.second} {at.minute} {at.hour} {at.day} {at.month} *"

    def work(conn, id):
        status, body = srv.request("PATCH", f"/api/tasks/{id}", {"schedule": expr}, conn)
        if status != 200:
            raise RuntimeError(f"patch {id}: {status} {body}")
    loop, errors = parallel(8, ids, work)
    ts = [threading.Thread(target=loop, args=(srv,)) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit(f"{len(errors)} patches failed, first: {errors[0]}")
    if datetime.datetime.now(datetime.timezone.utc) >= at - datetime.timedelta(seconds=1):
        raise SystemExit("the patches took longer than the lead time; raise --lead")
    while datetime.datetime.now(datetime.timezone.utc) < at:
        time.sleep(0.05)
    lags, ends = [], []
    conn = srv.conn()
    deadline = time.monotonic() + 120
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for id in pending:
            _, body = srv.request("GET", f"/api/tasks/{id}/runs?limit=1", None, conn)
            runs = [r for r in body["runs"] if r["trigger"] == "schedule" and
                    r["scheduled_for"] and iso(r["scheduled_for"]) == at.timestamp()]
            if runs and runs[0]["status"] != "running":
                r = runs[0]
                if r["status"] != "succeeded":
                    raise SystemExit(f"run of {id} {r['status']}: {r['error']}")
                lags.append((iso(r["started_at"]) - at.timestamp()) * 1000)
                ends.append(iso(r["finished_at"]))
            else:
                still.append(id)
        pending = still
        if pending:
            time.sleep(0.2)
    conn.close()
    if pending:
        raise SystemExit(f"{len(pending)} burst tasks never finished their run")
    span = max(ends) - at.timestamp()
    return {"lag_p50_ms": pct(lags, 50), "lag_p99_ms": pct(lags, 99), "lag_max_ms": max(lags),
            "runs_per_s": len(ids) / span, "all_done_s": span}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "tessera"))
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="tessera-task-bench-") + "/data"
    srv = Server(args.binary, data).start()
    time.sleep(0.5)
    empty_rss = srv.rss_kib()
    specs = []
    for i in range(args.tasks - args.burst):
        expr, zone = BACKGROUND[i % len(BACKGROUND)]
        specs.append({"id": f"bg{i:06d}", "schedule": expr, "timezone": zone,
                      "handler": HANDLER, "storage_ids": []})
    burst_ids = [f"burst{i:04d}" for i in range(args.burst)]
    specs += [{"id": id, "schedule": "0 0 1 1 *", "handler": HANDLER, "storage_ids": []}
              for id in burst_ids]
    t0 = time.monotonic()
    create_tasks(srv, specs)
    created = time.monotonic() - t0
    print(f"created {len(specs)} tasks in {created:.1f} s ({len(specs) / created:.0f}/s)",
          flush=True)
    results = []
    for round_ in range(args.runs):
        srv.stop()
        srv.start()
        listening = srv.listening_after
        rebuilt = wait_queue(srv, args.tasks)
        time.sleep(1)
        rss = srv.rss_kib()
        st0 = steal()
        b = burst(srv, burst_ids)
        b.update(restart_s=rebuilt, listening_s=listening, rss_mib=rss / 1024,
                 per_task_kib=(rss - empty_rss) / args.tasks, steal_pct=steal_pct(st0, steal()))
        results.append(b)
        print(f"round {round_ + 1}: " + ", ".join(f"{k}={v:.2f}" for k, v in b.items()),
              flush=True)
    srv.stop()
    print("medians: " + ", ".join(
        f"{k}={statistics.median(r[k] for r in results):.2f}" for k in results[0]))


if __name__ == "__main__":
    sys.exit(main())
