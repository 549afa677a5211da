"""The panels REST API as a client uses it: create, read, change, render, act, delete, export;
persistence, the todo demo, and `tessera import-panel`."""
import datetime
import json
import subprocess
import time
from html.parser import HTMLParser

import pytest

from harness import BINARY, assert_problem, clean_env

PANEL_FIELDS = {"id", "title", "desc", "icon", "size", "storage_ids", "template", "handler",
                "timeout", "fresh_process", "version", "created_at", "updated_at"}
LISTED_FIELDS = PANEL_FIELDS - {"template", "handler"}
NO_DEMOS = ("--set", "panels.demos=false")
TOKEN = "e2e-Panels-Token-0b7c4d"

COUNTER = (
    "def on_action(action, payload, storage):\n"
    "    if action == 'inc':\n"
    "        storage['c']['n'] = storage['c'].get('n', 0) + payload.get('by', 1)\n"
    "        print('inc by', payload.get('by', 1))\n"
    "    elif action == 'fail':\n"
    "        storage['c']['n'] = -1\n"
    "        raise ValueError('out of stock')\n"
    "    elif action == 'echo':\n"
    "        storage['c']['payload'] = payload\n"
)
COUNTER_TEMPLATE = "n={{ c.n }}"


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def srv(server):
    """A server without the demo panel, so listings hold only what a test created."""
    return server(*NO_DEMOS)


def create_panel(srv, id, headers=None, **fields):
    res = srv.request("POST", "/api/panels", {"id": id, **fields}, headers)
    assert res.status == 201, res
    return res.body


def create_storage(srv, id, data, headers=None):
    res = srv.request("POST", "/api/storages", {"id": id, "data": data}, headers)
    assert res.status == 201, res
    return res.body


def storage(srv, id, headers=None):
    res = srv.request("GET", f"/api/storages/{id}", None, headers)
    assert res.status == 200, res
    return res.body


def panel(srv, id, headers=None):
    res = srv.request("GET", f"/api/panels/{id}", None, headers)
    assert res.status == 200, res
    return res.body


def render(srv, id):
    res = srv.request("GET", f"/api/panels/{id}/render")
    assert res.status == 200, res
    assert set(res.body) == {"html", "version"}, res
    return res.body


def act(srv, id, action, payload=None, headers=None):
    body = {"action": action} if payload is None else {"action": action, "payload": payload}
    return srv.request("POST", f"/api/panels/{id}/action", body, headers)


def counter_panel(srv, id="p", n=1):
    """Panel `id` bound to storage c = {"n": n}, rendering "n=<n>"."""
    create_storage(srv, "c", {"n": n})
    return create_panel(srv, id, storage_ids=["c"], template=COUNTER_TEMPLATE, handler=COUNTER)


def expected_code(body):
    """Bodies that are not JSON at all are malformed_json; JSON of the wrong shape is
    invalid_argument."""
    return "malformed_json" if isinstance(body, bytes) else "invalid_argument"


def assert_recent_iso_time(value):
    """Times are ISO-8601 UTC with milliseconds, as storages show them."""
    parsed = datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((parsed - now).total_seconds()) < 3600, f"{value} is not about now"


class TodoItems(HTMLParser):
    """The `<li data-id=...>` elements of a rendered todo list as `items`: [{id, classes, text}];
    the names of its inputs as `inputs`."""

    def __init__(self, html):
        super().__init__()
        self.items, self.open, self.inputs = [], [], []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input":
            self.inputs.append(attrs.get("name"))
        if tag == "li" and "data-id" in attrs:
            item = {"id": attrs["data-id"], "classes": (attrs.get("class") or "").split(),
                    "text": ""}
            self.items.append(item)
            self.open.append(item)

    def handle_endtag(self, tag):
        if tag == "li" and self.open:
            self.open.pop()

    def handle_data(self, data):
        if self.open:
            self.open[-1]["text"] += data


def todo_items(html):
    return TodoItems(html).items


# --- create, read, list ----------------------------------------------------------------------

def test_post_creates_a_panel_at_version_1_with_the_documented_defaults(srv):
    res = srv.request("POST", "/api/panels", {"id": "plain"})
    assert res.status == 201, res
    assert res.headers["Content-Type"] == "application/json"
    body = res.body
    assert set(body) == PANEL_FIELDS, body
    assert body["id"] == "plain" and body["title"] == "plain", body
    assert (body["desc"], body["icon"], body["size"]) == ("", "", "medium"), body
    assert (body["storage_ids"], body["template"], body["handler"]) == ([], "", ""), body
    assert body["timeout"] == 2.0, body  # sandbox.timeout_ms
    assert body["version"] == 1, body
    assert_recent_iso_time(body["created_at"])
    assert body["updated_at"] >= body["created_at"], body


def test_post_keeps_every_field_it_is_given(srv):
    fields = {"title": "Sales <today>", "desc": "numbers é✓", "icon": "chart", "size": "large",
              "storage_ids": ["c"], "template": COUNTER_TEMPLATE, "handler": COUNTER}
    create_storage(srv, "c", {"n": 3})
    created = create_panel(srv, "full", **fields)
    for key, value in fields.items():
        assert created[key] == value, (key, created)
    assert panel(srv, "full") == created


def test_storages_named_by_a_new_panel_that_do_not_exist_are_created_empty(srv):
    create_storage(srv, "existing", {"keep": 1})
    assert_problem(srv.request("GET", "/api/storages/fresh"), 404, "not_found")
    create_panel(srv, "binder", storage_ids=["existing", "fresh"])
    fresh = storage(srv, "fresh")
    assert fresh["data"] == {} and fresh["version"] == 1, fresh
    existing = storage(srv, "existing")
    assert existing["data"] == {"keep": 1} and existing["version"] == 1, existing


def test_get_returns_the_full_panel_with_its_version_as_etag(srv):
    created = counter_panel(srv)
    res = srv.request("GET", "/api/panels/p")
    assert res.status == 200, res
    assert res.headers["ETag"] == '"1"'
    assert res.body == created


def test_listing_shows_the_metadata_of_every_panel_in_id_order_without_code(srv):
    assert srv.request("GET", "/api/panels").body == {"panels": []}
    for id in ["b", "a-2", "a", "c.1"]:
        create_panel(srv, id, template="t", handler=COUNTER)
    res = srv.request("GET", "/api/panels")
    assert res.status == 200, res
    assert [p["id"] for p in res.body["panels"]] == ["a", "a-2", "b", "c.1"], res
    for listed in res.body["panels"]:
        assert set(listed) == LISTED_FIELDS, listed
        full = panel(srv, listed["id"])
        assert listed == {k: full[k] for k in LISTED_FIELDS}, (listed, full)


def test_creating_an_existing_id_is_409_and_keeps_the_panel(srv):
    created = create_panel(srv, "dup", title="first")
    assert_problem(srv.request("POST", "/api/panels", {"id": "dup", "title": "second"}), 409,
                   "conflict")
    assert panel(srv, "dup") == created


def test_ids_may_use_letters_digits_dot_dash_underscore_up_to_128_chars(srv):
    for id in ["A-z_0.9", "x" * 128, "-", "..."]:
        create_panel(srv, id)
        assert panel(srv, id)["id"] == id


@pytest.mark.parametrize("id", ["", "a b", "x" * 129, "a/b", "é", "a%2Fb", 5, None, ["a"]])
def test_a_bad_id_is_400_and_creates_nothing(srv, id):
    assert_problem(srv.request("POST", "/api/panels", {"id": id}), 400, "invalid_argument")
    assert srv.request("GET", "/api/panels").body == {"panels": []}


@pytest.mark.parametrize("body", [
    pytest.param({"title": "no id"}, id="id_missing"),
    pytest.param({"id": "p", "bogus": 1}, id="unknown_field"),
    pytest.param({"id": "p", "version": 3}, id="version_given"),
    pytest.param({"id": "p", "title": 5}, id="title_not_string"),
    pytest.param({"id": "p", "desc": None}, id="desc_null"),
    pytest.param({"id": "p", "icon": ["x"]}, id="icon_array"),
    pytest.param({"id": "p", "size": 3}, id="size_not_string"),
    pytest.param({"id": "p", "storage_ids": "s"}, id="storage_ids_string"),
    pytest.param({"id": "p", "storage_ids": [1]}, id="storage_id_number"),
    pytest.param({"id": "p", "storage_ids": ["s", "bad id"]}, id="storage_id_invalid"),
    pytest.param({"id": "p", "storage_ids": ["s"], "template": 1}, id="template_not_string"),
    pytest.param({"id": "p", "storage_ids": ["s"], "handler": {}}, id="handler_not_string"),
    pytest.param([{"id": "p"}], id="body_array"),
    pytest.param(b'{"id": "p"', id="body_not_json"),
])
def test_an_unknown_field_or_a_wrong_type_is_400_and_creates_nothing(srv, body):
    assert_problem(srv.request("POST", "/api/panels", body), 400, expected_code(body))
    assert srv.request("GET", "/api/panels").body == {"panels": []}
    assert_problem(srv.request("GET", "/api/storages/s"), 404, "not_found")


def syntax_problem(res, source, line):
    body = assert_problem(res, 400, "syntax_error")
    error = body.get("error")
    assert error, f"no error member: {body}"
    assert set(error) >= {"kind", "type", "message", "line", "source"}, body
    assert error["kind"] == "syntax_error", body
    assert error["source"] == source and error["line"] == line, body
    assert isinstance(error["message"], str) and error["message"], body
    return body


@pytest.mark.parametrize("template,line", [
    pytest.param("ok\n{{ a }\n", 2, id="unclosed_expression"),
    pytest.param("{% if %}", 1, id="empty_if"),
])
def test_a_template_that_does_not_compile_is_400_syntax_error_with_its_line(srv, template,
                                                                             line):
    res = srv.request("POST", "/api/panels",
                      {"id": "p", "storage_ids": ["s"], "template": template, "handler": COUNTER})
    syntax_problem(res, "template", line)
    assert_problem(srv.request("GET", "/api/panels/p"), 404, "not_found")
    assert_problem(srv.request("GET", "/api/storages/s"), 404, "not_found")


def test_a_handler_that_does_not_compile_is_400_syntax_error_with_its_line(srv):
    handler = "x = 1\n\ndef on_action(action, payload, storage)\n    pass\n"
    res = srv.request("POST", "/api/panels", {"id": "p", "template": "t", "handler": handler})
    syntax_problem(res, "handler", 3)
    assert_problem(srv.request("GET", "/api/panels/p"), 404, "not_found")


@pytest.mark.parametrize("handler", [
    pytest.param("x = 1\n", id="no_on_action"),
    pytest.param("def on_schedule(storage):\n    pass\n", id="only_on_schedule"),
    pytest.param("def on_action(action, payload):\n    pass\n", id="too_few_arguments"),
    pytest.param("def on_action(action, payload, storage, extra):\n    pass\n",
                 id="too_many_arguments"),
    pytest.param("on_action = 5\n", id="not_a_function"),
])
def test_a_handler_without_a_compatible_on_action_is_400_invalid_handler(srv, handler):
    res = srv.request("POST", "/api/panels", {"id": "p", "handler": handler})
    assert_problem(res, 400, "invalid_handler")
    assert_problem(srv.request("GET", "/api/panels/p"), 404, "not_found")


@pytest.mark.parametrize("handler", [
    "def on_action(action, payload, storage, extra=None):\n    pass\n",
    "def on_action(*args):\n    pass\n",
], ids=["extra_default", "varargs"])
def test_handlers_callable_with_the_three_arguments_are_accepted(srv, handler):
    assert create_panel(srv, "p", handler=handler)["handler"] == handler


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/panels/ghost", None),
    ("PATCH", "/api/panels/ghost", {"title": "x"}),
    ("DELETE", "/api/panels/ghost", None),
    ("GET", "/api/panels/ghost/template", None),
    ("PUT", "/api/panels/ghost/template", {"template": "x"}),
    ("GET", "/api/panels/ghost/handler", None),
    ("PUT", "/api/panels/ghost/handler", {"handler": COUNTER}),
    ("GET", "/api/panels/ghost/render", None),
    ("GET", "/api/panels/ghost/export", None),
    ("POST", "/api/panels/ghost/action", {"action": "inc"}),
])
def test_a_missing_panel_is_404_and_is_not_created(srv, method, path, body):
    assert_problem(srv.request(method, path, body), 404, "not_found")
    assert srv.request("GET", "/api/panels").body == {"panels": []}


# --- template and handler --------------------------------------------------------------------

def test_template_and_handler_are_read_and_replaced_on_their_own_routes(srv):
    created = counter_panel(srv)
    res = srv.request("GET", "/api/panels/p/template")
    assert res.status == 200 and res.body == {"template": COUNTER_TEMPLATE}, res
    res = srv.request("GET", "/api/panels/p/handler")
    assert res.status == 200 and res.body == {"handler": COUNTER}, res

    res = srv.request("PUT", "/api/panels/p/template", {"template": "count: {{ c.n }}"})
    assert res.status == 200, res
    assert set(res.body) == PANEL_FIELDS and res.body["template"] == "count: {{ c.n }}", res
    assert res.body["version"] == 2 and res.body["created_at"] == created["created_at"], res
    assert res.body["updated_at"] >= created["updated_at"], res
    assert srv.request("GET", "/api/panels/p/template").body == {"template": "count: {{ c.n }}"}
    assert render(srv, "p")["html"] == "count: 1"

    doubler = ("def on_action(action, payload, storage):\n"
               "    storage['c']['n'] = storage['c']['n'] * 2\n")
    res = srv.request("PUT", "/api/panels/p/handler", {"handler": doubler})
    assert res.status == 200, res
    assert res.body["handler"] == doubler and res.body["version"] == 3, res
    assert srv.request("GET", "/api/panels/p/handler").body == {"handler": doubler}
    res = act(srv, "p", "inc")
    assert res.status == 200 and res.body["html"] == "count: 2", res


def test_a_refused_template_put_is_400_syntax_error_and_the_old_template_keeps_serving(srv):
    counter_panel(srv)
    syntax_problem(srv.request("PUT", "/api/panels/p/template", {"template": "x\n{% if %}"}),
                   "template", 2)
    assert srv.request("GET", "/api/panels/p/template").body == {"template": COUNTER_TEMPLATE}
    assert panel(srv, "p")["version"] == 1
    assert render(srv, "p")["html"] == "n=1"
    res = act(srv, "p", "inc")
    assert res.status == 200 and res.body["html"] == "n=2", res


def test_a_refused_handler_put_is_400_and_the_old_handler_keeps_running(srv):
    counter_panel(srv)
    syntax_problem(srv.request("PUT", "/api/panels/p/handler",
                               {"handler": "def on_action(a, p, s):\nreturn\n"}), "handler", 2)
    assert_problem(srv.request("PUT", "/api/panels/p/handler", {"handler": "x = 1\n"}), 400,
                   "invalid_handler")
    assert srv.request("GET", "/api/panels/p/handler").body == {"handler": COUNTER}
    assert panel(srv, "p")["version"] == 1
    res = act(srv, "p", "inc")
    assert res.status == 200 and res.body["html"] == "n=2", res


@pytest.mark.parametrize("route,body", [
    ("template", {"template": 5}), ("template", {"tpl": "x"}), ("template", {}),
    ("template", {"template": "x", "handler": COUNTER}),
    ("handler", {"handler": None}), ("handler", {"code": COUNTER}), ("handler", ["x"]),
])
def test_a_malformed_template_or_handler_put_is_400_and_changes_nothing(srv, route, body):
    created = counter_panel(srv)
    assert_problem(srv.request("PUT", f"/api/panels/p/{route}", body), 400, "invalid_argument")
    assert panel(srv, "p") == created


# --- PATCH -----------------------------------------------------------------------------------

def test_patch_changes_metadata_keeps_the_code_and_bumps_the_version(srv):
    created = counter_panel(srv)
    res = srv.request("PATCH", "/api/panels/p",
                      {"title": "Counter", "desc": "counts", "icon": "plus", "size": "small"})
    assert res.status == 200, res
    body = res.body
    assert set(body) == PANEL_FIELDS, body
    assert (body["title"], body["desc"], body["icon"], body["size"]) == \
        ("Counter", "counts", "plus", "small"), body
    assert body["version"] == 2, body
    for key in ("storage_ids", "template", "handler", "created_at"):
        assert body[key] == created[key], key
    assert panel(srv, "p") == body
    res = srv.request("PATCH", "/api/panels/p", {"desc": ""})
    assert res.status == 200 and res.body["desc"] == "" and res.body["title"] == "Counter", res
    assert res.body["version"] == 3, res


def test_patch_of_storage_ids_binds_the_new_storages_creating_missing_ones_empty(srv):
    counter_panel(srv)
    put = srv.request("PUT", "/api/panels/p/template",
                      {"template": "n={{ c.n }} extra={{ storage['extra-1'] | length }}"})
    assert put.status == 200, put
    res = srv.request("PATCH", "/api/panels/p", {"storage_ids": ["c", "extra-1"]})
    assert res.status == 200, res
    assert res.body["storage_ids"] == ["c", "extra-1"] and res.body["version"] == 3, res
    extra = storage(srv, "extra-1")
    assert extra["data"] == {} and extra["version"] == 1, extra
    assert render(srv, "p")["html"] == "n=1 extra=0"
    assert srv.request("PATCH", "/api/storages/extra-1", {"data": {"k": 1}}).status == 200
    assert render(srv, "p")["html"] == "n=1 extra=1"


def test_a_render_right_after_a_storage_write_shows_that_write(srv):
    """Read your writes: the panel's render cache learns of storage changes from an
    asynchronous notice, which must not make a client's next render show the state before its
    own write."""
    counter_panel(srv)
    client = srv.client()
    for n in range(2, 60):
        assert client.request("PUT", "/api/storages/c", {"data": {"n": n}}).status == 200
        res = client.request("GET", "/api/panels/p/render")
        assert res.status == 200 and res.body["html"] == f"n={n}", (n, res)


def test_unbinding_a_storage_keeps_it_and_takes_it_out_of_the_template_context(srv):
    counter_panel(srv)
    srv.request("PUT", "/api/panels/p/template", {"template": "{{ 'c' in storage }}"})
    assert render(srv, "p")["html"] == "True"
    res = srv.request("PATCH", "/api/panels/p", {"storage_ids": []})
    assert res.status == 200 and res.body["storage_ids"] == [], res
    assert render(srv, "p")["html"] == "False"
    assert storage(srv, "c")["data"] == {"n": 1}


def test_patch_honours_if_match(srv):
    counter_panel(srv)
    res = srv.request("PATCH", "/api/panels/p", {"title": "stale"}, {"If-Match": '"7"'})
    assert_problem(res, 412, "precondition_failed")
    assert panel(srv, "p")["title"] == "p"
    etag = srv.request("GET", "/api/panels/p").headers["ETag"]
    res = srv.request("PATCH", "/api/panels/p", {"title": "fresh"}, {"If-Match": etag})
    assert res.status == 200 and res.body["version"] == 2, res
    assert_problem(srv.request("PATCH", "/api/panels/p", {"title": "again"}, {"If-Match": etag}),
                   412, "precondition_failed")
    after = srv.request("GET", "/api/panels/p")
    assert after.headers["ETag"] == '"2"' and after.body["title"] == "fresh", after


@pytest.mark.parametrize("body", [
    pytest.param({"bogus": 1}, id="unknown_field"),
    pytest.param({"template": "x"}, id="template_not_patchable"),
    pytest.param({"title": 5}, id="title_not_string"),
    pytest.param({"size": None}, id="size_null"),
    pytest.param({"storage_ids": "c"}, id="storage_ids_string"),
    pytest.param({"storage_ids": ["c", "bad id"]}, id="storage_id_invalid"),
    pytest.param(["title"], id="body_array"),
    pytest.param(b"{", id="body_not_json"),
])
def test_a_malformed_patch_is_400_and_changes_nothing(srv, body):
    created = counter_panel(srv)
    assert_problem(srv.request("PATCH", "/api/panels/p", body), 400, expected_code(body))
    assert panel(srv, "p") == created


# --- render ----------------------------------------------------------------------------------

def test_render_gives_html_and_the_sum_of_panel_and_storage_versions(srv):
    create_storage(srv, "c", {"n": 1})
    create_storage(srv, "my-store", {"v": "x"})
    create_panel(srv, "p", title="T", storage_ids=["c", "my-store"],
                 template="{{ panel.title }}|{{ c.n }}|{{ storage['my-store'].v }}")
    assert render(srv, "p") == {"html": "T|1|x", "version": 1 + 1 + 1}
    srv.request("PATCH", "/api/storages/c", {"data": {"n": 2}})
    assert render(srv, "p") == {"html": "T|2|x", "version": 4}
    srv.request("PATCH", "/api/panels/p", {"title": "U"})
    assert render(srv, "p") == {"html": "U|2|x", "version": 5}


def test_a_template_failing_at_render_time_is_422_template_error(srv):
    create_panel(srv, "p", storage_ids=["c"], template="line 1\n{{ nothing.here }}")
    body = assert_problem(srv.request("GET", "/api/panels/p/render"), 422, "template_error")
    assert "nothing" in body["detail"], body
    if "error" in body:  # the sandbox's error member, when the route passes it on
        assert body["error"]["type"].endswith("UndefinedError"), body
        assert body["error"]["line"] == 2, body


# --- actions ---------------------------------------------------------------------------------

def test_an_action_commits_the_change_and_answers_with_the_new_html(srv):
    counter_panel(srv, n=1)
    res = act(srv, "p", "inc", {"by": 5})
    assert res.status == 200, res
    body = res.body
    assert set(body) >= {"success", "html", "version", "changed", "logs"}, body
    assert body["success"] is True and body["html"] == "n=6", body
    assert body["changed"] == ["c"], body
    assert body["version"] == 1 + 2, body  # panel 1 + storage c at version 2
    assert [line["message"] for line in body["logs"]] == ["inc by 5"], body
    committed = storage(srv, "c")
    assert committed["data"] == {"n": 6} and committed["version"] == 2, committed
    assert render(srv, "p") == {"html": "n=6", "version": 3}


def test_an_action_that_changes_nothing_commits_nothing(srv):
    counter_panel(srv)
    res = act(srv, "p", "unknown-action")
    assert res.status == 200, res
    assert res.body["changed"] == [] and res.body["html"] == "n=1", res
    assert res.body["version"] == 2, res
    assert storage(srv, "c")["version"] == 1


def test_the_payload_defaults_to_an_empty_object(srv):
    counter_panel(srv)
    res = act(srv, "p", "echo")
    assert res.status == 200, res
    assert storage(srv, "c")["data"] == {"n": 1, "payload": {}}
    res = act(srv, "p", "echo", {"nested": [1, {"a": None}]})
    assert res.status == 200, res
    assert storage(srv, "c")["data"]["payload"] == {"nested": [1, {"a": None}]}


def test_a_handler_exception_is_422_handler_error_and_commits_nothing(srv):
    counter_panel(srv)
    body = assert_problem(act(srv, "p", "fail"), 422, "handler_error")
    assert body["detail"] == "out of stock", body
    error = body["error"]
    assert set(error) >= {"type", "message", "line", "traceback"}, body
    assert error["type"] == "ValueError" and error["message"] == "out of stock", body
    assert error["line"] == 7, body  # `raise ValueError(...)` is line 7 of COUNTER
    assert isinstance(error["traceback"], list) and error["traceback"], body
    after = storage(srv, "c")
    assert after["data"] == {"n": 1} and after["version"] == 1, after
    assert act(srv, "p", "inc").status == 200


def test_an_action_on_a_panel_without_a_handler_is_400(srv):
    create_panel(srv, "bare", storage_ids=["c"], template="x")
    assert_problem(act(srv, "bare", "inc"), 400, "invalid_argument")
    assert storage(srv, "c")["version"] == 1


@pytest.mark.parametrize("body", [
    pytest.param({}, id="action_missing"),
    pytest.param({"payload": {}}, id="only_payload"),
    pytest.param({"action": 5}, id="action_not_string"),
    pytest.param({"action": "inc", "bogus": 1}, id="unknown_field"),
    pytest.param(b"{", id="body_not_json"),
])
def test_a_malformed_action_request_is_400_and_runs_nothing(srv, body):
    counter_panel(srv)
    assert_problem(srv.request("POST", "/api/panels/p/action", body), 400, expected_code(body))
    assert storage(srv, "c")["version"] == 1


def test_an_action_on_an_unknown_panel_is_404(srv):
    assert_problem(act(srv, "ghost", "inc"), 404, "not_found")


# --- per-panel timeout ----------------------------------------------------------------------

SLEEPY = (
    "def on_action(action, payload, storage):\n"
    "    time.sleep(payload['seconds'])\n"
    "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n"
)
# 10^10 loop steps: no render of it finishes within any timeout the server allows.
ENDLESS_TEMPLATE = ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                    "{% endfor %}")


def test_an_action_slower_than_the_panels_timeout_fails_and_changes_nothing(srv):
    create_storage(srv, "c", {"n": 0})
    create_panel(srv, "slow", storage_ids=["c"], template="n={{ c.n }}", handler=SLEEPY,
                 timeout=0.3)
    res = act(srv, "slow", "go", {"seconds": 1.0})
    assert res.status == 422 and res.body["code"] == "timeout", res
    assert "300 ms" in res.body["detail"], res.body
    assert storage(srv, "c")["data"] == {"n": 0}
    # Given more time, the same action goes through.
    res = srv.request("PATCH", "/api/panels/slow", {"timeout": 5})
    assert res.status == 200 and res.body["timeout"] == 5, res
    res = act(srv, "slow", "go", {"seconds": 1.0})
    assert res.status == 200 and res.body["html"] == "n=1", res


def test_a_render_runs_under_the_panels_timeout(srv):
    create_panel(srv, "endless", template=ENDLESS_TEMPLATE, timeout=0.4)
    res = srv.request("GET", "/api/panels/endless/render")
    assert res.status == 422 and res.body["code"] == "timeout", res
    assert "400 ms" in res.body["detail"], res.body


@pytest.mark.parametrize("timeout", [0, -1, "2", 31, True])
def test_a_timeout_that_is_not_positive_seconds_up_to_the_maximum_is_refused(srv, timeout):
    res = srv.request("POST", "/api/panels", {"id": "t", "timeout": timeout})
    assert res.status == 400 and "timeout" in res.body["detail"], res
    create_panel(srv, "kept", timeout=1.5)
    res = srv.request("PATCH", "/api/panels/kept", {"timeout": timeout})
    assert res.status == 400 and "timeout" in res.body["detail"], res
    assert srv.request("GET", "/api/panels/kept").body["timeout"] == 1.5
    assert srv.request("GET", "/api/panels/t").status == 404


def test_a_panels_timeout_survives_a_restart_and_travels_in_its_bundle(srv):
    create_panel(srv, "p", timeout=4.5)
    srv.restart()
    assert srv.request("GET", "/api/panels/p").body["timeout"] == 4.5
    bundle = srv.request("GET", "/api/panels/p/export").body
    assert bundle["metadata"]["timeout"] == 4.5, bundle
    bundle["metadata"]["id"] = "copy"
    res = srv.request("POST", "/api/panels/import", bundle)
    assert res.status in (200, 201), res
    assert srv.request("GET", "/api/panels/copy").body["timeout"] == 4.5


# --- delete and export -----------------------------------------------------------------------

def test_delete_answers_success_the_panel_is_gone_and_its_storages_remain(srv):
    counter_panel(srv)
    res = srv.request("DELETE", "/api/panels/p")
    assert res.status == 200 and res.body == {"success": True}, res
    assert_problem(srv.request("GET", "/api/panels/p"), 404, "not_found")
    assert_problem(srv.request("GET", "/api/panels/p/render"), 404, "not_found")
    assert srv.request("GET", "/api/panels").body == {"panels": []}
    assert storage(srv, "c")["data"] == {"n": 1}
    assert srv.request("POST", "/api/panels", {"id": "p"}).status == 201  # the id is free


def test_export_has_the_metadata_with_current_storage_data_and_the_code(srv):
    create_storage(srv, "c", {"n": 1})
    create_panel(srv, "p", title="T", desc="D", icon="I", size="large",
                 storage_ids=["c", "empty"], template=COUNTER_TEMPLATE, handler=COUNTER)
    assert act(srv, "p", "inc", {"by": 2}).status == 200
    res = srv.request("GET", "/api/panels/p/export")
    assert res.status == 200, res
    assert res.body == {
        "metadata": {"id": "p", "title": "T", "desc": "D", "icon": "I", "size": "large",
                     "storage_ids": ["c", "empty"], "timeout": 2.0, "fresh_process": False,
                     "storages": {"c": {"n": 3}, "empty": {}}},
        "template": COUNTER_TEMPLATE, "handler": COUNTER}, res


# --- persistence -----------------------------------------------------------------------------

def test_panels_their_code_and_their_state_survive_a_restart(srv):
    counter_panel(srv)
    create_panel(srv, "other", title="Other")
    assert act(srv, "p", "inc", {"by": 4}).status == 200
    changed = srv.request("PATCH", "/api/panels/p", {"title": "Kept"}).body
    deleted = srv.request("POST", "/api/panels", {"id": "gone"})
    assert deleted.status == 201 and srv.request("DELETE", "/api/panels/gone").status == 200
    listing = srv.request("GET", "/api/panels").body
    srv.restart()
    assert panel(srv, "p") == changed
    assert srv.request("GET", "/api/panels").body == listing
    assert_problem(srv.request("GET", "/api/panels/gone"), 404, "not_found")
    assert render(srv, "p") == {"html": "n=5", "version": changed["version"] + 2}
    res = act(srv, "p", "inc")
    assert res.status == 200 and res.body["html"] == "n=6", res


# --- the todo demo ---------------------------------------------------------------------------

def test_a_fresh_server_loads_the_todo_demo_bound_to_an_empty_todos_storage(server):
    srv = server("--set", "panels.demos=true")
    demo = panel(srv, "todo-v2-demo")
    assert demo["storage_ids"] == ["todos"] and demo["template"] and demo["handler"], demo
    assert storage(srv, "todos")["data"] == {"items": [], "next_id": 1}
    # The other demo: the weather panel and the task that fills it.
    assert [p["id"] for p in srv.request("GET", "/api/panels").body["panels"]] == \
        ["todo-v2-demo", "weather"]
    assert [t["id"] for t in srv.request("GET", "/api/tasks").body["tasks"]] == \
        ["weather-refresh"]
    html = render(srv, "todo-v2-demo")["html"]
    parsed = TodoItems(html)
    assert parsed.items == [] and "text" in parsed.inputs, html


def test_the_todo_demo_adds_toggles_and_removes_items_through_actions(server):
    srv = server("--set", "panels.demos=true")
    res = act(srv, "todo-v2-demo", "add", {"text": "buy milk"})
    assert res.status == 200 and res.body["changed"] == ["todos"], res
    assert [(i["id"], i["text"].count("buy milk")) for i in todo_items(res.body["html"])] == \
        [("1", 1)], res
    res = act(srv, "todo-v2-demo", "add", {"text": "walk <dog>"})
    assert res.status == 200, res
    items = todo_items(res.body["html"])
    assert [i["id"] for i in items] == ["1", "2"], res
    assert "walk <dog>" in items[1]["text"], items  # escaped in the HTML, text once parsed
    data = storage(srv, "todos")["data"]
    assert len(data["items"]) == 2 and data["next_id"] == 3, data

    res = act(srv, "todo-v2-demo", "toggle", {"id": 1})
    assert res.status == 200, res
    assert [("done" in i["classes"]) for i in todo_items(res.body["html"])] == [True, False]
    res = act(srv, "todo-v2-demo", "toggle", {"id": 1})
    assert [("done" in i["classes"]) for i in todo_items(res.body["html"])] == [False, False]

    res = act(srv, "todo-v2-demo", "remove", {"id": 1})
    assert res.status == 200, res
    assert [i["id"] for i in todo_items(res.body["html"])] == ["2"], res
    assert [i["id"] for i in todo_items(render(srv, "todo-v2-demo")["html"])] == ["2"]
    data = storage(srv, "todos")["data"]
    assert len(data["items"]) == 1 and "walk <dog>" in json.dumps(data["items"]) and \
        data["next_id"] == 3, data


def test_with_demos_off_a_fresh_server_has_no_demo(server):
    srv = server(*NO_DEMOS)
    assert srv.request("GET", "/api/panels").body == {"panels": []}
    assert srv.request("GET", "/api/tasks").body == {"tasks": []}
    assert_problem(srv.request("GET", "/api/panels/todo-v2-demo"), 404, "not_found")
    assert_problem(srv.request("GET", "/api/storages/todos"), 404, "not_found")


def test_the_demo_keeps_its_state_and_a_deleted_demo_stays_deleted_after_restarts(server):
    srv = server("--set", "panels.demos=true")
    assert act(srv, "todo-v2-demo", "add", {"text": "survives"}).status == 200
    srv.restart()
    items = todo_items(render(srv, "todo-v2-demo")["html"])
    assert len(items) == 1 and "survives" in items[0]["text"], items
    assert srv.request("DELETE", "/api/panels/todo-v2-demo").status == 200
    srv.restart()
    assert_problem(srv.request("GET", "/api/panels/todo-v2-demo"), 404, "not_found")
    assert [p["id"] for p in srv.request("GET", "/api/panels").body["panels"]] == ["weather"]
    assert len(storage(srv, "todos")["data"]["items"]) == 1  # its storage stays


# --- tessera import-panel --------------------------------------------------------------------

IMPORT_HANDLER = (
    "def on_action(action, payload, storage):\n"
    "    storage['imp-store']['n'] += 1\n"
)


def panel_dir(tmp_path, id="imported", template="n={{ storage['imp-store'].n }}",
              storages=None, name=None):
    root = tmp_path / (name or id)
    root.mkdir(exist_ok=True)
    storages = {"imp-store": {"n": 41}} if storages is None else storages
    (root / "metadata.json").write_text(json.dumps(
        {"id": id, "title": "Imported", "storage_ids": list(storages), "storages": storages}))
    (root / "template.html").write_text(template)
    (root / "handler.py").write_text(IMPORT_HANDLER)
    return root


def import_panel(srv, directory, *args, env=None):
    return subprocess.run([BINARY, "import-panel", str(directory), "--server", srv.base_url,
                           *args], env=clean_env(env), capture_output=True, text=True,
                          timeout=60)


def assert_ran(run):
    assert run.returncode == 0, f"exit {run.returncode}\nstdout:\n{run.stdout}\n" \
                                f"stderr:\n{run.stderr}"


def test_import_panel_creates_the_panel_and_its_new_storages_with_their_default_data(
        srv, tmp_path):
    directory = panel_dir(tmp_path)
    assert_ran(import_panel(srv, directory))
    imported = panel(srv, "imported")
    assert imported["title"] == "Imported" and imported["storage_ids"] == ["imp-store"]
    assert imported["template"] == "n={{ storage['imp-store'].n }}"
    assert imported["handler"] == IMPORT_HANDLER
    assert storage(srv, "imp-store")["data"] == {"n": 41}
    assert render(srv, "imported")["html"] == "n=41"
    res = act(srv, "imported", "go")
    assert res.status == 200 and res.body["html"] == "n=42", res


def test_a_second_import_without_replace_fails_with_a_message_and_changes_nothing(
        srv, tmp_path):
    directory = panel_dir(tmp_path)
    assert_ran(import_panel(srv, directory))
    before = panel(srv, "imported")
    (directory / "template.html").write_text("changed {{ storage['imp-store'].n }}")
    run = import_panel(srv, directory)
    assert run.returncode != 0, run
    message = (run.stdout + run.stderr).lower()
    assert "imported" in message or "exist" in message or "replace" in message, run
    assert panel(srv, "imported") == before


def test_import_with_replace_updates_the_template_and_keeps_live_storage_data(srv, tmp_path):
    directory = panel_dir(tmp_path)
    assert_ran(import_panel(srv, directory))
    assert act(srv, "imported", "go").status == 200  # imp-store is now {"n": 42}
    (directory / "template.html").write_text("replaced {{ storage['imp-store'].n }}")
    assert_ran(import_panel(srv, directory, "--replace"))
    replaced = panel(srv, "imported")
    assert replaced["template"] == "replaced {{ storage['imp-store'].n }}", replaced
    assert replaced["version"] > 1, replaced
    assert render(srv, "imported")["html"] == "replaced 42"
    assert storage(srv, "imp-store")["data"] == {"n": 42}  # defaults are for new storages


def test_import_applies_defaults_only_to_storages_that_do_not_exist_yet(srv, tmp_path):
    create_storage(srv, "imp-store", {"n": 7})
    directory = panel_dir(tmp_path, storages={"imp-store": {"n": 41}, "imp-new": {"x": [1]}})
    assert_ran(import_panel(srv, directory))
    assert storage(srv, "imp-store")["data"] == {"n": 7}
    assert storage(srv, "imp-new")["data"] == {"x": [1]}


def test_import_sends_the_token_from_the_flag_or_from_tessera_api_token(server, tmp_path):
    srv = server("--api-token", TOKEN, *NO_DEMOS)
    auth = {"Authorization": "Bearer " + TOKEN}
    refused = import_panel(srv, panel_dir(tmp_path, "no-token"))
    assert refused.returncode != 0, refused
    assert srv.request("GET", "/api/panels", None, auth).body == {"panels": []}

    by_flag = import_panel(srv, panel_dir(tmp_path, "by-flag"), "--token", TOKEN)
    assert_ran(by_flag)
    by_env = import_panel(srv, panel_dir(tmp_path, "by-env"), env={"TESSERA_API_TOKEN": TOKEN})
    assert_ran(by_env)
    ids = [p["id"] for p in srv.request("GET", "/api/panels", None, auth).body["panels"]]
    assert ids == ["by-env", "by-flag"], ids
    assert storage(srv, "imp-store", auth)["data"] == {"n": 41}
    for run in (refused, by_flag, by_env):
        assert TOKEN not in run.stdout + run.stderr, run


@pytest.mark.parametrize("metadata", [{"id": 1}, {"id": ["p"]}, {"id": "p", "storage_ids": "s"},
                                      {"id": "p", "storages": {"s": 3}}])
def test_a_malformed_import_is_400_and_panels_keep_working(srv, metadata):
    res = srv.request("POST", "/api/panels/import", {"metadata": metadata})
    assert_problem(res, 400, "invalid_argument")
    assert srv.request("GET", "/api/panels").status == 200
    assert srv.request("POST", "/api/panels", {"id": "after"}).status == 201
