"""Hypothesis over mistyped names: whatever a "did you mean" names is an integration (or a room)
the caller can see and use, never one hidden from them, never one that does not exist, and never
more than three. Runs the real path (parser → dispatcher → command → sandbox REST app)."""

from __future__ import annotations

import asyncio
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from set_harness import Harness, open_harness

from bot.integrations.authz import visible_in_list

SEEDED_NAMES = ["Guggy", "old-guggy", "Jenkins builds", "Deploy announcer", "Alertmanager", "Welcome new users"]
ROOMS = ["general", "ops", "alerts", "platform-team"]
CODE = re.compile(r"`([^`]*)`")


@st.composite
def typos(draw: st.DrawFn, words: list[str]) -> str:
    """A word with up to two letters dropped, doubled, swapped or replaced, or anything at all."""
    if draw(st.booleans()):
        return draw(st.from_regex(r"[A-Za-z][A-Za-z -]{0,14}", fullmatch=True)).strip() or "x"
    word = list(draw(st.sampled_from(words)))
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(word) - 1))
        edit = draw(st.sampled_from(["drop", "double", "swap", "replace"]))
        if edit == "drop" and len(word) > 1:
            del word[at]
        elif edit == "double":
            word.insert(at, word[at])
        elif edit == "swap" and at + 1 < len(word):
            word[at], word[at + 1] = word[at + 1], word[at]
        else:
            word[at] = draw(st.sampled_from("aeioux"))
    return "".join(word)


def did_you_mean(text: str) -> str:
    """What a reply's "did you mean …?" names, zero-width spaces (mention-proofing) taken out."""
    found = re.search(r"[Dd]id you mean (.*?)\?", text.replace("\u200b", ""))
    return found.group(1) if found else ""


async def _names(h: Harness, caller: str, typed: str, command: str) -> None:
    reply = await h.say(caller, "ops", "!integration " + command.format(f'"{typed}"'))
    assert reply.outcome not in ("crashed", "error"), reply.text
    rights = await h.services.rights.get(h.seeded["users"][caller]["userId"], fresh=True)
    visible = [d for d in h.control.integrations() if visible_in_list(rights, d)]
    spans = CODE.findall(did_you_mean(reply.text))
    names = [span for span in spans if span not in {d["_id"] for d in visible}]
    event(f"{reply.outcome}, {len(spans)} suggested")
    assert len(names) <= 3, reply.text
    assert set(names) <= {d["name"] for d in visible}, reply.text
    assert reply.outcome == "changed" or h.writes() == 0  # two typos may spell the name again


async def _rooms(h: Harness, caller: str, typed: str) -> None:
    target = h.seeded["integrations"]["deploy-announcer"]["id"]
    reply = await h.say(caller, "ops", f"!integration set {target} channel={typed.replace(' ', '-')}")
    rights = await h.services.rights.get(h.seeded["users"][caller]["userId"], fresh=True)
    mine = {f"#{name}" for name in rights.room_ids_by_name or {}}
    spans = re.findall(r"#[\w.-]+", did_you_mean(reply.text))
    assert len(spans) <= 3 and set(spans) <= mine, reply.text
    assert h.writes() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caller=st.sampled_from(["admin", "owen"]),
    typed=typos(SEEDED_NAMES),
    command=st.sampled_from(["show {}", "history {}", "disable {} because spam", "enable {}", "set {} alias=x"]),
)
def test_a_suggested_name_is_always_one_the_caller_can_see(caller: str, typed: str, command: str) -> None:
    async def main() -> None:
        h = await open_harness()
        try:
            await _names(h, caller, typed, command)
        finally:
            await h.close()

    asyncio.run(main())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caller=st.sampled_from(["admin", "owen"]), typed=typos(ROOMS))
def test_a_suggested_room_is_always_one_the_caller_is_in(caller: str, typed: str) -> None:
    async def main() -> None:
        h = await open_harness()
        try:
            await _rooms(h, caller, typed)
        finally:
            await h.close()

    asyncio.run(main())
