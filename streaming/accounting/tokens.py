"""The one rule for estimating tokens when a provider reported none: about four
characters a token, the providers' own rule of thumb. In Python and in SQL."""

import math

from django.db.models import Expression, F, Value
from django.db.models.functions import Length

CHARS_PER_TOKEN = 4


def estimate(text: str) -> int:
    return estimate_length(len(text))


def estimate_length(characters: int) -> int:
    return math.ceil(characters / CHARS_PER_TOKEN)


def estimate_sql(field: str, *more: str) -> Expression:
    """`estimate()` of a text column, or of several together, computed by the
    database (rounding up)."""
    characters = Length(F(field))
    for other in more:
        characters += Length(F(other))
    return (characters + Value(CHARS_PER_TOKEN - 1)) / Value(CHARS_PER_TOKEN)
