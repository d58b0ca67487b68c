"""What the tests share besides fixtures: an SSE reader, the fake provider and relay
processes, and small builders. Fixtures live in conftest.py and use these."""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote, urlencode

import httpx
from httpx_sse import ServerSentEvent, aconnect_sse

if TYPE_CHECKING:
    from streaming.models import StreamLog

BASE_DIR = Path(__file__).resolve().parent.parent
FAKE_PROVIDER = BASE_DIR / "bench" / "fake_provider.py"
USER_AGENT = "relay-tests/1.0"


# --------------------------------------------------------------------------- SSE


class Event(NamedTuple):
    event: str
    data: str
    id: str


@dataclass
class Received:
    """One response: its status and headers, and the events of an event stream (or
    the body of anything else)."""

    status: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    retry: int | None = None
    body: str = ""

    def everything(self) -> str:
        """All a client could see, for searching it for secrets."""
        headers = "\n".join(f"{name}: {value}" for name, value in self.headers.items())
        return "\n".join([headers, self.body, *(repr(e) for e in self.events)])


async def read_events(
    client: httpx.AsyncClient,
    url: str,
    *,
    method: str = "GET",
    until: Callable[[list[Event]], bool] | None = None,
    **kwargs: object,
) -> Received:
    """Read an event stream with httpx-sse until it ends, or until `until(events)`
    is true, when the connection is closed (the client hangs up)."""
    async with aconnect_sse(client, method, url, **kwargs) as source:
        response = source.response
        received = Received(response.status_code, response.headers)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            received.body = (await response.aread()).decode()
            return received
        async for sse in source.aiter_sse():
            if received.retry is None:
                received.retry = sse.retry
            if not dispatched(sse):
                continue
            received.events.append(Event(sse.event, sse.data, sse.id))
            if until is not None and until(received.events):
                break
    return received


def dispatched(sse: ServerSentEvent) -> bool:
    """Whether a browser would dispatch this event too.

    httpx-sse also dispatches a block without data (the `retry:` block, a comment once
    an id was seen) as a blank "message"; the relay always names its events.
    """
    return not (sse.event == "message" and sse.data == "")


def token_text(events: list[Event]) -> str:
    """The answer as a client rebuilds it from the `token` events."""
    return "".join(event.data for event in events if event.event == "token")


def tokens_at_least(count: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(e.event == "token" for e in events) >= count


def offsets(events: list[Event]) -> list[int]:
    """The offsets in the `id:` of the token events (`<stream>:` prefix dropped)."""
    return [int(e.id.rpartition(":")[2]) for e in events if e.event == "token"]


def parse_sse(text: str) -> tuple[list[Event], list[str], int | None]:
    """A WHATWG event-stream parser: (events, comments, last retry).

    Lines end at CRLF, CR or LF only; one space after the colon is dropped; an event
    is dispatched at a blank line if it has data; an unterminated event is dropped.
    """
    events: list[Event] = []
    comments: list[str] = []
    retry = None
    kind, data, last_id = "", [], ""
    lines = re.split(r"\r\n|\r|\n", text)
    lines.pop()  # what follows the last line ending is not a line yet
    for line in lines:
        if not line:
            if data:
                events.append(Event(kind or "message", "\n".join(data), last_id))
            kind, data = "", []
            continue
        if line.startswith(":"):
            comments.append(line[1:].removeprefix(" "))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events, comments, retry


# --------------------------------------------------------------------------- provider


def fake(**options: object) -> str:
    """A directive for the fake provider, to put in a prompt."""
    return f"[fake?{urlencode(options)}]"


def new_key() -> str:
    """A unique `key` option, to find one request among the fake provider's streams."""
    return uuid.uuid4().hex


@cache
def provider_text(options: str) -> str:
    """The exact text the fake provider streams for `options` (its --print-text)."""
    return _printed("--print-text", options)


@cache
def provider_reasoning(options: str) -> str:
    """The exact reasoning the fake provider streams for `options` (its
    --print-reasoning)."""
    return _printed("--print-reasoning", options)


def _printed(flag: str, options: str) -> str:
    result = subprocess.run(
        [sys.executable, str(FAKE_PROVIDER), flag, options],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(result.stdout)


def normalised(text: str) -> str:
    """What the relay makes of a provider's text: CRLF and CR become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def expected_answer(**options: object) -> str:
    return normalised(provider_text(_text_options(options)))


def expected_reasoning(**options: object) -> str:
    return normalised(provider_reasoning(_text_options(options)))


def _text_options(options: dict[str, object]) -> str:
    """The option string of `options` without `key`, which changes no text (and
    would defeat the cache)."""
    return urlencode({k: v for k, v in options.items() if k != "key"})


def prompt_tokens(prompt: str) -> int:
    """The input token count the fake provider reports for a one-message prompt."""
    return max(1, len(prompt) // 4)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class FakeProvider:
    """bench/fake_provider.py in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, directory: Path, *, api_key: str | None) -> None:
        self.api_key = api_key
        name = f"fake-provider-{uuid.uuid4().hex[:8]}"
        port_file = directory / f"{name}.port"
        self.log_path = directory / f"{name}.log"
        command = [sys.executable, str(FAKE_PROVIDER), "--port", "0"]
        command += ["--port-file", str(port_file)]
        if api_key:
            command += ["--api-key", api_key]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=BASE_DIR
            )
        try:
            self.url = f"http://127.0.0.1:{self._port(port_file)}"
            httpx.get(f"{self.url}/health", timeout=5).raise_for_status()
        except BaseException:
            self.stop()
            raise
        self.openai_base_url = f"{self.url}/v1"
        self.anthropic_base_url = self.url

    def _port(self, port_file: Path) -> int:
        deadline = time.monotonic() + 15
        while not port_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake provider did not start:\n{self.log()}")
            time.sleep(0.02)
        return int(port_file.read_text())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stats(self) -> dict:
        response = httpx.get(f"{self.url}/stats", params={"recent": 1000}, timeout=5)
        return response.raise_for_status().json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/stats/reset", timeout=5).raise_for_status()

    def streams(self, key: str) -> list[dict]:
        """The finished streams whose directive carried `key=<key>`."""
        recent = self.stats()["recent"]
        return [s for s in recent if f"key={key}" in s["options"].split("&")]

    async def outcome(self, key: str, *, timeout: float = 10) -> dict:
        """The one stream with `key`, once it has ended."""
        deadline = time.monotonic() + timeout
        while not (streams := self.streams(key)):
            if time.monotonic() > deadline:
                raise AssertionError(f"the fake provider saw no finished stream {key}")
            await asyncio.sleep(0.05)
        assert len(streams) == 1, streams
        return streams[0]

    def stop(self) -> None:
        _stop(self.process)


# --------------------------------------------------------------------------- relay


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Relay:
    """The project as production runs it (`manage.py serve`), in a subprocess on a
    free port of 127.0.0.1; `args` are more options of `serve`."""

    def __init__(
        self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ()
    ) -> None:
        self.env = env
        self.log_path = log_path
        for _attempt in range(3):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with open(log_path, "a") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "manage.py", "serve", "--host", "127.0.0.1"]
                    # A short drain, so that stopping a relay stays quick.
                    + ["--port", str(self.port), "--drain", "1", *args],
                    cwd=BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._ready():
                return
            # Most likely another process took the port between probe and bind.
            self.stop()
        raise RuntimeError(f"the relay did not start:\n{self.log()}")

    def _ready(self) -> bool:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                # Any answer means Django is loaded; without credentials it is 401.
                httpx.get(f"{self.url}/streams/0/events", timeout=2)
                return True
            except httpx.TransportError:
                time.sleep(0.05)
        return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, token: str | None = None, **kwargs: object) -> httpx.AsyncClient:
        headers = {"User-Agent": USER_AGENT}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        headers.update(kwargs.pop("headers", {}))
        kwargs.setdefault("timeout", httpx.Timeout(15, connect=5))
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)

    def terminate(self) -> None:
        """Ask the process to stop without waiting (`stop` waits)."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        _stop(self.process)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the database described by Django's `settings_dict`."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{settings_dict['NAME']}"
    if engine == "django.db.backends.postgresql":
        auth = quote(settings_dict.get("USER") or "", safe="")
        if settings_dict.get("PASSWORD"):
            auth += ":" + quote(settings_dict["PASSWORD"], safe="")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{quote(settings_dict['NAME'])}"
    raise RuntimeError(f"no DATABASE_URL for {engine}")


# --------------------------------------------------------------------------- data


async def finished_log(pk: int, *, timeout: float = 10) -> "StreamLog":
    """The stream log row once the generation has written its outcome.

    Viewers get the last frame just before the row is written, so tests wait for it.
    """
    from streaming.models import StreamLog

    deadline = time.monotonic() + timeout
    while True:
        log = await StreamLog.objects.aget(pk=pk)
        if log.is_finished:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"stream {pk} is still {log.status}")
        await asyncio.sleep(0.05)


def stream_id(received: Received) -> int:
    meta = received.events[0]
    assert meta.event == "meta", received.events[:3]
    return json.loads(meta.data)["stream_id"]


def environ_without(*prefixes: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def log_since(path: Path, offset: int) -> str:
    """What a subprocess wrote to its log after byte `offset`."""
    with open(path, "rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


LOGS: list[tuple[str, Path]] = []
"""Logs of the subprocesses started in this session, shown when a test fails."""


def register_log(name: str, path: Path) -> None:
    LOGS.append((name, path))


# --------------------------------------------------------------------------- faults


class TcpProxy:
    """A TCP proxy on a free port of 127.0.0.1 in front of `host:port`, for a service
    that goes away: `cut()` aborts every connection and refuses new ones until
    `restore()`. It runs its own event loop in a thread."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.accepting = True
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        self._server = self._call(self._listen())
        self.port = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _handle(self, reader, writer) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                *self.target
            )
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, upstream_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                _pipe(reader, upstream_writer), _pipe(upstream_reader, writer)
            )
        finally:
            self._pairs.discard(pair)

    def cut(self) -> None:
        async def cut() -> None:
            self.accepting = False
            for pair in list(self._pairs):
                for writer in pair:
                    writer.transport.abort()

        self._call(cut())

    def restore(self) -> None:
        self.accepting = True

    def close(self) -> None:
        self.cut()
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


class RedisServer:
    """A private redis-server on a free port of 127.0.0.1 that keeps nothing on disk,
    for tests that restart it (never the shared one)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = directory / f"redis-{self.port}.log"
        self.start()

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
                + ["--save", "", "--appendonly", "no", "--dir", str(self.directory)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: every connection drops, every key is gone."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        _stop(self.process)
