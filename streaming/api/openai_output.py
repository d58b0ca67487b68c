"""A stream as OpenAI's SDKs read a chat completion: `chat.completion.chunk` events
(`Chunks`, a dialect of `relay.dialects`), or one `chat.completion` body for a call
that does not stream (`Collected`, then `completion`)."""

import json
from typing import Any

from streaming import sse
from streaming.api import openai_errors
from streaming.relay.feed import Ending

DONE = "data: [DONE]\n\n"


class Chunks:
    """`data: {chunk}` events: the role in the first delta, one per piece of text
    (`reasoning_content` for the model's reasoning), an empty delta with the
    `finish_reason`, the usage chunk (`choices: []`) when asked for, `[DONE]`; an
    error as a `data: {"error": ...}` event. Every chunk has one `id` and `created`.
    """

    def __init__(
        self,
        *,
        completion_id: str,
        model: str,
        created: int,
        include_usage: bool,
        max_tokens: int | None,
    ) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._max_tokens = max_tokens

    def opening(self, meta: dict[str, Any]) -> str:
        return self._delta({"role": "assistant", "content": ""})

    def text(self, text: str, offset: int) -> str:
        return self._delta({"content": text})

    def reasoning(self, text: str, offset: int) -> str:
        # The field of vLLM, DeepSeek and llama.cpp; OpenAI's SDKs keep it as extra.
        return self._delta({"reasoning_content": text})

    def closing(self, ending: Ending) -> str:
        if ending.error is not None:
            return _event(openai_errors.stream_error(ending.error)) + DONE
        reason = finish_reason(ending, self._max_tokens)
        last = self._delta({}, finish_reason=reason)
        if self._include_usage:
            last += _event({**self._head, "choices": [], "usage": usage(ending)})
        return last + DONE

    def heartbeat(self) -> str:
        return sse.comment("ping")

    def _delta(self, delta: dict[str, str], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        chunk: dict[str, Any] = {**self._head, "choices": [choice]}
        if self._include_usage:
            # "All other chunks will also include a usage field, but with a null value."
            chunk["usage"] = None
        return _event(chunk)


class Collected:
    """The frames of a call that does not stream: each is the answer's next piece
    as it is; the reasoning and the ending are kept here for `completion`."""

    def __init__(self) -> None:
        self.reasoning_parts: list[str] = []
        self.ending: Ending | None = None

    def opening(self, meta: dict[str, Any]) -> str:
        return ""

    def text(self, text: str, offset: int) -> str:
        return text

    def reasoning(self, text: str, offset: int) -> str:
        self.reasoning_parts.append(text)
        return ""

    def closing(self, ending: Ending) -> str:
        self.ending = ending
        return ""

    def heartbeat(self) -> str:
        return ""


def completion(
    *,
    completion_id: str,
    model: str,
    created: int,
    text: str,
    reasoning: str,
    ending: Ending,
    max_tokens: int | None,
) -> dict[str, Any]:
    """The `chat.completion` body of a completed stream."""
    message = {"role": "assistant", "content": text, "refusal": None}
    if reasoning:
        message["reasoning_content"] = reasoning
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason(ending, max_tokens),
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": usage(ending),
    }


def finish_reason(ending: Ending, max_tokens: int | None) -> str:
    """`length` when the answer used every token it was allowed, else `stop`."""
    output = (ending.usage or {}).get("output_tokens")
    return "length" if max_tokens and output and output >= max_tokens else "stop"


def usage(ending: Ending) -> dict[str, Any]:
    """OpenAI's usage object; the reasoning's share of the completion, as OpenAI
    reports it, when the model reasoned."""
    reported = ending.usage or {}
    prompt = reported.get("input_tokens") or 0
    answer = reported.get("output_tokens") or 0
    counted: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": answer,
        "total_tokens": prompt + answer,
    }
    if reasoning := reported.get("reasoning_tokens"):
        counted["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return counted


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
