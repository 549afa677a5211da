"""Fixtures of the end-to-end suite: real tessera processes on loopback port 0 with fresh data
directories. Run with `/usr/bin/python3 -m pytest tests/e2e -q`; TESSERA_BIN picks the binary
(default: build/tessera)."""
import os

import pytest

from harness import BINARY, Server


def pytest_configure(config):
    if not os.access(BINARY, os.X_OK):
        raise pytest.UsageError(f"no tessera binary at {BINARY} (set TESSERA_BIN)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's report ends with the last lines each of its servers logged."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for n, srv in enumerate(getattr(item, "tessera_servers", [])):
            tail = "\n".join(srv.stderr().splitlines()[-40:])
            report.sections.append((f"tessera server {n} (port {srv.port}) log tail", tail))


@pytest.fixture
def server(tmp_path, request):
    """Factory: `server(*extra_args, env={}, listen="127.0.0.1:0", data_dir=None)` starts a
    tessera and returns a started harness.Server. Each one gets a fresh data dir unless
    `data_dir` is given. At the end of the test every server still running must stop cleanly
    on SIGTERM; a server that died by itself fails the test."""
    started = []
    request.node.tessera_servers = started

    def start(*args, env=None, listen="127.0.0.1:0", data_dir=None):
        data_dir = data_dir or tmp_path / f"data{len(started)}"
        srv = Server(data_dir, args, env=env, listen=listen)
        started.append(srv)
        return srv.start()

    yield start

    problems = []
    for srv in started:
        if srv.proc is None:
            continue
        if srv.running:
            try:
                srv.stop()
            except AssertionError as e:
                problems.append(str(e))
        elif srv.proc.returncode not in (0, -9):
            problems.append(f"tessera exited with {srv.proc.returncode} during the test; "
                            f"stderr:\n{srv.stderr()}")
    assert not problems, "\n".join(problems)
