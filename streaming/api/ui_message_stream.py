"""The AI SDK's UI message stream (protocol v1): the dialect `useChat` and
`DefaultChatTransport` read, one `data: {json}` event per part, then `data: [DONE]`.

Only part types that every `ai` 7.0 client knows are written: a type the client's
schema lacks fails its whole stream.
"""

import json
from typing import Any

from streaming import sse
from streaming.relay.feed import Ending

HEADER = "x-vercel-ai-ui-message-stream"
VERSION = "v1"

TEXT_ID = "text-0"


def message_id(stream_id: int) -> str:
    """The assistant message's id in the client: the same on every replay."""
    return f"msg-{stream_id}"


class UIMessageStream:
    """`start` (the message id, `{stream_id, provider, model}`) and `start-step`;
    reasoning blocks and one text block as they come; `error` if the answer failed;
    `finish-step`, `finish` (`finishReason`, the metadata with status and usage),
    `[DONE]`. Keeps only which blocks are open."""

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._text_open = False
        self._reasoning: str | None = None  # the id of the open reasoning block
        self._reasoning_blocks = 0

    def opening(self, meta: dict[str, Any]) -> str:
        self._meta = dict(meta)
        start = {"messageId": message_id(meta["stream_id"]), "messageMetadata": meta}
        return _part("start", **start) + _part("start-step")

    def reasoning(self, text: str, offset: int) -> str:
        head = ""
        if self._reasoning is None:
            self._reasoning = f"reasoning-{self._reasoning_blocks}"
            self._reasoning_blocks += 1
            head = _part("reasoning-start", id=self._reasoning)
        return head + _part("reasoning-delta", id=self._reasoning, delta=text)

    def text(self, text: str, offset: int) -> str:
        head = self._end_reasoning()
        if not self._text_open:
            self._text_open = True
            head += _part("text-start", id=TEXT_ID)
        return head + _part("text-delta", id=TEXT_ID, delta=text)

    def closing(self, ending: Ending) -> str:
        frames = self._end_reasoning()
        if self._text_open:
            self._text_open = False
            frames += _part("text-end", id=TEXT_ID)
        metadata = {**self._meta, "status": ending.status}
        if ending.usage:
            metadata["usage"] = ending.usage
        error = ending.error
        if error is None:
            reason = "stop"
        elif error.code == "stopped":
            # Someone pressed Stop: the partial answer stands, as no error.
            reason = "other"
            metadata["error"] = error.as_dict()
        else:
            reason = "error"
            metadata["error"] = error.as_dict()
            frames += _part("error", errorText=error.message)
        frames += _part("finish-step")
        frames += _part("finish", finishReason=reason, messageMetadata=metadata)
        return frames + "data: [DONE]\n\n"

    def heartbeat(self) -> str:
        return sse.comment("ping")

    def _end_reasoning(self) -> str:
        if self._reasoning is None:
            return ""
        frame = _part("reasoning-end", id=self._reasoning)
        self._reasoning = None
        return frame


def _part(kind: str, **fields: Any) -> str:
    payload = json.dumps(
        {"type": kind, **fields}, ensure_ascii=False, separators=(",", ":")
    )
    # JSON escapes every line break, so one `data:` line always holds the part.
    return f"data: {payload}\n\n"
