"""Leases on in-flight streams, so a dead process leaves a trace, not a hang.

Each process renews the rows of the streams it runs (`updated_at`) every third of
STREAM_LEASE_SECONDS; any process ends rows whose lease ran out as `interrupted`,
keeping the partial answer of the last checkpoint. One conditional UPDATE does it, so
several processes reaping at once cannot disagree.
"""

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Length
from django.utils import timezone

from streaming.models import StreamLog

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = (
    "The server generating this answer stopped; the answer is incomplete."
)


async def keep(owned: Callable[[], Iterable[int]]) -> None:
    """Renew this process's leases and reap expired ones, forever."""
    while True:
        await asyncio.sleep(settings.STREAM_LEASE_SECONDS / 3)
        try:
            await renew(list(owned()))
            if reaped := await reap():
                logger.warning("ended %s abandoned stream(s) as interrupted", reaped)
        except Exception:
            logger.exception("could not renew or reap stream leases; retrying")


@sync_to_async
def renew(stream_ids: list[int]) -> None:
    if stream_ids:
        StreamLog.objects.in_flight().filter(pk__in=stream_ids).update(
            updated_at=timezone.now()
        )


@sync_to_async
def reap() -> int:
    """End every in-flight row whose lease expired; return how many."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.STREAM_LEASE_SECONDS)
    return (
        StreamLog.objects.in_flight()
        .filter(updated_at__lt=cutoff)
        .update(
            status=StreamLog.Status.INTERRUPTED,
            error_code="interrupted",
            error_message=INTERRUPTED_MESSAGE,
            finished_at=now,
            updated_at=now,
            input_tokens=Coalesce(
                F("input_tokens"), (Length("prompt") + Value(3)) / Value(4)
            ),
            output_tokens=(Length("response") + Value(3)) / Value(4),
            tokens_estimated=True,
        )
    )
