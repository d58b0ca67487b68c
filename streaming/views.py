import json
import re
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.urls import reverse

from streaming import conversations, generation, hub, limits, sse
from streaming.asgi import hand_back_thread
from streaming.auth import UNREADABLE_BODY, allow, api_auth, error
from streaming.forms import StartForm
from streaming.models import StreamLog

_NUMBER = re.compile(r"[0-9]{1,15}\Z")


@allow("GET")
@api_auth(same_origin_session=True)
async def chat_stream(request: HttpRequest) -> HttpResponse:
    """The seed's contract: start a stream from `?prompt=` and relay it, or resume the
    stream named by Last-Event-ID (`<stream id>:<offset>`) instead of paying again."""
    last_event_id = _last_event_id(request)
    if last_event_id is not None:
        stream_id, _, offset = last_event_id.partition(":")
        if not _NUMBER.match(stream_id):
            return error(
                400, "bad_last_event_id", "Last-Event-ID must be '<stream>:<offset>'."
            )
        return await _events(request, int(stream_id), offset, id_prefix=f"{stream_id}:")
    form = StartForm(request.GET, single_turn=True)
    if not form.is_valid():
        return _invalid(form)
    try:
        log = (await _start(request, form, new_conversation=False)).log
    except limits.LimitExceeded as exceeded:
        return _over_limit(exceeded)
    except hub.Draining:
        return _draining()
    return await _stream(log, after=0, id_prefix=f"{log.pk}:")


@allow("POST")
@api_auth()
async def start_stream(request: HttpRequest) -> HttpResponse:
    try:
        data = _body(request)
    except RequestDataTooBig:
        return error(413, "too_large", "The request body is too large.")
    except ValueError as problem:
        return error(400, "bad_request", str(problem))
    form = StartForm(data)
    if not form.is_valid():
        return _invalid(form)
    try:
        turn = await _start(request, form, new_conversation=True)
    except conversations.NoSuchConversation:
        return error(404, "not_found", "No such conversation.")
    except conversations.NothingToRegenerate:
        return error(400, "bad_request", "There is no prompt to answer again.")
    except limits.LimitExceeded as exceeded:
        return _over_limit(exceeded)
    except hub.Draining:
        return _draining()
    await _release_connection()
    log, conversation = turn.log, turn.conversation
    body = {
        "id": log.pk,
        "events_url": reverse("streaming:stream-events", args=[log.pk]),
        "stop_url": reverse("streaming:stream-stop", args=[log.pk]),
        "conversation_id": conversation.pk,
        "conversation_url": conversation.get_absolute_url(),
        "conversation_title": conversation.title,
    }
    return JsonResponse(body, status=201)


@allow("GET")
@api_auth()
async def stream_events(request: HttpRequest, stream_id: int) -> HttpResponse:
    return await _events(request, stream_id, _last_event_id(request))


@allow("POST")
@api_auth()
async def stop_stream(request: HttpRequest, stream_id: int) -> HttpResponse:
    log = await _owned_log(request, stream_id)
    if log is None:
        return _not_found()
    await _release_connection()
    if log.is_finished:
        return JsonResponse({"id": log.pk, "status": log.status})
    await hub.get().stop(log.pk)
    return JsonResponse({"id": log.pk, "status": "stopping"}, status=202)


async def _events(
    request: HttpRequest, stream_id: int, offset: str | None, *, id_prefix: str = ""
) -> HttpResponse:
    """Follow a stream from `offset`, the client's last event id (None: from the start)."""
    log = await _owned_log(request, stream_id)
    if log is None:
        return _not_found()
    known = hub.get().known_length(log)
    after = "0" if offset is None else offset
    if not _NUMBER.match(after) or (known is not None and int(after) > known):
        return error(
            400, "bad_last_event_id", "Last-Event-ID is not an offset of this stream."
        )
    if offset is not None and log.is_finished and int(after) == known:
        # A reconnect that already has everything: 204 tells EventSource to stop.
        # A first connection gets the ending frame, even after an empty answer.
        return HttpResponse(status=204)
    return await _stream(log, after=int(after), id_prefix=id_prefix)


async def _stream(log: StreamLog, *, after: int, id_prefix: str) -> HttpResponse:
    await _release_connection()
    hand_back_thread()
    feed = await hub.attach(log)
    return sse.response(_frames(log, feed, after=after, id_prefix=id_prefix))


async def _frames(
    log: StreamLog, feed: hub.Feed, *, after: int, id_prefix: str
) -> AsyncIterator[str]:
    meta = {"stream_id": log.pk, "provider": log.provider, "model": log.model}
    yield sse.retry(settings.SSE_RETRY_MS) + sse.encode_json("meta", meta)
    async for frame in hub.follow(log, after=after, id_prefix=id_prefix, feed=feed):
        yield frame


async def _start(
    request: HttpRequest, form: StartForm, *, new_conversation: bool
) -> conversations.Turn:
    """Take a stream slot (raises `limits.LimitExceeded`), write the rows, start."""
    data = form.cleaned_data
    if hub.get().draining:
        raise hub.Draining()
    user_limits = await limits.acquire(request.user.pk)
    try:
        turn = await sync_to_async(conversations.begin)(
            request.user,
            prompt=data["prompt"],
            provider=data["provider"],
            model=data["model"],
            conversation_id=data.get("conversation"),
            new_conversation=new_conversation,
            regenerate=data.get("regenerate", False),
            client_addr=request.META.get("REMOTE_ADDR") or None,
            user_agent=request.headers.get("User-Agent", ""),
        )
    except BaseException:
        await limits.release(request.user.pk)
        raise
    # From here the generation owns the slot and gives it back when it ends.
    await generation.start(turn.log, turn.messages, budget=user_limits.tokens_per_day)
    return turn


async def _owned_log(request: HttpRequest, stream_id: int) -> StreamLog | None:
    logs = StreamLog.objects.all()
    if not request.user.is_staff:
        # Another user's stream answers 404, so ids reveal nothing.
        logs = logs.filter(user_id=request.user.pk)
    return await logs.filter(pk=stream_id).afirst()


def _last_event_id(request: HttpRequest) -> str | None:
    return request.headers.get("Last-Event-ID") or request.GET.get("last_event_id")


def _body(request: HttpRequest) -> QueryDict | dict:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ValueError("The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValueError("The JSON body must be an object.")
        return {key: _form_value(value) for key, value in data.items()}
    try:
        return request.POST
    except RequestDataTooBig:
        raise
    except UNREADABLE_BODY:
        raise ValueError("The form body cannot be read.") from None


def _form_value(value: object) -> str | None:
    """A JSON value as a form field sees it (objects and lists are not accepted)."""
    if isinstance(value, bool):
        return "true" if value else ""
    if isinstance(value, str | int):
        return str(value)
    return None


def _invalid(form: StartForm) -> JsonResponse:
    if form.is_too_long:
        return error(413, "too_large", form.message())
    return error(400, "bad_request", form.message(), fields=form.errors.get_json_data())


def _over_limit(exceeded: limits.LimitExceeded) -> JsonResponse:
    response = error(
        429, exceeded.code, exceeded.message, retry_after=exceeded.retry_after
    )
    response["Retry-After"] = str(exceeded.retry_after)
    return response


def _draining() -> JsonResponse:
    response = error(503, "unavailable", "This server is restarting; try again now.")
    response["Retry-After"] = "1"
    return response


def _not_found() -> JsonResponse:
    return error(404, "not_found", "No such stream.")


@sync_to_async
def _release_connection() -> None:
    """Give this request's database connection back before a long response: a
    stream must not pin a connection for its whole life (the pool serves every
    stream). A connection CONN_MAX_AGE keeps stays with the thread for its next
    request; any other is closed."""
    connection.close_if_unusable_or_obsolete()
