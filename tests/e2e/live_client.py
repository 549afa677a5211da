"""WebSocket clients for the live-panel tests.

python3-websockets 10.4 has no synchronous client (websockets.sync arrived in 11), so tests
drive an asyncio client: each test body is a coroutine run by `run()`, every wait has a deadline
(asyncio.wait_for), and REST calls made meanwhile go through `rest()` (a thread) so the event
loop keeps reading frames. `RawWebSocket` does the upgrade by hand on a plain socket, for exact
handshake statuses and for a client that never reads.
"""
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
from urllib.parse import quote

import websockets
from websockets.exceptions import InvalidStatusCode  # noqa: F401 (re-exported for the tests)

WS_DEADLINE = 10.0  # one expected message
TEST_DEADLINE = 120.0  # a whole scenario
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def run(coro, timeout=TEST_DEADLINE):
    """Runs one test scenario to completion, failing it if it takes longer than `timeout`."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def rest(srv, method, path, body=None, headers=None):
    """srv.request on a thread, so frames keep being read while it waits."""
    return await asyncio.to_thread(srv.request, method, path, body, headers)


def ws_url(srv, token=None):
    return f"ws://{srv.connect_host}:{srv.port}/ws" + (f"?token={quote(token)}" if token else "")


def brief(msg):
    """A message as a short string, for failure reports (renders can be 200 KB)."""
    text = json.dumps(msg) if not isinstance(msg, str) else msg
    return text if len(text) <= 200 else text[:200] + f"... ({len(text)} chars)"


class Live:
    """One WebSocket connection; `received` keeps every message in arrival order."""

    def __init__(self, ws):
        self.ws = ws
        self.received = []

    async def send(self, msg):
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout=WS_DEADLINE):
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        assert isinstance(raw, str), f"a binary frame from the server: {raw[:100]!r}"
        msg = json.loads(raw)
        assert isinstance(msg, dict) and isinstance(msg.get("type"), str), raw[:300]
        self.received.append(msg)
        return msg

    async def recv_until(self, predicate, timeout=WS_DEADLINE, what="a message"):
        """Receives until `predicate(msg)`; returns (that message, the ones before it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skipped = []
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                msg = await self.recv(remaining)
            except asyncio.TimeoutError:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; received meanwhile: "
                    f"{[brief(m) for m in skipped]}") from None
            if predicate(msg):
                return msg, skipped
            skipped.append(msg)

    async def render(self, panel, predicate=lambda msg: True, timeout=WS_DEADLINE,
                     what=None):
        """The next render of `panel` satisfying `predicate`; returns (it, the ones before)."""
        return await self.recv_until(
            lambda m: m["type"] == "render" and m.get("panel") == panel and predicate(m),
            timeout, what or f"a render of {panel!r}")

    async def subscribe(self, panel, timeout=WS_DEADLINE):
        """Subscribes and returns the render that must come at once."""
        await self.send({"type": "subscribe", "panel": panel})
        msg, _ = await self.recv_until(
            lambda m: m.get("panel") == panel and m["type"] in ("render", "error",
                                                                 "render_error"),
            timeout, f"the first render of {panel!r}")
        assert msg["type"] == "render", msg
        assert isinstance(msg["version"], int) and isinstance(msg["html"], str), brief(msg)
        return msg

    async def barrier(self, timeout=WS_DEADLINE):
        """A round trip through the connection: sends a message of an unknown type and waits
        for its error. The server handles a connection's messages in order, so once it answers,
        everything sent before has been handled. Returns the messages received before it."""
        await self.send({"type": "e2e-barrier"})
        _, before = await self.recv_until(lambda m: m["type"] == "error", timeout,
                                          "the error answering the barrier message")
        return before

    async def close(self):
        await self.ws.close()


async def open_live(srv, token=None, headers=None):
    async def connect():
        return await websockets.connect(ws_url(srv, token), extra_headers=headers,
                                        compression=None, max_size=None, max_queue=None,
                                        ping_interval=None, open_timeout=None,
                                        close_timeout=2)
    return Live(await asyncio.wait_for(connect(), WS_DEADLINE))


@contextlib.asynccontextmanager
async def live(srv, token=None, headers=None):
    conn = await open_live(srv, token, headers)
    try:
        yield conn
    finally:
        await conn.close()


def renders(messages, panel):
    return [m for m in messages if m["type"] == "render" and m.get("panel") == panel]


# --- a WebSocket client on a raw socket --------------------------------------------------------

def client_frame(payload, opcode=0x1, fin=True, masked=True):
    """One client frame (RFC 6455 section 5.2): final and masked unless told otherwise."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_code(payload):
    """The status code of a close frame's payload (None when it has none)."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class RawWebSocket:
    """The upgrade done by hand. `rcvbuf` shrinks the receive buffer before connecting, so a
    client that never reads pushes back on the server quickly."""

    def __init__(self, srv, path="/ws", headers=None, rcvbuf=None, timeout=WS_DEADLINE,
                 key=None, version="13", early=b""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((srv.connect_host, srv.port))
        self.key = base64.b64encode(os.urandom(16)).decode() if key is None else key
        lines = [f"GET {path} HTTP/1.1", f"Host: {srv.connect_host}:{srv.port}",
                 "Upgrade: websocket", "Connection: Upgrade"]
        if self.key:
            lines.append(f"Sec-WebSocket-Key: {self.key}")
        lines.append(f"Sec-WebSocket-Version: {version}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        # `early`: frames sent in the same write as the request, before any answer.
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + early)

    def handshake(self):
        """Reads the response head, byte by byte so no frame after it is consumed; returns
        (status, {lower-case header: value})."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            assert byte, f"connection closed during the handshake after {head!r}"
            head += byte
            assert len(head) < 65536, "endless response head"
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 "), status_line
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def expected_accept(self):
        return base64.b64encode(hashlib.sha1((self.key + WS_GUID).encode()).digest()).decode()

    def recv_exactly(self, count):
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        return data

    def frame_header(self):
        """Reads the head of the next server frame only; returns (opcode, payload length)."""
        first, second = self.recv_exactly(2)
        assert not second & 0x80, "a masked frame from the server"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.recv_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.recv_exactly(8))[0]
        return first & 0x0F, length

    def frame(self):
        """The next whole server frame: (opcode, fin, payload bytes)."""
        first, second = self.recv_exactly(2)
        assert not second & 0x80, "a masked frame from the server"
        assert not first & 0x70, f"reserved bits set by the server: {first:#x}"
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self.recv_exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self.recv_exactly(8))[0]
        return first & 0x0F, bool(first & 0x80), self.recv_exactly(length)

    def message(self):
        """The next server frame, which must be a final text frame of JSON; returns it parsed."""
        opcode, fin, payload = self.frame()
        assert opcode == 0x1 and fin, (opcode, fin, payload[:100])
        return json.loads(payload)

    def closed_by_server(self):
        """Whether the server ended the TCP connection (EOF, or a reset) within the timeout."""
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def send_json(self, msg):
        self.sock.sendall(client_frame(json.dumps(msg)))

    def send_raw(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()
