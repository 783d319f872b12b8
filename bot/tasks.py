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


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


__all__ = ["background"]
