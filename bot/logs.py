"""Structured logging: JSON lines when not on a terminal, readable lines on one; secrets redacted.

Every event goes through `structlog` with context variables bound per command (correlation id,
room, user, command, integration), so one `grep <correlation id>` shows a command's whole story.
Two independent guards keep secrets out of the output:
- keys that name a secret (`token`, `password`, `authToken`, ...) are masked whatever they hold;
- the actual secret values the process is given (its auth token, its password, a token typed
  into `set`) are registered with `register_secret` and replaced wherever they appear in a value.
  Webhook tokens read from Rocket.Chat are never logged as values: documents are logged as
  field names and masked diffs only, and the key guard above catches any that slip into a dict.
Records from the standard `logging` module (httpx, websockets, uvicorn) go through the same
processors, so a library that logs a URL with a token in it is redacted too.

A command's answer comes before its log lines: the lines a command logs with `after_answer`
(what it changed, how it ended) are held while it runs and written once its answer has been
handed to the server (`holding`, `release`), with the time and context of the moment they
were logged. Warnings and errors are never held.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterable, Iterator, MutableMapping
from contextvars import ContextVar
from typing import Any, Final, Literal

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

_SECRET_KEY = re.compile(r"(?i)(token|password|passwd|secret|authorization|x-auth|digest|resume)")
_MASK = "***"
_MIN_SECRET_LENGTH = 6  # shorter strings would mask ordinary words


class _SecretRegistry:
    """The secret values this process knows, compiled into one alternation pattern."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self.pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        with self._lock:
            if value in self._values:
                return
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(s) for s in ordered))


_registry = _SecretRegistry()


def register_secret(value: str | None) -> None:
    """Remember a secret value so it is masked wherever it shows up in a log event."""
    if value and len(value) >= _MIN_SECRET_LENGTH:
        _registry.add(value)


def redact_text(text: str) -> str:
    pattern = _registry.pattern
    return pattern.sub(_MASK, text) if pattern is not None else text


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and value not in (None, "", False, True):
        return _MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    return value


def redact_processor(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key == "event":
            event_dict[key] = redact_text(str(event_dict[key]))
        else:
            event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _redact_exception(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    if "exception" in event_dict and isinstance(event_dict["exception"], str):
        event_dict["exception"] = redact_text(event_dict["exception"])
    return event_dict


def _logger_name(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The `logger` key of a structlog event: the name given to `get_logger`, bound as `_name`."""
    name = event_dict.pop("_name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


_STAMP: Final = structlog.processors.TimeStamper(fmt="iso", utc=True)


def _stamp(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """The time of the event; a held line keeps the time it was logged at (`after_answer`)."""
    return event_dict if "timestamp" in event_dict else _STAMP(logger, method, event_dict)


def configure_logging(
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    *,
    stream: Any = None,
    quiet_libraries: Iterable[str] = ("httpx", "httpcore", "websockets", "uvicorn", "asyncio"),
) -> None:
    """Write structlog events and stdlib records as lines on `stream` (stderr by default).

    The bot's own events go straight from structlog to the stream: a level check first (a
    debug event below the level costs a method call), then the processors, then one write. The
    stdlib route they took before (LogRecord, handler lock, formatter) cost ~0.15 ms per event
    on a command's path (bench/). Records of libraries that use `logging` get the same
    processors through a `ProcessorFormatter` on the root handler.
    """
    output = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not getattr(output, "isatty", lambda: False)())
    levelno: int = logging.getLevelName(level)
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    finish: list[Processor] = [structlog.processors.format_exc_info, _redact_exception, renderer]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _STAMP,
            redact_processor,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in quiet_libraries:
        logging.getLogger(name).setLevel(max(logging.WARNING, levelno))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _logger_name,
            _stamp,
            redact_processor,
            *finish,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.WriteLoggerFactory(file=output),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose events carry `logger: name`."""
    # Lazy: the configuration is read at each use, so modules may create loggers at import time.
    logger: FilteringBoundLogger = structlog.get_logger(_name=name)
    return logger


def bind(**values: Any) -> None:
    structlog.contextvars.bind_contextvars(**values)


def clear() -> None:
    structlog.contextvars.clear_contextvars()


def context() -> MutableMapping[str, Any]:
    return structlog.contextvars.get_contextvars()


# --- lines written after the command's answer ---------------------------------------------------

_Held = list[tuple[FilteringBoundLogger, str, dict[str, Any]]]
_held: ContextVar[_Held | None] = ContextVar("integrations_bot_held_lines", default=None)


def after_answer(logger: FilteringBoundLogger, event: str, **fields: Any) -> None:
    """`logger.info(event, **fields)` once the running command's answer is on its way (see
    `holding`); at once when no command is holding its lines. The line keeps the context bound
    and the time at this call: writing a line takes ~0.1-0.2 ms on a busy host, which a person
    waiting for the answer should not wait for."""
    held = _held.get()
    if held is None:
        logger.info(event, **fields)
        return
    stamped = _STAMP(None, "info", {})
    held.append((logger, event, {**context(), **stamped, **fields}))


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Hold the `after_answer` lines of the code inside (one command, in its own task) until
    `release()`; whatever is still held is written when the block ends, even by an error."""
    token = _held.set([])
    try:
        yield
    finally:
        release()
        _held.reset(token)


def release() -> None:
    """Write the held lines, in the order they were logged (the answer has been handed over)."""
    held = _held.get()
    while held:
        logger, event, fields = held.pop(0)
        logger.info(event, **fields)
