"""Django's ASGI handler, with each request's thread borrowed from a pool.

Django runs a request's synchronous work (ORM queries, signal receivers) on one thread
of its own: asgiref's `ThreadSensitiveContext` starts a thread for the request and
ends it with the response. Starting a thread costs more CPU than the rest of a
stream's start, and a stream's response lasts minutes, so a thousand open streams
held a thousand idle threads. Here a request borrows an idle thread for its
synchronous work (still one thread at a time, as Django requires), and a stream hands
it back before its response starts (`hand_back_thread`); a later call in the same
request borrows one again. A thread keeps its database connection between requests
only as CONN_MAX_AGE allows (Django checks at every request start and end).
"""

import contextvars
import gc
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

# Idle threads kept for the next requests; more than this many idle are ended.
MAX_IDLE_THREADS = 16

_idle: list[ThreadPoolExecutor] = []
_lock = threading.Lock()
_lease: contextvars.ContextVar["_Lease"] = contextvars.ContextVar("thread_lease")


def _borrow() -> ThreadPoolExecutor:
    with _lock:
        if _idle:
            return _idle.pop()
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")


def _give_back(thread: ThreadPoolExecutor) -> None:
    with _lock:
        if len(_idle) < MAX_IDLE_THREADS:
            _idle.append(thread)
            return
    # Close its connections on the thread that owns them, then let it end.
    thread.submit(connections.close_all)
    thread.shutdown(wait=False)


class _Lease(Executor):
    """One request's thread: borrowed at its first synchronous call, handed back
    when the request ends or says it needs no thread for a while."""

    def __init__(self) -> None:
        self._thread: ThreadPoolExecutor | None = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        if self._thread is None:
            self._thread = _borrow()
        return self._thread.submit(fn, *args, **kwargs)

    def hand_back(self) -> None:
        """Return the thread to the pool; a call still running on it (one whose
        request was cancelled) finishes there first, before any other."""
        if self._thread is not None:
            _give_back(self._thread)
            self._thread = None

    def shutdown(self, wait: bool = True, **kwargs: Any) -> None:
        self.hand_back()


def hand_back_thread() -> None:
    """Say that this request makes no synchronous calls for a while (a stream, once
    its database connection is closed): its thread serves other requests meanwhile."""
    lease = _lease.get(None)
    if lease is not None:
        lease.hand_back()


class PooledThreadsASGIHandler(ASGIHandler):
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(
                f"Django can only handle ASGI/HTTP connections, not {scope['type']}."
            )

        lease = _Lease()
        token = _lease.set(lease)
        try:
            async with ThreadSensitiveContext(executor=lease):
                await self.handle(scope, receive, send)
        finally:
            _lease.reset(token)
            lease.hand_back()


def get_asgi_application() -> PooledThreadsASGIHandler:
    """Like `django.core.asgi.get_asgi_application`, with pooled request threads."""
    import django

    django.setup(set_prefix=False)
    handler = PooledThreadsASGIHandler()
    # Everything loaded so far (Django, the SDKs and their models) lives as long as the
    # process: keep it out of the garbage collector's full passes, which otherwise
    # stall the event loop (and every stream on it) for 100 ms and more.
    gc.collect()
    gc.freeze()
    return handler
