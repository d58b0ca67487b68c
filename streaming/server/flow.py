"""Back pressure from a connection to its stream's viewer.

daphne's `send` never waits: each body chunk goes into Twisted's write buffer for the
socket, so a viewer whose client stopped reading (its TCP window full) would have the
whole answer buffered for it. Twisted does know when that buffer fills: it pauses and
resumes the request's registered push producer. `attach` registers a `Flow` as that
producer for each HTTP request and puts it in the ASGI scope, where the viewer awaits
`writable()` before it pulls each frame (`relay.viewer`).
"""

import asyncio
from typing import Any

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from streaming.relay.viewer import FLOW_EXTENSION

# What Twisted buffers for a connection before it pauses the producer (its default is
# 64 KiB): with frames of at most `dialects.FRAME_CHARS`, about what a stalled viewer holds.
BUFFER_BYTES = 16 * 1024


@implementer(IPushProducer)
class Flow:
    """Whether one request's connection takes more data, as Twisted reports it."""

    def __init__(self) -> None:
        self._writable = asyncio.Event()
        self._writable.set()

    # IPushProducer, called by Twisted on the event loop's thread.
    def pauseProducing(self) -> None:  # noqa: N802
        self._writable.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self._writable.set()

    def stopProducing(self) -> None:  # noqa: N802
        # The connection is going: let the viewer run into the disconnect.
        self._writable.set()

    async def writable(self, timeout: float) -> bool:
        if self._writable.is_set():
            return True
        try:
            await asyncio.wait_for(self._writable.wait(), timeout)
        except TimeoutError:
            return False
        return True


def attach(request: Any, scope: dict[str, Any]) -> None:
    """Register a `Flow` for daphne's `request` and offer it in its `scope`."""
    flow = Flow()
    transport = getattr(request.channel, "transport", None)
    if transport is not None and hasattr(transport, "bufferSize"):
        transport.bufferSize = BUFFER_BYTES
    request.registerProducer(flow, True)
    if getattr(request.channel, "_waitingForTransport", False):
        flow.pauseProducing()  # a previous response on this connection filled it
    finish = request.finish

    def finish_unregistered() -> None:
        # Twisted logs a failure for a producer still registered at the end.
        if request.producer is flow:
            request.unregisterProducer()
        finish()

    request.finish = finish_unregistered
    scope["extensions"] = {**(scope.get("extensions") or {}), FLOW_EXTENSION: flow}
