"""Names compared in their normal form (bot/normalize.py `name_key`): case never matters, also in
Greek and Cyrillic, and a letter of those scripts that reads as a Latin one is that letter."""

from __future__ import annotations

import pytest

from bot.normalize import _CONFUSABLE_LETTERS, name_key


@pytest.mark.parametrize(("one", "other"), [("ΝΑΝΟ", "νανο"), ("Һook", "һook"), ("Ԁeploy", "ԁeploy"), ("ҮES", "үes")])
def test_case_never_matters_in_greek_or_cyrillic(one: str, other: str) -> None:
    """Was: the look-alike letters were swapped for Latin ones before the case was folded, each case
    by its own entry: `ΝΑΝΟ` was `nano` and `νανο` was `vavo` (a Greek name typed in the other
    case was not found), and `Һook` was not `һook`."""
    assert name_key(one) == name_key(other)


@pytest.mark.parametrize("letter", sorted(_CONFUSABLE_LETTERS))
def test_every_look_alike_letter_is_its_latin_letter_in_either_case(letter: str) -> None:
    latin = _CONFUSABLE_LETTERS[letter]
    assert name_key(letter) == name_key(latin)
    swapped = letter.swapcase()
    if len(swapped) == 1 and swapped != letter:
        assert name_key(swapped) == name_key(letter)


def test_a_mixed_script_look_alike_is_the_same_name() -> None:
    assert name_key("Gr\u0430fana") == name_key("GRAFANA") == name_key("GR\u0391F\u0391NA")
