"""One stream's spending against its user's daily token and cost budgets.

Counting is a cache call, too dear for every token; comparing is not. So after each
count a stream knows how long its answer may grow before it would cross a budget
(`limit_length`), the relay compares the answer's length with it at every token and
counts at once when it is passed, and otherwise counts every CHECK_SECONDS to see
what the user's other streams spent.
"""

import math
from decimal import Decimal

from streaming import caching
from streaming.accounting import costs, limits
from streaming.accounting.costs import Price
from streaming.accounting.limits import Limits, Spent
from streaming.accounting.tokens import CHARS_PER_TOKEN

# How often a running stream under a budget counts what it spent so far.
CHECK_SECONDS = 0.25


class Spending:
    """What one stream has counted against its user's day, and what it may still add."""

    def __init__(self, user_id: int, user_limits: Limits, price: Price | None) -> None:
        self.user_id = user_id
        self.limits = user_limits
        self.price = price
        self.tokens = 0  # counted against today's tokens so far
        self.cost = 0  # counted against today's cost so far, in costs.UNIT
        self._output = 0  # of the tokens, the answer's
        # Past this many characters of answer a budget may be crossed: count then.
        self.limit_length: float = math.inf

    @property
    def applies(self) -> bool:
        """Whether the user has a budget, so a running stream must count as it goes."""
        return bool(self.limits.tokens_per_day or self.limits.cost_per_day)

    def crosses(self, length: int) -> bool:
        """Whether an answer of `length` characters may cross a budget, as of the
        last count (the estimate: CHARS_PER_TOKEN characters a token)."""
        return length > self.limit_length

    async def charge(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cost: Decimal | None = None,
        final: bool = False,
    ) -> None:
        """Count the stream's spending so far: these counts (an estimate until
        `final`) and their cost (None: at the model's price). Raises
        `LimitExceeded` once a budget is crossed, except when `final`."""
        if cost is None and self.price is not None:
            cost = self.price.cost(
                input_tokens=input_tokens, output_tokens=output_tokens
            )
        tokens, units = input_tokens + output_tokens, costs.units(cost or Decimal(0))
        counts_cost = self.price is not None or bool(self.limits.cost_per_day)
        # While the cache is away, wait for the next periodic count, not every token.
        self.limit_length = math.inf
        spent = await caching.call(
            limits.count,
            self.user_id,
            tokens=tokens - self.tokens,
            cost=units - self.cost if counts_cost else None,
        )
        self.tokens, self.cost, self._output = tokens, units, output_tokens
        if final:
            return
        if limits.is_over(spent, self.limits):
            raise limits.budget_exceeded(spent, self.limits)
        self.limit_length = CHARS_PER_TOKEN * (self._output + self._headroom(spent))

    def _headroom(self, spent: Spent) -> float:
        """How many more answer tokens the budgets allow, after `spent`."""
        room: float = math.inf
        if self.limits.tokens_per_day:
            room = self.limits.tokens_per_day - spent.tokens
        unit = self.price.output_units if self.price else 0
        if self.limits.cost_per_day and unit:
            left = costs.units(self.limits.cost_per_day) - spent.cost
            room = min(room, left // unit)
        return room
