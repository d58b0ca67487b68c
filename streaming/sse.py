"""Server-Sent Events framing and the streaming response (pure, no I/O)."""

import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

CONTENT_TYPE = "text/event-stream; charset=utf-8"


def encode(event: str, data: str, *, id: str | None = None) -> str:
    """One SSE frame. `data` must already use `\\n` line endings
    (`relay.joined.Normaliser`).

    Each line of `data` becomes its own `data:` line, so a WHATWG parser rebuilds the
    text exactly, leading spaces and a `:` at a line start included.
    """
    head = f"event: {event}\n" if id is None else f"event: {event}\nid: {id}\n"
    if "\n" not in data:
        return f"{head}data: {data}\n\n"
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"


def encode_json(event: str, payload: dict[str, Any]) -> str:
    return encode(event, json.dumps(payload, ensure_ascii=False))


def comment(text: str) -> str:
    """A comment line: ignored by clients, keeps proxies from closing an idle stream."""
    return f": {text}\n\n"


def retry(milliseconds: int) -> str:
    return f"retry: {milliseconds}\n\n"


def response(frames: AsyncIterator[str], *, status: int = 200) -> StreamingHttpResponse:
    response = StreamingHttpResponse(frames, content_type=CONTENT_TYPE, status=status)
    # Set, not parsed from the Content-Type again for every frame Django encodes.
    response.charset = "utf-8"
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # stop nginx from buffering tokens
    return response
