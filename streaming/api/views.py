"""The stream endpoints: start, follow and stop streams, for browsers and programs.

Each view reads its input with `forms`, calls one service (`generation.start`, or the
hub) and answers; whatever they refuse is a `Refused`, answered by `endpoint`.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from streaming import sse
from streaming.api import forms
from streaming.api.decorators import endpoint
from streaming.errors import Refused
from streaming.models import StreamLog
from streaming.providers.base import Options
from streaming.relay import dialects, generation, hub, viewer
from streaming.relay.joined import TEXT_FIELDS, Position


class NoSuchStream(Refused):
    status = 404
    code = "not_found"
    message = "No such stream."


@endpoint("GET", same_origin_session=True)
async def chat_stream(request: HttpRequest) -> HttpResponse:
    """The seed's contract: start a stream from `?prompt=` and relay it, or resume the
    stream named by Last-Event-ID (`<stream id>:<offset>`) instead of paying again."""
    last_event_id = forms.last_event_id(request)
    if last_event_id is not None:
        stream_id, after = forms.stream_and_offset(last_event_id)
        stream = await _visible_stream(request, stream_id)
        return await _follow(
            request, stream, after=forms.offset(after), id_prefix=f"{stream_id}:"
        )
    form = forms.StartForm(request.GET, single_turn=True)
    arguments = form.start(new_conversation=False)
    hub.get().audience.admit(request.user.pk)  # before paying for an answer
    turn = await generation.start(
        request.user, **arguments, client=forms.client(request), options=_options()
    )
    return await _follow(request, turn.stream, id_prefix=f"{turn.stream.pk}:")


@endpoint("POST")
async def start_stream(request: HttpRequest) -> HttpResponse:
    form = forms.StartForm(forms.body(request))
    arguments = form.start(new_conversation=True)
    turn = await generation.start(
        request.user, **arguments, client=forms.client(request), options=_options()
    )
    stream, conversation = turn.stream, turn.conversation
    body = {
        "id": stream.pk,
        "events_url": reverse("streaming:stream-events", args=[stream.pk]),
        "stop_url": reverse("streaming:stream-stop", args=[stream.pk]),
        "conversation_id": conversation.pk,
        "conversation_url": conversation.get_absolute_url(),
        "conversation_title": conversation.title,
    }
    return JsonResponse(body, status=201)


@endpoint("GET")
async def stream_events(request: HttpRequest, stream_id: int) -> HttpResponse:
    stream = await _visible_stream(request, stream_id)
    after = forms.offset(forms.last_event_id(request))
    return await _follow(request, stream, after=after)


@endpoint("POST")
async def stop_stream(request: HttpRequest, stream_id: int) -> HttpResponse:
    stream = await _visible_stream(request, stream_id, may="stop")
    if stream.is_finished:
        return JsonResponse({"id": stream.pk, "status": stream.status})
    await hub.get().stop(stream.pk)
    return JsonResponse({"id": stream.pk, "status": "stopping"}, status=202)


def _options() -> Options:
    """What our own endpoints ask of the model: the deployment's system prompt."""
    return Options(system=settings.SYSTEM_PROMPT)


async def _follow(
    request: HttpRequest,
    stream: StreamLog,
    *,
    after: Position | None = None,
    id_prefix: str = "",
) -> HttpResponse:
    frames = await hub.get().follow(
        stream,
        user_id=request.user.pk,
        after=after,
        dialect=dialects.Relay(id_prefix),
        flow=viewer.flow_of(getattr(request, "scope", {})),  # WSGI: none
    )
    if frames is None:
        # A reconnect that already has everything: 204 tells EventSource to stop.
        return HttpResponse(status=204)
    return sse.response(frames)


async def _visible_stream(
    request: HttpRequest, stream_id: int, *, may: str = "view"
) -> StreamLog:
    """The stream, if it is the caller's or their permissions let them `may` ("view"
    or "stop") anyone's; otherwise NoSuchStream, as for an id that does not exist."""
    # Without its text: a replay reads it once for all its viewers (`hub.follow`).
    stream = await StreamLog.objects.filter(pk=stream_id).defer(*TEXT_FIELDS).afirst()
    if stream is None:
        raise NoSuchStream()
    if stream.user_id != request.user.pk and not await request.user.ahas_perm(
        f"streaming.{may}_streamlog"
    ):
        # The same 404 as a missing stream, so other users' ids reveal nothing.
        raise NoSuchStream()
    return stream
