"""Back pressure under `manage.py serve`: a viewer that stops reading is held back
at its socket, not buffered the whole answer, and is dropped once it takes nothing
for STREAM_VIEWER_STALL_SECONDS; its client resumes from its last offset."""

import asyncio
import socket
import time

import pytest
from asgiref.sync import sync_to_async

from tests.helpers import parse_sse, read_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

# More than the socket buffers on both sides hold (Linux grows them to a few MB).
ANSWER = ("x" * 99 + "\n") * 80_000


def _stalled_request(port: int, path: str, token: str) -> socket.socket:
    """A client that sends its request, then reads nothing: its window fills."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.connect(("127.0.0.1", port))
    client.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return client


def _read_to_the_end(client: socket.socket) -> str:
    """The response body (chunked) the server sent before it closed."""
    data = b""
    client.settimeout(30)
    while chunk := client.recv(1 << 16):
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    body = b""
    while True:
        size, _, rest = rest.partition(b"\r\n")
        if not int(size, 16):
            return body.decode()
        body, rest = body + rest[: int(size, 16)], rest[int(size, 16) + 2 :]


async def test_a_viewer_that_stops_reading_is_dropped_and_resumes(
    start_relay, alice, alice_token, make_log
):
    relay = start_relay(STREAM_VIEWER_STALL_SECONDS=1)
    log = await sync_to_async(make_log)(alice, response=ANSWER)
    path = f"/streams/{log.pk}/events"

    client = await asyncio.to_thread(_stalled_request, relay.port, path, alice_token)
    deadline = time.monotonic() + 30
    while "dropped a viewer" not in relay.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert f"stream {log.pk}: dropped a viewer (user {alice.pk})" in relay.log()
    body = await asyncio.to_thread(_read_to_the_end, client)
    client.close()

    # Held back: what it was sent is a part of the answer, and no ending.
    events, _, _ = parse_sse(body)
    tokens = [e for e in events if e.event == "token"]
    seen = "".join(e.data for e in tokens)
    assert 0 < len(seen) < len(ANSWER) // 2 and ANSWER.startswith(seen)
    assert [e.event for e in events if e.event != "token"] == ["meta"]

    async with relay.client(alice_token) as http:
        rest = await read_events(http, path, headers={"Last-Event-ID": tokens[-1].id})
    assert rest.status == 200
    assert seen + "".join(e.data for e in rest.events if e.event == "token") == ANSWER
    assert rest.events[-1].event == "done"
