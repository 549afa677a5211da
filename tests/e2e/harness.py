"""Starting a real tessera process and talking HTTP to it, for the end-to-end tests.

Only the standard library: http.client for ordinary requests, raw sockets where a test needs
exact bytes on the wire (invalid UTF-8, chunked or oversized bodies, Expect: 100-continue).
"""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import postgres

REPO = Path(__file__).resolve().parents[2]
BINARY = os.environ.get("TESSERA_BIN", str(REPO / "build" / "tessera"))
START_DEADLINE = 10.0
STOP_DEADLINE = 10.0
LISTENING = re.compile(r"^tessera listening on (\S+):(\d+)$")


def clean_env(extra=None):
    """The test process's environment without TESSERA_* variables (the server rejects unknown
    ones, and TESSERA_BIN is one), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    env.update(extra or {})
    return env


def run_tessera(*args, env=None, timeout=START_DEADLINE):
    """Runs the binary to completion (for start-up failures, --help, --version)."""
    return subprocess.run([BINARY, *args], env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout)


def run_together(count, work, timeout=60, what="a client thread"):
    """Runs work(i, barrier) on `count` threads (they may wait on the barrier to start at
    once); returns their results in order, an exception where one raised."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def run(i):
        try:
            results[i] = work(i, barrier)
        except Exception as e:  # reported by the caller's assertions on results
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), f"{what} hung"
    return results


def wait_until(predicate, timeout=10.0, message="condition", interval=0.02):
    """Polls `predicate` until it returns a truthy value or the deadline passes. `message` may
    be a callable, evaluated on failure (to show the last state seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s waiting for {text}")
        time.sleep(interval)


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage: case-insensitive .get()
        self.raw = raw
        ctype = headers.get("Content-Type", "")
        self.body = json.loads(raw) if "json" in ctype and raw else raw.decode("utf-8", "replace")

    def __repr__(self):
        return f"<{self.status} {self.headers.get('Content-Type')} {self.raw[:300]!r}>"


def encode_body(body):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host, port, timeout=10.0):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=encode_body(body), headers=headers or {})
        res = self.conn.getresponse()
        return Response(res.status, res.headers, res.read())

    def close(self):
        self.conn.close()


class Server:
    """A tessera process; see conftest.py's `server` fixture."""

    def __init__(self, data_dir, args=(), env=None, listen="127.0.0.1:0"):
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = dict(env or {})
        self.listen = listen
        self.proc = None
        self.stdout_lines = []
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.stderr"
        self.all_stderr = ""  # stderr of earlier runs (before restarts)

    # --- life cycle -------------------------------------------------------------------------
    def start(self):
        cmd = [BINARY, "serve", "--data-dir", str(self.data_dir)]
        if self.listen is not None:
            cmd += ["--listen", self.listen]
        cmd += self.args
        if postgres.BACKEND == "postgres" and not any("storage.backend" in a for a in self.args):
            cmd += ["--set", "storage.backend=postgres",
                    "--set", "storage.postgres_url=" + postgres.shared().database_for(self.data_dir)]
        env = dict(self.env)
        # The demo panel (and its storage) would show in every listing: off unless a test
        # turns it on with --set panels.demos=true.
        if not any("panels.demos" in a for a in self.args):
            env.setdefault("TESSERA_PANELS_DEMOS", "false")
        # Two sandbox workers unless a test says otherwise: the default, two per core, boots
        # four zygotes on CI's two cores for each of the suite's hundreds of short-lived
        # servers, which made the suite 45% slower. Tests that depend on the count set it;
        # test_sandbox.py checks the default (`--set sandbox.workers=0`).
        if not any("sandbox.workers" in a for a in self.args):
            env.setdefault("TESSERA_SANDBOX_WORKERS", "2")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=clean_env(env), text=True)
        lines = queue.Queue()
        threading.Thread(target=self._read_stdout, args=(self.proc, lines), daemon=True).start()
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill9()
                raise AssertionError(f"no 'listening' line within {START_DEADLINE}s; "
                                     f"stderr:\n{self.stderr()}")
            if line is None:
                self.proc.wait()
                raise AssertionError(f"tessera exited with {self.proc.returncode} at start-up; "
                                     f"stderr:\n{self.stderr()}")
            match = LISTENING.match(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                if postgres.BACKEND == "postgres" and not any("storage.backend" in a
                                                              for a in self.args):
                    assert "durable state: PostgreSQL at" in self.stderr(), self.stderr()
                return self

    def _read_stdout(self, proc, lines):
        for line in proc.stdout:
            self.stdout_lines.append(line)
            lines.put(line.rstrip("\n"))
        lines.put(None)

    @property
    def pid(self):
        return self.proc.pid

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait, and require a clean exit (code 0)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"tessera did not exit within {STOP_DEADLINE}s of SIGTERM")
        self._close_stderr()
        assert code == 0, f"tessera exited with {code} after SIGTERM; stderr:\n{self.stderr()}"

    def kill9(self):
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_DEADLINE)
        self._close_stderr()

    def restart(self):
        """Stops (gracefully, if still running) and starts again on the same data dir."""
        if self.running:
            self.stop()
        self.all_stderr += self.stderr()
        return self.start()

    def _close_stderr(self):
        if not self._stderr.closed:
            self._stderr.close()

    def stderr(self):
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def stdout(self):
        return "".join(self.stdout_lines)

    # --- HTTP --------------------------------------------------------------------------------
    @property
    def connect_host(self):
        return "127.0.0.1" if self.host in ("0.0.0.0", "localhost") else self.host

    @property
    def base_url(self):
        return f"http://{self.connect_host}:{self.port}"

    def client(self, timeout=10.0):
        return Client(self.connect_host, self.port, timeout)

    def request(self, method, path, body=None, headers=None):
        """One request on a fresh connection; returns a Response (status, headers, body)."""
        client = self.client()
        try:
            return client.request(method, path, body, headers)
        finally:
            client.close()

    def raw(self, data, timeout=10.0):
        """Sends `data` as is on a fresh socket and reads one response."""
        with socket.create_connection((self.connect_host, self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return read_response(sock.makefile("rb"))

    # --- metrics -----------------------------------------------------------------------------
    def metrics(self):
        res = self.request("GET", "/metrics")
        assert res.status == 200, res
        return parse_metrics(res.body)

    def metric(self, name, **labels):
        """The value of one sample, 0.0 when it is absent."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)


class RawResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.raw = status, headers, body
        self.body = json.loads(body) if "json" in headers.get("content-type", "") else body

    def __repr__(self):
        return f"<raw {self.status} {self.headers} {self.raw[:300]!r}>"


def read_head(stream):
    """Reads a status line and headers; returns (status, {lower-case name: value})."""
    line = stream.readline()
    assert line.startswith(b"HTTP/1."), f"not an HTTP response: {line!r}"
    status = int(line.split()[1])
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def read_response(stream):
    status, headers = read_head(stream)
    body = stream.read(int(headers.get("content-length", "0")))
    return RawResponse(status, headers, body)


SAMPLE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, frozenset(labels)): value}."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match, f"unparsable metrics line: {line!r}"
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def wait_idle(srv, timeout=15):
    """Every sandbox worker slot idle with a live process; returns GET /api/sandbox."""
    seen = {}

    def idle():
        res = srv.request("GET", "/api/sandbox")
        assert res.status == 200, res
        seen["status"] = res.body
        return all(w["state"] == "idle" and w["pid"] > 0 for w in seen["status"]["workers"])

    wait_until(idle, timeout=timeout, message=lambda: f"every worker idle (last: {seen})")
    return seen["status"]


def assert_problem(res, status, code=None):
    """`res` is an application/problem+json error with the documented fields."""
    assert res.status == status, res
    ctype = res.headers.get("Content-Type") or res.headers.get("content-type")
    assert ctype == "application/problem+json", res
    body = res.body
    assert set(body) >= {"type", "title", "status", "detail", "code"}, body
    assert body["status"] == status, body
    assert isinstance(body["detail"], str) and body["detail"], body
    assert isinstance(body["title"], str) and body["title"], body
    if code is not None:
        assert body["code"] == code, body
        assert body["type"].endswith(code), body
    return body
