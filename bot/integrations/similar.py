"""Did you mean …? Which existing names are close to what someone typed (issue 13, item 3).

Theory of operation
-------------------
Suggestions are chosen from what exists *for the caller*, never made up: the caller hands in the
candidates (the command words, the field names, the rooms the caller is a member of, the
integrations the caller's own `list` would show) and gets back the closest few, best first. The
similarity is rapidfuzz's, with one measure per kind of text:

* `WORD` (command words, field names): `fuzz.ratio`, the normalised Indel similarity, at least 70.
  A short word with one or two letters wrong, missing or swapped (`disabel`, `lsit`, `tokn`)
  scores 75–90; a different short word (`xyzzy`, `foo`) stays far below.
* `NAME` (integration and room names): `fuzz.WRatio`, at least 80, which also weighs a typed part
  of a longer name (`Jenkins` → `Jenkins builds`) and words in another order. Callers compare
  names in their normal form (`bot.normalize.name_key`), so case, spacing and look-alike letters
  are no difference at all; what is left is a typo.

Of the choices that pass, only those within `MARGIN` points of the best one are kept, so one
clear match is not drowned in weaker ones, and at most `limit` (3 by default: an answer read on a
phone stays short). The same typed text may be read several ways (`disable Noisy hook spam`: the
name may be `Noisy`, `Noisy hook` or all of it): each choice scores its best over all readings.

`integration_suggestions` adds what a reply needs to tell suggested integrations apart: the type
when two share a name, and the ids when names only look alike (or share name and type), exactly
where `list` shows ids, because typing such a name can only ever be ambiguous.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence

from rapidfuzz import fuzz, process

from bot.errors import Suggestion
from bot.normalize import name_key
from bot.rocketchat.models import Integration

__all__ = ["MARGIN", "Measure", "Suggestion", "closest", "either", "integration_suggestions", "rooms_like"]

# How far below the best score a further suggestion may be.
MARGIN = 10.0
LIMIT = 3


class Measure(enum.Enum):
    """How closeness is scored, and from what score on a choice is worth suggesting."""

    WORD = "word"
    NAME = "name"


_SCORERS = {Measure.WORD: (fuzz.ratio, 70.0), Measure.NAME: (fuzz.WRatio, 80.0)}


def closest(queries: Iterable[str], choices: Iterable[str], *, measure: Measure, limit: int = LIMIT) -> list[str]:
    """The choices closest to any of `queries`, best first (ties keep the order of `choices`);
    none when nothing is close. An exact match is always the first."""
    options = list(dict.fromkeys(choices))
    scorer, cutoff = _SCORERS[measure]
    best: dict[int, float] = {}
    for query in queries:
        if not query:
            continue
        for _choice, score, index in process.extract(query, options, scorer=scorer, score_cutoff=cutoff, limit=None):
            best[index] = max(best.get(index, 0.0), 100.0 if options[index] == query else score)
    if not best:
        return []
    top = max(best.values())
    ranked = sorted((index for index, score in best.items() if score >= top - MARGIN), key=lambda i: (-best[i], i))
    return [options[index] for index in ranked[:limit]]


def either(items: Sequence[str]) -> str:
    """`a`, `a or b`, `a, b or c`: the suggestions of one "did you mean …?"."""
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} or {items[-1]}"


def rooms_like(word: str, rooms: Collection[str], *, limit: int = LIMIT) -> list[str]:
    """The room names of `rooms` (the caller's own) that `word` (typed without `#`) may mean: the
    room of exactly that name when the caller is in one, else the closest ones."""
    if word in rooms:
        return [word]
    return closest([word], sorted(rooms), measure=Measure.NAME, limit=limit)


def integration_suggestions(
    queries: Sequence[str], visible: Iterable[Integration], *, kind: str | None = None, limit: int = LIMIT
) -> tuple[Suggestion, ...]:
    """The integrations of `visible` (what the caller's `list` shows) closest to the typed
    `queries`, at most `limit`. A suggestion carries its type when another visible one has the
    same name or when `kind` asked for the other type, and its id when a twin's name only looks
    the same (or is the same, with the same type): typing that name could never pick it."""
    groups: dict[str, list[Integration]] = {}
    for integration in sorted(visible, key=lambda i: (i.type, i.id)):
        groups.setdefault(name_key(integration.name), []).append(integration)
    found: list[Suggestion] = []
    for key in closest([name_key(q) for q in queries], groups, measure=Measure.NAME, limit=limit):
        twins = groups[key]
        # Same spelling, different types: the type tells them apart. Anything else needs the id.
        by_type = len({t.name for t in twins}) == 1 and len({t.type for t in twins}) == len(twins)
        for twin in twins:
            with_type = len(twins) > 1 or (kind is not None and twin.type != kind)
            found.append(Suggestion(twin.id, twin.name, twin.type, with_type, len(twins) > 1 and not by_type))
    return tuple(found[:limit])
