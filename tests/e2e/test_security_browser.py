"""The page's security in a real browser (headless Chromium): a page of another origin can neither
change nor read anything (forged POSTs, a text/plain form, a WebSocket, framing, DNS rebinding),
the token's login form gives an HttpOnly session that sign-out ends, and hostile todo ids and
texts render as inert text while the todo buttons still work.
Chromium's network log (DevTools) shows what the server answered to each attempt, so the tests
prove that the attacks reached the server and were refused there."""
import http.server
import json
import re
import threading

import pytest

from harness import assert_problem, parse_metrics, wait_until
from test_ui_browser import (BODY, CARD, CHROME_ARGS, CHROMEDRIVER, CHROMIUM, DEADLINE, DEMO,
                             INPUT, add_item, click, item_with, items, open_ui, wait)

from selenium import webdriver  # noqa: E402  (after test_ui_browser's skip without Chromium)
from selenium.common.exceptions import NoAlertPresentException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

TOKEN = "e2e-Browser-Token-4c2f9a"
EVIL = "evil.test"  # resolved to 127.0.0.1 by Chromium only
NOOP_HANDLER = "def on_schedule(storage):\n    pass\n"


@pytest.fixture
def chromium(tmp_path):
    """Factory: chromium(name) opens a headless Chromium that resolves evil.test to 127.0.0.1 and
    keeps a network log (read with `answers`)."""
    drivers = []

    def open_browser(name):
        options = Options()
        options.binary_location = CHROMIUM
        for arg in CHROME_ARGS + [f"--host-resolver-rules=MAP {EVIL} 127.0.0.1",
                                  f"--user-data-dir={tmp_path / f'profile-{name}'}"]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = Service(executable_path=CHROMEDRIVER,
                          log_path=str(tmp_path / f"chromedriver-{name}.log"))
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(DEADLINE)
        driver.net = {"requests": {}, "answers": []}
        drivers.append((name, driver))
        return driver

    yield open_browser
    for name, driver in drivers:
        try:
            driver.save_screenshot(str(tmp_path / f"{name}.png"))
        except WebDriverException:
            pass
        finally:
            driver.quit()


def answers(driver, port):
    """What the server on `port` answered, as Chromium saw it: [(method, path, status)], with
    method "WS" for WebSocket handshakes (opaque no-cors answers and framed pages included)."""
    net = driver.net
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        kind, p = message["method"], message["params"]
        if kind == "Network.requestWillBeSent":
            if "redirectResponse" in p and p["requestId"] in net["requests"]:
                net["answers"].append((*net["requests"][p["requestId"]],
                                       p["redirectResponse"]["status"]))
            net["requests"][p["requestId"]] = (p["request"]["method"], p["request"]["url"])
        elif kind == "Network.responseReceived" and p["requestId"] in net["requests"]:
            net["answers"].append((*net["requests"][p["requestId"]], p["response"]["status"]))
        elif kind == "Network.webSocketCreated":
            net["requests"][p["requestId"]] = ("WS", p["url"])
        elif kind == "Network.webSocketHandshakeResponseReceived":
            net["answers"].append((*net["requests"][p["requestId"]], p["response"]["status"]))
        elif kind == "Network.webSocketFrameError":
            code = re.search(r"Unexpected response code: (\d+)", p["errorMessage"])
            if code:
                net["answers"].append((*net["requests"][p["requestId"]], int(code.group(1))))
    origin = re.compile(rf"^(?:http|ws)://(?:127\.0\.0\.1|{re.escape(EVIL)}):{port}(/[^?#]*)")
    return [(m, origin.match(url).group(1), status) for m, url, status in net["answers"]
            if origin.match(url)]


@pytest.fixture
def attacker():
    """Factory: attacker(html) serves `html` at / of a plain HTTP server on 127.0.0.1 (another
    origin than tessera's) and returns its port."""
    servers = []

    def serve(html):
        body = html.encode()

        class Page(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/" else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return httpd.server_address[1]

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


# Every attempt records its end in window.results. Bodies without a Content-Type (a Blob of no
# type) pass the media-type check: only the Origin check can stop those.
ATTACK_PAGE = """<!doctype html><html><head><script>window.results = {ws_messages: []};</script>
</head><body><h1>cute kittens</h1>
<iframe id="frame" src="http://127.0.0.1:%(port)d/" onload="results.frame = 'loaded'"></iframe>
<iframe name="sink" id="sink"></iframe>
<form id="forged" method="post" enctype="text/plain" target="sink"
      action="http://127.0.0.1:%(port)d/api/storages"><input
      name='{"id":"pwned-form","data":{},"x":"' value='"}'></form>
<script>
const T = 'http://127.0.0.1:%(port)d';
const done = (key) => (value) => { results[key] = String(value); };
const untyped = (object) => new Blob([JSON.stringify(object)]);
function post(key, path, body, headers) {
  fetch(T + path, {method: 'POST', mode: 'no-cors', headers: headers || {}, body})
    .then(done(key), done(key));
}
post('text_plain', '/api/storages', JSON.stringify({id: 'pwned-fetch', data: {}}),
     {'Content-Type': 'text/plain'});
post('untyped', '/api/storages', untyped({id: 'pwned-blob', data: {}}));
post('action', '/api/panels/todo-v2-demo/action',
     untyped({action: 'add', payload: {text: 'pwned-action'}}));
post('task', '/api/tasks', untyped({id: 'pwned-task', schedule: '0 0 1 1 *',
                                    handler: %(handler)s, storage_ids: ['todos']}));
fetch(T + '/api/storages/todos').then((r) => r.text())
  .then(done('read'), (e) => done('read')('failed: ' + e));
document.getElementById('sink').addEventListener('load', () => done('form')('loaded'));
document.getElementById('forged').submit();
const ws = new WebSocket('ws://127.0.0.1:%(port)d/ws');
ws.onopen = () => {
  results.ws_opened = 'yes';
  ws.send(JSON.stringify({type: 'subscribe', panel: 'todo-v2-demo'}));
  ws.send(JSON.stringify({type: 'action', panel: 'todo-v2-demo', action: 'add',
                          payload: {text: 'pwned-ws'}, ref: '1'}));
};
ws.onmessage = (e) => results.ws_messages.push(String(e.data).slice(0, 200));
ws.onclose = (e) => done('ws_closed')(e.code);
</script></body></html>"""
ATTEMPTS = {"frame", "form", "text_plain", "untyped", "action", "task", "read"}


def attempts_ended(driver):
    results = driver.execute_script("return window.results")
    ended = ATTEMPTS <= set(results) and ("ws_closed" in results or "ws_opened" in results)
    return results if ended else None

# Run in a page whose origin the browser takes for the server's own (DNS rebinding).
REBOUND_JS = """
const finish = arguments[arguments.length - 1];
const out = {};
const read = await fetch('/api/storages/todos');
out.read = [read.status, await read.text()];
const write = await fetch('/api/storages', {
  method: 'POST', headers: {'Content-Type': 'application/json'},
  body: JSON.stringify({id: 'pwned-rebound', data: {}})});
out.write = write.status;
out.ws = await new Promise((resolve) => {
  const ws = new WebSocket('ws://' + location.host + '/ws');
  ws.onopen = () => resolve('opened');
  ws.onclose = (e) => resolve('closed ' + e.code);
});
finish(out);
"""


def task_definitions(srv):
    """The tasks as their authors defined them, without what the demo's minutely task's own
    runs change meanwhile (last run, its status, the next run)."""
    run_state = {"last_run", "last_status", "next_run", "status"}
    return [{k: v for k, v in task.items() if k not in run_state}
            for task in srv.request("GET", "/api/tasks").body["tasks"]]


def test_a_page_of_another_origin_can_neither_change_nor_read_anything(server, chromium,
                                                                      attacker):
    srv = server("--set", "panels.demos=true")
    port = srv.port
    todos_before = srv.request("GET", "/api/storages/todos").body
    tasks_before = task_definitions(srv)
    page = srv.request("GET", "/")
    assert "frame-ancestors 'self'" in page.headers["Content-Security-Policy"], page.headers
    assert page.headers["X-Frame-Options"] == "SAMEORIGIN", page.headers

    evil_port = attacker(ATTACK_PAGE % {"port": port, "handler": json.dumps(NOOP_HANDLER)})
    browser = chromium("victim")
    browser.get(f"http://{EVIL}:{evil_port}/")
    assert "cute kittens" in browser.find_element(By.TAG_NAME, "h1").text
    results = wait(browser, attempts_ended, "every attempt of the attacker page to end")

    # The attempts reached the server, which refused each one (403), and the page learned
    # nothing: an opaque answer, a read the browser withheld, a WebSocket that never opened.
    seen = answers(browser, port)
    assert seen.count(("POST", "/api/storages", 403)) == 3, seen  # text/plain, untyped, form
    assert ("POST", f"/api/panels/{DEMO}/action", 403) in seen, seen
    assert ("POST", "/api/tasks", 403) in seen, seen
    assert ("WS", "/ws", 403) in seen, seen
    assert ("GET", "/", 200) in seen, seen  # the framed dashboard arrived...
    browser.switch_to.frame(browser.find_element(By.ID, "frame"))
    assert browser.find_elements(By.ID, "panel-grid") == [], "the dashboard shows in a frame"
    assert browser.execute_script("return location.href") != f"http://127.0.0.1:{port}/"
    browser.switch_to.default_content()  # ...and the browser refused to show it there
    assert results["read"].startswith("failed"), results
    assert "ws_opened" not in results and results["ws_messages"] == [], results

    for id in ("pwned-fetch", "pwned-form", "pwned-blob"):
        assert_problem(srv.request("GET", f"/api/storages/{id}"), 404)
    assert srv.request("GET", "/api/storages/todos").body == todos_before
    assert task_definitions(srv) == tasks_before

    # DNS rebinding: evil.test resolves to 127.0.0.1 at tessera's port. To the browser that page
    # is same-origin with the server, so only the Host check stands between it and the API.
    browser.get(f"http://{EVIL}:{port}/")
    assert "misdirected_request" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.find_elements(By.ID, "panel-grid") == []
    browser.set_script_timeout(DEADLINE)
    rebound = browser.execute_async_script(REBOUND_JS)
    assert rebound["read"][0] == 421 and "items" not in rebound["read"][1], rebound
    assert json.loads(rebound["read"][1])["code"] == "misdirected_request", rebound
    assert rebound["write"] == 421 and rebound["ws"].startswith("closed"), rebound
    assert ("WS", "/ws", 421) in answers(browser, port)
    assert_problem(srv.request("GET", "/api/storages/pwned-rebound"), 404)
    assert srv.request("GET", "/api/storages/todos").body == todos_before

    # The attacker's requests were valid: without an Origin (as curl sends them) the untyped
    # ones do what it wanted, so the Origin check alone stopped them; text/plain stays 415.
    assert srv.request("POST", "/api/storages", {"id": "pwned-blob", "data": {}}).status == 201
    res = srv.request("POST", f"/api/panels/{DEMO}/action",
                      {"action": "add", "payload": {"text": "pwned-action"}})
    assert res.status == 200, res
    res = srv.request("POST", "/api/tasks", {"id": "pwned-task", "schedule": "0 0 1 1 *",
                                             "handler": NOOP_HANDLER, "storage_ids": ["todos"]})
    assert res.status == 201, res
    assert_problem(srv.request("POST", "/api/storages", {"id": "pwned-fetch", "data": {}},
                               {"Content-Type": "text/plain"}), 415)


def logins(srv, result):
    res = srv.request("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status == 200, res
    return parse_metrics(res.body).get(("tessera_logins_total",
                                        frozenset({("result", result)})), 0.0)


def sign_in(driver, token):
    field = driver.find_element(By.CSS_SELECTOR, "form#login input#token")
    assert field.get_attribute("name") == "token" and field.get_attribute("type") == "password"
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form#login button[type='submit']").click()


def login_form_shown(driver):
    return driver.find_elements(By.CSS_SELECTOR, "form#login input#token")


def test_the_token_opens_the_dashboard_through_a_login_form_and_sign_out_ends_the_session(
        server, chromium):
    srv = server("--api-token", TOKEN, "--set", "panels.demos=true")
    cookie_name = f"tessera_session_{srv.port}"
    browser = chromium("login")

    # A token in the URL opens nothing: the login form, not the dashboard.
    browser.get(f"{srv.base_url}/?token={TOKEN}")
    wait(browser, login_form_shown, "the login form")
    assert browser.find_elements(By.ID, "panel-grid") == []

    sign_in(browser, "not-the-token-at-all-000")
    wait(browser, lambda d: d.find_element(By.ID, "login-error").text == "Wrong token.",
         "'Wrong token.' under the login form")
    assert browser.find_elements(By.ID, "panel-grid") == [] and browser.get_cookies() == []
    assert ("POST", "/login", 401) in answers(browser, srv.port)
    assert logins(srv, "wrong_token") == 1 and logins(srv, "ok") == 0

    sign_in(browser, TOKEN)
    wait(browser, lambda d: d.find_element(By.ID, "ws-status").text.strip() == "connected",
         "the dashboard, connected")
    assert ("POST", "/login", 303) in answers(browser, srv.port)
    assert browser.current_url == f"{srv.base_url}/" and TOKEN not in browser.current_url
    assert logins(srv, "ok") == 1
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, f'#panel-list li[data-panel="{DEMO}"]'),
         "the todo demo in the panel list")
    (session,) = [c for c in browser.get_cookies() if c["name"] == cookie_name]
    assert session["httpOnly"] is True and session["sameSite"] == "Strict", session
    document_cookie = browser.execute_script("return document.cookie")
    assert cookie_name not in document_cookie and session["value"] not in document_cookie
    assert TOKEN not in browser.page_source

    # The demo works over the WebSocket the cookie opened.
    wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, INPUT).is_displayed(), "the add form")
    add_item(browser, "todo after sign-in")
    wait(browser, lambda d: item_with(d, "todo after sign-in"), "the new todo, rendered live")
    stored = srv.request("GET", "/api/storages/todos",
                         headers={"Authorization": f"Bearer {TOKEN}"}).body["data"]
    assert [i["text"] for i in stored["items"]] == ["todo after sign-in"], stored
    old_cookie = {"Cookie": f"{cookie_name}={session['value']}"}
    assert srv.request("GET", "/api/panels", headers=old_cookie).status == 200

    browser.find_element(By.CSS_SELECTOR, "form#logout button[type='submit']").click()
    wait(browser, login_form_shown, "the login form after sign out")
    assert browser.current_url == f"{srv.base_url}/"
    assert [c for c in browser.get_cookies() if c["name"] == cookie_name] == []
    # The old cookie, even put back, opens nothing any more.
    assert_problem(srv.request("GET", "/api/panels", headers=old_cookie), 401)
    browser.add_cookie({"name": cookie_name, "value": session["value"], "path": "/"})
    browser.get(f"{srv.base_url}/api/panels")
    assert "unauthorized" in browser.find_element(By.TAG_NAME, "body").text
    assert ("GET", "/api/panels", 401) in answers(browser, srv.port)
    browser.get(f"{srv.base_url}/")
    wait(browser, login_form_shown, "the login form with the old cookie")

    # Nor does a token in the WebSocket's URL; the header does.
    upgrade = ("GET /ws{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n{}\r\n")
    assert srv.raw(upgrade.format(f"?token={TOKEN}", srv.port, "").encode()).status == 401
    bearer = f"Authorization: Bearer {TOKEN}\r\n"
    assert srv.raw(upgrade.format("", srv.port, bearer).encode()).status == 101
    assert_problem(srv.request("GET", f"/api/panels?token={TOKEN}"), 401)


HOSTILE = [
    {"id": 1, "text": "an ordinary todo", "done": False},
    {"id": "1}),alert(1),({a:1", "text": '<img src=x onerror="window.pwned=2">', "done": False},
    {"id": "x' onmouseover='window.pwned=1", "text": "</script><script>window.pwned=3</script>",
     "done": False},
    {"id": '"><img src=x onerror="window.pwned=4">', "text": "' onmouseover='window.pwned=5",
     "done": False},
]
RENDERED_JS = f"""
return Array.from(document.querySelectorAll('{BODY} li[data-id]')).map(li => ({{
    id: li.dataset.id, text: li.querySelector('.text').textContent,
    payloads: Array.from(li.querySelectorAll('button[data-action]')).map(
        b => [b.dataset.action, JSON.parse(b.dataset.payload).id])}}));
"""
# An image of the same broken src as the injected ones: once its error fired, theirs would have.
CANARY_JS = """
const finish = arguments[arguments.length - 1];
const img = new Image();
img.onerror = () => finish(true);
img.src = 'x';
"""


def test_hostile_todo_ids_and_texts_render_as_inert_text_and_the_buttons_still_work(
        server, chromium):
    srv = server("--set", "panels.demos=true")
    res = srv.request("PUT", "/api/storages/todos", {"data": {"items": HOSTILE, "next_id": 2}})
    assert res.status == 200, res
    browser = chromium("hostile")
    open_ui(browser, srv)
    wait(browser, lambda d: len(d.execute_script(RENDERED_JS)) == len(HOSTILE),
         "every todo rendered")
    rendered = browser.execute_script(RENDERED_JS)
    # Ids and texts show literally, and each button's payload carries its item's exact id.
    assert [(r["id"], r["text"]) for r in rendered] == \
        [(str(i["id"]), i["text"]) for i in HOSTILE], rendered
    assert [r["payloads"] for r in rendered] == \
        [[["toggle", i["id"]], ["remove", i["id"]]] for i in HOSTILE], rendered
    assert browser.find_elements(By.CSS_SELECTOR, f"{BODY} img, {BODY} script") == []

    # Hover over and click everything the hostile items have.
    for k in range(1, len(HOSTILE)):
        for part in ("", " .text", " button.toggle", " button.remove"):
            selector = f"{BODY} li[data-id]:nth-of-type({k + 1}){part}"
            ActionChains(browser).move_to_element(
                browser.find_element(By.CSS_SELECTOR, selector)).perform()
            if part.startswith(" button"):
                click(browser, selector)
                # The handler sent the literal id, which the demo refuses as not numeric.
                wait(browser, lambda d: "numeric" in d.find_element(
                    By.CSS_SELECTOR, f"{CARD} .panel-error").text, "the demo's refusal")
                # Cleared, so that the next wait sees the next refusal.
                browser.execute_script(
                    f"document.querySelector('{CARD} .panel-error').textContent = ''")
    browser.set_script_timeout(DEADLINE)
    assert browser.execute_async_script(CANARY_JS) is True
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text

    # The delegated handler works for an ordinary item: toggle flips it, in storage and page.
    click(browser, f'{BODY} li[data-id="1"] button.toggle')
    wait_until(lambda: srv.request("GET", "/api/storages/todos").body["data"]["items"][0]["done"],
               timeout=DEADLINE, message="todo 1 done in the storage")
    wait(browser, lambda d: items(d)[0]["done"] is True, "todo 1 shown done")
    stored = srv.request("GET", "/api/storages/todos").body["data"]["items"]
    assert [(i["id"], i["text"], i["done"]) for i in stored] == \
        [(i["id"], i["text"], i["id"] == 1) for i in HOSTILE], stored
    assert browser.execute_script("return typeof window.pwned") == "undefined"
