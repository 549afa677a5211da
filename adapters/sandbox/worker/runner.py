"""tessera's handler runner: the Python half of build/tessera-sandbox.

The zygote (zygote.cpp) imports this module once, calls preload(), then forks one process per
call; that process calls run(kind, body, limits) exactly once and exits. Nothing here is a
security boundary: the process, its kernel limits, seccomp and the bubblewrap namespaces are.
What this module adds is the handler protocol of the origin app (on_action / on_schedule /
on_init on a dict of storages), captured output, and errors a user can act on.

run() never raises: it returns one JSON object (bytes) with "ok" and either the result or an
"error" object {kind, type, message, line?, traceback?}. Kinds: handler_error, template_error,
syntax_error, invalid_handler, invalid_result, output_limit, memory_limit, bad_request.
"""

import ast
import builtins as _real_builtins
import datetime as _datetime
import json
import keyword
import logging
import random
import sys
import time

import jinja2
import jinja2.sandbox

# The runner's own references, taken before any handler runs: a handler may replace
# json.dumps, time.perf_counter or sys.stdout in its call process, and must not break the answer.
_loads = json.loads
_encode_storage = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_encode_storage_loose = json.JSONEncoder(ensure_ascii=False).encode
_encode_answer = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_perf_counter = time.perf_counter

HANDLER_FILE = "<handler>"
TEMPLATE_FILE = "<template>"

# Standard modules a handler may import. Anything else fails with a clear ImportError.
ALLOWED_MODULES = frozenset(
    """array base64 binascii bisect calendar cmath collections collections.abc copy csv
    dataclasses datetime decimal difflib enum fractions functools hashlib heapq hmac html
    html.parser io itertools json logging math numbers operator pprint random re secrets
    statistics string struct textwrap time typing unicodedata urllib urllib.error urllib.parse
    urllib.request uuid
    zlib zoneinfo""".split()
)

REQUIRED_ARGS = {"on_action": 3, "on_schedule": 1, "on_init": 1}

_env = None

# Templates and handlers compiled in the zygote (remember), inherited compiled by every call
# process. Compiling runs no user code; a call process compiles new sources first, within its
# limits, and only then does the zygote compile them too. A call process also keeps what it
# compiled, so a warm process compiles its panel's sources once, not on every call (these dicts
# are not module dicts: filling them does not count as a change of interpreter state).
_template_cache = {}
_code_cache = {}
CACHE_ENTRIES = 256
CACHE_MAX_SOURCE = 256 * 1024
# Set by a call that compiled a source the caches did not have; the zygote then caches it.
class _CallState:
    """What one call leaves for its caller. Kept on an instance, not in module globals: a warm
    call process checks after every call that no module's dict changed (python_host.cpp)."""

    fresh_template = False  # the call compiled a template or handler the zygote has not cached
    ok = False  # the call succeeded (only then may a warm process serve another call)
    part_failed = False  # an action of a batch failed (the call answers, the process goes)
    current_source = ""


_state = _CallState()


def preload():
    """Imports every allowed module and builds the template environment, in the zygote."""
    global _env
    for name in sorted(ALLOWED_MODULES):
        __import__(name)
    # Codecs load lazily on first use (Jinja's lexer decodes every string literal with
    # unicode_escape; a handler may decode latin-1): a warm call process that imported one would
    # see sys.modules change and be discarded, so the zygote loads them all once.
    import encodings
    import pkgutil
    for codec in pkgutil.iter_modules(encodings.__path__):
        try:
            __import__("encodings." + codec.name)
        except Exception:  # a platform's own codec (mbcs, oem on Windows)
            pass
    _env = _Environment(autoescape=True)
    # Run one call through every code path, so the interpreter's lazy state (method caches,
    # interned strings, Jinja's runtime) is built once here and shared by every call process.
    remember(template=_WARMUP_TEMPLATE)
    run("action", _WARMUP_CALL, {})
    run("action", _WARMUP_BATCH, {})
    # sys.stdout and sys.stderr stay the capture streams (fd 1 is the protocol pipe anyway), so a
    # call does not change the sys module; only the streams' target changes.


_WARMUP_TEMPLATE = ("<p>{{ c.n }}</p>{% for x in c.items %}{{ x }}{% endfor %}"
                    "{{ storage['c'].n }}{{ 'x' ~ c.missing }}")
_WARMUP_CALL = json.dumps({
    "handler": "def on_action(action, payload, storage):\n    storage['c']['n'] += 1\n"
               "    print('warm')\n",
    "action": "warm", "payload": {"a": [1, "x"]}, "storage": {"c": {"n": 1, "items": [1, 2]}},
    "panel": {"id": "warm"}, "template": _WARMUP_TEMPLATE}).encode()
_WARMUP_BATCH = json.dumps({
    "handler": "def on_action(action, payload, storage):\n    storage['c']['n'] += 1\n"
               "    if action == 'fail':\n        raise ValueError('warm')\n",
    "actions": [{"action": "warm", "payload": {}}, {"action": "fail", "payload": {}}],
    "storage": {"c": {"n": 1, "items": [1, 2]}}, "panel": {"id": "warm"},
    "template": _WARMUP_TEMPLATE}).encode()


class _Environment(jinja2.sandbox.SandboxedEnvironment):
    """Jinja's sandbox renders an unsafe attribute (`''.__class__`) as an empty Undefined;
    here it is an error the template author sees, with its line."""

    def unsafe_undefined(self, obj, attribute):
        raise jinja2.sandbox.SecurityError(
            "access to attribute %r of %r object is unsafe" % (attribute, type(obj).__name__)
        )


class _Failure(Exception):
    def __init__(self, error):
        super().__init__(error.get("message", ""))
        self.error = error


# ---------------------------------------------------------------------------------------------
# Captured output


class _Capture:
    """Bounded log lines from print, sys.stderr and logging."""

    def __init__(self, max_bytes, max_lines):
        self.lines = []
        self.bytes = 0
        self.dropped = 0
        self.max_bytes = max_bytes
        self.max_lines = max_lines

    def add(self, level, message, source):
        size = len(message)
        if self.bytes + size > self.max_bytes or len(self.lines) >= self.max_lines:
            self.dropped += size
            return
        self.bytes += size
        self.lines.append(
            {"level": level, "time": _now_iso(), "message": message, "source": source}
        )

    def finish(self):
        if self.dropped:
            self.lines.append(
                {
                    "level": "WARNING",
                    "time": _now_iso(),
                    "message": "log output truncated: %d more bytes dropped (limit %d bytes, %d lines)"
                    % (self.dropped, self.max_bytes, self.max_lines),
                    "source": "sandbox",
                }
            )
        return self.lines


def _now_iso():
    now = _datetime.datetime.now(_datetime.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000)


class _Stream:
    """A text stream that turns writes into log lines, one per line of text."""

    def __init__(self, capture, level, source):
        self._capture, self._level, self._source = capture, level, source
        self._pending = ""

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not %s" % type(text).__name__)
        if self._capture.dropped and not self._pending:
            self._capture.dropped += len(text)  # already over the limit: count, do not keep
            return len(text)
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            self._capture.add(self._level, line, self._source)
        if len(self._pending) > self._capture.max_bytes:
            self._capture.add(self._level, self._pending, self._source)
            self._pending = ""
        return len(text)

    def flush(self):
        if self._pending:
            self._capture.add(self._level, self._pending, self._source)
            self._pending = ""

    def isatty(self):
        return False


_STREAMS = (_Stream(None, "INFO", "print"), _Stream(None, "ERROR", "stderr"))


class _LogHandler(logging.Handler):
    def __init__(self, capture):
        super().__init__(logging.DEBUG)
        self._capture = capture

    def emit(self, record):
        try:
            message = record.getMessage()
        except Exception as e:  # a bad format string must not fail the call
            message = "%r (formatting failed: %s)" % (record.msg, e)
        if record.exc_info:
            message += "\n" + "".join(_handler_traceback_text(record.exc_info[1]))
        self._capture.add(record.levelname, message, "logging")


_log_handler = None


def _install_capture(limits):
    """Points stdout, stderr and the root logger at a fresh capture. The logger's handler is
    installed once, in the zygote, so a call only swaps its target."""
    global _log_handler
    capture = _Capture(limits.get("max_log_bytes", 65536), limits.get("max_log_lines", 1000))
    capture.streams = _STREAMS
    for stream in _STREAMS:
        stream._capture, stream._pending = capture, ""
    if sys.stdout is not _STREAMS[0] or sys.stderr is not _STREAMS[1]:
        sys.stdout, sys.stderr = _STREAMS
    if _log_handler is None:
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        _log_handler = _LogHandler(capture)
        root.addHandler(_log_handler)
        root.setLevel(logging.DEBUG)
    _log_handler._capture = capture
    return capture


# ---------------------------------------------------------------------------------------------
# Handlers


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level:
        raise ImportError("relative imports are not available in a handler")
    if not _module_allowed(name):
        raise ImportError(
            "import of '%s' is not allowed in a handler; allowed modules: %s"
            % (name, ", ".join(sorted(ALLOWED_MODULES)))
        )
    module = _real_builtins.__import__(name, globals, locals, fromlist, level)
    for item in fromlist or ():
        full = name + "." + item
        value = getattr(module, item, None)
        if type(value) is type(sys) and not _module_allowed(full):
            raise ImportError("import of '%s' is not allowed in a handler" % full)
    return module


def _module_allowed(name):
    return name in ALLOWED_MODULES or any(m.startswith(name + ".") for m in ALLOWED_MODULES)


def _make_handler_builtins():
    builtins = dict(vars(_real_builtins))
    builtins["__import__"] = _guarded_import
    for name in ("breakpoint", "input", "help", "exit", "quit", "copyright", "credits", "license"):
        builtins.pop(name, None)
    return builtins


# Built once in the zygote. A handler may change it, but only in its own call process.
_HANDLER_BUILTINS = _make_handler_builtins()


def _handler_globals():
    return {
        "__builtins__": _HANDLER_BUILTINS,
        "__name__": "handler",
        "time": time,
        "json": json,
        "datetime": _datetime.datetime,
        "date": _datetime.date,
        "timedelta": _datetime.timedelta,
    }


def _compile_handler(source):
    if not isinstance(source, str):
        raise _Failure(_bad_request("field 'handler' must be a string"))
    cached = _code_cache.get(source)
    if cached is not None:
        return cached
    try:
        code = compile(source, HANDLER_FILE, "exec", dont_inherit=True)
        _state.fresh_template = _cache_store(_code_cache, source, code) or _state.fresh_template
        return code
    except (SyntaxError, ValueError) as e:  # ValueError: source contains NUL bytes
        raise _Failure(_syntax_error(e, "handler"))
    except (RecursionError, MemoryError) as e:
        raise _Failure(
            {"kind": "syntax_error", "type": type(e).__name__, "source": "handler",
             "message": "handler is too deeply nested to compile"}
        )


def _load_handler(source, function, required):
    code = _compile_handler(source)
    namespace = _handler_globals()
    _call_handler(exec, code, namespace)
    fn = namespace.get(function)
    if fn is None:
        if required:
            raise _Failure(
                {"kind": "invalid_handler", "type": "NameError",
                 "message": "handler does not define %s(%s)" % (function, _signature(function))}
            )
        return None
    if not callable(fn):
        raise _Failure(
            {"kind": "invalid_handler", "type": "TypeError",
             "message": "%s is not a function" % function}
        )
    return fn


def _signature(function):
    return {"on_action": "action, payload, storage"}.get(function, "storage")


def _call_handler(fn, *args):
    try:
        return fn(*args)
    except _Failure:
        raise
    except MemoryError:
        raise
    except BaseException as e:  # SystemExit, KeyboardInterrupt and friends are handler errors too
        raise _Failure(_handler_error(e))


def _message_of(exc):
    """What the user reads: the exception's text, or what happened when it has none."""
    if isinstance(exc, SystemExit):
        return "the handler called sys.exit() (raised SystemExit with code %s)" % _safe_str(
            exc.code)
    return _safe_str(exc) or "%s raised without a message" % _type_name(exc)


def _safe_str(value):
    try:
        return str(value)
    except BaseException:
        return "<unprintable %s>" % type(value).__name__


def _type_name(exc):
    t = type(exc)
    module = getattr(t, "__module__", "")
    return t.__qualname__ if module in ("builtins", "handler", None) else module + "." + t.__qualname__


def _handler_frames(exc, filename=HANDLER_FILE, source_lines=None):
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == filename:
            frames.append({"line": tb.tb_lineno, "function": code.co_name})
        tb = tb.tb_next
    return frames


def _handler_traceback_text(exc):
    lines = []
    for f in _handler_frames(exc) if exc is not None else []:
        lines.append('  File "%s", line %d, in %s\n' % (HANDLER_FILE, f["line"], f["function"]))
    return lines


MAX_FRAMES = 20


def _handler_error(exc):
    frames = _handler_frames(exc)
    if len(frames) > MAX_FRAMES:  # deep recursion: keep the outermost and innermost frames
        skipped = len(frames) - MAX_FRAMES
        frames = frames[: MAX_FRAMES // 2] + [{"line": 0, "function": "...", "skipped": skipped}] + frames[-MAX_FRAMES // 2 :]
    for f in frames:
        if f["line"]:
            f["code"] = _line_of(_state.current_source, f["line"])
    error = {"kind": "handler_error", "type": _type_name(exc), "message": _message_of(exc),
             "traceback": frames}
    if frames:
        error["line"] = frames[-1]["line"]
    return error




def _line_of(source, line):
    lines = source.splitlines()
    return lines[line - 1].strip()[:200] if 0 < line <= len(lines) else ""


def _syntax_error(e, source_name):
    error = {"kind": "syntax_error", "type": type(e).__name__, "source": source_name,
             "message": getattr(e, "msg", None) or _safe_str(e)}
    if getattr(e, "lineno", None):
        error["line"] = e.lineno
    if getattr(e, "offset", None):
        error["column"] = e.offset
    return error


def _bad_request(message):
    return {"kind": "bad_request", "type": "ValueError", "message": message}


# ---------------------------------------------------------------------------------------------
# Storages in and out


def _bound_storage(req):
    storage = req.get("storage", {})
    if not isinstance(storage, dict) or not all(isinstance(v, dict) for v in storage.values()):
        raise _Failure(_bad_request("field 'storage' must map storage ids to JSON objects"))
    return storage


def _fingerprints(storage):
    return {k: _encode_storage_loose(v) for k, v in storage.items()}


def _changed(storage, before, limits):
    for sid in storage:
        if sid not in before:
            raise _Failure(
                {"kind": "invalid_result", "type": "KeyError",
                 "message": "storage '%s' is not bound here (bound: %s)"
                 % (sid, ", ".join(sorted(before)) or "none")}
            )
    changed, total = {}, 0
    for sid, old in before.items():
        if sid not in storage:
            raise _Failure(
                {"kind": "invalid_result", "type": "KeyError",
                 "message": "storage '%s' was removed from the storage dict; a handler may "
                 "change a storage's data but not unbind it" % sid}
            )
        data = storage[sid]
        if not isinstance(data, dict):
            raise _Failure(
                {"kind": "invalid_result", "type": "TypeError",
                 "message": "storage '%s' must stay a JSON object, not %s"
                 % (sid, type(data).__name__)}
            )
        text = _to_json(data, "storage['%s']" % sid)
        if text != old:
            _check_depth(data, sid, limits.get("max_json_depth", 64))
            total += len(text)
            changed[sid] = text
    limit = limits.get("max_output_bytes", 1 << 20)
    if total > limit:
        raise _Failure(
            {"kind": "output_limit", "type": "ValueError",
             "message": "changed storages are %d bytes of JSON, over the limit of %d" % (total, limit)}
        )
    return changed


def _check_depth(value, sid, limit):
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise _Failure(
                {"kind": "invalid_result", "type": "ValueError",
                 "message": "storage '%s' nests deeper than %d levels" % (sid, limit)}
            )
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))


def _to_json(value, where):
    try:
        text = _encode_storage(value)
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raise _Failure(
            {"kind": "invalid_result", "type": "UnicodeEncodeError",
             "message": "%s contains a lone surrogate, which is not valid Unicode text" % where}
        )
    except (TypeError, ValueError, RecursionError) as e:
        path = _bad_path(value, where, 0) or where
        raise _Failure(
            {"kind": "invalid_result", "type": type(e).__name__,
             "message": "%s cannot be stored as JSON: %s" % (path, _safe_str(e))}
        )


def _bad_path(value, where, depth):
    """The path of the first value JSON cannot hold, for the error message."""
    if depth > 64:
        return where + " (nested too deeply)"
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                return "%s key %r" % (where, k)
            found = _bad_path(v, "%s[%r]" % (where, k), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = _bad_path(v, "%s[%d]" % (where, i), depth + 1)
            if found:
                return found
        return None
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return where
    if value is None or isinstance(value, (str, int, float, bool)):
        return None
    return "%s (a %s)" % (where, type(value).__name__)


# ---------------------------------------------------------------------------------------------
# Templates


def remember(template=None, handler=None):
    """In the zygote, after a call process compiled these sources within its limits."""
    if isinstance(template, str):
        _cache_put(_template_cache, template, _env.from_string)
    if isinstance(handler, str):
        _cache_put(_code_cache, handler,
                   lambda source: compile(source, HANDLER_FILE, "exec", dont_inherit=True))


def _cache_put(cache, source, build):
    if len(source) > CACHE_MAX_SOURCE or source in cache:
        return
    try:
        _cache_store(cache, source, build(source))
    except Exception:
        pass


def _cache_store(cache, source, compiled):
    """Keeps `compiled` for `source`; True if it fits the cache (the zygote will keep it too)."""
    if len(source) > CACHE_MAX_SOURCE:
        return False
    if len(cache) >= CACHE_ENTRIES:
        cache.pop(next(iter(cache)))  # oldest first
    cache[source] = compiled
    return True


def _compile_template(source):
    if not isinstance(source, str):
        raise _Failure(_bad_request("field 'template' must be a string"))
    cached = _template_cache.get(source)
    if cached is not None:
        return cached
    try:
        template = _env.from_string(source)
        _state.fresh_template = _cache_store(_template_cache, source, template) or _state.fresh_template
        return template
    except jinja2.TemplateSyntaxError as e:
        raise _Failure(
            {"kind": "syntax_error", "type": "TemplateSyntaxError", "source": "template",
             "message": e.message or _safe_str(e), "line": e.lineno}
        )
    except (RecursionError, MemoryError) as e:
        raise _Failure(
            {"kind": "syntax_error", "type": type(e).__name__, "source": "template",
             "message": "template is too deeply nested to compile"}
        )


def _render(req, storage, limits):
    template = _compile_template(req.get("template", ""))
    panel = req.get("panel", {})
    context = {}
    for sid, data in storage.items():
        if sid.isidentifier() and not keyword.iskeyword(sid) and sid not in ("panel", "storage"):
            context[sid] = data
    context["panel"] = panel
    context["storage"] = storage
    try:
        html = template.render(context)
    except MemoryError:
        raise
    except BaseException as e:
        error = {"kind": "template_error", "type": _type_name(e), "message": _message_of(e)}
        line = _template_line(e)
        if line:
            error["line"] = line
        raise _Failure(error)
    limit = limits.get("max_output_bytes", 1 << 20)
    if len(html) > limit:
        raise _Failure(
            {"kind": "output_limit", "type": "ValueError",
             "message": "rendered HTML is %d characters, over the limit of %d" % (len(html), limit)}
        )
    return html


def _template_line(exc):
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TEMPLATE_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ---------------------------------------------------------------------------------------------
# Call kinds


def _run_handler(req, limits, function, args_before_storage, required):
    _state.current_source = req.get("handler", "")
    storage = _bound_storage(req)
    before = _fingerprints(storage)
    fn = _load_handler(_state.current_source, function, required)
    if fn is not None:
        _call_handler(fn, *args_before_storage, storage)
    return storage, _changed(storage, before, limits)


def _kind_action(req, limits):
    if "actions" in req:
        return _kind_batch(req, limits)
    action = req.get("action")
    if not isinstance(action, str):
        raise _Failure(_bad_request("field 'action' must be a string"))
    payload = req.get("payload", {})
    storage, changed = _run_handler(req, limits, "on_action", (action, payload), True)
    result = {"changed": changed}
    if "template" in req:
        try:
            result["html"] = _render(req, storage, limits)
        except _Failure as f:  # the action itself succeeded; the caller decides what to commit
            result["render_error"] = f.error
    return result


def _batch_items(req):
    actions = req.get("actions")
    if (not isinstance(actions, list) or not actions
            or not all(isinstance(a, dict) and isinstance(a.get("action"), str) for a in actions)):
        raise _Failure(_bad_request(
            "field 'actions' must be a non-empty list of {\"action\": string, \"payload\"}"))
    return actions


def _kind_batch(req, limits):
    """A panel's queued actions in one call: each runs in a fresh module namespace on the
    state the ones before it left, with its own log capture; one that fails is undone and the
    others stand. One render of the final state. A failure of the call itself (timeout,
    memory, crash) fails the whole batch; the caller then runs the actions one by one."""
    actions = _batch_items(req)
    _state.current_source = req.get("handler", "")
    storage = _bound_storage(req)
    initial = _fingerprints(storage)
    before = dict(initial)
    results = []
    for item in actions:
        capture = _install_capture(limits)
        try:
            try:
                fn = _load_handler(_state.current_source, "on_action", True)
                _call_handler(fn, item["action"], item.get("payload", {}), storage)
                step = _changed(storage, before, limits)
            except RecursionError as e:
                raise _Failure({"kind": "handler_error", "type": "RecursionError",
                                "message": _safe_str(e)})
        except _Failure as f:
            _state.part_failed = True
            storage.clear()  # undo: the state the actions before it left
            storage.update({sid: _loads(text) for sid, text in before.items()})
            result = {"ok": False, "error": f.error}
        else:
            before.update(step)
            result = {"ok": True, "changed": sorted(step)}
        for stream in capture.streams:
            stream.flush()
        result["logs"] = capture.finish()
        results.append(result)
    _install_capture(limits)
    changed = {sid: text for sid, text in before.items() if text != initial[sid]}
    total, limit = sum(map(len, changed.values())), limits.get("max_output_bytes", 1 << 20)
    if total > limit:
        raise _Failure(
            {"kind": "output_limit", "type": "ValueError",
             "message": "changed storages are %d bytes of JSON, over the limit of %d" % (total, limit)}
        )
    result = {"results": results, "changed": changed}
    if "template" in req:
        try:
            result["html"] = _render(req, storage, limits)
        except _Failure as f:
            result["render_error"] = f.error
    return result


def _kind_schedule(req, limits):
    _, changed = _run_handler(req, limits, "on_schedule", (), True)
    return {"changed": changed}


def _kind_init(req, limits):
    _, changed = _run_handler(req, limits, "on_init", (), False)
    return {"changed": changed}


def _kind_render(req, limits):
    return {"html": _render(req, _bound_storage(req), limits)}


def _kind_check(req, limits):
    checked = []
    if "handler" in req:
        code = _compile_handler(req["handler"])
        del code
        required = req.get("require")
        if required is not None:
            _check_defines(req["handler"], required)
        checked.append("handler")
    if "template" in req:
        _compile_template(req["template"])
        checked.append("template")
    if not checked:
        raise _Failure(_bad_request("check needs 'handler' or 'template'"))
    return {"checked": checked}


def _check_defines(source, function):
    if function not in REQUIRED_ARGS:
        raise _Failure(_bad_request("require must be one of " + ", ".join(sorted(REQUIRED_ARGS))))
    for node in ast.parse(source, HANDLER_FILE).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            args = node.args
            positional = len(args.posonlyargs) + len(args.args)
            required_positional = positional - len(args.defaults)
            required_keywords = sum(1 for d in args.kw_defaults if d is None)
            wanted = REQUIRED_ARGS[function]
            if ((args.vararg is None and positional < wanted) or required_positional > wanted
                    or required_keywords):
                raise _Failure(
                    {"kind": "invalid_handler", "type": "TypeError", "line": node.lineno,
                     "message": "%s must take (%s)" % (function, _signature(function))}
                )
            return
    raise _Failure(
        {"kind": "invalid_handler", "type": "NameError",
         "message": "handler does not define %s(%s)" % (function, _signature(function))}
    )


_KINDS = {
    "action": _kind_action,
    "schedule": _kind_schedule,
    "init": _kind_init,
    "render": _kind_render,
    "check": _kind_check,
}


def run(kind, body, limits):
    """Runs one call; returns the response as UTF-8 JSON bytes. Never raises."""
    started = _perf_counter()
    random.seed()  # the zygote skips Python's at-fork hooks; every call gets its own sequence
    _state.fresh_template = _state.ok = _state.part_failed = False
    capture = _install_capture(limits)
    try:
        try:
            req = _loads(body)
            if not isinstance(req, dict):
                raise _Failure(_bad_request("the call body must be a JSON object"))
            handler = _KINDS.get(kind)
            if handler is None:
                raise _Failure(_bad_request("unknown call kind '%s'" % kind))
            response = {"ok": True}
            response.update(handler(req, limits))
        except _Failure as f:
            response = {"ok": False, "error": f.error}
        except MemoryError:
            response = None
            response = {"ok": False, "error": {
                "kind": "memory_limit", "type": "MemoryError",
                "message": "the call used more than its memory limit of %d MiB"
                % limits.get("memory_mb", 0)}}
        except RecursionError as e:
            response = {"ok": False, "error": {"kind": "handler_error", "type": "RecursionError",
                                               "message": _safe_str(e)}}
        for stream in capture.streams:
            stream.flush()
        response["logs"] = capture.finish()
        response["duration_ms"] = round((_perf_counter() - started) * 1000, 3)
        text = _encode(response)
        _state.ok = response.get("ok") is True and not _state.part_failed
        return text
    except BaseException as e:  # the runner itself failed: still answer
        return _encode({"ok": False, "error": {
            "kind": "handler_error", "type": _type_name(e),
            "message": "the sandbox could not finish the call: " + _safe_str(e)}})


def _encode(response):
    # Changed storages are already JSON text; splice them in rather than parse and re-encode.
    changed = response.pop("changed", None)
    text = _encode_answer(response)
    if changed is not None:
        parts = ",".join(_encode_answer(k) + ":" + v for k, v in changed.items())
        text = text[:-1] + ',"changed":{' + parts + "}}"
    return text.encode("utf-8", "replace")
