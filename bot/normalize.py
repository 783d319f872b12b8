"""What phone keyboards and copy-paste do to text, undone: one normal form for what people type.

`normalize` folds what phone keyboards produce into plain ASCII punctuation: curly quotes become
straight quotes, em/en dashes become `--` (iOS turns a typed `--` into `—`), every Unicode space
becomes a plain space, invisible formatting characters disappear, runs of spaces collapse, and the
text is NFC-composed. It is idempotent, so any layer may call it again.

Commands are parsed in this form (commands/parser.py), and integration names are compared in it
(`name_key`): a stored name is normalised exactly as a typed one, so `Gug\u200bgy` (a zero-width
space inside) is the same name as `Guggy`, and the two are never told apart silently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

_DOUBLE_QUOTES = "“”„‟″«»〝〞＂"
_SINGLE_QUOTES = "‘’‚‛′‹›＇"
# Em dash, en dash, horizontal bar: a phone's replacement for a typed `--`.
_LONG_DASHES = "—–―"
# Hyphen, non-breaking hyphen, figure dash, minus sign: all mean an ASCII hyphen in a command.
_HYPHENS = "‐‑‒−"
# Every Unicode space separator (Zs), the line/paragraph separators, and the control characters
# Python or JavaScript treat as whitespace. Listed rather than computed so importing stays cheap;
# a test checks the list against unicodedata.
_SPACES = (
    "\t\n\v\f\r\x1c\x1d\x1e\x1f\x85"
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
# Invisible formatting characters that keyboards, copy-paste and RTL input insert: zero-width
# space, word joiner and invisible operators, BOM, soft hyphen, Mongolian vowel separator, and the
# bidirectional marks/embeddings/isolates. Zero-width (non-)joiners are kept on purpose: they carry
# meaning inside emoji sequences and Persian/Indic words that may be part of an integration name.
_INVISIBLE = (
    "\u00ad\u061c\u180e\u200b\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)


def _build_table() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for char in _DOUBLE_QUOTES:
        table[ord(char)] = '"'
    for char in _SINGLE_QUOTES:
        table[ord(char)] = "'"
    for char in _LONG_DASHES:
        table[ord(char)] = "--"
    for char in _HYPHENS:
        table[ord(char)] = "-"
    for char in _SPACES:
        table[ord(char)] = " "
    for char in _INVISIBLE:
        table[ord(char)] = None
    # Remaining C0/C1 control characters carry nothing a person typed.
    for code in (*range(0x20), *range(0x7F, 0xA0)):
        table.setdefault(code, None)
    return table


_TABLE = _build_table()
_RUNS_OF_SPACES = re.compile(" {2,}")


def normalize(text: str) -> str:
    """Fold phone punctuation and Unicode spacing into plain ASCII forms; idempotent.

    Curly/angled quotes → `"` or `'`, em/en dashes → `--`, Unicode hyphens/minus → `-`, every kind
    of space or line break → one space, invisible formatting characters removed, NFC, stripped.
    """
    # NFC both before (so singleton decompositions such as U+2000 → U+2002 are seen by the table)
    # and after (a removed zero-width character may have separated a base from its accent).
    folded = unicodedata.normalize("NFC", text).translate(_TABLE)
    folded = unicodedata.normalize("NFC", folded)
    return _RUNS_OF_SPACES.sub(" ", folded).strip(" ")


# Characters that show as nothing, or as a blank, inside a name but that `normalize` keeps (a
# typed value may need them: variation selectors belong to emoji). Names are compared without
# them (`spelled`): combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian
# free variation selectors, variation selectors, and the tag characters.
_DISGUISES = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
    + "".join(chr(c) for c in range(0xE0000, 0xE0080))
)
_STRIP_DISGUISES = dict.fromkeys(map(ord, _DISGUISES))


# Letters of other scripts that read as Latin letters (the Cyrillic and Greek part of Unicode's
# confusables, UTS #39, whose prototype is one Latin letter): `Grаfana` with a Cyrillic `а` is
# the same name as `Grafana` (`spelled`). Latin letters themselves are left alone (`l` and `1`,
# `O` and `0` stay different names: both are typed on every keyboard).
_CONFUSABLE_LETTERS = {
    # Cyrillic
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "ѕ": "s", "і": "i",
    "ј": "j", "һ": "h", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "А": "A", "В": "B", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "Х": "X", "Ѕ": "S", "Ү": "Y", "Ԛ": "Q", "Ԝ": "W",
    # Greek (`ν` and `υ` read as `v` and `u`, but their capitals as `N` and `Y`: the capitals win,
    # so that case never matters in a name, `_LOOK_ALIKE_KEY`)
    "α": "a", "ο": "o", "ρ": "p", "ι": "i",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_CONFUSABLES = str.maketrans(_CONFUSABLE_LETTERS)


def _look_alike_key() -> dict[int, str]:
    """The same letters case-folded, for `name_key`, which folds the case first: a capital with no
    lower-case entry brings its lower-case letter along (`Н` is `H`, so `н` is `h`), and an entry
    and its other case never read as two different Latin letters (checked here)."""
    table: dict[int, str] = {}
    for letter, latin in _CONFUSABLE_LETTERS.items():
        folded, target = letter.casefold(), latin.casefold()
        if len(folded) == 1:
            if table.get(ord(folded), target) != target:
                raise ValueError(f"{letter!r}: its cases read as different Latin letters")
            table[ord(folded)] = target
    return table


_LOOK_ALIKE_KEY = _look_alike_key()


def has_invisible(text: str) -> bool:
    """Whether `text` holds a character that shows as nothing: one `normalize` removes, or one
    names are compared without (`spelled`)."""
    return any(char in _INVISIBLE or char in _DISGUISES for char in text)


def disguised(raw: str, name: str) -> bool:
    """Whether a typed name may be a look-alike of another (copied from chat): the message held
    an invisible character, or the name has compatibility forms (full-width `Ｇｕｇｇｙ`) or letters
    of another script that read as Latin ones (`Grаfana` with a Cyrillic `а`)."""
    return (
        has_invisible(raw)
        or unicodedata.normalize("NFKC", name) != name
        or _look_alike_folded(name) != unicodedata.normalize("NFD", name).casefold()
    )


def _look_alike_folded(text: str) -> str:
    """`text` decomposed and case-folded, each letter that reads as a Latin one replaced by it
    (decomposed first, so an accented look-alike, `ё`, maps as its base letter)."""
    return unicodedata.normalize("NFD", text).casefold().translate(_LOOK_ALIKE_KEY)


def spelled(name: str) -> str:
    """A name as it reads: normalised, without invisible characters, compatibility-folded
    (full-width `Ｇｕｇｇｙ` is `Guggy`), letters of another script that read as Latin ones read as
    those (`_CONFUSABLES`). Case is kept (the exact-case rule compares this)."""
    folded = unicodedata.normalize("NFKC", normalize(name).translate(_STRIP_DISGUISES))
    # Decomposed first, so an accented look-alike (`ё` as `е` + diaeresis) maps as its base letter.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", folded).translate(_CONFUSABLES))


def name_key(name: str) -> str:
    """The form in which two integration names are the same name: `spelled`, case-folded (before
    look-alike letters are read as Latin ones: `ΝΑΝΟ` and `νανο` are one name, `nano`)."""
    return unicodedata.normalize("NFC", _look_alike_folded(spelled(name)))


def name_glob(pattern: str) -> Callable[[str], bool]:
    """A case-insensitive glob on names, compared in their normal form (`name_key`, applied to the
    pattern and to each name, so look-alikes and phone punctuation match as they do for one name):
    `*` stands for any run of characters, `?` for one; everything else is literal (no `[...]`).

    Matched with the two-pointer wildcard algorithm (at most len(name) × len(pattern) steps), not
    a regular expression: a hostile `*a*a*a*a*b` cannot make it backtrack for long."""
    wanted = name_key(pattern)

    def matches(name: str) -> bool:
        text = name_key(name)
        p = t = 0
        star = -1  # position in the pattern just after the last `*`
        mark = 0  # where in the text that `*` started matching
        while t < len(text):
            if p < len(wanted) and wanted[p] == "*":
                star, mark = p + 1, t
                p += 1
            elif p < len(wanted) and (wanted[p] == "?" or wanted[p] == text[t]):
                p += 1
                t += 1
            elif star != -1:
                mark += 1
                p, t = star, mark
            else:
                return False
        return all(char == "*" for char in wanted[p:])

    return matches


__all__ = ["disguised", "has_invisible", "name_glob", "name_key", "normalize", "spelled"]
