"""The Python/Jinja2 sandbox end to end: dry runs and checks over HTTP, hostile handlers and the
confinement that must hold against them, worker restarts, the call queue, metrics, auth.

Most tests share one server with a single worker (`sandbox` fixture), so "the next call
succeeds" after a hostile handler is a call on the very worker slot the handler ran on. Tests
that kill, stop or starve workers, or need other settings, start their own server."""
import os
import signal
import subprocess
import threading
import time
from collections import namedtuple

import pytest

from harness import Server, assert_problem, wait_idle, wait_until

RUN = "/api/sandbox/run"
CHECK = "/api/sandbox/check"
STATUS = "/api/sandbox"
TOKEN = "e2e-Sandbox-Token-5d1e8b"
SHARED_LOG_LIMIT = 4096

# Reaches the real `posix` and `builtins` modules past the import allowlist and trimmed builtins.
# The allowlist is a convenience, not the boundary: the tests below that use this prelude check
# that the kernel confinement (namespaces, uid, seccomp, read-only mounts) holds regardless.
ESCAPE = (
    "imp = [c for c in ().__class__.__base__.__subclasses__()"
    " if c.__name__ == 'BuiltinImporter'][0]\n"
    "posix = imp.load_module('posix')\n"
    "real_builtins = imp.load_module('builtins')\n"
)

OS_ERRORS = {c.__name__ for c in (OSError, *OSError.__subclasses__())}


# --- helpers ---------------------------------------------------------------------------------

def on_action(body, prelude=""):
    """Handler source: `prelude` at module level, then `body` as the body of on_action."""
    indented = "".join("    " + line + "\n" for line in body.splitlines())
    return prelude + "def on_action(action, payload, storage):\n" + indented


def action(handler, **fields):
    body = {"kind": "action", "handler": handler, "action": "go", "storage": {"c": {"n": 1}}}
    body.update(fields)
    return body


# The modes every hostile and leak case runs under: a fresh process per call (sandbox.reuse =
# "call", and any call without a key), and a warm process reused by one key's calls.
REUSE_MODES = [pytest.param(None, id="fresh-process"), pytest.param("hostile", id="warm-process")]


def warm(body, reuse):
    """`body` under warm key `reuse` (None: a fresh process per call)."""
    return dict(body, reuse=reuse) if reuse else body


def warm_up(srv, reuse, **extra):
    """Leaves a warm process for `reuse` (and `extra` limits) that has served a call, so the
    next call with the same key and limits reuses it."""
    if reuse:
        first = run(srv, warm(action(on_action("pass"), **extra), reuse))
        second = run(srv, warm(action(on_action("pass"), **extra), reuse))
        assert second.status == 200 and second.body["warm"]["reused"] is True, (first, second)
        assert second.body["warm"]["kept"] is True, second
        # The server now calls the process directly (it was lent), so the hostile and leaking
        # calls below run on the path without the zygote's relay.
        assert second.body["warm"]["lent"] is True, second


def run(srv, body, headers=None):
    return srv.request("POST", RUN, body, headers)


def check(srv, body, headers=None):
    return srv.request("POST", CHECK, body, headers)


def status(srv, headers=None):
    res = srv.request("GET", STATUS, None, headers)
    assert res.status == 200, res
    return res.body


def calls(srv, result, kind="action"):
    return srv.metric("tessera_sandbox_calls_total", kind=kind, result=result)


def restarts_total(srv):
    """{reason: count} of tessera_sandbox_worker_restarts_total."""
    return {dict(labels)["reason"]: value for (name, labels), value in srv.metrics().items()
            if name == "tessera_sandbox_worker_restarts_total"}


def wait_state(srv, slot, state, timeout=10):
    wait_until(lambda: status(srv)["workers"][slot]["state"] == state, timeout=timeout,
               message=lambda: f"slot {slot} {state} (last: {status(srv)})")


def sandbox_problem(res, status_code, code):
    """A sandbox failure: problem+json whose code is the error kind, with `error` and `logs`."""
    body = assert_problem(res, status_code, code)
    assert "error" in body and "logs" in body, f"problem lacks error/logs members: {body}"
    error = body["error"]
    assert error["kind"] == code, body
    assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str), body
    assert isinstance(body["logs"], list), body
    return body


def assert_frames_are_the_handlers_own(body, handler):
    """Every traceback frame names a line of the handler and quotes that line: nothing of the
    runner, the zygote or the standard library leaks into it."""
    lines = handler.splitlines()
    frames = body["error"].get("traceback", [])
    for frame in frames:
        if frame.get("skipped"):
            continue
        assert 1 <= frame["line"] <= len(lines), frame
        assert frame["code"] == lines[frame["line"] - 1].strip(), (frame, handler)
        assert frame["function"] and isinstance(frame["function"], str), frame


def tree(root):
    """`root` and all its descendants (host pids), by walking /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, i = [root], 0
    while i < len(found):
        found += children.get(found[i], [])
        i += 1
    return found


def gone(pid):
    """The process no longer exists (or is a zombie nobody will run again)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def slot_restarts(srv):
    return [w["restarts"] for w in status(srv)["workers"]]


def assert_serves_next_call(srv, restarts_before=None, reuse=None, **extra):
    """The next ordinary call succeeds (on the same slot, for one-worker servers), the slot was
    not restarted, and the storage API still answers. With `reuse`, the call has that warm key
    (and `extra` limits) and must have run in a fresh process: the one that ran the hostile call
    was discarded."""
    res = run(srv, warm(action(on_action("storage['c']['n'] += 1\nprint('after')"), **extra),
                        reuse))
    assert res.status == 200, res
    if reuse:
        assert res.body["warm"]["reused"] is False, res
    assert res.body["ok"] is True and res.body["changed"] == {"c": {"n": 2}}, res
    assert [line["message"] for line in res.body["logs"]] == ["after"], res
    if restarts_before is not None:
        assert slot_restarts(srv) == restarts_before, \
            "a worker slot was restarted: the hostile call reached beyond its call process"
    listing = srv.request("GET", "/api/storages")
    assert listing.status == 200, listing


# --- the shared server -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """One tessera with one sandbox worker, for the tests that leave workers as they found them.
    It must stop cleanly at the end."""
    data_dir = tmp_path_factory.mktemp("sandbox") / "data"
    srv = Server(data_dir, ["--set", "sandbox.workers=1",
                            "--set", f"sandbox.max_log_bytes={SHARED_LOG_LIMIT}"]).start()
    try:
        wait_idle(srv)
        yield srv
    finally:
        if srv.running:
            srv.stop()
        else:
            srv.kill9()
            pytest.fail(f"the shared tessera died with {srv.proc.returncode}; "
                        f"stderr:\n{srv.stderr()}")


# --- dry runs that work ----------------------------------------------------------------------

def test_an_action_changes_storage_in_place_and_only_changed_storages_come_back(sandbox):
    handler = on_action("storage['c']['n'] += payload['by']\nstorage['c']['last'] = action")
    res = run(sandbox, action(handler, action="bump", payload={"by": 41},
                              storage={"c": {"n": 1}, "untouched": {"x": [1, 2]}}))
    assert res.status == 200, res
    assert res.headers["Content-Type"] == "application/json"
    assert res.body["ok"] is True
    assert res.body["changed"] == {"c": {"n": 42, "last": "bump"}}
    assert res.body["logs"] == []
    assert isinstance(res.body["duration_ms"], (int, float)) and res.body["duration_ms"] >= 0
    assert "html" not in res.body


def test_a_dry_run_commits_nothing_to_the_real_storage(sandbox):
    created = sandbox.request("POST", "/api/storages", {"id": "dry", "data": {"n": 1}})
    assert created.status == 201, created
    res = run(sandbox, action(on_action("storage['dry']['n'] = 99"), storage={"dry": {"n": 1}}))
    assert res.status == 200 and res.body["changed"] == {"dry": {"n": 99}}, res
    after = sandbox.request("GET", "/api/storages/dry")
    assert after.status == 200 and after.body["data"] == {"n": 1}, after
    assert after.body["version"] == 1, after


@pytest.mark.parametrize("kind,hook", [("schedule", "on_schedule"), ("init", "on_init")])
def test_schedule_and_init_hooks_get_the_storage_dict_to_change(sandbox, kind, hook):
    handler = f"def {hook}(storage):\n    storage['c']['ran'] = '{kind}'\n"
    res = run(sandbox, {"kind": kind, "handler": handler, "storage": {"c": {}, "d": {"a": 1}}})
    assert res.status == 200, res
    assert res.body["ok"] is True and res.body["changed"] == {"c": {"ran": kind}}, res


def test_init_without_on_init_succeeds_and_changes_nothing(sandbox):
    res = run(sandbox, {"kind": "init", "handler": "def on_action(a, p, s):\n    pass\n",
                        "storage": {"c": {"n": 1}}})
    assert res.status == 200, res
    assert res.body["ok"] is True and res.body["changed"] == {}, res


def test_preloaded_names_and_allowlisted_modules_are_usable(sandbox):
    handler = on_action(
        "import math, random, re, statistics, collections, itertools, functools, string\n"
        "import textwrap, uuid, hashlib, base64, decimal, fractions, html, urllib.parse\n"
        "out = storage['c']\n"
        "out['time'] = isinstance(time.time(), float)\n"
        "out['json'] = json.loads(json.dumps({'a': [1]}))\n"
        "out['dt'] = (datetime(2024, 1, 2) + timedelta(days=1)).isoformat()\n"
        "out['date'] = date(2024, 1, 2).isoformat()\n"
        "out['math'] = math.sqrt(16)\n"
        "out['re'] = re.sub('b+', '-', 'abbbc')\n"
        "out['stats'] = statistics.mean([1, 2, 3])\n"
        "out['counter'] = collections.Counter('aab')['a']\n"
        "out['sha'] = hashlib.sha256(b'x').hexdigest()[:8]\n"
        "out['b64'] = base64.b64encode(b'hi').decode()\n"
        "out['dec'] = str(decimal.Decimal('1.10') + decimal.Decimal('2.2'))\n"
        "out['frac'] = str(fractions.Fraction(1, 3) * 3)\n"
        "out['html'] = html.escape('<a>')\n"
        "out['url'] = urllib.parse.quote('a b')\n"
        "out['uuid'] = len(str(uuid.uuid4()))\n"
        "out['misc'] = [random.randint(1, 1), string.digits[:2],\n"
        "               textwrap.shorten('a b c d e f', 7),\n"
        "               list(itertools.islice(itertools.count(), 2)),\n"
        "               functools.reduce(lambda x, y: x + y, [1, 2])]\n")
    res = run(sandbox, action(handler, storage={"c": {}}))
    assert res.status == 200, res
    assert res.body["changed"]["c"] == {
        "time": True, "json": {"a": [1]}, "dt": "2024-01-03T00:00:00", "date": "2024-01-02",
        "math": 4.0, "re": "a-c", "stats": 2, "counter": 2, "sha": "2d711642",
        "b64": "aGk=", "dec": "3.30", "frac": "1", "html": "&lt;a&gt;", "url": "a%20b",
        "uuid": 36, "misc": [1, "01", "a [...]", [0, 1], 3]}, res


def test_print_and_logging_become_log_lines_with_level_and_source(sandbox):
    handler = on_action("import logging\nprint('hello', 42)\nlogging.info('info line')\n"
                        "logging.warning('careful')")
    res = run(sandbox, action(handler))
    assert res.status == 200, res
    logs = res.body["logs"]
    assert [(l["level"], l["source"], l["message"]) for l in logs] == [
        ("INFO", "print", "hello 42"), ("INFO", "logging", "info line"),
        ("WARNING", "logging", "careful")], logs
    for line in logs:
        assert set(line) == {"level", "time", "message", "source"}, line
        assert line["time"].endswith("Z") and "T" in line["time"], line


def test_a_log_flood_is_cut_at_max_log_bytes_with_a_final_warning_and_the_call_succeeds(sandbox):
    res = run(sandbox, action(on_action(
        "for i in range(20000):\n    print('x' * 100)\nstorage['c']['done'] = True")))
    assert res.status == 200, res
    assert res.body["changed"] == {"c": {"n": 1, "done": True}}, res
    logs = res.body["logs"]
    kept = logs[:-1]
    assert kept and all(l["message"] == "x" * 100 and l["source"] == "print" for l in kept)
    assert sum(len(l["message"]) for l in kept) <= SHARED_LOG_LIMIT, len(kept)
    last = logs[-1]
    assert last["level"] == "WARNING" and last["source"] == "sandbox", last
    assert last["message"].startswith("log output truncated: ") and "more bytes dropped" in \
        last["message"], last


# --- templates --------------------------------------------------------------------------------

def test_an_action_with_a_template_renders_the_changed_storage_with_autoescape(sandbox):
    res = run(sandbox, action(
        on_action("storage['c']['n'] = '<b>two</b>'"),
        template="{{ c.n }}|{{ storage['my-store'].v }}|{{ panel.title }}",
        storage={"c": {"n": 1}, "my-store": {"v": "&"}}, panel={"title": "<i>"}))
    assert res.status == 200, res
    assert res.body["html"] == "&lt;b&gt;two&lt;/b&gt;|&amp;|&lt;i&gt;", res
    assert res.body["changed"] == {"c": {"n": "<b>two</b>"}}, res


def test_render_kind_renders_a_template_against_storage_and_panel(sandbox):
    res = run(sandbox, {"kind": "render", "template": "{% for k in c.rows %}{{ k }};{% endfor %}"
                        "{{ panel.n * 2 }}", "storage": {"c": {"rows": [1, "<x>"]}},
                        "panel": {"n": 21}})
    assert res.status == 200, res
    assert res.body["ok"] is True and res.body["html"] == "1;&lt;x&gt;;42", res


@pytest.mark.parametrize("template,error_type,line", [
    pytest.param("a\nb\n{{ foo.bar }}", "UndefinedError", 3, id="undefined"),
    pytest.param("{{ ''.__class__ }}", "SecurityError", 1, id="dunder_attribute"),
    pytest.param("{{ ''.__class__.__mro__ }}", "SecurityError", 1, id="dunder_chain"),
])
def test_a_failing_template_is_a_template_error_with_its_line(sandbox, template, error_type, line):
    count = calls(sandbox, "template_error", kind="render")
    res = run(sandbox, {"kind": "render", "template": template, "storage": {"c": {}}})
    body = sandbox_problem(res, 422, "template_error")
    assert body["error"]["type"].endswith(error_type), body
    assert body["error"]["line"] == line, body
    assert calls(sandbox, "template_error", kind="render") == count + 1
    assert_serves_next_call(sandbox)


@pytest.mark.parametrize("template,error_type", [
    pytest.param("{{ foo.bar }}", "UndefinedError", id="undefined"),
    pytest.param("{{ ''.__class__ }}", "SecurityError", id="dunder_attribute"),
])
def test_a_template_failing_after_a_good_handler_comes_back_as_render_error(
        sandbox, template, error_type):
    res = run(sandbox, action(on_action("storage['c']['n'] = 5"), template=template))
    assert res.status == 200, res
    assert res.body["ok"] is True and res.body["changed"] == {"c": {"n": 5}}, res
    assert "html" not in res.body, res
    error = res.body.get("render_error")
    assert error and error["kind"] == "template_error", res
    assert error["type"].endswith(error_type) and error["line"] == 1, res


def test_rendered_html_over_the_output_limit_is_refused(sandbox):
    count = calls(sandbox, "output_limit", kind="render")
    res = run(sandbox, {"kind": "render", "template": "{{ 'x' * 2000000 }}"})
    body = sandbox_problem(res, 422, "output_limit")
    assert "1048576" in body["error"]["message"], body
    assert calls(sandbox, "output_limit", kind="render") == count + 1


# --- requests the server refuses before any sandbox work ------------------------------------

BASE = {"kind": "action", "handler": on_action("pass"), "action": "go"}


@pytest.mark.parametrize("body", [
    pytest.param({**BASE, "bogus": 1}, id="unknown_field"),
    pytest.param({**BASE, "kind": "check"}, id="kind_check"),
    pytest.param({**BASE, "kind": "nope"}, id="kind_unknown"),
    pytest.param({k: v for k, v in BASE.items() if k != "kind"}, id="kind_missing"),
    pytest.param({**BASE, "handler": 1}, id="handler_not_string"),
    pytest.param({**BASE, "template": ["x"]}, id="template_not_string"),
    pytest.param({**BASE, "action": 7}, id="action_not_string"),
    pytest.param({**BASE, "storage": {"c": 1}}, id="storage_entry_not_object"),
    pytest.param({**BASE, "storage": {"c": [1]}}, id="storage_entry_array"),
    pytest.param({**BASE, "storage": [{}]}, id="storage_not_object"),
    pytest.param({**BASE, "timeout_ms": 30001}, id="timeout_over_max"),
    pytest.param({**BASE, "timeout_ms": 0}, id="timeout_zero"),
    pytest.param({**BASE, "timeout_ms": -5}, id="timeout_negative"),
    pytest.param({**BASE, "timeout_ms": "100"}, id="timeout_string"),
    pytest.param({**BASE, "timeout_ms": 1.5}, id="timeout_fraction"),
    pytest.param({**BASE, "memory_mb": 1025}, id="memory_over_max"),
    pytest.param({**BASE, "memory_mb": 0}, id="memory_zero"),
    pytest.param([BASE], id="body_not_object"),
])
def test_a_malformed_run_request_is_400_invalid_argument(sandbox, body):
    calls_before = status(sandbox)["workers"][0]["calls"]
    assert_problem(run(sandbox, body), 400, "invalid_argument")
    assert status(sandbox)["workers"][0]["calls"] == calls_before, "it reached a worker"


def test_the_largest_allowed_limits_are_accepted(sandbox):
    res = run(sandbox, {**BASE, "timeout_ms": 30000, "memory_mb": 1024})
    assert res.status == 200, res


# --- hostile handlers --------------------------------------------------------------------------

# `creates`: a host path the handler tries to create (@NAME@ made unique per run); if it turns up
# on the host the confinement failed, and the test removes it.
Hostile = namedtuple("Hostile", "handler code type message extra creates",
                     defaults=(None, None, {}, None))

HOSTILE = {
    "zero_division": Hostile(on_action("x = 1\nreturn x / 0"), "handler_error",
                             "ZeroDivisionError", "division by zero"),
    "endless_loop": Hostile(on_action("while True:\n    pass"), "timeout", None, "500 ms",
                            {"timeout_ms": 500}),
    "memory_hog": Hostile(on_action("hog = []\nwhile True:\n    hog.append('x' * 10**6)"),
                          "memory_limit", None, "256 MiB"),
    "deep_recursion": Hostile(on_action("def down(n):\n    return down(n + 1)\nreturn down(0)"),
                              "handler_error", "RecursionError", "recursion"),
    "set_in_storage": Hostile(on_action("storage['c']['x'] = {1, 2}"), "invalid_result", None,
                              "storage['c']['x'] (a set) cannot be stored as JSON"),
    "nan_in_storage": Hostile(on_action("storage['c']['x'] = float('nan')"), "invalid_result",
                              None, "storage['c']['x']"),
    "unbound_storage_added": Hostile(on_action("storage['intruder'] = {'a': 1}"),
                                     "invalid_result", None, "intruder"),
    "bound_storage_deleted": Hostile(on_action("del storage['c']"), "invalid_result", None,
                                     "'c'"),
    "storage_replaced_by_a_list": Hostile(on_action("storage['c'] = [1]"), "invalid_result"),
    "lone_surrogate": Hostile(on_action("storage['c']['x'] = '\\ud800'"), "invalid_result",
                              None, "surrogate"),
    "output_flood": Hostile(on_action("storage['c']['big'] = 'x' * 2000000"), "output_limit",
                            None, "1048576"),
    "system_exit": Hostile(on_action("raise SystemExit(3)"), "handler_error", "SystemExit",
                           "3"),
    "keyboard_interrupt": Hostile(on_action("raise KeyboardInterrupt('ctrl-c')"),
                                  "handler_error", "KeyboardInterrupt", "ctrl-c"),
    "custom_base_exception": Hostile(
        on_action("raise Boom('boom')", prelude="class Boom(BaseException):\n    pass\n"),
        "handler_error", "Boom", "boom"),
    **{f"import_{name}": Hostile(on_action(f"import {name}"), "handler_error", "ImportError",
                                 f"import of '{name}' is not allowed in a handler; "
                                 "allowed modules: ")
       for name in ("os", "sys", "subprocess", "socket", "ctypes")},
    "dunder_import_os": Hostile(on_action("__import__('os')"), "handler_error", "ImportError",
                                "import of 'os' is not allowed"),
    # Past the allowlist: the kernel confinement must hold.
    "escaped_fork": Hostile(on_action("posix.fork()", ESCAPE), "handler_error",
                            "PermissionError"),
    "escaped_kill_parent": Hostile(on_action("posix.kill(posix.getppid(), 9)", ESCAPE),
                                   "handler_error", "PermissionError"),
    "escaped_kill_server": Hostile(on_action("posix.kill(@SERVER_PID@, 9)", ESCAPE),
                                   "handler_error", "PermissionError"),
    "escaped_exec": Hostile(on_action("posix.execv('/usr/bin/python3', ['python3', '-c', '1'])",
                                      ESCAPE), "handler_error", "PermissionError"),
    "escaped_socket_to_server": Hostile(on_action(
        "socket = real_builtins.__import__('socket')\n"
        "conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
        "conn.connect(('127.0.0.1', @PORT@))", ESCAPE), "handler_error", "PermissionError"),
    "escaped_ctypes_null_read": Hostile(on_action(
        "ctypes = real_builtins.__import__('ctypes')\nctypes.string_at(0)", ESCAPE),
        "crashed", None, "SIGSEGV"),
    "escaped_hard_exit": Hostile(on_action("posix._exit(7)", ESCAPE), "crashed", None, "7"),
    "escaped_read_of_the_data_dir": Hostile(on_action(
        "open('@DATA_DIR@/CURRENT').read()", ESCAPE), "handler_error", "FileNotFoundError"),
    "escaped_read_of_server_environ": Hostile(on_action(
        "open('/proc/@SERVER_PID@/environ').read()", ESCAPE), "handler_error", OS_ERRORS),
    **{f"escaped_write_to_{where.strip('/').replace('/', '_') or 'root'}": Hostile(
        on_action(f"open('{where}@NAME@', 'w').write('pwned')", ESCAPE), "handler_error",
        OS_ERRORS, creates=where + "@NAME@")
       for where in ("/usr/", "/etc/", "/", "/usr/lib/")},
}


@pytest.mark.parametrize("reuse", REUSE_MODES)
@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_handler_fails_alone_is_counted_and_the_slot_serves_the_next_call(
        sandbox, name, reuse):
    case = HOSTILE[name]
    unique = f"tessera-e2e-escape-{os.getpid()}-{name}"
    handler = (case.handler.replace("@PORT@", str(sandbox.port))
               .replace("@SERVER_PID@", str(sandbox.pid))
               .replace("@DATA_DIR@", str(sandbox.data_dir.resolve()))
               .replace("@NAME@", unique))
    if "@DATA_DIR@" in case.handler:
        assert (sandbox.data_dir / "CURRENT").is_file(), "the file to read exists on the host"
    limits = {k: v for k, v in case.extra.items() if k in ("timeout_ms", "memory_mb")}
    warm_up(sandbox, reuse, **limits)
    restarts = slot_restarts(sandbox)
    count = calls(sandbox, case.code)
    started = time.monotonic()
    res = run(sandbox, warm(action(handler, **case.extra), reuse))
    elapsed = time.monotonic() - started
    if case.creates:
        created = case.creates.replace("@NAME@", unique)
        if os.path.lexists(created):
            os.remove(created)
            pytest.fail(f"the handler created {created} on the host")
    # First what confinement is about: this call failed, it was counted, nothing else broke.
    assert res.status == 422 and res.body.get("code") == case.code, res
    if case.code == "timeout":
        assert 0.5 <= elapsed < 3.5, elapsed
    assert calls(sandbox, case.code) == count + 1
    assert sandbox.running, f"tessera died; stderr:\n{sandbox.stderr()}"
    assert_serves_next_call(sandbox, restarts, reuse, **limits)
    # Then the report the caller gets.
    body = sandbox_problem(res, 422, case.code)
    error = body["error"]
    if isinstance(case.type, set):
        assert error["type"] in case.type, body
    elif case.type:
        assert error["type"].split(".")[-1] == case.type, body
    if case.message:
        assert case.message in error["message"], body
        assert body["detail"] == error["message"], body
    if case.code == "handler_error":
        assert error.get("traceback"), body
        assert_frames_are_the_handlers_own(body, handler)


def test_an_exception_without_a_message_still_gets_a_non_empty_detail(sandbox):
    # `sys.exit()` as a handler can write it: SystemExit with no argument, so no message.
    res = run(sandbox, action(on_action("raise SystemExit")))
    body = sandbox_problem(res, 422, "handler_error")
    assert body["error"]["type"] == "SystemExit", body


def test_a_handler_error_points_at_the_handlers_line_and_code(sandbox):
    handler = on_action("x = 1\ny = 0\nreturn x / y")
    body = sandbox_problem(run(sandbox, action(handler)), 422, "handler_error")
    assert body["error"]["line"] == 4, body
    assert body["error"]["traceback"] == [
        {"line": 4, "function": "on_action", "code": "return x / y"}], body


def test_logs_printed_before_a_failure_come_back_with_the_problem(sandbox):
    handler = on_action("print('step 1')\nraise ValueError('no')")
    body = sandbox_problem(run(sandbox, action(handler)), 422, "handler_error")
    assert [l["message"] for l in body["logs"]] == ["step 1"], body
    assert body["error"]["type"] == "ValueError" and body["error"]["message"] == "no", body


def test_the_escape_used_by_the_confinement_tests_really_reaches_real_modules(sandbox):
    # Guards the tests above against passing vacuously: the prelude gets posix and ctypes.
    res = run(sandbox, action(on_action(
        "ctypes = real_builtins.__import__('ctypes')\n"
        "print(posix.getpid() > 0, ctypes.__name__, posix.getcwd())", ESCAPE)))
    assert res.status == 200, res
    assert res.body["logs"][0]["message"].startswith("True ctypes /"), res


def test_a_handler_runs_as_an_unprivileged_uid_with_a_clean_environment(sandbox):
    res = run(sandbox, action(on_action(
        "print(posix.getuid(), posix.geteuid())\nprint(sorted(posix.environ))", ESCAPE)))
    assert res.status == 200, res
    uid_line, env_line = (l["message"] for l in res.body["logs"])
    assert "0" not in uid_line.split(), uid_line
    assert "TESSERA" not in env_line, env_line


def test_files_written_in_the_working_dir_last_only_for_the_call(sandbox):
    first = run(sandbox, action(on_action(
        "with open('note.txt', 'w') as f:\n    f.write('kept?')\n"
        "print(open('note.txt').read(), posix.listdir('.'))", ESCAPE)))
    assert first.status == 200, first
    assert first.body["logs"][0]["message"] == "kept? ['note.txt']", first
    second = run(sandbox, action(on_action("print(posix.listdir('.'))", ESCAPE)))
    assert second.status == 200, second
    assert second.body["logs"][0]["message"] == "[]", second
    third = run(sandbox, action(on_action("open('note.txt').read()")))
    body = sandbox_problem(third, 422, "handler_error")
    assert body["error"]["type"] == "FileNotFoundError", body


def test_a_handler_that_breaks_json_still_gets_a_complete_answer(sandbox):
    # The runner encodes the answer after the handler ran; a handler replacing json.dumps must
    # not turn its own answer into something without the documented members.
    res = run(sandbox, action(on_action("print('before')\njson.dumps = None")))
    if res.status == 200:
        assert [l["message"] for l in res.body["logs"]] == ["before"], res
    else:
        body = sandbox_problem(res, 422, res.body.get("code"))
        assert [l["message"] for l in body["logs"]] == ["before"], body
    assert_serves_next_call(sandbox)


# Prints how many of descriptors 0-255 are open.
OPEN_DESCRIPTORS = ("n = 0\nfor fd in range(256):\n    try:\n        posix.fstat(fd)\n"
                    "        n += 1\n    except OSError:\n        pass\nprint(n)")


LEAKS = {
    "json_dumps_replaced": ("json.dumps = None", "print(json.dumps({'a': 1}))", '{"a": 1}'),
    "builtins_dict_changed": (
        "__builtins__['len'] = None", "print(len('abc'))", "3"),
    "real_builtins_module_changed": (
        ESCAPE + "real_builtins.len = None\nreal_builtins.sorted = None",
        "print(len('abc'), sorted([2, 1]))", "3 [1, 2]"),
    "module_attribute_changed": (
        "import math\nmath.pi = 3\nmath.sqrt = None", "import math\nprint(math.pi, math.sqrt(4))",
        "3.141592653589793 2.0"),
    "sys_modules_poisoned": (
        ESCAPE + "sys = imp.load_module('sys')\nsys.modules['math'] = None\n"
                 "sys.modules['json'] = None",
        "import math\nprint(math.floor(2.5), json.dumps(1))", "2 1"),
    "global_set": ("global LEAKED\nLEAKED = 'yes'", "print(globals().get('LEAKED', 'clean'))",
                   "clean"),
    "time_module_changed": ("time.time = lambda: 0", "print(time.time() > 1e9)", "True"),
    "stdlib_class_attribute_changed": (
        "json.JSONEncoder.item_separator = ';'\njson.JSONDecoder.extra = 1",
        "print(repr(json.JSONEncoder.item_separator), hasattr(json.JSONDecoder, 'extra'))",
        "', ' False"),
    "sys_hooks_set": (
        ESCAPE + "sys = imp.load_module('sys')\nsys.excepthook = None\nsys.displayhook = None\n"
                 "sys.settrace(lambda *a: None)\nsys.setrecursionlimit(77)",
        ESCAPE + "sys = imp.load_module('sys')\nprint(sys.excepthook is sys.__excepthook__, "
                 "sys.displayhook is sys.__displayhook__, sys.gettrace(), "
                 "sys.getrecursionlimit() != 77)",
        "True True None True"),
    "signal_handler_set": (
        ESCAPE + "signal = real_builtins.__import__('signal')\n"
                 "signal.signal(signal.SIGUSR1, signal.SIG_IGN)",
        ESCAPE + "signal = real_builtins.__import__('signal')\n"
                 "print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)",
        "True"),
    "working_directory_changed": (
        ESCAPE + "posix.mkdir('elsewhere')\nposix.chdir('elsewhere')",
        ESCAPE + "print(posix.getcwd().endswith('elsewhere'), posix.listdir('.'))",
        "False []"),
    "environment_changed": (
        ESCAPE + "os = real_builtins.__import__('os')\nos.environ['LEAK'] = '1'",
        ESCAPE + "os = real_builtins.__import__('os')\nprint(os.environ.get('LEAK', 'clean'))",
        "clean"),
    "c_environment_changed": (
        ESCAPE + "posix.putenv(b'LEAK', b'1')",
        ESCAPE + "ctypes = real_builtins.__import__('ctypes')\nlibc = ctypes.CDLL(None)\n"
                 "libc.getenv.restype = ctypes.c_char_p\nprint(libc.getenv(b'LEAK'))",
        "None"),
    "file_left_in_scratch": (
        "open('left.txt', 'w').write('x')",
        "try:\n    open('left.txt')\n    print('found')\nexcept FileNotFoundError:\n"
        "    print('clean')", "clean"),
    "descriptor_left_open": (
        ESCAPE + "posix.dup(0)\nposix.dup(0)",
        ESCAPE + OPEN_DESCRIPTORS, None),
}


def fd_probe(srv, reuse):
    """How many descriptors a fresh call has open (a fresh warm process has two more than a
    process for one call: its own /proc/self files; nothing of the zygote's)."""
    res = run(srv, warm(action(on_action(LEAKS["descriptor_left_open"][1])), reuse))
    assert res.status == 200, res
    return res.body["logs"][0]["message"]


@pytest.mark.parametrize("reuse", [None, "fd-count"])
def test_a_call_process_holds_no_descriptor_of_other_warm_processes(server, reuse):
    """A call process is forked from the zygote, which holds the pipes of every warm process:
    the call keeps none of them, so no handler can talk to another panel's process."""
    srv = server("--set", "sandbox.workers=1")
    wait_idle(srv)
    before = fd_probe(srv, reuse and reuse + "-0")
    for k in range(1, 6):  # five more warm processes in the zygote's pool
        assert run(srv, warm(action(on_action("pass")), "other-%d" % k)).status == 200
    assert len(status(srv)["warm"]) >= 5
    assert fd_probe(srv, reuse and reuse + "-9") == before


@pytest.mark.parametrize("reuse", REUSE_MODES)
@pytest.mark.parametrize("name", LEAKS)
def test_state_a_handler_changes_does_not_reach_the_next_call(sandbox, name, reuse):
    sabotage, probe, expected = LEAKS[name]
    if expected is None:
        expected = fd_probe(sandbox, reuse)
    warm_up(sandbox, reuse)
    # The sabotage runs at module level of the handler source (before on_action), in the warm
    # process when there is one.
    first = run(sandbox, warm(action(sabotage + "\n" + on_action("pass")), reuse))
    second = run(sandbox, warm(action(on_action(probe)), reuse))
    assert second.status == 200, (first, second)
    assert [l["message"] for l in second.body["logs"]] == [expected], second
    assert first.status in (200, 422), first
    if reuse and first.status == 200:
        assert first.body["warm"]["reused"] is True, first
        # Only a call whose changes died with its own namespace may leave its process warm.
        assert first.body["warm"]["kept"] is (name in ("global_set", "file_left_in_scratch")), \
            first
        if not first.body["warm"]["kept"]:
            assert first.body["warm"]["discarded"], first
            assert second.body["warm"]["reused"] is False, second


@pytest.mark.parametrize("code", [
    pytest.param({"template": "<p>{{ storage['c'].n ~ 'x' }}</p>"}, id="template_string_literal"),
    pytest.param({"handler": on_action("storage['c']['s'] = b'\\xe9t\\xe9'.decode('latin-1')")},
                 id="handler_decodes_latin_1"),
    pytest.param({"handler": on_action("storage['c']['s'] = 'x'.encode('utf-16').hex()")},
                 id="handler_encodes_utf_16"),
])
def test_a_first_call_of_new_code_keeps_its_warm_process(sandbox, code):
    """Ordinary code never loads a module lazily (the zygote preloads codecs), so the first
    call of a panel that was never seen before leaves its process warm."""
    body = dict(action(on_action("pass")), **code)
    key = "first-" + str(sorted(code.items()))[:100]
    first = run(sandbox, warm(body, key))
    second = run(sandbox, warm(body, key))
    assert first.status == 200 and first.body["warm"]["kept"] is True, first
    assert second.body["warm"]["reused"] is True, second


def test_a_warm_process_compiles_its_code_once(sandbox):
    """New code is compiled by the first call only: the warm process keeps it for its later
    calls, and a fresh process for the same code gets it compiled from the zygote."""
    code = {"handler": on_action("storage['c']['n'] += 1"), "template": "<i>{{ c.n }} once</i>"}
    body = warm(action(code["handler"], template=code["template"]), "compile-once")
    answers = [run(sandbox, body) for _ in range(4)]
    assert [a.status for a in answers] == [200] * 4, answers
    assert [a.body["warm"]["reused"] for a in answers] == [False, True, True, True], answers
    assert [a.body["process"]["compiled"] for a in answers] == [True, False, False, False], \
        answers
    assert [a.body["html"] for a in answers] == ["<i>2 once</i>"] * 4, answers
    fresh = run(sandbox, action(code["handler"], template=code["template"]))
    assert fresh.status == 200 and fresh.body["process"]["compiled"] is False, fresh
    changed = run(sandbox, warm(action(on_action("storage['c']['n'] += 2"),
                                       template=code["template"]), "compile-once"))
    assert changed.status == 200 and changed.body["process"]["compiled"] is True, changed
    assert changed.body["html"] == "<i>3 once</i>", changed


def zygote_pids(srv):
    """Host pids of the zygotes (the outermost tessera-sandbox of each worker)."""
    parent, comm = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            parent[int(entry)] = int(stat[stat.rindex(")") + 2:].split()[1])
            comm[int(entry)] = name

    def under_server(pid):
        while pid > 1:
            if pid == srv.pid:
                return True
            pid = parent.get(pid, 0)
        return False
    return [p for p, name in comm.items() if name == "tessera-sandbox" and under_server(p)
            and comm.get(parent.get(p)) != "tessera-sandbox"]


def test_a_lent_warm_process_serves_its_key_while_the_zygote_is_stopped(server):
    """Once a key's process stays warm, the zygote lends it to the server: its later calls go to
    it directly, so they are answered even while the zygote cannot run at all."""
    srv = server("--set", "sandbox.workers=1")
    wait_idle(srv)
    body = warm(action(on_action("storage['c']['n'] += 1"), timeout_ms=1500), "direct")
    first = run(srv, body)
    assert first.status == 200 and first.body["warm"]["lent"] is True, first
    (zygote,) = zygote_pids(srv)
    os.kill(zygote, signal.SIGSTOP)
    try:
        answers = [run(srv, body) for _ in range(3)]
    finally:
        os.kill(zygote, signal.SIGCONT)
    assert [a.status for a in answers] == [200] * 3, answers
    assert [a.body["changed"] for a in answers] == [{"c": {"n": 2}}] * 3, answers
    assert [a.body["warm"]["calls"] for a in answers] == [2, 3, 4], answers
    assert {a.body["warm"]["pid"] for a in answers} == {first.body["warm"]["pid"]}, answers
    assert all(a.body["warm"]["lent"] for a in answers), answers
    (listed,) = [w for w in status(srv)["warm"] if w["key"] == "api:direct"]
    assert listed["calls"] == 4 and listed["pid"] == first.body["warm"]["pid"], listed


def test_a_lent_process_that_closes_its_pipes_and_spins_times_out_without_a_worker_restart(
        sandbox):
    """A handler in a lent process that closes its answer pipe and keeps running gives the
    server an end of file long before its deadline: the process still gets the rest of its
    time, then is killed and reported as a timeout, and the worker is not replaced."""
    limits = {"timeout_ms": 6500}
    warm_up(sandbox, "spinner", **limits)
    restarts = slot_restarts(sandbox)
    spin = on_action("for fd in range(3, 64):\n    try:\n        posix.close(fd)\n"
                     "    except OSError:\n        pass\nwhile True:\n    pass", ESCAPE)
    started = time.monotonic()
    res = run(sandbox, warm(action(spin, **limits), "spinner"))
    elapsed = time.monotonic() - started
    body = sandbox_problem(res, 422, "timeout")
    assert "6500 ms" in body["error"]["message"], body
    assert 6.0 <= elapsed < 9.0, elapsed
    assert_serves_next_call(sandbox, restarts, "spinner", **limits)


def test_warm_processes_beyond_the_bound_are_evicted_least_recently_used_first(server):
    """The bound counts lent processes too, and "least recently used" is their use by the server
    (which calls them directly), not the order in which the zygote lent them."""
    srv = server("--set", "sandbox.workers=1", "--set", "sandbox.warm_processes=2")
    wait_idle(srv)

    def call(key):
        res = run(srv, warm(action(on_action("pass")), key))
        assert res.status == 200, res
        return res.body["warm"]
    call("a"), call("b")  # lent in this order: a, then b
    for _ in range(3):
        assert call("a")["reused"] is True  # a is now the most recently used
    evicted = srv.metric("tessera_sandbox_warm_discarded_total", reason="evicted")
    call("c")  # a third process: one of a and b must go
    assert sorted(w["key"] for w in status(srv)["warm"]) == ["api:a", "api:c"]
    assert srv.metric("tessera_sandbox_warm_discarded_total", reason="evicted") == evicted + 1
    assert call("a")["reused"] is True
    assert call("b")["reused"] is False


# --- POST /api/sandbox/check -----------------------------------------------------------------

@pytest.mark.parametrize("body,checked", [
    pytest.param({"handler": on_action("pass")}, ["handler"], id="handler"),
    pytest.param({"template": "{{ x }}"}, ["template"], id="template"),
    pytest.param({"handler": on_action("pass"), "template": "{% if a %}{{ a }}{% endif %}",
                  "require": "on_action"}, ["handler", "template"], id="both"),
    pytest.param({"handler": "def on_schedule(storage):\n    pass\n", "require": "on_schedule"},
                 ["handler"], id="on_schedule"),
    pytest.param({"handler": "def on_init(storage):\n    pass\n", "require": "on_init"},
                 ["handler"], id="on_init"),
])
def test_check_accepts_code_that_compiles(sandbox, body, checked):
    res = check(sandbox, body)
    assert res.status == 200, res
    assert res.body["ok"] is True and res.body["checked"] == checked, res


@pytest.mark.parametrize("handler", [
    pytest.param("while True:\n    pass\n" + on_action("pass"), id="endless_loop"),
    pytest.param("import os\nos.system('false')\n" + on_action("pass"), id="forbidden_import"),
    pytest.param("raise SystemExit(1)\n" + on_action("pass"), id="system_exit"),
])
def test_check_never_runs_the_code(sandbox, handler):
    started = time.monotonic()
    res = check(sandbox, {"handler": handler, "require": "on_action"})
    assert res.status == 200, res
    assert time.monotonic() - started < 1.5  # well under the 2 s default timeout


@pytest.mark.parametrize("body,source,line", [
    pytest.param({"handler": "x = 1\n\ndef on_action(a, p, s)\n    pass\n"}, "handler", 3,
                 id="handler_missing_colon"),
    pytest.param({"template": "ok\n{{ a }\n"}, "template", 2, id="template_unclosed"),
    pytest.param({"template": "{% if %}"}, "template", 1, id="template_empty_if"),
    pytest.param({"handler": on_action("pass"), "template": "{% for %}"}, "template", 1,
                 id="good_handler_bad_template"),
])
def test_check_reports_a_syntax_error_with_its_source_and_line(sandbox, body, source, line):
    problem = sandbox_problem(check(sandbox, body), 400, "syntax_error")
    assert problem["error"]["source"] == source and problem["error"]["line"] == line, problem


@pytest.mark.parametrize("handler,require,message", [
    pytest.param("x = 1\n", "on_action",
                 "handler does not define on_action(action, payload, storage)",
                 id="no_on_action"),
    pytest.param("x = 1\n", "on_schedule", "handler does not define on_schedule(storage)",
                 id="no_on_schedule"),
    pytest.param("x = 1\n", "on_init", "handler does not define on_init(storage)",
                 id="no_on_init"),
    pytest.param("def on_action(action, payload):\n    pass\n", "on_action",
                 "on_action must take (action, payload, storage)", id="on_action_too_few"),
    pytest.param("def on_action(action, payload, storage, extra):\n    pass\n", "on_action",
                 "on_action must take (action, payload, storage)", id="on_action_too_many"),
    pytest.param("def on_schedule(storage, extra):\n    pass\n", "on_schedule",
                 "on_schedule must take (storage)", id="on_schedule_too_many"),
    pytest.param("def on_init():\n    pass\n", "on_init", "on_init must take (storage)",
                 id="on_init_too_few"),
])
def test_check_refuses_a_handler_without_the_required_function_or_arity(
        sandbox, handler, require, message):
    problem = sandbox_problem(check(sandbox, {"handler": handler, "require": require}), 400,
                              "invalid_handler")
    assert problem["error"]["message"] == message, problem


@pytest.mark.parametrize("handler", [
    pytest.param("def on_action(action, payload, storage, extra=None):\n    pass\n",
                 id="extra_default"),
    pytest.param("def on_action(*args):\n    pass\n", id="varargs"),
])
def test_check_accepts_signatures_callable_with_the_protocols_arguments(sandbox, handler):
    res = check(sandbox, {"handler": handler, "require": "on_action"})
    assert res.status == 200, res


@pytest.mark.parametrize("body", [
    pytest.param({}, id="empty"),
    pytest.param({"handler": on_action("pass"), "bogus": 1}, id="unknown_field"),
    pytest.param({"handler": 5}, id="handler_not_string"),
    pytest.param({"handler": on_action("pass"), "require": "on_everything"}, id="bad_require"),
])
def test_a_malformed_check_request_is_400(sandbox, body):
    problem = assert_problem(check(sandbox, body), 400)
    assert problem["code"] in ("invalid_argument", "bad_request"), problem


# --- the worker table, restarts, hangs -------------------------------------------------------

def test_get_api_sandbox_lists_every_worker_slot(server):
    srv = server("--set", "sandbox.workers=2")
    body = wait_idle(srv)
    assert body["isolation"] == "bwrap" and body["queued"] == 0, body
    assert [w["slot"] for w in body["workers"]] == [0, 1], body
    for worker in body["workers"]:
        assert set(worker) == {"slot", "state", "pid", "calls", "restarts", "last_error"}, worker
        assert worker["calls"] == 0 and worker["restarts"] == 0, worker
    for _ in range(4):
        assert run(srv, action(on_action("pass"))).status == 200
    assert sum(w["calls"] for w in status(srv)["workers"]) == 4


def test_by_default_the_sandbox_runs_two_workers_per_core_and_an_explicit_count_wins(server):
    default = wait_idle(server("--set", "sandbox.workers=0"))
    assert len(default["workers"]) == 2 * os.cpu_count(), default
    explicit = wait_idle(server("--set", "sandbox.workers=3", env={"TESSERA_SANDBOX_WORKERS": "1"}))
    assert len(explicit["workers"]) == 3, explicit


def test_worker_processes_run_as_an_unprivileged_uid_on_the_host(server):
    srv = server("--set", "sandbox.workers=2")
    for worker in wait_idle(srv)["workers"]:
        for pid in tree(worker["pid"]):
            with open(f"/proc/{pid}/status") as f:
                uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
            assert "0" not in uids, (pid, uids)


def test_a_worker_killed_with_sigkill_is_replaced_and_calls_keep_succeeding(server):
    srv = server("--set", "sandbox.workers=1")
    before = wait_idle(srv)["workers"][0]
    assert run(srv, action(on_action("pass"))).status == 200
    old = tree(before["pid"])
    os.kill(before["pid"], signal.SIGKILL)

    def replaced():
        worker = status(srv)["workers"][0]
        return (worker["restarts"] == before["restarts"] + 1 and worker["state"] == "idle"
                and worker["pid"] not in (0, before["pid"]))

    wait_until(replaced, timeout=10, message=lambda: f"a replacement worker ({status(srv)})")
    wait_until(lambda: all(gone(pid) for pid in old), timeout=5,
               message="the old worker's processes to be gone")
    assert_serves_next_call(srv)
    reasons = restarts_total(srv)
    assert sum(reasons.values()) == 1 and reasons.get("crashed") == 1, reasons


def test_a_stopped_worker_times_the_call_out_and_is_replaced_as_hung(server):
    srv = server("--set", "sandbox.workers=1")
    before = wait_idle(srv)["workers"][0]
    # SIGSTOP the whole worker: the reported pid is the outermost process (setpriv/bwrap), and
    # stopping only that one would leave the zygote below it answering.
    stopped = tree(before["pid"])
    try:
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        res = run(srv, action(on_action("pass"), timeout_ms=500))
        body = sandbox_problem(res, 422, "timeout")
        assert time.monotonic() - started < 5, "the call waited far past its timeout"
        assert calls(srv, "timeout") == 1
        wait_until(lambda: status(srv)["workers"][0]["state"] == "idle"
                   and status(srv)["workers"][0]["pid"] not in (0, before["pid"]), timeout=10,
                   message=lambda: f"a replacement worker ({status(srv)})")
        assert status(srv)["workers"][0]["restarts"] == before["restarts"] + 1
        assert restarts_total(srv).get("hung") == 1, restarts_total(srv)
        wait_until(lambda: all(gone(pid) for pid in stopped), timeout=5,
                   message="the stopped worker's processes to be killed")
        assert_serves_next_call(srv)
    finally:
        for pid in stopped:
            if not gone(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass


def test_every_slot_crash_looping_makes_calls_fail_fast_with_503_unavailable(server, tmp_path):
    srv = server("--set", "sandbox.workers=1",
                 "--set", f"sandbox.executable={tmp_path}/no-such-sandbox")
    wait_state(srv, 0, "crash_loop", timeout=15)
    worker = status(srv)["workers"][0]
    assert "no-such-sandbox" in worker["last_error"], worker
    for path, body in ((RUN, {"kind": "render", "template": "x"}), (CHECK, {"template": "x"})):
        started = time.monotonic()
        res = srv.request("POST", path, body)
        assert time.monotonic() - started < 1, "not fast"
        sandbox_problem(res, 503, "unavailable")
        assert int(res.headers["Retry-After"]) > 0, res
    assert calls(srv, "unavailable", kind="render") == 1
    assert restarts_total(srv).get("start_failed", 0) >= 5
    assert srv.metric("tessera_sandbox_workers", state="crash_loop") == 1
    assert srv.request("GET", "/api/storages").status == 200


# --- the queue ---------------------------------------------------------------------------------

SLEEPER = on_action("time.sleep(payload['seconds'])")


def in_background(srv, body):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("res", run(srv, body)))
    thread.start()
    return thread, result


def test_calls_beyond_the_queue_limit_get_503_overloaded(server):
    srv = server("--set", "sandbox.workers=1", "--set", "sandbox.queue_limit=1")
    wait_idle(srv)
    busy, busy_result = in_background(srv, action(SLEEPER, payload={"seconds": 2},
                                                  timeout_ms=5000))
    wait_state(srv, 0, "busy")
    queued, queued_result = in_background(srv, action(on_action("pass")))
    wait_until(lambda: status(srv)["queued"] == 1, timeout=5, message="one queued call")
    assert srv.metric("tessera_sandbox_queue_depth") == 1
    started = time.monotonic()
    res = run(srv, action(on_action("pass")))
    assert time.monotonic() - started < 1, "refused, not queued"
    body = sandbox_problem(res, 503, "overloaded")
    assert int(res.headers["Retry-After"]) > 0, res
    assert calls(srv, "overloaded") == 1
    busy.join(10)
    queued.join(10)
    assert busy_result["res"].status == 200, busy_result
    assert queued_result["res"].status == 200, queued_result
    assert status(srv)["queued"] == 0 and srv.metric("tessera_sandbox_queue_depth") == 0
    assert body["error"]["kind"] == "overloaded"


def test_a_call_waiting_past_queue_timeout_ms_times_out_saying_no_worker_was_free(server):
    srv = server("--set", "sandbox.workers=1", "--set", "sandbox.queue_timeout_ms=200")
    wait_idle(srv)
    busy, busy_result = in_background(srv, action(SLEEPER, payload={"seconds": 2},
                                                  timeout_ms=5000))
    wait_state(srv, 0, "busy")
    started = time.monotonic()
    res = run(srv, action(on_action("pass")))
    waited = time.monotonic() - started
    body = sandbox_problem(res, 422, "timeout")
    assert "no sandbox worker was free" in body["error"]["message"], body
    assert 0.2 <= waited < 1.5, waited
    assert calls(srv, "timeout") == 1
    busy.join(10)
    assert busy_result["res"].status == 200, busy_result
    assert_serves_next_call(srv)


# --- metrics ---------------------------------------------------------------------------------

def test_a_call_taken_at_once_waits_for_nothing(server):
    """One call at a time on an idle worker: each is taken as it arrives, so the queue waits
    are a small part of the run times (a wait never counts the call's own run)."""
    srv = server("--set", "sandbox.workers=1")
    wait_idle(srv)
    for _ in range(40):
        res = run(srv, warm(action(on_action("pass")), "waits"))
        assert res.status == 200, res
    m = srv.metrics()
    waited = m.get(("tessera_sandbox_queue_wait_seconds_sum", frozenset()), 0)
    ran = m.get(("tessera_sandbox_call_duration_seconds_sum", frozenset({("kind", "action")})), 0)
    assert m.get(("tessera_sandbox_queue_wait_seconds_count", frozenset()), 0) == 40
    assert 0 < ran and waited < ran / 20, (waited, ran)


def test_calls_are_counted_by_kind_and_result_with_durations_and_queue_waits(server):
    srv = server("--set", "sandbox.workers=1")
    wait_idle(srv)
    assert srv.metric("tessera_sandbox_workers", state="idle") == 1
    requests = [
        (RUN, action(on_action("pass")), "action", "ok"),
        (RUN, action(on_action("1 / 0")), "action", "handler_error"),
        (RUN, {"kind": "render", "template": "x"}, "render", "ok"),
        (RUN, {"kind": "schedule", "handler": "def on_schedule(s):\n    pass\n"}, "schedule",
         "ok"),
        (RUN, {"kind": "init", "handler": "x = 1\n"}, "init", "ok"),
        (CHECK, {"template": "{{"}, "check", "syntax_error"),
    ]
    for path, body, kind, result in requests:
        srv.request("POST", path, body)
    m = srv.metrics()
    sample = lambda name, **labels: m.get((name, frozenset(labels.items())), 0)
    for _, _, kind, result in requests:
        assert sample("tessera_sandbox_calls_total", kind=kind, result=result) == 1, (kind, result)
    assert sample("tessera_sandbox_call_duration_seconds_count", kind="action") == 2
    for kind in ("render", "schedule", "init", "check"):
        assert sample("tessera_sandbox_call_duration_seconds_count", kind=kind) == 1, kind
        assert sample("tessera_sandbox_call_duration_seconds_bucket", kind=kind, le="+Inf") == 1
    assert sample("tessera_sandbox_call_duration_seconds_sum", kind="action") > 0
    assert sample("tessera_sandbox_queue_wait_seconds_count") == len(requests)
    assert sample("tessera_sandbox_queue_depth") == 0
    assert sample("tessera_sandbox_workers", state="idle") == 1
    assert sum(v for (name, _), v in m.items()
               if name == "tessera_sandbox_worker_restarts_total") == 0
    check_text = subprocess.run(["/usr/bin/promtool", "check", "metrics"],
                                input=srv.request("GET", "/metrics").raw, capture_output=True,
                                timeout=30)
    assert check_text.returncode == 0, check_text.stdout + check_text.stderr


# --- settings, isolation levels, auth --------------------------------------------------------

def test_sandbox_limits_come_from_the_settings(server):
    srv = server("--set", "sandbox.workers=1", "--set", "sandbox.timeout_ms=300",
                 "--set", "sandbox.max_timeout_ms=1000", "--set", "sandbox.memory_mb=64",
                 "--set", "sandbox.max_memory_mb=128", "--set", "sandbox.max_output_bytes=2000")
    wait_idle(srv)
    loop = on_action("while True:\n    pass")
    body = sandbox_problem(run(srv, action(loop)), 422, "timeout")
    assert "300 ms" in body["error"]["message"], body
    assert_problem(run(srv, action(loop, timeout_ms=1001)), 400, "invalid_argument")
    assert_problem(run(srv, action(loop, memory_mb=129)), 400, "invalid_argument")
    # Touching 100 MiB takes 25,600 page faults, about 0.35 s on this machine class (13 us
    # each), so the memory calls get the settings' longest timeout rather than the default.
    grab = on_action("blob = bytearray(payload['mb'] * 1024 * 1024)")
    body = sandbox_problem(run(srv, action(grab, payload={"mb": 100}, timeout_ms=1000)), 422,
                           "memory_limit")
    assert "64 MiB" in body["error"]["message"], body
    res = run(srv, action(grab, payload={"mb": 100}, memory_mb=128, timeout_ms=1000))
    assert res.status == 200, res
    sandbox_problem(run(srv, action(on_action("storage['c']['x'] = 'y' * 3000"))), 422,
                    "output_limit")
    assert run(srv, action(on_action("storage['c']['x'] = 'y' * 500"))).status == 200
    sandbox_problem(run(srv, {"kind": "render", "template": "{{ 'y' * 3000 }}"}), 422,
                    "output_limit")


def test_process_isolation_runs_calls_and_still_filters_syscalls(server):
    srv = server("--set", "sandbox.isolation=process", "--set", "sandbox.workers=1")
    assert wait_idle(srv)["isolation"] == "process"
    assert "sandbox.isolation=process" in srv.stdout() + srv.stderr()
    res = run(srv, action(on_action("storage['c']['n'] = 7\nprint('in process mode')")))
    assert res.status == 200, res
    assert res.body["changed"] == {"c": {"n": 7}}, res
    assert res.body["logs"][0]["message"] == "in process mode", res
    body = sandbox_problem(run(srv, action(on_action("posix.fork()", ESCAPE))), 422,
                           "handler_error")
    assert body["error"]["type"] == "PermissionError", body
    assert_serves_next_call(srv)


def test_gvisor_isolation_runs_calls_behind_a_second_kernel_with_the_same_confinement(server):
    srv = server("--set", "sandbox.isolation=gvisor", "--set", "sandbox.workers=1")
    assert wait_idle(srv, timeout=30)["isolation"] == "gvisor"
    res = run(srv, action(on_action(
        "storage['c']['n'] += 1\n"
        "print(posix.getuid(), open('/proc/version').read())", ESCAPE)))
    assert res.status == 200, res
    assert res.body["changed"] == {"c": {"n": 2}}, res
    uid, kernel = res.body["logs"][0]["message"].split(" ", 1)
    assert uid == "65534", res
    assert "gVisor" in kernel or "4.4.0" in kernel, kernel  # gVisor reports itself as Linux 4.4.0
    for hostile, code, error_type in [
            ("posix.fork()", "handler_error", {"PermissionError"}),
            ("real_builtins.__import__('socket').socket()", "handler_error", {"PermissionError"}),
            ("open('/usr/tessera-gvisor-escape', 'w')", "handler_error", OS_ERRORS),
            ("while True:\n    pass", "timeout", None)]:
        extra = {"timeout_ms": 1000} if code == "timeout" else {}
        body = sandbox_problem(run(srv, action(on_action(hostile, ESCAPE), **extra)), 422, code)
        assert error_type is None or body["error"]["type"] in error_type, body
    assert not os.path.exists("/usr/tessera-gvisor-escape")
    assert_serves_next_call(srv)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer " + TOKEN + "x"])
def test_sandbox_routes_need_the_bearer_token(server, authorization):
    # metrics_public: the count of calls below is read from /metrics without the token.
    srv = server("--set", "sandbox.workers=1", "--set", "server.metrics_public=true",
                 env={"TESSERA_SERVER_API_TOKEN": TOKEN})
    headers = {} if authorization is None else {"Authorization": authorization}
    good = {"Authorization": "Bearer " + TOKEN}
    requests = [("GET", STATUS, None), ("POST", RUN, {"kind": "render", "template": "x"}),
                ("POST", CHECK, {"template": "x"})]
    for method, path, body in requests:
        res = srv.request(method, path, body, headers)
        assert_problem(res, 401, "unauthorized")
        assert res.headers["WWW-Authenticate"] == "Bearer"
    for method, path, body in requests:
        res = srv.request(method, path, body, good)
        assert res.status == 200, (path, res)
    assert calls(srv, "ok", kind="render") == 1 and calls(srv, "ok", kind="check") == 1


def test_the_servers_token_and_environment_never_reach_a_handler(server):
    srv = server("--set", "sandbox.workers=1",
                 env={"TESSERA_SERVER_API_TOKEN": TOKEN, "E2E_CANARY": "canary-31337"})
    res = run(srv, action(on_action(
        "print(dict(posix.environ))\n"
        "for pid in posix.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        "            print(open('/proc/' + pid + '/environ', 'rb').read())\n"
        "        except OSError as e:\n"
        "            print(type(e).__name__)\n", ESCAPE)), {"Authorization": "Bearer " + TOKEN})
    assert res.status == 200, res
    assert TOKEN not in res.raw.decode() and "canary-31337" not in res.raw.decode(), res
    assert "TESSERA_" not in res.body["logs"][0]["message"], res
