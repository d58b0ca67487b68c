"""daphne's server, as `manage.py serve` runs it: it remembers its listening ports
(to stop listening when it drains), leaves request bodies to Django, tells each HTTP
request's viewer when its connection is full (`flow`), and sends what a connection is
given during a pass of the loop in one piece at its end (`_Connection`).

Importing this module installs Twisted's asyncio reactor (daphne.server does).
"""

import asyncio
from collections.abc import Iterable

from daphne.server import Server
from twisted.internet import tcp

from streaming.server import flow


class _Connection(tcp.Server):
    """A TCP connection that sends what it is given at the end of the loop's pass.

    Twisted buffers every write, asks the selector to report the socket writable
    (an `epoll_ctl`), sends on the loop's next pass and then stops asking (another):
    at 200 paced streams, registering for writes alone took 13 % of the relay's CPU.
    Here what is written during a pass is held and sent in one piece when the pass
    ends, straight to the socket when nothing waits before it. What the socket does
    not take (its send buffer is full) is buffered as Twisted does, and so is
    everything after it: the producer is still paused when that buffer fills, and
    errors still take Twisted's own path.
    """

    _held: list[bytes] | None = None  # written during this pass of the loop
    _held_bytes = 0

    def write(self, data: bytes) -> None:
        if data:
            self._hold([data])

    def writeSequence(self, iovec: Iterable[bytes]) -> None:  # noqa: N802
        self._hold(list(iovec))

    def loseConnection(self) -> None:  # noqa: N802
        self._send_held()
        super().loseConnection()

    def loseWriteConnection(self) -> None:  # noqa: N802
        self._send_held()
        super().loseWriteConnection()

    def _hold(self, parts: list[bytes]) -> None:
        if not self._nothing_waits():
            self._send_held()
            super().writeSequence(parts)
            return
        if self._held is None:
            asyncio.get_running_loop().call_soon(self._send_held)
            self._held, self._held_bytes = [], 0
        self._held += parts
        self._held_bytes += sum(map(len, parts))
        if self._held_bytes >= self.bufferSize:
            # A writer that never waits (a viewer far behind its stream's text) must
            # meet the full buffer, and the paused producer, within the pass.
            self._send_held()

    def _send_held(self) -> None:
        held, self._held = self._held, None
        if held:
            super().write(self._send_now(b"".join(held)))

    def _nothing_waits(self) -> bool:
        return (
            self.connected
            and not (self.TLS or self.disconnecting or self._writeDisconnected)
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
        )

    def _send_now(self, data: bytes) -> bytes:
        """What is left of `data` to buffer once the socket took what it would."""
        if not data or not self._nothing_waits():
            return data
        sent = self.writeSomeData(data)
        if isinstance(sent, Exception) or sent < 0:
            return data  # a lost connection: Twisted's write path reports it
        return data[sent:]


class Listener(Server):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.ports: list = []

    def listen_success(self, port) -> None:
        # Called as soon as the port listens, before it accepts a connection.
        if isinstance(port, tcp.Port):
            port.transport = _Connection
        self.ports.append(port)
        super().listen_success(port)

    def protocol_connected(self, protocol) -> None:
        # Each request's protocol passes here as it is built, before its body has
        # arrived. Twisted parses form bodies into `request.args`, which daphne never
        # reads, and answers an empty 400 itself to a multipart body it cannot parse
        # (no boundary): leave bodies to Django, whose refusal is our JSON error.
        protocol._parsePOSTFormSubmission = False
        super().protocol_connected(protocol)

    def create_application(self, protocol, scope):
        if scope.get("type") == "http":
            flow.attach(protocol, scope)
        return super().create_application(protocol, scope)
