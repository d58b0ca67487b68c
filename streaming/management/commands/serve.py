"""The production entrypoint: daphne, with a graceful shutdown for streams.

Plain daphne drops every connection at once on SIGTERM. This command runs daphne's
server without its signal handlers and handles SIGTERM/SIGINT itself: it stops
listening, lets running generations finish for STREAM_DRAIN_SECONDS, ends the rest as
`interrupted` (their viewers get a retryable error frame and the partial answers are
recorded), then stops. Its server (`streaming.server.listener`) leaves request bodies
to Django, so a body that cannot be parsed gets the API's JSON error.
"""

import asyncio
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.module_loading import import_string


class Command(BaseCommand):
    help = "Serve the relay with daphne, draining streams on SIGTERM."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--backlog", type=int, default=2048)
        parser.add_argument(
            "--drain",
            type=float,
            default=settings.STREAM_DRAIN_SECONDS,
            help="seconds running streams get to finish after SIGTERM",
        )
        parser.add_argument(
            "--proxy-headers",
            action="store_true",
            help="trust X-Forwarded-For/-Proto from the reverse proxy",
        )
        parser.add_argument("--no-access-log", action="store_true")

    def handle(
        self, *args, host: str, port: int, backlog: int, drain: float, **options
    ):
        # Imported here: importing daphne.server installs Twisted's asyncio reactor.
        from daphne.access import AccessLogGenerator

        from streaming.relay import hub
        from streaming.server.listener import Listener

        async def shut_down() -> None:
            self.stderr.write(f"Draining: streams get {drain:g} s to finish.")
            for listening_port in server.ports:
                listening_port.stopListening()
            await hub.get().drain(drain)
            server.stop()

        def on_signal() -> None:
            if not stopping:
                stopping.append(asyncio.ensure_future(shut_down()))

        def install_handlers() -> None:
            loop = asyncio.get_event_loop()
            for number in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(number, on_signal)
            self.stdout.write(f"Serving on http://{host}:{port}/", ending="\n")
            self.stdout.flush()

        stopping: list[asyncio.Future] = []
        proxy = ["X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"]
        proxy_headers = proxy if options["proxy_headers"] else [None, None, None]
        server = Listener(
            application=import_string(settings.ASGI_APPLICATION),
            endpoints=[f"tcp:port={port}:interface={host}:backlog={backlog}"],
            signal_handlers=False,
            action_logger=None
            if options["no_access_log"]
            else AccessLogGenerator(sys.stdout),
            proxy_forwarded_address_header=proxy_headers[0],
            proxy_forwarded_port_header=proxy_headers[1],
            proxy_forwarded_proto_header=proxy_headers[2],
            ready_callable=install_handlers,
            application_close_timeout=10,
        )
        server.run()
