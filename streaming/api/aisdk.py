"""The AI SDK's chat endpoints: what `useChat` / `DefaultChatTransport` call.

`POST /api/chat` starts an answer in the user's conversation of the chat id and
relays it as a UI message stream; `GET /api/chat/<id>/stream` replays the answer in
flight from its start and follows it live (204 when there is none);
`POST /api/chat/<id>/stop` stops it. Each goes through `generation.start` and
`hub.follow` like the stream endpoints, so limits, rows and usage are the same.
"""

from django.http import HttpRequest, HttpResponse, JsonResponse

from streaming import sse
from streaming.api import chat_request, forms, ui_message_stream
from streaming.api.decorators import endpoint
from streaming.api.ui_message_stream import UIMessageStream
from streaming.conversations import ChatId, NoSuchConversation
from streaming.errors import Refused
from streaming.models import Conversation, Message, StreamLog
from streaming.relay import generation, hub, viewer


class NotTheLastAnswer(Refused):
    message = "Only the last answer can be regenerated."

    def __init__(self) -> None:
        field = [{"message": self.message, "code": "invalid"}]
        super().__init__(fields={"messageId": field})


@endpoint("POST")
async def chat(request: HttpRequest) -> HttpResponse:
    asked = chat_request.read(request)
    if asked.message_id is not None:
        await _check_last_answer(request, asked.chat_id, asked.message_id)
    hub.get().audience.admit(request.user.pk)  # before paying for an answer
    turn = await generation.start(
        request.user,
        prompt=asked.prompt,
        provider=asked.provider,
        model=asked.model,
        conversation=ChatId(asked.chat_id),
        regenerate=asked.regenerate,
        client=forms.client(request),
        options=asked.options,
    )
    return await _follow(request, turn.stream)


@endpoint("GET")
async def chat_stream(request: HttpRequest, chat_id: str) -> HttpResponse:
    stream = await _in_flight(request, chat_id)
    if stream is None:
        # Nothing to resume (also for a chat not started yet): the SDK gets null.
        return HttpResponse(status=204)
    return await _follow(request, stream)


@endpoint("POST")
async def chat_stop(request: HttpRequest, chat_id: str) -> HttpResponse:
    owned = Conversation.objects.filter(owner=request.user, chat_id=chat_id)
    if not await owned.aexists():
        raise NoSuchConversation()
    stream = await _in_flight(request, chat_id)
    if stream is None:
        return JsonResponse({"chat_id": chat_id, "stream_id": None, "status": "idle"})
    await hub.get().stop(stream.pk)
    body = {"chat_id": chat_id, "stream_id": stream.pk, "status": "stopping"}
    return JsonResponse(body, status=202)


async def _follow(request: HttpRequest, stream: StreamLog) -> HttpResponse:
    frames = await hub.get().follow(
        stream,
        user_id=request.user.pk,
        dialect=UIMessageStream(),
        flow=viewer.flow_of(getattr(request, "scope", {})),  # WSGI: none
    )
    response = sse.response(frames)
    response[ui_message_stream.HEADER] = ui_message_stream.VERSION
    return response


async def _in_flight(request: HttpRequest, chat_id: str) -> StreamLog | None:
    """The latest answer still running in the user's conversation of `chat_id`."""
    stream = (
        await StreamLog.objects.in_flight()
        .filter(conversation__owner=request.user, conversation__chat_id=chat_id)
        .order_by("-created_at", "-pk")
        .afirst()
    )
    if stream is None:
        return None
    # Its row says `streaming` a moment longer than its viewers see it run.
    hub_ = hub.get()
    here = hub_.owned.get(stream.pk) or hub_.ended.get(stream.pk)
    if here is not None and here.ending is not None:
        return None
    return stream


async def _check_last_answer(
    request: HttpRequest, chat_id: str, message_id: str
) -> None:
    """Refuse to regenerate any answer but the conversation's last."""
    last = (
        await Message.objects.filter(
            conversation__owner=request.user,
            conversation__chat_id=chat_id,
            role=Message.Role.ASSISTANT,
        )
        .order_by("-created_at", "-pk")
        .values_list("stream_id", flat=True)
        .afirst()
    )
    if last is not None and message_id != ui_message_stream.message_id(last):
        raise NotTheLastAnswer()
