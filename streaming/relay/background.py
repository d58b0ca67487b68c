"""Tasks that outlive the request that started them."""

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# The loop keeps only weak references to tasks; these keep them alive until done.
_running: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `coroutine` as a task detached from the current request.

    It gets an empty context, so it does not inherit the request's thread-sensitive
    context: its `sync_to_async` calls share one worker thread and one database
    connection instead of pinning a connection per request.
    """
    task = asyncio.get_running_loop().create_task(
        coroutine, context=contextvars.Context()
    )
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task
