"""Issue 3, done-when 1: disabling and enabling through the bot loses no field of the integration.

Hypothesis draws integration documents as `integrations.create` would store them (random optional
fields, trigger words, URLs, retry settings, several rooms and `@user` channels, scripts) and then
puts nulls where a real server may have stored them (a 7.x incoming update or any outgoing update
stores null for every optional key its body omitted, contract §2.4.4). Each example creates a fresh
integration through the control API, flips it through the real bot process by id, flips it back by
name, and compares the stored document after each step with the one before, field by field.

One sandbox and one bot per update mode ("8.x" and "legacy"); `omitted_as_null` is drawn per
example and switched on the running sandbox.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import BOT_USERNAME, Workspace, running_workspace, unique_name
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from sandbox.config import SandboxConfig, UpdateMode
from tests.tokens import webhook_tokens

MODES = [
    pytest.param("8.x", marks=pytest.mark.xdist_group("e2e-lossless-8x"), id="8.x"),
    pytest.param("legacy", marks=pytest.mark.xdist_group("e2e-lossless-legacy"), id="legacy"),
]
pytestmark = pytest.mark.e2e

ROOM = "lossless"
CALLER = "admin"
POST_AS = ("rocket.cat", "hookbot")  # hookbot has no `bot` role yet: see the side-effect check
CHANNEL_ENTRIES = ("#general", "#ops", "#alerts", "#platform-team", "#GENERAL", "@alice", "@owen")
SCOPES = ("all_public_channels", "all_private_groups", "all_direct_messages")
CHANNEL_EVENTS = ("sendMessage", "fileUploaded", "roomJoined", "roomLeft")
CHANNELLESS_EVENTS = ("roomArchived", "roomCreated", "userCreated")
MISSING = object()

# What the server writes with `$set` on every update, from the body (contract §2.4.4). A key the
# body omits reaches that `$set` as `undefined`, stored as null when `omitted_as_null`.
OUTGOING_SET = frozenset(
    {
        "event", "enabled", "name", "avatar", "emoji", "alias", "channel", "targetRoom", "impersonateUser",
        "username", "userId", "urls", "token", "script", "scriptEnabled", "scriptEngine", "triggerWords",
        "retryFailedCalls", "retryCount", "retryDelay", "triggerWordAnywhere", "runOnEdits",
        "scriptError",  # `$set scriptError: <compile error or undefined>` when nothing compiled
    }
)  # fmt: skip
# (plus `skipTranspile` on 8.x servers)
LEGACY_INCOMING_SET = frozenset({"alias", "avatar", "emoji", "script"})
# Keys a real server may hold as null (written by an earlier update whose body omitted them).
INCOMING_NULLABLE = ("alias", "avatar", "emoji", "script")
OUTGOING_NULLABLE = (
    "alias", "avatar", "emoji", "targetRoom", "impersonateUser", "script", "triggerWords",
    "retryFailedCalls", "retryCount", "retryDelay", "triggerWordAnywhere", "runOnEdits", "scriptError",
)  # fmt: skip


# --- documents --------------------------------------------------------------------------------------

free_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
hosts = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
urls = st.builds(lambda host, path: f"https://{host}.example.org/{path}", hosts, hosts)
emojis = st.sampled_from([":ghost:", ":rocket:", ":construction_worker:", ":bell:"])
scripts = st.builds(
    lambda text: (
        "class Script { process_incoming_request({ request }) { return { content: { text: "
        + json.dumps(text)
        + " } }; } }"
    ),
    free_text,
)
trigger_words = st.text(string.ascii_letters + string.digits + "!+-", min_size=1, max_size=10)
name_words = st.text(string.ascii_letters + string.digits + "éüßÅ日本-_.()&+'", min_size=1, max_size=8)
names = st.lists(name_words, min_size=1, max_size=3).map(" ".join)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or None meaning "not given" to the control API (the key is then absent)."""
    return st.one_of(st.none(), values)


@st.composite
def incoming_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "channel": draw(st.lists(st.sampled_from(CHANNEL_ENTRIES), min_size=1, max_size=4, unique=True)),
        "username": draw(st.sampled_from(POST_AS)),
        "created_by": draw(st.sampled_from(["admin", "owen"])),
        "enabled": draw(st.booleans()),
        "alias": draw(maybe(free_text)),
        "avatar": draw(maybe(urls)),
        "emoji": draw(maybe(emojis)),
        "script": draw(maybe(scripts)),
        "script_enabled": draw(st.booleans()),
        "override_destination_channel_enabled": draw(st.booleans()),
    }


@st.composite
def outgoing_specs(draw: st.DrawFn) -> dict[str, Any]:
    event = draw(st.sampled_from(CHANNEL_EVENTS + CHANNELLESS_EVENTS))
    channels: list[str] = []
    if event not in CHANNELLESS_EVENTS:
        entries = st.sampled_from(CHANNEL_ENTRIES + SCOPES)
        channels = draw(st.lists(entries, min_size=1, max_size=4, unique=True))
    if event == "userCreated":
        target_room = draw(st.sampled_from(["#general", "#ops"]))
    else:
        target_room = draw(maybe(st.sampled_from(["", "#alerts"])))
    retry = draw(st.booleans())
    return {
        "channel": channels,
        "event": event,
        "urls": draw(st.lists(urls, min_size=1, max_size=3)),
        "username": draw(st.sampled_from(POST_AS)),
        "created_by": draw(st.sampled_from(["admin", "owen"])),
        "enabled": draw(st.booleans()),
        # Only events that use trigger words keep them (a real create drops them otherwise).
        "trigger_words": draw(st.lists(trigger_words, max_size=3)) if event == "sendMessage" else [],
        "trigger_word_anywhere": draw(st.booleans()),
        "token": draw(webhook_tokens(min_size=6, max_size=40, alphabet=string.ascii_letters + string.digits + "-_")),
        "target_room": target_room,
        "alias": draw(maybe(free_text)),
        "avatar": draw(maybe(urls)),
        "emoji": draw(maybe(emojis)),
        "impersonate_user": draw(st.booleans()),
        "retry_failed_calls": retry,
        "retry_count": draw(maybe(st.integers(1, 10))) if retry else None,
        "retry_delay": draw(maybe(st.sampled_from(["powers-of-ten", "powers-of-two", "increments-of-two"])))
        if retry
        else None,
        "run_on_edits": draw(st.booleans()),
        "script": draw(maybe(scripts)),
        "script_enabled": draw(st.booleans()),
    }


@st.composite
def stored_oddities(draw: st.DrawFn, kind: str, spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`$set`/`$unset` fields turning a freshly created document into one an older server or an
    earlier update could have left: nulls, `skipTranspile`, an old script engine."""
    nullable = INCOMING_NULLABLE if kind == "incoming" else OUTGOING_NULLABLE
    nulls = set(draw(st.sets(st.sampled_from(nullable), max_size=len(nullable))))
    if kind == "outgoing":
        if spec["event"] == "userCreated":
            nulls.discard("targetRoom")  # required for that event: no server stores it empty
        if spec["retry_failed_calls"] and "retryFailedCalls" not in nulls:
            nulls -= {"retryCount", "retryDelay"}  # the server defaults them whenever retries are on
    set_fields: dict[str, Any] = dict.fromkeys(sorted(nulls))
    unset: list[str] = []
    if kind == "outgoing" and "script" in nulls:
        unset.append("scriptCompiled")  # an outgoing write without a script drops the compiled one
    skip = draw(st.sampled_from([MISSING, True, False, None]))
    if skip is not MISSING:
        set_fields["skipTranspile"] = skip
    if draw(st.booleans()):
        set_fields["scriptEngine"] = "vm2"  # allowed by 6.x servers, kept by later ones
    return set_fields, unset


# --- the comparison ---------------------------------------------------------------------------------


def unexplained_changes(
    before: dict[str, Any], after: dict[str, Any], *, kind: str, update_mode: str, omitted_as_null: bool
) -> dict[str, tuple[Any, Any]]:
    """Fields whose stored value changed, except for what the server rewrites on every update."""
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if old == new:
            continue
        # The change itself; its new value is asserted separately.
        if key == "enabled":
            continue
        # Stamped by every write (contract §2.4.4 table: "_updatedAt, _updatedBy: set").
        if key in ("_updatedAt", "_updatedBy"):
            continue
        # Re-derived from the script by the server's compiler on every write that sends an enabled
        # script (§2.4.3 step 5, §2.4.4): its text is the server's business, but a script that was
        # compiled (i.e. running) must still be compiled afterwards.
        if key == "scriptCompiled" and old is not MISSING and new not in (MISSING, None, ""):
            continue
        # Derived too: a write whose script compiles `$unset`s scriptError (§2.4.4), so a stored
        # null (left by an earlier write that compiled nothing) goes; neither holds an error.
        if key == "scriptError" and old is None and new is MISSING:
            continue
        # JSON cannot carry `undefined`: a key the stored document lacks can only be omitted or sent
        # as null, and for fields the server `$set`s from the body on every write both store null
        # (`ignoreUndefined: false`). Absent and null both mean "no value": nothing was lost.
        written_always: frozenset[str] = frozenset()
        if kind == "outgoing":
            written_always = OUTGOING_SET | ({"skipTranspile"} if update_mode == "8.x" else set())
        elif update_mode == "legacy":
            written_always = LEGACY_INCOMING_SET
        if old is MISSING and new is None and omitted_as_null and key in written_always:
            continue
        # 8.x incoming updates always write `skipTranspile: body.skipTranspile === true`: a stored
        # absent/null becomes false, which is what the server reads absent/null as anyway.
        if (
            key == "skipTranspile"
            and kind == "incoming"
            and update_mode == "8.x"
            and old in (MISSING, None)
            and new is False
        ):
            continue
        changes[key] = (old, new)
    return changes


# --- the test ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=MODES)
def mode_workspace(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    mode: UpdateMode = request.param
    workdir: Path = tmp_path_factory.mktemp(f"bot-{mode}")
    with running_workspace(workdir, SandboxConfig(update_mode=mode)) as workspace:
        workspace.control.create_room(ROOM, members=[CALLER, BOT_USERNAME])
        yield workspace


def swap_ascii_case(text: str) -> str:
    """Upper↔lower for ASCII letters only (`str.swapcase` turns ß into SS, a different name to the
    server's case-insensitive search)."""
    return "".join(c.swapcase() if c.isascii() else c for c in text)


def create(workspace: Workspace, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    control = workspace.control
    if kind == "incoming":
        return control.create_incoming_integration(name, **spec)
    return control.create_outgoing_integration(name, **spec)


def flip(workspace: Workspace, text: str, wanted: bool) -> dict[str, Any]:
    """Run one command and check it changed the integration with exactly one update request."""
    updates = len(workspace.control.recorded_requests("integrations.update"))
    reply = workspace.chat.command(CALLER, ROOM, text)
    verb = "Enabled" if wanted else "Disabled"
    assert f"{verb} " in reply["msg"], f"{text!r} got: {reply['msg']}"
    assert len(workspace.control.recorded_requests("integrations.update")) == updates + 1
    return reply


@pytest.mark.parametrize("kind", ["incoming", "outgoing"])
# No shrinking: every example is two round trips through a real process, and shrinking one can
# take minutes; a failure prints its draws (as generated) and the reply or the changed fields.
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(data=st.data())
def test_disable_and_enable_through_the_bot_lose_no_field(mode_workspace: Workspace, kind: str, data: Any) -> None:
    workspace, control = mode_workspace, mode_workspace.control
    update_mode = workspace.server.config.update_mode
    omitted_as_null = data.draw(st.booleans(), label="omitted_as_null")
    control.configure(omitted_as_null=omitted_as_null)
    spec = data.draw(incoming_specs() if kind == "incoming" else outgoing_specs(), label="spec")
    name = unique_name(data.draw(names, label="name"))
    created = create(workspace, kind, name, spec)
    set_fields, unset = data.draw(stored_oddities(kind, spec), label="stored oddities")
    if set_fields or unset:
        control.update_integration(created["_id"], set_fields, unset)
    before = control.integration(created["_id"])
    poster_roles = set(control.user(spec["username"])["roles"])
    compare = {"kind": kind, "update_mode": update_mode, "omitted_as_null": omitted_as_null}
    enabled = bool(before["enabled"])

    # 1. Flip it by id.
    verb, back = ("disable", "enable") if enabled else ("enable", "disable")
    flip(workspace, f"!integration {verb} {created['_id']}", not enabled)
    after_flip = control.integration(created["_id"])
    assert after_flip["enabled"] is (not enabled)
    assert unexplained_changes(before, after_flip, **compare) == {}

    # 2. Flip it back by name (quoted, case changed, sometimes narrowed by type).
    narrowed = kind + " " if data.draw(st.booleans(), label="narrow by type") else ""
    typed = swap_ascii_case(name) if data.draw(st.booleans(), label="other case") else name
    flip(workspace, f'/integration {back} {narrowed}"{typed}"', enabled)
    final = control.integration(created["_id"])
    assert final["enabled"] is enabled
    assert unexplained_changes(before, final, **compare) == {}

    # The one side effect outside the document: an incoming update gives the post-as user the
    # `bot` role (contract §2.4.3 step 8, 7.x/8.x); an outgoing update changes no user.
    expected_roles = poster_roles | {"bot"} if kind == "incoming" else poster_roles
    assert set(control.user(spec["username"])["roles"]) == expected_roles
