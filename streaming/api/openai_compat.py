"""The OpenAI-compatible API: `POST /v1/chat/completions` (streaming or not) and
`GET /v1/models`, for OpenAI's SDKs with `base_url=".../v1"` and a personal API token
as the key.

Every call is a stream like any other: a row, usage, limits and budgets, the live
tail and the admin's stop. The response names it in `X-Stream-Id`, so a client that
drops can read the rest from `/streams/<id>/events`. Errors are OpenAI's envelope
(`openai_errors`), whoever raises them.
"""

import functools
from contextlib import aclosing

from django.http import HttpRequest, HttpResponse, JsonResponse

from streaming import sse
from streaming.api import forms, openai_errors, openai_input, openai_output
from streaming.api.decorators import endpoint
from streaming.api.openai_input import ChatRequest
from streaming.models import StreamLog
from streaming.providers.base import token_limit
from streaming.relay import generation, hub, viewer

STREAM_ID_HEADER = "X-Stream-Id"

# Tokens only: no session, so no CSRF or cross-site question arises.
v1 = functools.partial(endpoint, sessions=False, errors=openai_errors.error)


@v1("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    chat = openai_input.read(request)
    hub.get().audience.admit(request.user.pk)  # before paying for an answer
    turn = await generation.start(
        request.user,
        prompt=chat.prompt,
        provider=chat.provider,
        model=chat.provider_model,
        conversation=None,
        history=chat.messages,
        options=chat.options,
        client=forms.client(request),
    )
    if chat.stream:
        response = await _stream(request, turn.stream, chat)
    else:
        response = await _complete(request, turn.stream, chat)
    response[STREAM_ID_HEADER] = str(turn.stream.pk)
    return response


@v1("GET")
async def models(request: HttpRequest) -> HttpResponse:
    data = [
        _model(model_id, provider)
        for model_id, (provider, _) in openai_input.model_ids().items()
    ]
    return JsonResponse({"object": "list", "data": data})


@v1("GET")
async def model(request: HttpRequest, model_id: str) -> HttpResponse:
    provider, _ = openai_input.resolve(model_id)
    return JsonResponse(_model(model_id, provider))


def _model(model_id: str, provider: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": provider}


async def _stream(
    request: HttpRequest, stream: StreamLog, chat: ChatRequest
) -> HttpResponse:
    dialect = openai_output.Chunks(
        completion_id=_completion_id(stream),
        model=chat.model,
        created=_created(stream),
        include_usage=chat.include_usage,
        max_tokens=token_limit(chat.provider_model, chat.options),
    )
    frames = await hub.get().follow(
        stream,
        user_id=request.user.pk,
        dialect=dialect,
        flow=viewer.flow_of(getattr(request, "scope", {})),  # WSGI: none
    )
    assert frames is not None  # only a resume that has everything gets none
    return sse.response(frames)


async def _complete(
    request: HttpRequest, stream: StreamLog, chat: ChatRequest
) -> HttpResponse:
    """Wait for the whole answer; a failed stream is an error status (429 with
    Retry-After, 502, 503…)."""
    collected = openai_output.Collected()
    frames = await hub.get().follow(stream, user_id=request.user.pk, dialect=collected)
    assert frames is not None
    async with aclosing(frames):
        text = "".join([frame async for frame in frames])
    ending = collected.ending
    assert ending is not None  # without flow control a viewer reads to the end
    if ending.error is not None:
        return openai_errors.failure(ending.error)
    body = openai_output.completion(
        completion_id=_completion_id(stream),
        model=chat.model,
        created=_created(stream),
        text=text,
        reasoning="".join(collected.reasoning_parts),
        ending=ending,
        max_tokens=token_limit(chat.provider_model, chat.options),
    )
    return JsonResponse(body)


def _completion_id(stream: StreamLog) -> str:
    return f"chatcmpl-{stream.pk}"


def _created(stream: StreamLog) -> int:
    return int(stream.created_at.timestamp())
