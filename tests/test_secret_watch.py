"""The suite-wide secret check (tests/secret_watch.py) finds what it must, names it without the value,
and really fails a pytest session: in one process and under xdist, as `make test` runs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from sandbox.ids import password_digest
from sandbox.seed import seed_demo
from sandbox.store import Store
from tests.secret_watch import MIN_DISTINCT, MIN_LENGTH, SecretWatch, spy_on_sandbox
from tests.session_support import run_session

TOKEN = "Zq3vR9xLk2PwT7nB4mYcH8sJ1dF6gA0eU5iO"  # a login token of the kind the sandbox makes


def watch_in(test: str = "tests/x.py::test_a") -> SecretWatch:
    watch = SecretWatch()
    watch.current = test
    return watch


def test_a_secret_anywhere_in_a_log_is_a_leak_named_by_kind_and_place_never_by_value() -> None:
    watch = watch_in("tests/x.py::test_makes_it")
    watch.add_secret(TOKEN, "login token")
    watch.add_log("captured stderr call of tests/y.py::test_clean", '{"event": "bot.ready", "token": "***"}')
    watch.current = "tests/y.py::test_logs_it"
    for shape in (
        f'{{"event": "rest.request", "url": "http://127.0.0.1:3000/hooks/abc/{TOKEN}"}}',  # inside a URL
        f"{{'X-Auth-Token': '{TOKEN}'}}",  # a repr
        f"token={TOKEN}&next=1",  # a query string
        f"Bearer{TOKEN}.",  # glued to other characters
    ):
        watch.add_log("the output of bot process 42", shape)
    leaks = watch.leaks()
    assert len(leaks) == 4
    described = leaks[0].describe()
    assert described == (
        "a login token created during tests/x.py::test_makes_it appears in the output of bot process 42 "
        "(started during tests/y.py::test_logs_it)"
    )
    assert all(TOKEN not in leak.describe() for leak in leaks)


def test_clean_logs_short_values_and_other_secrets_are_no_leak() -> None:
    watch = watch_in()
    watch.add_secret(TOKEN, "login token")
    watch.add_secret("pw", "password")  # too short to tell from ordinary words
    watch.add_secret("00000000", "webhook token")  # too plain: a hypothesis draw, found in any timestamp
    watch.add_secret(None, "password")
    watch.add_log("log", "pw " + TOKEN[:-1] + " " + TOKEN[1:] + " token=*** password=*** 12:00:00.00000000")
    assert watch.leaks() == []


def test_a_secret_created_after_the_log_was_written_is_still_found() -> None:
    watch = watch_in()
    watch.add_log("captured stdout call of tests/x.py::test_a", f"early {TOKEN}")
    watch.add_secret(TOKEN, "webhook token")
    assert [leak.kind for leak in watch.leaks()] == ["webhook token"]


def test_secrets_with_spaces_and_json_escaped_secrets_are_found() -> None:
    watch = watch_in()
    spaced, quoted = "correct horse battery staple", 'pa"ss\\word-123'
    watch.add_secret(spaced, "password")
    watch.add_secret(quoted, "password")
    watch.add_log("plain", f"login with {spaced}!")
    watch.add_log("json", json.dumps({"event": "login", "body": f"x{quoted}"}))  # shows pa\"ss\\word-123
    assert [leak.source.name for leak in watch.leaks()] == ["plain", "json"]


def test_a_process_is_read_once_it_finished_and_at_the_end_whatever_its_state() -> None:
    watch = watch_in()
    watch.add_secret(TOKEN, "personal access token")
    state = {"finished": False, "reads": 0}

    def read() -> str:
        state["reads"] += 1
        return f"line with {TOKEN}"

    watch.add_process("the output of bot process 7", read, lambda: bool(state["finished"]))
    watch.collect()
    assert state["reads"] == 0 and watch.leaks() == []
    state["finished"] = True
    watch.collect()
    watch.collect()
    assert state["reads"] == 1 and len(watch.leaks()) == 1
    watch.add_process("the output of bot process 8", lambda: f"{TOKEN}!", lambda: False)
    watch.collect(final=True)
    assert state["reads"] == 1 and len(watch.leaks()) == 2


@given(
    secret=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=MIN_LENGTH, max_size=50).filter(
        lambda s: len(set(s)) >= MIN_DISTINCT
    ),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_the_check_finds_a_secret_exactly_when_the_text_contains_it(secret: str, before: str, after: str) -> None:
    watch = watch_in()
    watch.add_secret(secret, "password")
    watch.add_log("log", before + secret + after)
    assert len(watch.leaks()) == 1
    other = watch_in()
    other.add_secret(secret, "password")
    other.add_log("log", before + after)
    escaped = json.dumps(secret)[1:-1]  # the form a JSON log line shows
    assert (other.leaks() != []) == (secret in before + after or escaped in before + after)


def test_every_secret_a_sandbox_makes_is_registered() -> None:
    watch = watch_in()
    undo = spy_on_sandbox(watch)
    try:
        store = Store()
        seed = seed_demo(store)
        user = store.create_user("eve", password="eve-password-1")
        session = store.create_login_token(user._id)
        hook = next(d for d in store.list_integrations() if d["type"] == "webhook-outgoing")
        store.update_integration(hook["_id"], {"token": "new-outgoing-token-1"})
    finally:
        undo()
    store.create_user("zed", password="not-watched-any-more")
    users = seed["users"].values()
    expected = {
        "personal access token": [seed["users"]["integrations-bot"]["authToken"]],
        "login token": [session, *(u["authToken"] for u in users if u["username"] != "integrations-bot")],
        "password": ["eve-password-1", *(u["password"] for u in users)],
        "password digest": [password_digest("eve-password-1")],
        "webhook token": [d["token"] for d in store.list_integrations() if d.get("token")],
    }
    for kind, values in expected.items():
        for n, value in enumerate(values):
            watch.add_log(f"{kind} {n}", f"<{value}>")
    watch.add_log("after the undo", "<not-watched-any-more>")
    found = {leak.source.name: leak.kind for leak in watch.leaks()}
    assert found == {f"{kind} {n}": kind for kind, values in expected.items() for n in range(len(values))}
    assert len(expected["webhook token"]) >= 4 and "new-outgoing-token-1" in expected["webhook token"]


# --- a whole pytest session fails ---------------------------------------------------------------------

LEAKY_TESTS = """
import logging

from sandbox.store import Store


def test_keeps_its_secrets() -> None:
    store = Store()
    store.create_user("carol", password="carol-keeps-this-1")


def test_prints_a_token_and_logs_a_password() -> None:
    store = Store()
    user = store.create_user("eve", password="eve-password-leaked-1")
    token = store.create_login_token(user._id)
    print(f"logging in as eve with {token}")
    logging.getLogger("leaky").warning("password was eve-password-leaked-1")
"""


def assert_failed_for_the_leaks(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "2 passed" in output  # the tests themselves pass: the check fails the session
    assert "2 secret(s) appear in log output; the session fails" in output
    test = "test_leaky.py::test_prints_a_token_and_logs_a_password"
    assert f"a login token created during {test} appears in captured stdout call of {test}" in output
    assert f"a password created during {test} appears in captured log call of {test}" in output
    assert "eve-password-leaked-1" not in output and "logging in as eve with" not in output
    assert "test_keeps_its_secrets appears" not in output


def test_a_leak_fails_the_session(tmp_path: Path) -> None:
    assert_failed_for_the_leaks(run_session(tmp_path, "test_leaky.py", LEAKY_TESTS, "-p", "no:xdist"))


def test_a_leak_on_an_xdist_worker_fails_the_whole_run(tmp_path: Path) -> None:
    assert_failed_for_the_leaks(run_session(tmp_path, "test_leaky.py", LEAKY_TESTS, "-n", "1"))


def test_a_session_without_a_leak_passes(tmp_path: Path) -> None:
    result = run_session(
        tmp_path, "test_leaky.py", LEAKY_TESTS, "-p", "no:xdist", "test_leaky.py::test_keeps_its_secrets"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no leak" in result.stdout
