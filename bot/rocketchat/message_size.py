"""Every message the bot posts fits the server's size limit (`Message_MaxAllowedSize`).

Rocket.Chat refuses a message longer than that setting (`error-message-size-exceeded`, contract
§4.7; 5000 by default) for good, so an answer that is too long is an answer the caller never
gets, even after the change it reports was written. `RestClient.chat_send_message`, the one way
the bot's messages leave (answers, audit-room lines, timer notices), passes every text through
`fit` with the limit the runtime learned from the server's public settings at start.

How it is measured: in UTF-16 code units, JavaScript's `length`. Servers have counted that
(older versions) or grapheme clusters (newer ones); a code unit count is never smaller than
either, so a fitted message passes both. It is measured on the final text, after the mention
neutralisation (bot/text.py adds a zero-width space after sigils, which counts).

How it is cut, so what is left still reads right:
- whole lines are kept from the top while they fit; the last line is kept too when it is short
  (it is usually what to do next: the confirmation command, how to undo), and the lines left out
  between them become one line `…and N more lines`;
- one very long line (more than half the limit: a list of 900 trigger words) is cut between
  words instead, ending `…and N more words`, so the reply still shows what it is about;
- a cut is only ever made at a line break or at a space outside a code span: a code span is never
  left open, and a neutralised sigil is never parted from its zero-width space (they touch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

SETTING: Final = "Message_MaxAllowedSize"
DEFAULT_LIMIT: Final = 5000
# The last line is kept after a cut when it is at most this share of the limit.
_TAIL_SHARE: Final = 4
# A line longer than this share of the limit is cut between words rather than left out whole.
_LONG_LINE_SHARE: Final = 2


def length(text: str) -> int:
    """`text`'s length as JavaScript counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def limit_from(values: Mapping[str, object]) -> int:
    """The limit in the public settings `values`; `DEFAULT_LIMIT` when absent or not a positive number."""
    value = values.get(SETTING)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return DEFAULT_LIMIT


def _lines_marker(count: int) -> str:
    return f"…and {count} more {'line' if count == 1 else 'lines'}"


def _words_marker(count: int) -> str:
    return f" …and {count} more {'word' if count == 1 else 'words'}"


def _cut_points(line: str) -> list[int]:
    """Indexes of the spaces in `line` outside code spans: where it may be cut. Outside a code
    span a backslash before a backtick makes it a plain backtick (`bot.text.verbatim` writes a
    stored backtick so, between its spans); inside one a backslash is plain and the backtick
    ends the span, as Rocket.Chat's message parser reads them."""
    points: list[int] = []
    in_code = False
    for index, char in enumerate(line):
        if char == "`" and (in_code or line[index - 1 : index] != "\\"):
            in_code = not in_code
        elif char == " " and not in_code:
            points.append(index)
    return points


def _cut_line(line: str, budget: int) -> str | None:
    """The longest head of `line` cut at a space outside code, with its `…and N more words`,
    within `budget` code units; None when not even one word fits."""
    points = _cut_points(line)
    units = [0]  # units[i]: code units of line[:i]
    for char in line:
        units.append(units[-1] + (2 if ord(char) > 0xFFFF else 1))
    words: list[int] = []  # words[j]: words (runs between cut points) before the j-th point
    start = 0
    for point in points:
        words.append((words[-1] if words else 0) + (point > start))
        start = point + 1
    total = (words[-1] if words else 0) + (len(line) > start)
    for point, kept in zip(reversed(points), reversed(words), strict=True):
        if kept == 0:
            break
        marker = _words_marker(total - kept)
        if units[point] + len(marker) <= budget:
            return line[:point].rstrip(" ") + marker
    return None


def fit(text: str, limit: int) -> str:
    """`text` if it fits in `limit` code units; otherwise its head, cut as the module docstring says."""
    if length(text) <= limit:
        return text
    lines = text.split("\n")
    sizes = [length(line) for line in lines]
    tail: str | None = None
    if len(lines) >= 3 and sizes[-1] <= limit // _TAIL_SHARE:
        tail = lines[-1]
    body = lines[:-1] if tail is not None else lines
    tail_size = sizes[-1] + 1 if tail is not None else 0

    def closing(left_out: int) -> int:
        """Code units of what follows the kept lines: the marker line and the tail."""
        return (len(_lines_marker(left_out)) + 1 if left_out else 0) + tail_size

    kept: list[str] = []
    used = -1  # no newline before the first line
    index = 0
    while index < len(body):
        size = sizes[index]
        after = len(body) - index - 1
        if used + 1 + size + closing(after) <= limit:
            kept.append(body[index])
            used += 1 + size
            index += 1
            continue
        if size > limit // _LONG_LINE_SHARE:
            cut = _cut_line(body[index], limit - used - 1 - closing(after))
            if cut is not None:
                kept.append(cut)
                used += 1 + length(cut)
                index += 1
        break
    left_out = len(body) - index
    out = [*kept, _lines_marker(left_out)] if left_out else kept
    if tail is not None:
        out.append(tail)
    fitted = "\n".join(out)
    if length(fitted) <= limit:
        return fitted
    # Not even the first line and the marker fit (a tiny limit): the marker alone, cut if need be.
    marker = _lines_marker(len(lines))
    return marker if length(marker) <= limit else marker[: max(limit, 0)]
