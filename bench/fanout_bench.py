#!/usr/bin/python3
"""Fan-out: how long one storage write takes to reach N WebSocket subscribers of a panel, and
what an idle subscribed connection costs the server. Against a fresh build/tessera per count.

    /usr/bin/python3 bench/fanout_bench.py [--counts 1000,10000] [--rounds 5] [--procs 2]
                                           [--workers 2]

For each count N: a server with `panels.demos=false`, storage `s` = {"n": 0} and panel `p`
bound to it with template `<b>{{ s.n }}</b>`. N connections to 127.0.0.1 open /ws, subscribe
to `p` and wait for their first render. Server RSS (VmRSS) is read before the connections open
and again once all are subscribed and have been idle for a second: (after - before) / N is the
memory per idle connection. Then `rounds` times: PATCH /api/storages/s {"data": {"n": k}}, and
for each connection the time from just before sending the PATCH until it has received a render
whose html contains `<b>k</b>`. Reported per round over the connections: the first, p50, p99
and the last (= the time until all are updated), and when the PATCH was answered; the table
shows the medians over the rounds.

The receivers are a minimal WebSocket client on raw non-blocking sockets and epoll (the
websockets library is too slow for 10,000 connections in Python), spread over `procs`
processes; each stamps a frame with CLOCK_MONOTONIC (time.monotonic_ns, system-wide on Linux)
when it reads it, so stamps compare across processes. The receivers share the server's cores,
so the tail includes the time they take to read N frames.
"""
import argparse
import base64
import errno
import hashlib
import http.client
import json
import multiprocessing
import os
import re
import resource
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import pct, steal, steal_pct

REPO = Path(__file__).resolve().parents[1]
BINARY = os.environ.get("TESSERA_BIN", str(REPO / "build" / "tessera"))
HOST = "127.0.0.1"
PANEL, STORAGE = "p", "s"
TEMPLATE = "<b>{{ s.n }}</b>"
SERVER_NOFILE = 65536  # capped at this process's hard limit
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # fixed: the server only echoes its digest
WS_ACCEPT = base64.b64encode(hashlib.sha1(
    (WS_KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
SETUP_TIMEOUT = 600  # seconds for all N connections to be subscribed
ROUND_TIMEOUT = 60  # seconds for every connection to see a write
MAX_CONNECTING = 128  # handshakes in flight per receiver process (stay under the backlog)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def cpu_ns(pid):
    """CPU time of every thread of `pid` so far (schedstat: nanoseconds, unlike /proc/stat)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended meanwhile
    return total


def open_files_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        return int(re.search(r"^Max open files\s+(\d+)", f.read(), re.M).group(1))


class Server:
    """A tessera process with a fresh data dir, its open-files limit raised with prlimit (no
    threads here: the receivers are forked)."""

    def __init__(self, nofile, *args):
        self.dir = tempfile.mkdtemp(prefix="tessera-bench-")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
        out = self.dir + "/out"
        with open(out, "w") as o, open(self.dir + "/err", "w") as e:
            self.proc = subprocess.Popen(
                ["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--", BINARY, "serve",
                 "--listen", HOST + ":0", "--data-dir", self.dir + "/data", *args],
                stdout=o, stderr=e, env=env)
        deadline = time.monotonic() + 30
        while True:
            m = re.search(r"^tessera listening on \S+:(\d+)$", Path(out).read_text(), re.M)
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise SystemExit("tessera did not start:\n" + self.stderr())
            time.sleep(0.02)
        self.port = int(m.group(1))
        self.pid = self.proc.pid  # prlimit execs the server, so this is the server's pid
        self.conn = None

    def request(self, method, path, body=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        self.conn.request(method, path, None if body is None else json.dumps(body),
                          {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def close_client(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def stderr(self):
        return Path(self.dir + "/err").read_text()[-4000:]

    def stop(self):
        self.close_client()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


# --- a minimal WebSocket receiver (runs in each receiver process) ---------------------------

def client_frame(payload, opcode=0x1):
    """A masked, final frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + unmask(payload, mask)


def unmask(payload, mask):
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


CONNECTING, HANDSHAKE, SUBSCRIBED, READY, DEAD = range(5)


class Receivers:
    """`count` WebSocket connections on one epoll set, driven by commands from the parent over
    `cmd` (a multiprocessing Connection):
      (on start)              -> ("ready", ready, failures) once every connection has had its
                                 first render of PANEL (or has failed, or SETUP_TIMEOUT passed)
      ("arm", k, deadline_ns) -> ("armed",); then ("round", stamps, missing, failures, cpu)
                                 once every live connection has read a render containing <b>k</b>
                                 (or at the deadline), stamps being CLOCK_MONOTONIC ns when each
                                 was read, cpu this process's CPU seconds since armed
      ("quit",)               -> closes every connection and returns
    """

    def __init__(self, port, count, cmd):
        self.count, self.cmd = count, cmd
        self.addr = (HOST, port)
        self.handshake = ("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                          "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n" % (HOST, port, WS_KEY)).encode()
        self.subscribe = client_frame(json.dumps({"type": "subscribe", "panel": PANEL}).encode())
        self.ep = select.epoll()
        self.socks = [None] * count
        self.state = [CONNECTING] * count
        self.buf = [b""] * count  # unparsed bytes
        self.frag = [None] * count  # a fragmented message being assembled
        self.out = [b""] * count  # bytes the kernel did not take yet
        self.by_fd = {}
        self.next_conn = self.connecting = self.ready = 0
        self.failures = {}
        self.armed = False
        self.needle, self.needle_bytes, self.stamps, self.pending, self.cpu = "", b"", [], 0, 0.0

    # life cycle of a connection
    def open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socks[i] = s
        self.by_fd[s.fileno()] = i
        self.connecting += 1
        rc = s.connect_ex(self.addr)
        if rc not in (0, errno.EINPROGRESS):
            return self.fail(i, "connect: " + os.strerror(rc))
        self.ep.register(s.fileno(), select.EPOLLOUT)

    def fail(self, i, why):
        state = self.state[i]
        if state == DEAD:
            return
        self.failures[why] = self.failures.get(why, 0) + 1
        if state in (CONNECTING, HANDSHAKE):
            self.connecting -= 1
        elif state == READY:
            self.ready -= 1
            if self.armed and not self.stamps[i]:
                self.pending -= 1
        self.state[i] = DEAD
        s = self.socks[i]
        try:
            self.ep.unregister(s.fileno())
        except (OSError, ValueError):
            pass
        s.close()

    def send(self, i, data):
        if self.out[i]:
            self.out[i] += data
            return
        try:
            n = self.socks[i].send(data)
        except BlockingIOError:
            n = 0
        except OSError as e:
            return self.fail(i, "send: " + e.strerror)
        if n < len(data):
            self.out[i] = data[n:]
            self.ep.modify(self.socks[i].fileno(), select.EPOLLIN | select.EPOLLOUT)

    def flush(self, i):
        data, self.out[i] = self.out[i], b""
        if data:
            self.send(i, data)
        if not self.out[i] and self.state[i] != DEAD:
            self.ep.modify(self.socks[i].fileno(), select.EPOLLIN)

    # events
    def on_event(self, i, events):
        s = self.socks[i]
        if self.state[i] == CONNECTING:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self.fail(i, "connect: " + os.strerror(err))
            self.state[i] = HANDSHAKE
            self.ep.modify(s.fileno(), select.EPOLLIN)
            return self.send(i, self.handshake)
        if events & select.EPOLLOUT:
            self.flush(i)
        if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            try:
                data = s.recv(262144)
            except BlockingIOError:
                return
            except OSError as e:
                return self.fail(i, "recv: " + e.strerror)
            now = time.monotonic_ns()
            if not data:
                return self.fail(i, "closed by the server")
            if self.state[i] == HANDSHAKE:
                data = self.upgrade(i, data)
            if data:
                self.feed(i, data, now)

    def upgrade(self, i, data):
        """Handles the handshake answer; returns the bytes after it."""
        data = self.buf[i] + data
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf[i] = data
            return b""
        self.buf[i] = b""
        head = data[:end].split(b"\r\n")
        if b" 101 " not in head[0] + b" ":
            self.fail(i, "handshake: " + head[0].decode(errors="replace"))
            return b""
        headers = dict(h.split(b":", 1) for h in head[1:] if b":" in h)
        headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
        if headers.get(b"sec-websocket-accept") != WS_ACCEPT:
            self.fail(i, "handshake: wrong Sec-WebSocket-Accept")
            return b""
        self.state[i] = SUBSCRIBED
        self.connecting -= 1
        self.send(i, self.subscribe)
        return data[end + 4:]

    def feed(self, i, data, now):
        """Parses server frames (unmasked; 7-, 16- or 64-bit lengths; maybe fragmented)."""
        if self.buf[i]:
            data = self.buf[i] + data
        pos, n = 0, len(data)
        while n - pos >= 2:
            b0, b1 = data[pos], data[pos + 1]
            length, h = b1 & 0x7F, pos + 2
            if length == 126:
                if n - pos < 4:
                    break
                length, h = int.from_bytes(data[pos + 2:pos + 4], "big"), pos + 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, h = int.from_bytes(data[pos + 2:pos + 10], "big"), pos + 10
            mask = None
            if b1 & 0x80:  # a server must not mask; unmask anyway
                if n - h < 4:
                    break
                mask, h = data[h:h + 4], h + 4
            if n - h < length:
                break
            payload = data[h:h + length]
            pos = h + length
            self.on_frame(i, b0, unmask(payload, mask) if mask else payload, now)
            if self.state[i] == DEAD:
                return
        self.buf[i] = data[pos:]

    def on_frame(self, i, b0, payload, now):
        fin, opcode = b0 & 0x80, b0 & 0x0F
        if opcode == 0x0:
            if self.frag[i] is None:
                return self.fail(i, "continuation frame without a start")
            self.frag[i] += payload
            if fin:
                payload, self.frag[i] = bytes(self.frag[i]), None
                self.on_message(i, payload, now)
        elif opcode in (0x1, 0x2):
            if fin:
                self.on_message(i, payload, now)
            else:
                self.frag[i] = bytearray(payload)
        elif opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 0
            self.fail(i, "close frame %d %s" % (code, payload[2:].decode(errors="replace")))
        elif opcode == 0x9:
            self.send(i, client_frame(payload, 0xA))

    def on_message(self, i, payload, now):
        if (self.armed and self.state[i] == READY and not self.stamps[i]
                and self.needle_bytes in payload and b'"render"' in payload):
            # The common case while measuring, without parsing the JSON (recv and this are most
            # of a receiver's CPU per frame): the render carrying the new value (only panel p
            # exists, so "render" can only be its type); anything else is parsed below.
            self.stamps[i] = now
            self.pending -= 1
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            return self.fail(i, "not JSON: %r" % payload[:100])
        kind = msg.get("type")
        if kind == "render" and msg.get("panel") == PANEL:
            if self.state[i] == SUBSCRIBED:
                self.state[i] = READY
                self.ready += 1
            if self.armed and not self.stamps[i] and self.needle in msg.get("html", ""):
                self.stamps[i] = now
                self.pending -= 1
        elif kind in ("error", "render_error", "deleted"):
            self.fail(i, "message %s" % json.dumps(msg)[:200])

    # the loop
    def run(self):
        self.ep.register(self.cmd.fileno(), select.EPOLLIN)
        cmd_fd = self.cmd.fileno()
        setup_deadline = time.monotonic() + SETUP_TIMEOUT
        setting_up, round_deadline = True, None
        while True:
            while self.next_conn < self.count and self.connecting < MAX_CONNECTING:
                self.next_conn += 1
                self.open(self.next_conn - 1)
            for fd, events in self.ep.poll(0.1):
                if fd == cmd_fd:
                    while self.cmd.poll():
                        request = self.cmd.recv()
                        if request[0] == "quit":
                            return self.close()
                        round_deadline = self.arm(*request[1:])
                else:
                    i = self.by_fd.get(fd)
                    if i is not None and self.state[i] != DEAD:
                        self.on_event(i, events)
            if setting_up and (self.ready + sum(self.failures.values()) == self.count
                               or time.monotonic() > setup_deadline):
                setting_up = False
                self.cmd.send(("ready", self.ready, self.failures))
            if self.armed and (self.pending <= 0 or time.monotonic_ns() > round_deadline):
                self.armed = False
                self.cmd.send(("round", [t for t in self.stamps if t], self.pending,
                               self.failures, time.process_time() - self.cpu))

    def arm(self, k, deadline_ns):
        self.needle = "<b>%d</b>" % k
        self.needle_bytes = self.needle.encode()
        self.stamps = [0] * self.count
        self.pending = self.ready
        self.armed = True
        self.cpu = time.process_time()
        self.cmd.send(("armed",))
        return deadline_ns

    def close(self):
        for i, s in enumerate(self.socks):
            if s is not None and self.state[i] != DEAD:
                s.close()
        self.ep.close()


def receiver_main(port, count, cmd):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and tells us to quit
    Receivers(port, count, cmd).run()


CXX_RECEIVER = REPO / "build" / "ws_receiver"


def build_cxx_receiver():
    """Compiles bench/ws_receiver.cpp into build/ws_receiver when it is missing or older."""
    src = REPO / "bench" / "ws_receiver.cpp"
    if CXX_RECEIVER.exists() and CXX_RECEIVER.stat().st_mtime >= src.stat().st_mtime:
        return
    CXX_RECEIVER.parent.mkdir(exist_ok=True)
    subprocess.run(["g++", "-O2", "-std=c++20", "-o", str(CXX_RECEIVER), str(src)], check=True)


def cxx_receiver_main(port, count, cmd):
    """The same protocol as receiver_main, relayed to a build/ws_receiver process (C++, epoll):
    this relay only wakes at commands, the C++ process reads the frames."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    p = subprocess.Popen([str(CXX_RECEIVER), str(port), str(count), PANEL],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    words = p.stdout.readline().split()
    if not words or words[0] != "ready":
        cmd.send(("ready", 0, {"ws_receiver did not start": count}))
        return
    failures = {"failed": int(words[2])} if int(words[2]) else {}
    cmd.send(("ready", int(words[1]), failures))
    while True:
        msg = cmd.recv()
        if msg[0] == "quit":
            p.stdin.write("quit\n")
            p.stdin.flush()
            p.wait(30)
            return
        _, k, deadline_ns = msg
        p.stdin.write("arm %d %d\n" % (k, deadline_ns))
        p.stdin.flush()
        assert p.stdout.readline().strip() == "armed"
        cmd.send(("armed",))
        words = p.stdout.readline().split()
        cmd.send(("round", [int(w) for w in words[3:]], int(words[1]), failures,
                  float(words[2])))


# --- the measurement ------------------------------------------------------------------------

def expect(conns, what, timeout):
    """Waits for one message from each receiver process."""
    deadline = time.monotonic() + timeout
    answers = []
    for c in conns:
        if not c.poll(max(0.0, deadline - time.monotonic())):
            raise SystemExit("receivers did not report %s within %d s" % (what, timeout))
        try:
            answers.append(c.recv())
        except EOFError:
            raise SystemExit("a receiver process died (waiting for %s)" % what)
    return answers


def merged(dicts):
    total = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def measure(count, a, nofile):
    srv = Server(nofile, "--set", "panels.demos=false", "--set", "sandbox.workers=%d" % a.workers)
    procs, conns = [], []
    try:
        status, r = srv.request("POST", "/api/storages", {"id": STORAGE, "data": {"n": 0}})
        assert status == 201, (status, r)
        status, r = srv.request("POST", "/api/panels", {"id": PANEL, "storage_ids": [STORAGE],
                                                        "template": TEMPLATE})
        assert status == 201, (status, r)
        status, r = srv.request("GET", "/api/panels/%s/render" % PANEL)  # compiled, cached
        assert status == 200 and "<b>0</b>" in r["html"], (status, r)
        srv.close_client()  # not inherited by the receivers
        rss_before = rss_kib(srv.pid)

        ctx = multiprocessing.get_context("fork")
        n = min(a.procs, count)
        t = time.monotonic()
        for j in range(n):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=cxx_receiver_main if a.receiver == "cxx" else receiver_main,
                            args=(srv.port, count // n + (j < count % n), child_end))
            p.start()
            child_end.close()
            procs.append(p)
            conns.append(parent_end)
        answers = expect(conns, "subscriptions", SETUP_TIMEOUT + 30)
        setup = time.monotonic() - t
        ready = sum(x[1] for x in answers)
        if ready != count:
            raise SystemExit("only %d of %d connections subscribed; failures: %s\n"
                             "server stderr:\n%s"
                             % (ready, count, merged(x[2] for x in answers), srv.stderr()))
        print("%d connections subscribed in %.1f s" % (count, setup), file=sys.stderr)
        time.sleep(1)  # idle
        rss_after = rss_kib(srv.pid)

        srv.request("GET", "/api/storages/" + STORAGE)  # connect before timing
        rounds = []
        before = steal()
        for k in range(1, a.rounds + 1):
            deadline = time.monotonic_ns() + ROUND_TIMEOUT * 10**9
            for c in conns:
                c.send(("arm", k, deadline))
            expect(conns, "armed", 30)
            server_cpu = cpu_ns(srv.pid)
            t0 = time.monotonic_ns()
            status, r = srv.request("PATCH", "/api/storages/" + STORAGE, {"data": {"n": k}})
            patched = (time.monotonic_ns() - t0) / 1e6
            assert status == 200, (status, r)
            answers = expect(conns, "round %d" % k, ROUND_TIMEOUT + 30)
            lat = [(s - t0) / 1e6 for x in answers for s in x[1]]
            if len(lat) != count:
                raise SystemExit("round %d: %d of %d connections saw a render of n=%d within %d s"
                                 " (%d still waiting); failures: %s"
                                 % (k, len(lat), count, k, ROUND_TIMEOUT,
                                    sum(x[2] for x in answers), merged(x[3] for x in answers)))
            server_cpu = (cpu_ns(srv.pid) - server_cpu) / 1e6
            cpu = sum(x[4] for x in answers) * 1000
            rounds.append((min(lat), pct(lat, 50), pct(lat, 99), max(lat), patched, cpu,
                           server_cpu))
            print("  round %d: first %.1f ms, p50 %.1f ms, p99 %.1f ms, all %.1f ms, PATCH %.1f ms,"
                  " receivers' CPU %.1f ms, server's CPU %.1f ms" % (k, *rounds[-1]),
                  file=sys.stderr)
            time.sleep(0.2)  # let the server settle between rounds
        st = steal_pct(before, steal())
        return rounds, rss_before, rss_after, setup, st
    finally:
        for c in conns:
            try:
                c.send(("quit",))
            except OSError:
                pass
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        srv.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--counts", default="1000,10000", help="connection counts, comma separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--procs", type=int, default=2, help="receiver processes")
    ap.add_argument("--workers", type=int, default=2, help="sandbox.workers")
    ap.add_argument("--receiver", choices=("python", "cxx"), default="python",
                    help="receiver implementation: Python epoll, or bench/ws_receiver.cpp")
    a = ap.parse_args()
    if a.receiver == "cxx":
        build_cxx_receiver()
    counts = [int(x) for x in a.counts.split(",")]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    per_proc = -(-max(counts) // a.procs) + 64
    if hard != resource.RLIM_INFINITY and hard < per_proc:
        raise SystemExit("RLIMIT_NOFILE hard limit %d is too low for %d connections per process"
                         " (use more --procs)" % (hard, per_proc))
    nofile = SERVER_NOFILE if hard == resource.RLIM_INFINITY else min(SERVER_NOFILE, hard)
    if nofile < max(counts) + 256:
        raise SystemExit("the server could open only %d files; %d connections need more"
                         % (nofile, max(counts)))

    rows = []
    for count in counts:
        rows.append((count, *measure(count, a, nofile)))
    print("fan-out of one PATCH to N subscribers of panel %s (template %s): %d rounds, "
          "%d %s receiver processes, sandbox.workers=%d, %d cores, server open-files limit %d"
          % (PANEL, TEMPLATE, a.rounds, a.procs, a.receiver, a.workers, os.cpu_count(), nofile))
    print()
    print("| connections | first | p50 | p99 | all updated | PATCH answered | receivers' CPU |"
          " server's CPU | server RSS idle / with N | per connection | subscribe all | steal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for count, rounds, before, after, setup, st in rows:
        med = [statistics.median(r[i] for r in rounds) for i in range(7)]
        print("| %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms |"
              " %.1f / %.1f MiB | %.1f KiB | %.1f s | %.0f%% |"
              % (format(count, ","), *med, before / 1024, after / 1024,
                 (after - before) / count, setup, st))


if __name__ == "__main__":
    main()
