"""The OpenAI surface's pieces called directly: the chunks dialect, the request it
reads, and the envelope of every error under /v1/."""

import json

import pytest
from django.test import RequestFactory

from streaming.api import openai_errors, openai_input
from streaming.api.openai_output import Chunks, Collected, completion
from streaming.errors import Refused, StreamError
from streaming.providers.base import Options
from streaming.relay.feed import Ending
from tests.helpers import parse_sse


def _chunks(**kwargs) -> Chunks:
    kwargs = {
        "completion_id": "chatcmpl-7",
        "model": "demo",
        "created": 1700000000,
        "include_usage": True,
        "max_tokens": None,
    } | kwargs
    return Chunks(**kwargs)


def _data(frames: str) -> list[str]:
    events, _, _ = parse_sse(frames)
    assert {e.event for e in events} == {"message"}  # data-only events
    return [e.data for e in events]


def test_the_chunks_carry_role_text_reasoning_finish_usage_and_done():
    dialect = _chunks()
    usage = {"input_tokens": 3, "output_tokens": 4}
    frames = (
        dialect.opening({"stream_id": 7})
        + dialect.reasoning("Let me think.", 13)
        + dialect.text("Hel", 3)
        + dialect.text("lo\n", 6)
        + dialect.closing(Ending("completed", usage=usage))
    )
    *chunks, done = _data(frames)
    chunks = [json.loads(chunk) for chunk in chunks]
    assert done == "[DONE]"
    assert {(c["id"], c["created"], c["object"], c["model"]) for c in chunks} == {
        ("chatcmpl-7", 1700000000, "chat.completion.chunk", "demo")
    }
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Let me think."},
        {"content": "Hel"},
        {"content": "lo\n"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None] * 4 + [
        "stop"
    ]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "total_tokens": 7,
    }


def test_without_include_usage_there_is_no_usage_anywhere():
    dialect = _chunks(include_usage=False)
    frames = dialect.opening({}) + dialect.closing(
        Ending("completed", usage={"input_tokens": 1, "output_tokens": 1})
    )
    chunks = [json.loads(d) for d in _data(frames)[:-1]]
    assert len(chunks) == 2
    assert all("usage" not in c and c["choices"] for c in chunks)


def test_an_answer_that_used_every_allowed_token_finishes_with_length():
    usage = {"input_tokens": 1, "output_tokens": 5}
    closing = _chunks(max_tokens=5).closing(Ending("completed", usage=usage))
    assert json.loads(_data(closing)[0])["choices"][0]["finish_reason"] == "length"
    closing = _chunks(max_tokens=6).closing(Ending("completed", usage=usage))
    assert json.loads(_data(closing)[0])["choices"][0]["finish_reason"] == "stop"


def test_an_error_is_an_error_event_in_the_envelope():
    error = StreamError.of("rate_limited", "Slow down.", retry_after=2)
    *frames, done = _data(_chunks().closing(Ending("error", error=error)))
    assert [json.loads(f) for f in frames] == [
        {
            "error": {
                "message": "Slow down.",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limited",
            }
        }
    ]
    assert done == "[DONE]"


def test_the_heartbeat_is_a_comment():
    events, comments, _ = parse_sse(_chunks().heartbeat())
    assert (events, comments) == ([], ["ping"])


def test_a_collected_answer_keeps_text_and_reasoning_for_the_completion():
    collected = Collected()
    frames = [
        collected.opening({}),
        collected.reasoning("Hmm.", 4),
        collected.text("Hi", 2),
        collected.closing(
            Ending("completed", usage={"input_tokens": 2, "output_tokens": 1})
        ),
    ]
    body = completion(
        completion_id="chatcmpl-1",
        model="demo",
        created=1,
        text="".join(frames),
        reasoning="".join(collected.reasoning_parts),
        ending=collected.ending,
        max_tokens=None,
    )
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hi",
        "refusal": None,
        "reasoning_content": "Hmm.",
    }
    assert body["usage"]["total_tokens"] == 3


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [
        ("rate_limited", 429, None),
        ("bad_request", 400, "false"),
        ("auth", 502, "false"),
        ("unavailable", 503, None),
        ("timeout", 504, None),
        ("stopped", 409, "false"),
    ],
)
def test_a_failed_stream_without_streaming_answers_its_status(code, status, retry):
    response = openai_errors.failure(
        StreamError.of(code, "It failed.", retry_after=1.5)
    )
    assert response.status_code == status
    assert json.loads(response.content)["error"]["code"] == code
    assert response.get("x-should-retry") == retry
    assert (response["Retry-After"], response["retry-after-ms"]) == ("2", "1500")


# --------------------------------------------------------------------------- input


def _read(**body) -> openai_input.ChatRequest:
    body.setdefault("model", "demo")
    body.setdefault("messages", [{"role": "user", "content": "Hi"}])
    request = RequestFactory().post(
        "/v1/chat/completions", json.dumps(body), content_type="application/json"
    )
    return openai_input.read(request)


def _refused(**body) -> Refused:
    with pytest.raises(Refused) as raised:
        _read(**body)
    return raised.value


def test_it_reads_the_options_it_honours():
    chat = _read(
        messages=[
            {"role": "developer", "content": "A"},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Yes?", "name": None},
            {"role": "system", "content": [{"type": "text", "text": "B"}]},
            {"role": "user", "content": "Go"},
        ],
        max_tokens=9,
        temperature=0,
        top_p=1,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert chat.options == Options(
        system="A\n\nB", max_tokens=9, temperature=0, top_p=1, stop=("END",)
    )
    assert chat.messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yes?"},
        {"role": "user", "content": "Go"},
    ]
    assert (chat.prompt, chat.provider, chat.provider_model) == ("Go", "demo", "demo")
    assert (chat.stream, chat.include_usage) == (True, True)


def test_max_completion_tokens_wins_over_max_tokens():
    assert _read(max_tokens=9, max_completion_tokens=4).options.max_tokens == 4


@pytest.mark.parametrize(
    "harmless",
    [
        {"user": "u-1"},
        {"safety_identifier": "x"},
        {"metadata": {"a": "b"}},
        {"store": False},
        {"n": 1},
        {"logprobs": False},
        {"presence_penalty": 0},
        {"parallel_tool_calls": True},
        {"response_format": {"type": "text"}},
        {"tools": None, "seed": None, "service_tier": "auto"},
    ],
)
def test_it_accepts_what_changes_nothing(harmless):
    assert _read(**harmless).prompt == "Hi"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 2}, "n"),
        ({"store": True}, "store"),
        ({"logprobs": True}, "logprobs"),
        ({"seed": 7}, "seed"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"functions": []}, "functions"),
        ({"audio": {"voice": "x"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"top_k": 3}, "top_k"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": "x", "name": "a"}]},
            "messages[0].name",
        ),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": []}]},
            "messages[0].tool_calls",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_it_refuses_what_it_cannot_honour_naming_it(body, param):
    refused = _refused(**body)
    assert (refused.status, refused.code) == (400, "unsupported_parameter")
    assert refused.details["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 2.5}, "max_completion_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": 5}, "model"),
    ],
)
def test_it_refuses_a_bad_value_naming_it(body, param):
    refused = _refused(**body)
    assert refused.status == 400
    assert refused.details["param"] == param


def test_an_unknown_model_is_404_model_not_found():
    refused = _refused(model="gpt-4o-mini")
    assert (refused.status, refused.code) == (404, "model_not_found")


def test_messages_over_the_context_limit_are_413(settings):
    settings.MAX_CONTEXT_CHARS = 10
    refused = _refused(messages=[{"role": "user", "content": "x" * 11}])
    assert (refused.status, refused.details["param"]) == (413, "messages")


# --------------------------------------------------------------------------- envelope


@pytest.mark.django_db
def test_every_error_under_v1_is_the_envelope(client, alice_token):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice_token}"}
    answers = [
        (client.get("/v1/no-such-thing", **auth), 404, "not_found"),
        (client.get("/v1/models"), 401, "unauthorized"),
        (
            client.get("/v1/models", HTTP_AUTHORIZATION="Bearer nope"),
            401,
            "unauthorized",
        ),
        (client.delete("/v1/models", **auth), 405, "method_not_allowed"),
        (client.get("/v1/models/openai/nope", **auth), 404, "model_not_found"),
        (
            client.post(
                "/v1/chat/completions", "[", content_type="application/json", **auth
            ),
            400,
            "invalid_value",
        ),
    ]
    for response, status, code in answers:
        assert response.status_code == status
        assert response.json() == {
            "error": {
                "message": response.json()["error"]["message"],
                "type": response.json()["error"]["type"],
                "param": response.json()["error"]["param"],
                "code": code,
            }
        }
    # Elsewhere the API keeps its own error.
    assert client.get("/streams/0/events").json()["error"] == "unauthorized"


@pytest.mark.django_db
def test_a_session_is_not_enough_for_v1(client, alice):
    client.force_login(alice)
    assert client.get("/v1/models").status_code == 401


def test_the_usage_names_the_reasoning_share_of_the_completion_when_there_is_one():
    dialect = _chunks()
    usage = {"input_tokens": 3, "output_tokens": 9, "reasoning_tokens": 5}

    *chunks, done = _data(dialect.closing(Ending("completed", usage=usage)))

    assert json.loads(chunks[-1])["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 9,
        "total_tokens": 12,
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
