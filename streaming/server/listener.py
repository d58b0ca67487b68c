"""daphne's server, as `manage.py serve` runs it: it remembers its listening ports
(to stop listening when it drains), leaves request bodies to Django, and tells each
HTTP request's viewer when its connection is full (`flow`).

Importing this module installs Twisted's asyncio reactor (daphne.server does).
"""

from daphne.server import Server

from streaming.server import flow


class Listener(Server):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.ports: list = []

    def listen_success(self, port) -> None:
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
