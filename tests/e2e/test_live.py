"""Live panels over the WebSocket `/ws`: subscribe, pushed renders after every change, actions,
bad messages, unsubscribe, deletion, auth, a client that never reads, and the ws metrics.

Each test body is a coroutine (python3-websockets 10.4 has no sync client); see live_client.py.
"Nothing was sent" is never proven by waiting: a later event the server must send on the same
connection (a render of another panel, or the error answering a barrier message) marks the
point by which the unwanted message would have come."""
import asyncio
import time

import pytest

from harness import wait_until
from live_client import InvalidStatusCode, RawWebSocket, live, open_live, renders, rest, run

NO_DEMOS = ("--set", "panels.demos=false")
TOKEN = "e2e-Live-Token-91c2aa"
COUNTER = (
    "def on_action(action, payload, storage):\n"
    "    if action == 'inc':\n"
    "        storage['c']['n'] = storage['c'].get('n', 0) + payload.get('by', 1)\n"
    "    elif action == 'fail':\n"
    "        raise ValueError('nope: ' + payload.get('why', ''))\n"
)


@pytest.fixture
def srv(server):
    return server(*NO_DEMOS)


def create_storage(srv, id, data, headers=None):
    res = srv.request("POST", "/api/storages", {"id": id, "data": data}, headers)
    assert res.status == 201, res


def create_panel(srv, id, storage_ids, template, handler=COUNTER, headers=None):
    res = srv.request("POST", "/api/panels", {"id": id, "storage_ids": storage_ids,
                                              "template": template, "handler": handler},
                      headers)
    assert res.status == 201, res
    return res.body


def counter(srv, panel="p", storage="c", n=0, headers=None):
    """Panel `panel` on storage `storage` = {"n": n}; renders "<panel>:n=<n>"; at version 2."""
    create_storage(srv, storage, {"n": n}, headers)
    create_panel(srv, panel, [storage], f"{panel}:n={{{{ {storage}.n }}}}", headers=headers)


async def patch(srv, storage, data, headers=None):
    res = await rest(srv, "PATCH", f"/api/storages/{storage}", {"data": data}, headers)
    assert res.status == 200, res
    return res.body


def ws_metric_total(srv, name):
    return sum(v for (n, _), v in srv.metrics().items() if n == name)


# --- subscribe and pushed renders ------------------------------------------------------------

def test_subscribe_answers_at_once_with_the_current_render(srv):
    counter(srv, n=7)

    async def scenario():
        async with live(srv) as ws:
            msg = await ws.subscribe("p")
            assert (msg["type"], msg["panel"], msg["html"], msg["version"]) == \
                ("render", "p", "p:n=7", 2), msg
            rendered = await rest(srv, "GET", "/api/panels/p/render")
            assert rendered.body == {"html": msg["html"], "version": msg["version"]}

    run(scenario())


def test_a_rest_patch_of_a_bound_storage_pushes_a_newer_render_to_every_subscriber(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as one, live(srv) as two:
            first = [await one.subscribe("p"), await two.subscribe("p")]
            await patch(srv, "c", {"n": 1})
            for ws, before in zip((one, two), first):
                msg, _ = await ws.render("p", lambda m: m["html"] == "p:n=1")
                assert msg["version"] == before["version"] + 1, (before, msg)

    run(scenario())


def test_an_action_over_the_websocket_gets_its_result_and_subscribers_get_the_render(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as actor, live(srv) as watcher:
            await actor.subscribe("p")
            start = await watcher.subscribe("p")
            await actor.send({"type": "action", "panel": "p", "action": "inc",
                              "payload": {"by": 3}, "ref": "r-1"})
            result, _ = await actor.recv_until(lambda m: m["type"] == "result",
                                               what="the action's result")
            assert result["ref"] == "r-1" and result["ok"] is True, result
            assert result["version"] == start["version"] + 1, result
            for ws in (actor, watcher):
                # The render may come before or after the result: look at what came already.
                seen = [m for m in renders(ws.received, "p") if m["version"] >= result["version"]]
                msg = seen[0] if seen else (
                    await ws.render("p", lambda m: m["version"] >= result["version"]))[0]
                assert msg["html"] == "p:n=3" and msg["version"] == result["version"], msg
            stored = await rest(srv, "GET", "/api/storages/c")
            assert stored.body["data"] == {"n": 3}, stored

            await actor.send({"type": "action", "panel": "p", "action": "fail",
                              "payload": {"why": "because"}, "ref": "r-2"})
            failed, _ = await actor.recv_until(lambda m: m["type"] == "result",
                                               what="the failed action's result")
            assert failed["ref"] == "r-2" and failed["ok"] is False, failed
            error = failed["error"]
            assert (error["code"], error["status"]) == ("handler_error", 422), failed
            assert error["detail"] == "nope: because", failed

            await actor.send({"type": "action", "panel": "ghost", "action": "inc",
                              "ref": "r-3"})
            missing, _ = await actor.recv_until(lambda m: m["type"] == "result",
                                                what="the result for an unknown panel")
            assert missing["ref"] == "r-3" and missing["ok"] is False, missing
            assert (missing["error"]["code"], missing["error"]["status"]) == \
                ("not_found", 404), missing

    run(scenario())


def test_a_subscriber_is_not_sent_renders_for_changes_of_storages_its_panel_does_not_use(srv):
    counter(srv, "a", "sa")
    counter(srv, "b", "sb")
    create_storage(srv, "loose", {})

    async def scenario():
        async with live(srv) as ws_a, live(srv) as ws_b:
            start_a = await ws_a.subscribe("a")
            start_b = await ws_b.subscribe("b")
            await patch(srv, "sb", {"n": 1})
            await patch(srv, "loose", {"x": 1})
            await ws_b.render("b", lambda m: m["html"] == "b:n=1")
            await patch(srv, "sa", {"n": 1})
            msg, before = await ws_a.render("a", lambda m: m["html"] == "a:n=1")
            assert before == [], f"panel a was sent {before} for changes it does not use"
            assert msg["version"] == start_a["version"] + 1, msg
            assert start_b["panel"] == "b"
            assert not renders(ws_a.received, "b"), "a render of an unsubscribed panel"

    run(scenario())


def test_a_burst_of_patches_ends_on_the_last_state_with_at_most_one_render_per_change(srv):
    counter(srv)
    burst = 50

    def patch_burst():
        client = srv.client()
        try:
            for i in range(1, burst + 1):
                res = client.request("PATCH", "/api/storages/c", {"data": {"n": i}})
                assert res.status == 200, res
        finally:
            client.close()

    async def scenario():
        async with live(srv) as ws:
            start = await ws.subscribe("p")
            await asyncio.to_thread(patch_burst)
            last, _ = await ws.render("p", lambda m: m["html"] == f"p:n={burst}", timeout=15,
                                      what="the render of the last PATCH")
            assert last["version"] == start["version"] + burst, last
            await ws.barrier()  # anything still queued for the burst has come now
            got = renders(ws.received, "p")
            assert len(got) <= burst + 1, f"{len(got)} renders for {burst} changes"
            versions = [m["version"] for m in got]
            assert versions == sorted(versions), f"a render older than one before: {versions}"
            assert got[-1]["html"] == f"p:n={burst}", got[-1]

    run(scenario())


def test_a_template_put_and_a_metadata_patch_push_new_renders(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            start = await ws.subscribe("p")
            res = await rest(srv, "PUT", "/api/panels/p/template",
                             {"template": "{{ panel.title }} now {{ c.n }}"})
            assert res.status == 200, res
            msg, _ = await ws.render("p", lambda m: m["html"] == "p now 0")
            assert msg["version"] == start["version"] + 1, msg
            res = await rest(srv, "PATCH", "/api/panels/p", {"title": "Renamed"})
            assert res.status == 200, res
            msg, _ = await ws.render("p", lambda m: m["html"] == "Renamed now 0")
            assert msg["version"] == start["version"] + 2, msg

    run(scenario())


def test_a_template_that_fails_to_render_pushes_a_render_error(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            start = await ws.subscribe("p")
            res = await rest(srv, "PUT", "/api/panels/p/template",
                             {"template": "{{ nothing.here }}"})
            assert res.status == 200, res
            msg, _ = await ws.recv_until(lambda m: m["type"] == "render_error",
                                         what="a render_error")
            assert msg["panel"] == "p" and msg["version"] == start["version"] + 1, msg
            assert isinstance(msg["error"], dict) and msg["error"], msg

    run(scenario())


# --- bad messages, unsubscribe, reconnect, delete --------------------------------------------

BAD_MESSAGES = [
    ("not json", "{\"type\": "),
    ("not an object", "[1, 2]"),
    ("no type", {"panel": "p"}),
    ("unknown type", {"type": "dance", "panel": "p"}),
    ("subscribe without panel", {"type": "subscribe"}),
    ("panel not a string", {"type": "subscribe", "panel": 5}),
    ("unsubscribe without panel", {"type": "unsubscribe"}),
]


def test_each_bad_message_gets_an_error_and_the_connection_keeps_working(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            for what, message in BAD_MESSAGES:
                await ws.send(message)
                msg = await ws.recv()
                assert msg["type"] == "error", (what, msg)
                assert isinstance(msg["code"], str) and msg["code"], (what, msg)
                assert isinstance(msg["detail"], str) and msg["detail"], (what, msg)
            await ws.send({"type": "subscribe", "panel": "ghost"})
            msg = await ws.recv()
            assert (msg["type"], msg["code"], msg["panel"]) == ("error", "not_found", "ghost"), \
                msg
            start = await ws.subscribe("p")
            assert start["html"] == "p:n=0", start
            await patch(srv, "c", {"n": 1})
            await ws.render("p", lambda m: m["html"] == "p:n=1")

    run(scenario())


def test_unsubscribe_stops_the_renders_of_that_panel_only(srv):
    counter(srv, "a", "c")
    create_panel(srv, "b", ["c"], "b:n={{ c.n }}")

    async def scenario():
        async with live(srv) as ws:
            await ws.subscribe("a")
            await ws.subscribe("b")
            await ws.send({"type": "unsubscribe", "panel": "a"})
            await ws.barrier()  # the unsubscribe has been handled
            seen = len(ws.received)
            for n in (1, 2):
                await patch(srv, "c", {"n": n})
                await ws.render("b", lambda m, n=n: m["html"] == f"b:n={n}")
            await ws.barrier()
            late = renders(ws.received[seen:], "a")
            assert late == [], f"renders of an unsubscribed panel: {late}"

    run(scenario())


def test_a_reconnecting_client_gets_the_current_render(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            start = await ws.subscribe("p")
        await patch(srv, "c", {"n": 5})
        async with live(srv) as ws:
            msg = await ws.subscribe("p")
            assert msg["html"] == "p:n=5" and msg["version"] == start["version"] + 1, msg

    run(scenario())


def test_deleting_a_panel_tells_its_subscribers(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as one, live(srv) as two:
            await one.subscribe("p")
            await two.subscribe("p")
            res = await rest(srv, "DELETE", "/api/panels/p")
            assert res.status == 200, res
            for ws in (one, two):
                msg, _ = await ws.recv_until(lambda m: m["type"] == "deleted",
                                             what="the deleted message")
                assert msg["panel"] == "p", msg
            await one.send({"type": "subscribe", "panel": "p"})
            msg, _ = await one.recv_until(lambda m: m["type"] == "error")
            assert msg["code"] == "not_found", msg

    run(scenario())


# --- auth ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path,headers", [
    ("/ws", {}),
    ("/ws?token=wrong", {}),
    ("/ws?token=", {}),
    ("/ws?token=" + TOKEN, {}),
    ("/ws", {"Authorization": "Bearer wrong"}),
    ("/ws", {"Authorization": "Basic " + TOKEN}),
], ids=["no_token", "wrong_query_token", "empty_query_token", "right_query_token",
        "wrong_bearer", "basic_scheme"])
def test_with_an_api_token_an_upgrade_without_the_right_token_is_401(server, path, headers):
    srv = server("--api-token", TOKEN, *NO_DEMOS)
    raw = RawWebSocket(srv, path, headers)
    try:
        status, _ = raw.handshake()
    finally:
        raw.close()
    assert status == 401, status


def test_with_an_api_token_the_websocket_takes_the_bearer_header_or_the_session_cookie(server):
    srv = server("--api-token", TOKEN, *NO_DEMOS)
    auth = {"Authorization": "Bearer " + TOKEN}
    counter(srv, headers=auth)
    login = srv.request("POST", "/login", "token=" + TOKEN,
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert login.status == 303, login
    session = {"Cookie": login.headers["Set-Cookie"].split(";")[0]}

    async def scenario():
        with pytest.raises(InvalidStatusCode) as refused:
            await open_live(srv)
        assert refused.value.status_code == 401
        for n, headers in enumerate((auth, session), 1):
            async with live(srv, headers=headers) as ws:
                msg = await ws.subscribe("p")
                assert msg["html"] == f"p:n={n - 1}", msg
                await patch(srv, "c", {"n": n}, auth)
                await ws.render("p", lambda m, n=n: m["html"] == f"p:n={n}")

    run(scenario())


def test_a_raw_upgrade_gets_101_with_the_right_accept_key(srv):
    counter(srv)
    raw = RawWebSocket(srv)
    try:
        status, headers = raw.handshake()
        assert status == 101, (status, headers)
        assert headers["upgrade"].lower() == "websocket", headers
        assert headers["sec-websocket-accept"] == raw.expected_accept(), headers
    finally:
        raw.close()


# --- a client that never reads ---------------------------------------------------------------

def test_a_client_that_never_reads_does_not_hold_up_the_others(srv):
    big = "x" * 200_000
    create_storage(srv, "big", {"tag": "t0", "blob": big})
    create_panel(srv, "huge", ["big"], "{{ big.tag }}:{{ big.blob }}")
    pushes = 200

    def push_all():
        client = srv.client(timeout=30)
        try:
            for i in range(1, pushes + 1):
                res = client.request("PATCH", "/api/storages/big", {"data": {"tag": f"t{i}"}})
                assert res.status == 200, res
        finally:
            client.close()
        return time.monotonic()

    stalled = RawWebSocket(srv, rcvbuf=4096)
    try:
        status, _ = stalled.handshake()
        assert status == 101, status
        stalled.send_json({"type": "subscribe", "panel": "huge"})
        # Only the head of the first render is read: the subscription is in place, and from
        # here on this client never reads again.
        opcode, length = stalled.frame_header()
        assert opcode == 0x1 and length > 0, (opcode, length)

        async def scenario():
            async with live(srv) as reader:
                start = await reader.subscribe("huge")
                assert start["html"].startswith("t0:"), start["html"][:20]
                finished = await asyncio.to_thread(push_all)
                final, _ = await reader.render(
                    "huge", lambda m: m["html"].startswith(f"t{pushes}:"), timeout=15,
                    what="the render of the last change")
                waited = time.monotonic() - finished
                assert waited < 5, f"the latest render came {waited:.1f}s after the last change"
                assert final["html"] == f"t{pushes}:{big}", final["html"][:40]
                health = await rest(srv, "GET", "/healthz")
                assert health.status == 200, health
                # The same connection still works right after.
                await patch(srv, "big", {"tag": "after"})
                await reader.render("huge", lambda m: m["html"].startswith("after:"))

        run(scenario())
    finally:
        stalled.close()
    assert srv.running, f"tessera died; stderr:\n{srv.stderr()}"
    assert srv.request("GET", "/healthz").status == 200
    assert srv.request("GET", "/api/panels/huge/render").body["html"].startswith("after:")


# --- metrics ---------------------------------------------------------------------------------

def test_open_connections_and_sent_messages_are_in_the_metrics(srv):
    counter(srv)
    sent_before = ws_metric_total(srv, "tessera_ws_messages_sent_total")
    assert ws_metric_total(srv, "tessera_ws_connections") == 0

    async def scenario():
        async with live(srv) as one, live(srv) as two:
            await one.subscribe("p")
            await two.subscribe("p")
            await patch(srv, "c", {"n": 1})
            for ws in (one, two):
                await ws.render("p", lambda m: m["html"] == "p:n=1")
            assert await asyncio.to_thread(ws_metric_total, srv, "tessera_ws_connections") == 2
            sent = await asyncio.to_thread(ws_metric_total, srv, "tessera_ws_messages_sent_total")
            assert sent >= sent_before + 4, (sent_before, sent)

    run(scenario())
    wait_until(lambda: ws_metric_total(srv, "tessera_ws_connections") == 0, timeout=10,
               message=lambda: f"tessera_ws_connections back at 0 (now "
                               f"{ws_metric_total(srv, 'tessera_ws_connections')})")
    text = srv.request("GET", "/metrics").body
    assert "# TYPE tessera_ws_connections gauge" in text
    assert "# TYPE tessera_ws_messages_sent_total counter" in text


def test_subscribing_again_after_unsubscribing_gets_the_current_render_again(srv):
    """The UI unchecks and re-checks a panel: the new card must be filled at once, although the
    connection has seen that version before."""
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            first = await ws.subscribe("p")
            await ws.send({"type": "unsubscribe", "panel": "p"})
            again = await ws.subscribe("p")
            assert (again["version"], again["html"]) == (first["version"], first["html"])

    run(scenario())


def test_a_panel_deleted_and_created_again_renders_for_a_new_subscription(srv):
    counter(srv)

    async def scenario():
        async with live(srv) as ws:
            await ws.subscribe("p")
            res = await rest(srv, "DELETE", "/api/panels/p")
            assert res.status == 200, res
            await ws.recv_until(lambda m: m["type"] == "deleted" and m["panel"] == "p",
                                what="the deletion notice")
            create_panel(srv, "p", ["c"], "again:{{ c.n }}")
            msg = await ws.subscribe("p")  # its version starts low again: still sent
            assert msg["html"] == "again:0", msg
            await patch(srv, "c", {"n": 5})
            await ws.render("p", lambda m: m["html"] == "again:5")

    run(scenario())
