"""MongoDB-style ordering of stored documents (`find().sort({...})`) for the sandbox's lists."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

SortSpec = tuple[tuple[str, Literal[1, -1]], ...]

_MISSING = object()


def sort_key(value: Any) -> tuple[int, Any]:
    """MongoDB's cross-type order (null/missing < numbers < strings < objects < arrays < booleans
    < dates), enough for the values sandbox documents hold."""
    if value is None or value is _MISSING:
        return (1, 0)
    if isinstance(value, bool):
        return (8, value)
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, datetime):
        return (9, value.timestamp())
    if isinstance(value, dict):
        return (4, repr(sorted(value.items())))
    return (5, repr(value))


def _field_key(field: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    return lambda doc: sort_key(doc.get(field, _MISSING))


def sort_documents(docs: Sequence[Mapping[str, Any]], spec: SortSpec) -> list[Any]:
    """`docs` ordered by `spec` (field, 1|-1) pairs; documents that tie keep their order."""
    ordered = list(docs)
    for field, direction in reversed(spec):  # stable sorts, least significant key first
        ordered.sort(key=_field_key(field), reverse=direction == -1)
    return ordered
