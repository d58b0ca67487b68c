"""A stream's two texts, the answer and the model's reasoning (its "thinking"), as one.

A provider may interleave them. They travel as one text in the order they arrived,
with SWITCH at each change from one to the other (the text starts with the answer):
the frame log, the fan-out and every offset they use know nothing of reasoning, and
a viewer reads both in their order (`Runs` finds its way in the joined text). The row
keeps them apart (`split`, `join`). Offsets that clients see count in one of the two
texts (`Position`).
"""

import re
from dataclasses import dataclass

from streaming.models import StreamLog

# Between the answer and the reasoning. Providers' text never holds it: the relay
# replaces U+0000 (which PostgreSQL cannot store either) on the way in.
SWITCH = "\0"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in a stream: `offset` characters of the answer, or of the
    reasoning; what it has of the other text is what came before that point."""

    offset: int
    reasoning: bool = False


TEXT_FIELDS = ("response", "reasoning", "reasoning_spans")


def recorded(stream: StreamLog) -> str:
    """The text of a stream as its row keeps it: the answer and the reasoning, joined."""
    return join(stream.response, stream.reasoning, stream.reasoning_spans)


async def load_recorded(stream: StreamLog) -> str:
    """`recorded(stream)`, read from the database if the row was loaded without its
    text (`.defer(*TEXT_FIELDS)`: a viewer needs no copy of its own)."""
    if not stream.get_deferred_fields() & set(TEXT_FIELDS):
        return recorded(stream)
    row = await StreamLog.objects.filter(pk=stream.pk).values(*TEXT_FIELDS).afirst()
    return (
        join(row["response"], row["reasoning"], row["reasoning_spans"]) if row else ""
    )


def split(text: str) -> tuple[str, str, list[list[int]]]:
    """The answer, the reasoning and the reasoning's spans of a joined text: each span
    `[at, length]` says `length` characters of reasoning came when the answer was
    `at` characters long."""
    if SWITCH not in text:
        return text, "", []
    parts = text.split(SWITCH)
    answer, reasoning = parts[0::2], parts[1::2]
    spans, at = [], 0
    for said, thought in zip(answer, reasoning, strict=False):
        at += len(said)
        spans.append([at, len(thought)])
    return "".join(answer), "".join(reasoning), spans


def join(answer: str, reasoning: str, spans: list[list[int]]) -> str:
    """The text `split` took apart."""
    if not spans:
        return answer
    parts, said, thought = [], 0, 0
    for at, length in spans:
        parts += [answer[said:at], reasoning[thought : thought + length]]
        said, thought = at, thought + length
    # A stream that ends in reasoning ends with it, not with an empty answer.
    tail = [answer[said:]] if said < len(answer) else []
    return SWITCH.join(parts + tail)


class Runs:
    """Where the runs of answer and of reasoning are in a joined text: each SWITCH's
    place, and how long the answer and the reasoning were there."""

    def __init__(self) -> None:
        self._switches: list[tuple[int, int, int]] = []
        self.answer_length = 0
        self.reasoning_length = 0
        self._length = 0  # of the joined text

    def count(self, text: str, length: int) -> None:
        """Take in `text`, appended to the joined text at `length`."""
        self._length = length + len(text)
        if SWITCH in text:
            self._count_runs(text, length)
        elif self.in_reasoning:
            self.reasoning_length += len(text)
        else:
            self.answer_length += len(text)

    @property
    def in_reasoning(self) -> bool:
        """Whether the text so far ends in reasoning."""
        return len(self._switches) % 2 == 1

    def _count_runs(self, text: str, length: int) -> None:
        end = length
        for index, part in enumerate(text.split(SWITCH)):
            if index:
                end += 1
                self._switches.append((end, self.answer_length, self.reasoning_length))
            if self.in_reasoning:
                self.reasoning_length += len(part)
            else:
                self.answer_length += len(part)
            end += len(part)

    def offset_of(self, position: Position) -> int | None:
        """The offset in the joined text right after `position`; None while the text
        does not reach it."""
        wanted = position.offset
        # Each switch ends a run: of answer (the even ones), of reasoning (the odd
        # ones). The position is in the first run of its kind that reaches it.
        for index, (end, answer, reasoning) in enumerate(self._switches):
            if index % 2 == position.reasoning:
                reached = reasoning if position.reasoning else answer
                if reached >= wanted:
                    return end - 1 - (reached - wanted)
        if self.in_reasoning == position.reasoning:
            reached = (
                self.reasoning_length if position.reasoning else self.answer_length
            )
            if reached >= wanted:
                return self._length - (reached - wanted)
        return None

    def lengths_at(self, offset: int) -> tuple[int, int, bool]:
        """How much of the answer and of the reasoning the joined text holds before
        `offset`, and whether what follows it is reasoning."""
        answer = reasoning = start = switched = 0
        for end, said, thought in self._switches:
            if end > offset:
                break
            answer, reasoning, start = said, thought, end
            switched += 1
        in_reasoning = switched % 2 == 1
        if in_reasoning:
            return answer, reasoning + offset - start, True
        return answer + offset - start, reasoning, False


# A lone surrogate: a str may hold one (JSON's "\ud800"), UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


class Normaliser:
    """Turns `\\r\\n` and `\\r` into `\\n`, across delta boundaries too, and lone
    surrogates (unencodable) and U+0000 (which PostgreSQL cannot store, and the
    relay's `SWITCH`) into U+FFFD, so every offset counts what viewers get."""

    def __init__(self) -> None:
        self._pending_cr = False

    def __call__(self, text: str) -> str:
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = text.endswith("\r")
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if SWITCH in text:
            text = text.replace(SWITCH, "\ufffd")
        if not text.isascii():
            text = _SURROGATE.sub("\ufffd", text)
        return text
