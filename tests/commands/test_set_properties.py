"""Hypothesis over what people type after `set`: field names and values, every form the parser knows.

Each example runs the real path (parser → dispatcher → set → validation → existence checks →
preview or, with `--yes`, the write) against the sandbox REST app, and checks what a user would
notice: there is always a reply and never a crash; nothing is written unless the reply says it
changed something; a preview never writes; what the bot writes is never refused by the server
(the bot's own validation caught it first) and is stored as intended; a token never shows.
"""

from __future__ import annotations

import asyncio
import string

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from set_harness import Harness, open_harness

from bot.integrations.fields import FIELDS, NOT_SETTABLE

FIELD_WORDS = sorted({w for spec in FIELDS for w in (spec.key, *spec.aliases)} | set(NOT_SETTABLE))
VALUE_CHARS = string.ascii_letters + string.digits + " #@+-,:/.=_!?'\"“”—" + "é\u00a0"
MEANINGFUL = [
    "#general",
    "#ops,#alerts",
    "@alice",
    "#nope",
    "all_public_channels",
    "true",
    "off",
    "maybe",
    "0",
    "7",
    "-3",
    "sendMessage",
    "roomCreated",
    "userCreated",
    "room-joined",
    "https://example.org/hook",
    "ftp://example.org",
    "powers-of-two",
    "hookbot",
    "nobody",
    ":tada:",
    "tada",
    "",
    "!deploy",
]

field_words = st.one_of(st.sampled_from(FIELD_WORDS), st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,12}", fullmatch=True))
values = st.one_of(st.sampled_from(MEANINGFUL), st.text(VALUE_CHARS, max_size=20))


@st.composite
def assignments(draw: st.DrawFn) -> str:
    word = draw(field_words)
    value = draw(values)
    form = draw(st.sampled_from(["eq", "quoted", "spaced", "signed"]))
    if form == "eq":
        return f"{word}={value}"
    if form == "quoted":
        return f'{word}="{value.replace(chr(34), "")}"'
    if form == "spaced":
        return f"{word} = {value}" if value else f"{word}="
    signs = draw(st.lists(st.sampled_from(["+", "-"]), min_size=1, max_size=3))
    items = draw(st.lists(st.sampled_from([*MEANINGFUL[:6], "!deploy", "!guggy", "https://example.org/x"]), min_size=1))
    return f"{word} " + " ".join(sign + item for sign, item in zip(signs, items, strict=False))


# Values that work for each field (in some states of some integrations), so examples also reach
# previews and writes rather than stopping at the first refusal.
GOOD = {
    "name": ['"Renamed hook"'],
    "channel": ["#ops", "#alerts,#ops", "@alice", "+#alerts", "-#general"],
    "username": ["hookbot", "rocket.cat"],
    "alias": ["bot", '""'],
    "avatar": ["https://example.org/x.png"],
    "emoji": [":tada:"],
    "scriptEnabled": ["on", "off"],
    "overrideDestinationChannelEnabled": ["yes"],
    "event": ["roomJoined", "fileUploaded", "roomCreated"],
    "urls": ["https://example.org/a", "+https://example.org/b"],
    "triggerWords": ["!a,!b", "+!x", "-!guggy", '""'],
    "triggerWordAnywhere": ["true"],
    "targetRoom": ["#general", '""'],
    "token": ["t0k3n-abcdefgh"],
    "retryFailedCalls": ["true", "false"],
    "retryCount": ["3"],
    "retryDelay": ["increments-of-two"],
    "runOnEdits": ["no"],
    "impersonateUser": ["yes"],
}
good_assignments = st.sampled_from(sorted(GOOD)).flatmap(
    lambda key: st.sampled_from(GOOD[key]).map(lambda v: f"{key}={v}")
)

TARGETS = ["guggy-incoming", "guggy-outgoing", "deploy-announcer", "welcome-new-users", "jenkins-builds"]


async def _example(target: str, parts: list[str], yes: bool, caller: str) -> None:
    h: Harness = await open_harness()
    try:
        integration_id = h.seeded["integrations"][target]["id"]
        before = h.doc(integration_id)
        text = f"!integration set {integration_id} {' '.join(parts)}" + (" --yes" if yes else "")
        reply = await h.say(caller, "ops", text)
        event(reply.outcome)
        assert reply.text
        assert reply.outcome not in ("crashed", "rejected", "verification-failed", "not-updatable"), reply.text
        if reply.outcome == "changed":
            assert yes
            assert h.writes() == 1
        else:
            assert h.writes() == 0
            assert h.doc(integration_id) == before
        assert (await h.services.pending.waiting() == 1) == (reply.outcome == "preview")
        # Every value a user typed for a token field is secret: not in the reply, ever.
        assert "t0k3n-" not in reply.text
    finally:
        await h.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(TARGETS),
    parts=st.lists(st.one_of(good_assignments, good_assignments, assignments()), min_size=1, max_size=3),
    yes=st.booleans(),
    caller=st.sampled_from(["admin", "admin", "owen"]),
)
def test_any_set_command_is_answered_and_writes_only_when_it_says_so(
    target: str, parts: list[str], yes: bool, caller: str
) -> None:
    asyncio.run(_example(target, parts, yes, caller))


@settings(max_examples=40, deadline=None)
@given(secret=st.text(string.ascii_letters + string.digits, min_size=6, max_size=20), yes=st.booleans())
def test_a_token_never_shows_in_a_reply(secret: str, yes: bool) -> None:
    async def main() -> None:
        h = await open_harness()
        try:
            gid = h.seeded["integrations"]["guggy-outgoing"]["id"]
            reply = await h.say(
                "admin", "ops", f"!integration set {gid} token=t0k3n-{secret}" + (" --yes" if yes else "")
            )
            assert reply.outcome == ("changed" if yes else "preview")
            assert f"t0k3n-{secret}" not in reply.text
            assert all(f"t0k3n-{secret}" not in b.command for b in reply.buttons)
            if yes:
                assert h.doc(gid)["token"] == f"t0k3n-{secret}"
        finally:
            await h.close()

    asyncio.run(main())
