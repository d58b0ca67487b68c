"""The offline demo provider: no key, no network, the same answer for the same prompt.

Of the options it honours `max_tokens` (it sends at most that many tokens) and `stop`
(the answer ends before the first stop sequence); `temperature` and `top_p` change
nothing, since the answer is fixed, and the system prompt only counts in its usage.
"""

import asyncio
import re
from collections.abc import AsyncIterator

from django.conf import settings

from streaming.providers.base import (
    DEFAULT_OPTIONS,
    Message,
    Options,
    TextDelta,
    Usage,
    token_limit,
)

_ANSWER = """\
This answer comes from the **offline demo provider**: no model was called and no \
key was used. Set `OPENAI_API_KEY` or `ANTHROPIC_API_KEY` to talk to a real model.

You asked:

> {quote}

Here is what the relay did with it:

1. It saved your prompt in a stream log.
2. It started a generation task that outlives this connection.
3. It numbered every frame, so a dropped connection resumes where it stopped.

| frame | carries |
| --- | --- |
| `meta` | the stream id, provider and model |
| `token` | the next piece of the answer |
| `done` | the end of the answer |

```python
for event in sse_client(url):
    print(event.data, end="")
```
"""


class DemoProvider:
    name = "demo"
    label = "Demo (offline)"
    models = ["demo"]
    default_model = "demo"

    async def stream(
        self, messages: list[Message], *, model: str, options: Options = DEFAULT_OPTIONS
    ) -> AsyncIterator[list[TextDelta | Usage]]:
        prompt = messages[-1]["content"]
        quote = " ".join(prompt.split())[:200] or "(nothing)"
        tokens = re.findall(r"\s*\S+|\s+", _ANSWER.format(quote=quote))[
            : token_limit(model, options)
        ]
        tokens = _until_stop(tokens, options.stop)
        delay = settings.DEMO_TOKEN_DELAY_MS / 1000
        for token in tokens:
            await asyncio.sleep(delay)
            yield [TextDelta(token)]
        texts = [options.system or ""] + [message["content"] for message in messages]
        yield [Usage(sum(len(text.split()) for text in texts), len(tokens))]


def _until_stop(tokens: list[str], stop: tuple[str, ...]) -> list[str]:
    """The tokens before the first stop sequence in their text (the one it starts in
    cut short), as a model stops."""
    text = "".join(tokens)
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=None)
    if cut is None:
        return tokens
    kept, length = [], 0
    for token in tokens:
        if length + len(token) >= cut:
            if piece := token[: cut - length]:
                kept.append(piece)
            break
        kept.append(token)
        length += len(token)
    return kept
