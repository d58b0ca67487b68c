"""The ASGI handler's pooled request threads, and middleware hooks on the event loop."""

import asyncio
import threading
from collections import Counter

import pytest
from django import db
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.http import HttpResponse
from django.urls import path
from django.utils.deprecation import MiddlewareMixin
from django.utils.module_loading import import_string

from streaming.server import asgi
from streaming.server.middleware import _OnTheLoop


async def _get(application, path: str, *, body: bool = False):
    """One GET through the ASGI application; its status (and body, with `body`)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect until the response is done
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    await application(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    if not body:
        return status
    return status, b"".join(
        m.get("body", b"") for m in sent if m["type"] == "http.response.body"
    )


async def test_requests_reuse_their_threads():
    """Django would start (and end) a thread for every request."""
    threads: list[str] = []

    def record(**kwargs: object) -> None:
        threads.append(threading.current_thread().name)

    request_started.connect(record)
    request_finished.connect(record)
    application = asgi.PooledThreadsASGIHandler()
    try:
        statuses = [await _get(application, "/no-such-page/") for _ in range(5)]
    finally:
        request_started.disconnect(record)
        request_finished.disconnect(record)

    assert statuses == [404] * 5
    assert len(threads) == 10
    assert len(set(threads)) == 1, threads
    assert threads[0].startswith("request")


def test_a_handed_back_thread_serves_the_next_request():
    lease, other = asgi._Lease(), asgi._Lease()
    first = lease.submit(threading.current_thread).result()
    lease.hand_back()

    assert other.submit(threading.current_thread).result() is first
    assert lease.submit(threading.current_thread).result() is not first
    lease.hand_back()
    other.hand_back()


def test_a_lease_checks_its_threads_connections_before_its_first_call(monkeypatch):
    """What Django's request_started did, on the thread the request borrows."""
    calls: list[str] = []
    monkeypatch.setattr(asgi, "_check_connections", lambda: calls.append("check"))
    lease = asgi._Lease()
    lease.submit(calls.append, "first").result()
    lease.submit(calls.append, "second").result()
    lease.hand_back()
    lease.submit(calls.append, "later").result()
    lease.hand_back()

    assert calls == ["check", "first", "second", "check", "later"]


async def _probe(request):
    lease = asgi._lease.get()
    return HttpResponse("thread" if lease._thread else "none")


urlpatterns = [path("probe/", _probe)]


@pytest.mark.urls(__name__)
async def test_a_view_runs_before_any_trip_to_a_thread():
    """Django's request_started receivers would send every request through its
    thread before the view, also one that never touches the database."""
    application = asgi.get_asgi_application()
    try:
        status, body = await _get(application, "/probe/", body=True)
    finally:
        request_started.connect(db.reset_queries)
        request_started.connect(db.close_old_connections)

    assert (status, body) == (200, b"none")


def test_past_request_threads_requests_share_the_least_busy_ones(monkeypatch, settings):
    """A burst of a thousand requests must not start a thousand threads."""
    settings.REQUEST_THREADS = 2
    monkeypatch.setattr(asgi, "_idle", [])
    monkeypatch.setattr(asgi, "_lent", {})
    leases = [asgi._Lease() for _ in range(5)]
    threads = [lease.submit(threading.current_thread).result() for lease in leases]
    # Each request keeps its one thread for every call.
    again = [lease.submit(threading.current_thread).result() for lease in leases]
    for lease in leases:
        lease.hand_back()
    idle = list(asgi._idle)
    for executor in idle:
        executor.shutdown()

    assert again == threads
    assert sorted(Counter(threads).values()) == [2, 3]
    assert len(idle) == 2 and asgi._lent == {}


async def test_middleware_hooks_run_on_the_event_loop(rf):
    ran_on: list[int] = []

    class Probe(_OnTheLoop, MiddlewareMixin):
        def process_request(self, request):
            ran_on.append(threading.get_ident())

        def process_response(self, request, response):
            ran_on.append(threading.get_ident())
            return response

    async def view(request):
        return HttpResponse("ok")

    response = await Probe(view)(rf.get("/"))

    assert response.status_code == 200
    assert ran_on == [threading.get_ident()] * 2


async def test_a_hook_that_needs_a_thread_gets_one(rf):
    ran_on: list[int] = []

    class Probe(_OnTheLoop, MiddlewareMixin):
        def needs_thread(self, request):
            return True

        def process_request(self, request):
            ran_on.append(threading.get_ident())

    async def view(request):
        return HttpResponse("ok")

    await Probe(view)(rf.get("/"))

    assert ran_on and ran_on[0] != threading.get_ident()


def test_every_middleware_is_async_or_runs_its_hooks_on_the_loop():
    """A stock MiddlewareMixin in the list would send every request through a thread
    twice more."""
    for dotted in settings.MIDDLEWARE:
        middleware = import_string(dotted)
        if isinstance(middleware, type) and issubclass(middleware, MiddlewareMixin):
            assert issubclass(middleware, _OnTheLoop), dotted
