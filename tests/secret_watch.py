"""No secret in any log of the whole test suite (issue 6: "a test greps all log output of the whole suite").

What is collected, in each pytest process (each xdist worker is one):
- secrets: every password, login token, personal access token and webhook token any sandbox
  creates in this process (seeded or made by a test; `spy_on_sandbox` wraps the four methods of
  `sandbox.store.Store` that receive or create them), the password digest a DDP login sends for
  each password, and whatever a test registers with `WATCH.add_secret`;
- logs: the output pytest captured for each test (stdout, stderr and log records of setup, call
  and teardown, session fixtures included), and the whole output of every bot process the e2e
  machinery starts (`WATCH.add_process`, called by `e2e_support.BotProcess`).

When: a log is indexed once it is final (a test's teardown report; a bot process that exited, or
any still running at the end), and secrets are matched at the end of the session, so a secret
created after a log was written is caught too. Each leak becomes one line naming the kind of
secret, the test that created it and the log that showed it, never the value; the session fails
(under xdist the workers hand their lines to the controller, which fails the run).

How it stays cheap (a whole suite is a few MB of logs and some 10,000 secrets): a log is split at
whitespace and each distinct word of at least `MIN_LENGTH` characters is kept once, with where it
was first seen. At the end, every `MIN_LENGTH`-character slice of every distinct word is looked
up among the secrets' first `MIN_LENGTH` characters, so a secret is found anywhere inside a word
(in a URL, a JSON string, a repr), not only as a whole word. A secret that itself contains
whitespace is searched for in the raw text instead, when the text arrives.

What is not a secret worth the false alarms: values shorter than `MIN_LENGTH` (test passwords
such as "pw") and values of fewer than `MIN_DISTINCT` different characters (hypothesis draws
tokens such as "00000000" or "--------", which ordinary log lines contain). Every generated
credential has far more variety: a 43-character login token has some 30 different characters.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import pytest

MIN_LENGTH: Final = 8
MIN_DISTINCT: Final = 6
OUTSIDE: Final = "(outside any test)"


@dataclass(frozen=True)
class Secret:
    kind: str  # "password", "login token", ...
    origin: str  # the test that was running when it was created


@dataclass(frozen=True)
class Source:
    name: str  # "the output of bot process 4242", "captured stderr call of tests/x.py::test_y"
    test: str  # the test during which it was written (a bot process: where it started)


@dataclass(frozen=True)
class Leak:
    kind: str
    origin: str
    source: Source

    def describe(self) -> str:
        where = self.source.name
        if self.source.test not in where:
            where += f" (started during {self.source.test})"
        return f"a {self.kind} created during {self.origin} appears in {where}"


@dataclass
class _Process:
    source: Source
    read: Callable[[], str]
    finished: Callable[[], bool]


class SecretWatch:
    """Secrets and logs of one pytest process; `leaks()` matches them (see the module docstring)."""

    def __init__(self) -> None:
        self.current = OUTSIDE
        self._lock = threading.Lock()
        self._secrets: dict[str, Secret] = {}
        self._spaced: dict[str, Secret] = {}  # secrets containing whitespace: matched on arrival
        self._sources: list[Source] = []
        self._words: dict[str, int] = {}  # distinct word -> index of the source it was first seen in
        self._spaced_leaks: dict[tuple[int, int], Leak] = {}  # (id of the Secret, source index) -> leak
        self._processes: list[_Process] = []
        self.log_bytes = 0

    # --- secrets -------------------------------------------------------------------------------

    def add_secret(self, value: str | None, kind: str) -> None:
        if not value or len(value) < MIN_LENGTH or len(set(value)) < MIN_DISTINCT:
            return
        secret = Secret(kind, self.current)
        # A JSON log line escapes quotes, backslashes and non-ASCII characters: look for that form too.
        for form in {value, json.dumps(value)[1:-1]}:
            with self._lock:
                book = self._spaced if any(c.isspace() for c in form) else self._secrets
                book.setdefault(form, secret)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "secrets": len(self._secrets) + len(self._spaced),
                "logs": len(self._sources),
                "log_bytes": self.log_bytes,
                "words": len(self._words),
            }

    # --- logs ----------------------------------------------------------------------------------

    def add_log(self, name: str, text: str, test: str | None = None) -> None:
        """Index a finished piece of log output."""
        source = Source(name, test or self.current)
        with self._lock:
            self.log_bytes += len(text)
            index = len(self._sources)
            self._sources.append(source)
            words = self._words
            for word in set(text.split()):
                if len(word) >= MIN_LENGTH and word not in words:
                    words[word] = index
            spaced = list(self._spaced.items())
        for value, secret in spaced:
            if value in text:
                self._spaced_leaks[(id(secret), index)] = Leak(secret.kind, secret.origin, source)

    def add_process(self, name: str, read: Callable[[], str], finished: Callable[[], bool]) -> None:
        """A process whose output (`read()`) is indexed once `finished()` (or at the end)."""
        with self._lock:
            self._processes.append(_Process(Source(name, self.current), read, finished))

    def collect(self, *, final: bool = False) -> None:
        """Index the processes that finished (all of them when `final`) and forget them."""
        with self._lock:
            done = [p for p in self._processes if final or p.finished()]
            self._processes = [p for p in self._processes if p not in done]
        for process in done:
            self.add_log(process.source.name, process.read(), process.source.test)

    # --- the check -----------------------------------------------------------------------------

    def leaks(self) -> list[Leak]:
        """Each secret that shows up, once per log that first showed a word containing it; in log order."""
        with self._lock:
            by_prefix: dict[str, list[str]] = {}
            for value in self._secrets:
                by_prefix.setdefault(value[:MIN_LENGTH], []).append(value)
            # One leak per secret and log, whichever of its forms the log shows.
            found = dict(self._spaced_leaks)
            for word, index in self._words.items():
                for start in range(len(word) - MIN_LENGTH + 1):
                    candidates = by_prefix.get(word[start : start + MIN_LENGTH])
                    if candidates is None:
                        continue
                    for value in candidates:
                        secret = self._secrets[value]
                        if word.startswith(value, start) and (id(secret), index) not in found:
                            found[(id(secret), index)] = Leak(secret.kind, secret.origin, self._sources[index])
            return [found[key] for key in sorted(found, key=lambda key: key[1])]


WATCH = SecretWatch()


# --- where the secrets come from ------------------------------------------------------------------


def spy_on_sandbox(watch: SecretWatch) -> Callable[[], None]:
    """Register every secret a `sandbox.store.Store` receives or creates; returns the undo."""
    from sandbox.ids import password_digest
    from sandbox.store import Store

    originals = {
        name: getattr(Store, name)
        for name in ("create_user", "create_login_token", "insert_integration", "update_integration")
    }

    @functools.wraps(originals["create_user"])
    def create_user(self: Store, *args: Any, **kwargs: Any) -> Any:
        password = kwargs.get("password")
        if password:
            watch.add_secret(password, "password")
            watch.add_secret(password_digest(password), "password digest")
        return originals["create_user"](self, *args, **kwargs)

    @functools.wraps(originals["create_login_token"])
    def create_login_token(self: Store, *args: Any, **kwargs: Any) -> Any:
        token = originals["create_login_token"](self, *args, **kwargs)
        kind = "personal access token" if kwargs.get("kind") == "personalAccessToken" else "login token"
        watch.add_secret(token, kind)
        return token

    @functools.wraps(originals["insert_integration"])
    def insert_integration(self: Store, document: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if isinstance(document.get("token"), str):
            watch.add_secret(document["token"], "webhook token")
        return originals["insert_integration"](self, document, *args, **kwargs)

    @functools.wraps(originals["update_integration"])
    def update_integration(
        self: Store, integration_id: str, set_fields: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        if isinstance(set_fields.get("token"), str):
            watch.add_secret(set_fields["token"], "webhook token")
        return originals["update_integration"](self, integration_id, set_fields, *args, **kwargs)

    spies = {
        "create_user": create_user,
        "create_login_token": create_login_token,
        "insert_integration": insert_integration,
        "update_integration": update_integration,
    }
    for name, spy in spies.items():
        setattr(Store, name, spy)

    def undo() -> None:
        for name, original in originals.items():
            setattr(Store, name, original)

    return undo


# --- the pytest plugin ----------------------------------------------------------------------------


class SecretWatchPlugin:
    """Feeds `watch` with the tests' captured output and fails the session on a leak."""

    LEAKS_KEY: Final = "secret_leaks"
    STATS_KEY: Final = "secret_watch_stats"

    def __init__(self, watch: SecretWatch) -> None:
        self.watch = watch
        self.leaks: list[str] = []
        self.stats: dict[str, float] = {}
        self._undo: Callable[[], None] | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        self._undo = spy_on_sandbox(self.watch)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._undo is not None:
            self._undo()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Any:
        self.watch.current = item.nodeid
        try:
            return (yield)
        finally:
            self.watch.current = OUTSIDE

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        report = yield
        if report.when == "teardown":
            # The teardown report carries the sections of all three phases.
            for title, text in report.sections:
                self.watch.add_log(f"{title[:1].lower()}{title[1:]} of {item.nodeid}", text, item.nodeid)
            self.watch.collect()
        return report

    @pytest.hookimpl(trylast=True)  # after the session fixtures' teardown (their bots have stopped)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        started = time.perf_counter()
        self.watch.collect(final=True)
        found = [leak.describe() for leak in self.watch.leaks()]
        stats = {**self.watch.stats(), "seconds": time.perf_counter() - started}
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports and fails the run
            workeroutput[self.LEAKS_KEY] = found
            workeroutput[self.STATS_KEY] = stats
            return
        self._add_stats(stats)
        self.leaks.extend(found)
        if self.leaks:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: a worker finished; keep its leaks."""
        output = getattr(node, "workeroutput", {})
        self.leaks.extend(output.get(self.LEAKS_KEY, []))
        self._add_stats(output.get(self.STATS_KEY, {}))

    def _add_stats(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.stats[key] = self.stats.get(key, 0) + value

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.stats:
            s = self.stats
            terminalreporter.write_line(
                f"secret watch: {int(s['secrets'])} secrets against {s['log_bytes'] / 1e6:.1f} MB of log output "
                f"({int(s['logs'])} logs), checked in {s['seconds']:.2f} s: "
                + (f"{len(self.leaks)} leak(s)" if self.leaks else "no leak")
            )
        if not self.leaks:
            return
        terminalreporter.section("secrets in logs", sep="=", red=True, bold=True)
        terminalreporter.line(f"{len(self.leaks)} secret(s) appear in log output; the session fails:", red=True)
        for line in self.leaks:
            terminalreporter.line(f"  {line}", red=True)
