#!/usr/bin/python3
"""What the cluster costs and how fast it recovers (issue 29), on one throwaway PostgreSQL
(tests/e2e/postgres.py) and build/tessera nodes on loopback. Each figure is compared with its
baseline measured in the same run.

    /usr/bin/python3 bench/cluster_bench.py [--binary build/tessera] [--requests 1500]
                                            [--duration 6] [--trials 10] [--only FIGURE,...]

Figures (FIGURE names for --only):
  forward   sequential GET and PATCH through node a of a 3-node cluster, on storages a owns
            (served locally) and on storages b owns (forwarded to b), interleaved: p50/p99 of
            each and the added p50; CPU (user+system) per request on a and on b.
  spread    PATCH over 64 storages for --duration seconds with wrk (-t1 -c16 per node)
            through all 3 nodes at once, against the same through the one node of a 1-node
            cluster on the same PostgreSQL: req/s and each node's CPU per request.
  render    a PATCH through b until a WebSocket subscriber on a gets the new render, against
            the same PATCH through a (the subscriber's own node): p50/p99 over --requests/5.
  failover  kill -9 of the node owning storage s (3 nodes, heartbeat 300 ms, lease 1500 ms)
            until the first successful PATCH of s through a survivor (clients retry every
            20 ms): p50/p99 over --trials; the node is started again between trials.

The owner of a storage is computed here as runtime/cluster/placement.cpp does (rendezvous
hashing, FNV-1a and splitmix64's finalizer), and checked against the forwarded-requests metric.
"""
import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "e2e"))
import postgres  # noqa: E402  (the e2e tests' throwaway PostgreSQL)
import websockets  # noqa: E402

from benchlib import pct, start_tessera, steal, steal_pct  # noqa: E402

HEARTBEAT_MS, LEASE_MS = 300, 1500
MASK = (1 << 64) - 1


def owner_of(key, members):
    def fnv(a, b):
        h = 14695981039346656037
        for c in a.encode() + b"\0" + b.encode():
            h = ((h ^ c) * 1099511628211) & MASK
        return h

    def mix(x):
        x ^= x >> 30
        x = (x * 0xbf58476d1ce4e5b9) & MASK
        x ^= x >> 27
        x = (x * 0x94d049bb133111eb) & MASK
        x ^= x >> 31
        return x
    return max(members, key=lambda m: (mix(fnv(m, key)), [-ord(c) for c in m]))


class Node:
    def __init__(self, binary, url, name):
        self.name = name
        self.proc, self.port, self.tmp = start_tessera(
            binary, "--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}",
            "--set", "cluster.enabled=true", "--set", f"cluster.node_name={name}",
            "--set", "cluster.listen=127.0.0.1:0",
            "--set", f"cluster.heartbeat_ms={HEARTBEAT_MS}",
            "--set", f"cluster.lease_ms={LEASE_MS}", "--set", "panels.demos=false")
        self.conn = None

    def request(self, method, path, body=None, timeout=10):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        elif self.conn.sock is not None:
            self.conn.sock.settimeout(timeout)
        try:
            self.conn.request(method, path, json.dumps(body) if body is not None else None,
                              {"Content-Type": "application/json"})
            res = self.conn.getresponse()
            data = res.read()
            return res.status, json.loads(data) if data else None
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise

    def cpu(self):
        """User + system CPU seconds of the process so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name, **labels):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        total = 0.0
        want = [f'{k}="{v}"' for k, v in labels.items()]
        for line in text.splitlines():
            if line.startswith(name) and all(w in line for w in want):
                head = line.split(" ")[0]
                if head == name or head.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def alive(self):
        _, body = self.request("GET", "/api/cluster")
        return sorted(m["name"] for m in body["members"] if m["state"] == "alive")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, http.client.HTTPException, KeyError, TypeError):
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def cluster(binary, url, names):
    nodes = [Node(binary, url, n) for n in names]
    for n in nodes:
        wait_for(lambda: n.alive() == sorted(names), 15, f"{n.name} to see {names} alive")
    return nodes


def ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def fig_forward(binary, pg, args):
    url = pg.database_for(tempfile.mkdtemp(prefix="cb-fwd-"))
    nodes = cluster(binary, url, ["a", "b", "c"])
    a, b = nodes[0], nodes[1]
    members = ["a", "b", "c"]
    local = [f"s{i}" for i in range(200) if owner_of(f"storage/s{i}", members) == "a"][:8]
    remote = [f"s{i}" for i in range(200) if owner_of(f"storage/s{i}", members) == "b"][:8]
    for id in local + remote:
        assert a.request("POST", "/api/storages", {"id": id, "data": {"v": 0}})[0] == 201
    fwd0 = a.metric("tessera_cluster_forwarded_requests_total")
    lat = {(m, k): [] for m in ("GET", "PATCH") for k in ("local", "forwarded")}
    cpu0 = (a.cpu(), b.cpu())
    st0 = steal()
    n = args.requests
    for i in range(n):
        for kind, ids in (("local", local), ("forwarded", remote)):
            id = ids[i % len(ids)]
            for method in ("GET", "PATCH"):
                body = {"data": {"v": i}} if method == "PATCH" else None
                t = time.perf_counter()
                status, _ = a.request(method, f"/api/storages/{id}", body)
                lat[(method, kind)].append(time.perf_counter() - t)
                assert status == 200, status
    cpu1 = (a.cpu(), b.cpu())
    forwarded = a.metric("tessera_cluster_forwarded_requests_total") - fwd0
    print(f"\n### forward ({n} of each, interleaved; steal {steal_pct(st0, steal()):.0f}%)\n")
    print("| request | local p50 | local p99 | forwarded p50 | forwarded p99 | added p50 |")
    print("|---|---|---|---|---|---|")
    for method in ("GET", "PATCH"):
        lo, fw = lat[(method, "local")], lat[(method, "forwarded")]
        print(f"| {method} | {ms(pct(lo, 50))} | {ms(pct(lo, 99))} | {ms(pct(fw, 50))} | "
              f"{ms(pct(fw, 99))} | {ms(pct(fw, 50) - pct(lo, 50))} |")
    total = 4 * n
    print(f"\nforwarded by a: {forwarded:.0f} (expected {2 * n}); CPU per request (all "
          f"{total}): a {ms((cpu1[0] - cpu0[0]) / total)}, b {ms((cpu1[1] - cpu0[1]) / total)} "
          f"(b served the {2 * n} forwarded ones)")
    for node in nodes:
        node.stop()


def wrk(port, duration, connections, out):
    env = dict(os.environ, STORAGES="64")
    res = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s",
         os.path.join(os.path.dirname(__file__), "patch.lua"), f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, env=env)
    for line in res.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            out.append(float(line.split()[1]))


def fig_spread(binary, pg, args):
    print(f"\n### spread (PATCH over 64 storages, {args.duration} s, wrk -t1 -c16 per node)\n")
    print("| setup | PATCH/s | CPU per request, each node |")
    print("|---|---|---|")
    for names in (["a"], ["a", "b", "c"]):
        url = pg.database_for(tempfile.mkdtemp(prefix="cb-spread-"))
        nodes = cluster(binary, url, names)
        for i in range(64):
            assert nodes[i % len(nodes)].request(
                "POST", "/api/storages", {"id": f"bench-{i}", "data": {}})[0] == 201
        cpu0 = [n.cpu() for n in nodes]
        st0 = steal()
        rates = []
        threads = [threading.Thread(target=wrk, args=(n.port, args.duration, 16, rates))
                   for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(rates)
        per = [(n.cpu() - c) / max(1, total * args.duration) for n, c in zip(nodes, cpu0)]
        print(f"| {len(names)} node(s) | {total:,.0f} | "
              f"{', '.join(f'{n.name} {ms(p)}' for n, p in zip(nodes, per))} "
              f"(steal {steal_pct(st0, steal()):.0f}%) |")
        for node in nodes:
            node.stop()


async def render_latency(sub, writer, n):
    uri = f"ws://127.0.0.1:{sub.port}/ws"
    async with websockets.connect(uri, compression=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "subscribe", "panel": "p"}))
        while json.loads(await ws.recv())["type"] != "render":
            pass
        out = []
        for i in range(n):
            value = f"{writer.name}{i}x"
            t = time.perf_counter()
            status, _ = await asyncio.to_thread(writer.request, "PATCH", "/api/storages/c",
                                                {"data": {"v": value}})
            assert status == 200
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["type"] == "render" and f">{value}<" in msg["html"]:
                    break
            out.append(time.perf_counter() - t)
        return out


def fig_render(binary, pg, args):
    url = pg.database_for(tempfile.mkdtemp(prefix="cb-render-"))
    nodes = cluster(binary, url, ["a", "b", "c"])
    a, b = nodes[0], nodes[1]
    assert a.request("POST", "/api/storages", {"id": "c", "data": {"v": "0"}})[0] == 201
    status, _ = a.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                                  "template": "<b>{{ c.v }}</b>",
                                                  "handler": "def on_action(a, p, s):\n  pass\n"})
    assert status == 201
    wait_for(lambda: b.request("GET", "/api/panels/p")[0] == 200, 5, "b to know p")
    n = max(20, args.requests // 5)
    st0 = steal()
    same, cross = [], []
    for _ in range(2):  # interleaved halves
        same += asyncio.run(render_latency(a, a, n // 2))
        cross += asyncio.run(render_latency(a, b, n // 2))
    print(f"\n### render (PATCH until the subscriber on a has the render; {len(same)} each; "
          f"steal {steal_pct(st0, steal()):.0f}%)\n")
    print("| write through | p50 | p99 |")
    print("|---|---|---|")
    print(f"| a (the subscriber's node) | {ms(pct(same, 50))} | {ms(pct(same, 99))} |")
    print(f"| b | {ms(pct(cross, 50))} | {ms(pct(cross, 99))} |")
    print(f"\ndifference at p99: {ms(pct(cross, 99) - pct(same, 99))}")
    for node in nodes:
        node.stop()


def fig_failover(binary, pg, args):
    url = pg.database_for(tempfile.mkdtemp(prefix="cb-fail-"))
    names = ["a", "b", "c"]
    nodes = {n.name: n for n in cluster(binary, url, names)}
    ids = [f"s{i}" for i in range(30)]
    for id in ids:
        assert nodes["a"].request("POST", "/api/storages", {"id": id, "data": {}})[0] == 201
    times = []
    for trial in range(args.trials):
        victim = names[trial % 3]
        id = next(i for i in ids if owner_of(f"storage/{i}", names) == victim)
        survivor = nodes[names[(trial + 1) % 3]]
        assert survivor.request("PATCH", f"/api/storages/{id}", {"data": {"t": trial}})[0] == 200
        nodes[victim].kill9()
        t = time.perf_counter()
        last = None
        while True:
            try:
                last, body = survivor.request("PATCH", f"/api/storages/{id}",
                                              {"data": {"after": trial}}, timeout=5)
                if last == 200:
                    break
                last = (last, body)
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            if time.perf_counter() - t > 30:
                for n in nodes.values():
                    print(f"--- {n.name} (port {n.port}) log tail:", file=sys.stderr)
                    with open(n.tmp + "/stderr.log") as f:
                        print("".join(f.readlines()[-30:]), file=sys.stderr)
                raise SystemExit(f"trial {trial}: {survivor.name} did not take a PATCH of {id} "
                                 f"within 30 s after {victim} was killed; last answer: {last}")
            time.sleep(0.02)
        times.append(time.perf_counter() - t)
        nodes[victim] = Node(binary, url, victim)
        for n in nodes.values():
            wait_for(lambda: n.alive() == names, 15, "the cluster to be whole again")
    print(f"\n### failover (kill -9 of the owner until the first PATCH through a survivor; "
          f"{len(times)} trials; lease {LEASE_MS} ms)\n")
    print("| p50 | p99 | max | target |")
    print("|---|---|---|---|")
    print(f"| {ms(pct(times, 50))} | {ms(pct(times, 99))} | {ms(max(times))} | "
          f"< {LEASE_MS + 1000} ms |")
    for node in nodes.values():
        node.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="build/tessera")
    p.add_argument("--requests", type=int, default=1500)
    p.add_argument("--duration", type=int, default=6)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--only", default="forward,spread,render,failover")
    args = p.parse_args()
    pg = postgres.shared()
    print(f"machine: {os.cpu_count()} cores; binary {args.binary}; commit "
          f"{subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}")
    figures = {"forward": fig_forward, "spread": fig_spread, "render": fig_render,
               "failover": fig_failover}
    for name in args.only.split(","):
        figures[name](args.binary, pg, args)


if __name__ == "__main__":
    main()
