"""A connection's writes (`server.listener`): those of one pass of the loop sent
together at its end, straight to the socket when nothing waits, buffered behind
whatever does, and the producer paused when the buffer fills, as Twisted would."""

import asyncio
import socket

import pytest
from twisted.internet import protocol, tcp

from streaming.server.listener import Listener, _Connection


class _Reactor:
    """Which connections asked the selector to report them writable."""

    def __init__(self) -> None:
        self.writing: set = set()

    def addReader(self, reader) -> None:  # noqa: N802
        pass

    def removeReader(self, reader) -> None:  # noqa: N802
        pass

    def addWriter(self, writer) -> None:  # noqa: N802
        self.writing.add(writer)

    def removeWriter(self, writer) -> None:  # noqa: N802
        self.writing.discard(writer)


class _Producer:
    paused = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802
        pass


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    reactor = _Reactor()
    connection = _Connection(ours, object(), ("127.0.0.1", 1), None, 0, reactor)
    yield connection, theirs, reactor
    ours.close()
    theirs.close()


def _received(theirs: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = theirs.recv(1 << 20)
        except BlockingIOError:
            return data
        data += chunk


async def test_the_writes_of_one_pass_go_out_together_at_its_end(pair):
    connection, theirs, reactor = pair

    connection.writeSequence([b"5\r\n", b"hello", b"\r\n"])
    connection.write(b"0\r\n\r\n")
    assert _received(theirs) == b""
    await asyncio.sleep(0)

    assert _received(theirs) == b"5\r\nhello\r\n0\r\n\r\n"
    assert reactor.writing == set()


async def test_what_was_written_goes_out_before_the_connection_closes(pair):
    connection, theirs, reactor = pair

    connection.write(b"the end")
    connection.loseConnection()

    assert _received(theirs) == b"the end"


async def test_what_the_socket_does_not_take_waits_and_what_follows_goes_after_it(
    pair,
):
    connection, theirs, reactor = pair
    answer = bytes(range(256)) * 40_000  # more than both socket buffers hold

    connection.write(answer)
    assert reactor.writing == {connection}
    connection.writeSequence([b"and", b" then"])
    received = _received(theirs)
    while connection in reactor.writing:
        connection.doWrite()
        received += _received(theirs)

    assert received == answer + b"and then"


async def test_a_full_buffer_pauses_the_producer_within_the_pass(pair):
    connection, theirs, reactor = pair
    producer = _Producer()
    connection.bufferSize = 16 * 1024
    connection.registerProducer(producer, True)

    connection.write(b"x" * 4_000_000)  # a writer that never waits for the next pass

    assert producer.paused
    while connection in reactor.writing:
        _received(theirs)
        connection.doWrite()
    assert not producer.paused


def test_the_server_makes_its_connections_so():
    listener = Listener(
        application=None,
        endpoints=["tcp:port=0:interface=127.0.0.1"],
        signal_handlers=False,
    )
    port = tcp.Port(0, protocol.Factory(), interface="127.0.0.1", reactor=_Reactor())
    port.startListening()
    try:
        listener.listen_success(port)
    finally:
        port.socket.close()

    assert port.transport is _Connection
    assert listener.ports == [port]
