"""What a stream costs: its usage at its model's prices (settings.MODEL_PRICES, per
million tokens). A model without a price has no cost (None), never a cost of 0."""

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from django.conf import settings

_MILLION = Decimal(1_000_000)
# Costs are kept to the billionth of the currency unit (StreamLog.cost); the daily
# cost counters count in those units.
PLACES = 9
UNIT = Decimal(1).scaleb(-PLACES)


@dataclass(frozen=True)
class Price:
    """One model's prices per million tokens."""

    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal

    def cost(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
    ) -> Decimal:
        """The cost of these counts. The input counts the whole prompt: its cached
        and cache-written parts are priced as such, the rest as input."""
        cached, written = cached_input_tokens or 0, cache_write_tokens or 0
        uncached = max(input_tokens - cached - written, 0)
        total = (
            uncached * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + output_tokens * self.output
        )
        return (total / _MILLION).quantize(UNIT, rounding=ROUND_HALF_UP)

    @property
    def output_units(self) -> int:
        """What one output token costs, in `UNIT`s, rounded up."""
        per_token = self.output / _MILLION / UNIT
        return int(per_token.to_integral_value(rounding=ROUND_CEILING))


def price_of(model: str) -> Price | None:
    """The model's prices, or None when MODEL_PRICES has none for it."""
    price = settings.MODEL_PRICES.get(model)
    return None if price is None else Price(**price)


def units(cost: Decimal) -> int:
    """`cost` in `UNIT`s, as the daily cost counters count."""
    return int((cost / UNIT).to_integral_value(rounding=ROUND_CEILING))


def is_priced() -> bool:
    """Whether any model has a price, so costs are worth showing."""
    return bool(settings.MODEL_PRICES)
