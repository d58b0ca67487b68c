"""Django's ASGI handler, with each request's thread borrowed from a pool.

Django runs a request's synchronous work (ORM queries, signal receivers) on one thread
of its own: asgiref's `ThreadSensitiveContext` starts a thread for the request and
ends it with the response. Starting a thread costs more CPU than the rest of a
stream's start, and a stream's response lasts minutes, so a thousand open streams
held a thousand idle threads. Here a request borrows a thread from a pool of at most
REQUEST_THREADS for its synchronous work (still one thread for the whole request, as
Django requires), and a streaming response hands its database connection and its
thread back before it starts (`send_response`); a later call in the same request
borrows one again. When every thread is lent, a request shares the one the fewest
requests hold, its calls queued behind theirs (Django's own default is one thread
for every request): a burst of a thousand starts or viewers no longer starts a
thousand threads, each with its stack and its malloc arena, which stayed in RSS
after the threads ended. A thread keeps its database connection between requests
only as CONN_MAX_AGE allows (checked when a request first borrows it, and at its
end).

The handler also starts the process's own background work (`startup`, the stream
leases' keeper) on its first request: daphne sends no ASGI lifespan events.
"""

import contextvars
import gc
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django import db
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import connection
from django.http import HttpResponseBase

_idle: list[ThreadPoolExecutor] = []  # no request holds them; the last returned last
_lent: dict[ThreadPoolExecutor, int] = {}  # the others: how many requests hold each
_lock = threading.Lock()
_lease: contextvars.ContextVar["_Lease"] = contextvars.ContextVar("thread_lease")


def _borrow() -> ThreadPoolExecutor:
    with _lock:
        if _idle:
            thread = _idle.pop()  # the most recently used: its caches are warm
        elif len(_lent) < settings.REQUEST_THREADS:
            thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
        else:
            thread = min(_lent, key=_lent.__getitem__)
        _lent[thread] = _lent.get(thread, 0) + 1
        return thread


def _give_back(thread: ThreadPoolExecutor) -> None:
    with _lock:
        _lent[thread] -= 1
        if not _lent[thread]:
            del _lent[thread]
            _idle.append(thread)


class _Lease(Executor):
    """One request's thread: borrowed at its first synchronous call, handed back
    when the request ends or says it needs no thread for a while."""

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        if self._thread is None:
            self._thread = _borrow()
            # What Django's request_started does to a request's thread, done where
            # the request first needs it (see `get_asgi_application`).
            self._thread.submit(_check_connections)
        return self._thread.submit(fn, *args, **kwargs)

    def hand_back(self) -> None:
        """Return the thread to the pool; a call still running on it (one whose
        request was cancelled) finishes there first, before any other."""
        if self._thread is not None:
            _give_back(self._thread)
            self._thread = None

    def let_go(self) -> None:
        """For a response that lasts: release the thread's database connection (as
        CONN_MAX_AGE allows), then hand the thread back. Queued, not awaited: the
        thread runs it before any call queued after it."""
        if self._thread is not None:
            self._thread.submit(_release_connection)
            self.hand_back()

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self.hand_back()


def _check_connections() -> None:
    # On the request's thread: the connections are that thread's own.
    db.reset_queries()
    db.close_old_connections()


def _release_connection() -> None:
    connection.close_if_unusable_or_obsolete()


class PooledThreadsASGIHandler(ASGIHandler):
    def __init__(self, *, startup: Callable[[], None] = lambda: None) -> None:
        super().__init__()
        self.startup = startup  # called on every request's loop; must be idempotent

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(
                f"Django can only handle ASGI/HTTP connections, not {scope['type']}."
            )
        self.startup()
        lease = _Lease()
        token = _lease.set(lease)
        try:
            async with ThreadSensitiveContext(executor=lease):
                await self.handle(scope, receive, send)
        finally:
            _lease.reset(token)
            lease.hand_back()

    async def send_response(self, response: HttpResponseBase, send) -> None:
        if response.streaming:
            # A stream lasts minutes: it must not pin a database connection (the pool
            # serves every stream) or a thread. A connection CONN_MAX_AGE keeps stays
            # with the thread for its next request; any other is closed.
            lease = _lease.get(None)
            if lease is not None:
                lease.let_go()
        await super().send_response(response, send)


def get_asgi_application() -> PooledThreadsASGIHandler:
    """Like `django.core.asgi.get_asgi_application`, with pooled request threads."""
    import django

    django.setup(set_prefix=False)
    from streaming.relay import leases  # needs the app registry

    handler = PooledThreadsASGIHandler(startup=leases.start)
    # Django checks the connections of a request's thread when the request starts, a
    # trip to a thread before any view runs, also for requests that never touch the
    # database. A lease does it instead, on its thread before the request's first call.
    signals.request_started.disconnect(db.reset_queries)
    signals.request_started.disconnect(db.close_old_connections)
    # Everything loaded so far (Django, the SDKs and their models) lives as long as the
    # process: keep it out of the garbage collector's full passes, which otherwise
    # stall the event loop (and every stream on it) for 100 ms and more.
    gc.collect()
    gc.freeze()
    return handler
