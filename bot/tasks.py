"""Background reads begun ahead of need (`background`): one that ends unused, cancelled or
failed, is never reported by asyncio as "exception was never retrieved"."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def background(coroutine: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run `coroutine` as a task whose outcome is retrieved when it ends, whether or not anyone
    awaits it (whoever does still gets its result or its exception)."""
    task = asyncio.ensure_future(coroutine)
    task.add_done_callback(_retrieve)
    return task


def observed(future: asyncio.Future[T]) -> asyncio.Future[T]:
    """`background` for a future that is not a task of its own (an `asyncio.shield`)."""
    future.add_done_callback(_retrieve)
    return future


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


__all__ = ["background", "observed"]
