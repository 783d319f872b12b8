"""`bot.integrations.similar`: "did you mean" picks only from what it is given, at most three, best first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.integrations.similar import Measure, closest, either, integration_suggestions, rooms_like
from bot.rocketchat.models import INCOMING, OUTGOING, Integration

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def hook(ident: str, name: str, kind: str = INCOMING) -> Integration:
    return Integration.of({"_id": ident, "name": name, "type": kind, "enabled": True})


@given(query=words, choices=st.lists(words, max_size=8), measure=st.sampled_from(Measure), limit=st.integers(1, 4))
def test_closest_suggests_only_given_choices_at_most_limit_without_repeats(
    query: str, choices: list[str], measure: Measure, limit: int
) -> None:
    found = closest([query], choices, measure=measure, limit=limit)
    assert set(found) <= set(choices)
    assert len(found) == len(set(found)) <= limit
    if query and query in choices:
        assert found[0] == query


def test_typos_of_words_and_names() -> None:
    commands = ["enable", "disable", "list", "show", "history", "set"]
    assert closest(["disabel"], commands, measure=Measure.WORD) == ["disable"]
    assert closest(["xyzzy"], commands, measure=Measure.WORD) == []
    names = ["guggy", "old-guggy", "jenkins builds", "alertmanager"]
    assert closest(["gugy"], names, measure=Measure.NAME) == ["guggy"]
    assert closest(["jenkins"], names, measure=Measure.NAME) == ["jenkins builds"]
    # Each choice scores its best reading: the name may be any first words of what was typed.
    assert closest(["alertmanger spamming", "alertmanger"], names, measure=Measure.NAME) == ["alertmanager"]


def test_either_joins_suggestions_for_a_sentence() -> None:
    assert either([]) == ""
    assert either(["`a`"]) == "`a`"
    assert either(["`a`", "`b`", "`c`"]) == "`a`, `b` or `c`"


def test_rooms_are_suggested_only_from_the_callers_rooms() -> None:
    assert rooms_like("nowhere", ["general", "ops"]) == []
    assert rooms_like("ops", ["general", "ops"]) == ["ops"]
    assert rooms_like("alert", ["alerts", "general"]) == ["alerts"]


def test_twins_carry_the_type_and_look_alikes_the_id() -> None:
    visible = [
        hook("in1", "Guggy"),
        hook("out1", "Guggy", OUTGOING),
        hook("p1", "Pager"),
        hook("p2", "Pa\u200bger"),
        hook("j1", "Jenkins builds"),
    ]
    guggy = integration_suggestions(["Gugy"], visible)
    assert [(s.id, s.with_type, s.with_id) for s in guggy] == [("in1", True, False), ("out1", True, False)]
    pager = integration_suggestions(["Pagre"], visible)
    assert [(s.id, s.with_type, s.with_id) for s in pager] == [("p1", True, True), ("p2", True, True)]
    jenkins = integration_suggestions(["Jenkin builds"], visible, kind=OUTGOING)
    assert [(s.id, s.with_type, s.with_id) for s in jenkins] == [("j1", True, False)]


names = st.sampled_from(["Guggy", "guggy", "Gug\u200bgy", "Ｇｕｇｇｙ", "Pager", "Pager 2", "Jenkins builds", "x"])


@given(
    visible=st.lists(st.tuples(names, st.sampled_from([INCOMING, OUTGOING])), max_size=8),
    typed=st.lists(words | names, min_size=1, max_size=3),
)
def test_suggested_integrations_are_visible_at_most_three_and_tellable_apart(
    visible: list[tuple[str, str]], typed: list[str]
) -> None:
    hooks = [hook(f"id{index}", name, kind) for index, (name, kind) in enumerate(visible)]
    found = integration_suggestions(typed, hooks)
    by_id = {h.id: h for h in hooks}
    assert len(found) <= 3
    for suggestion in found:
        assert by_id[suggestion.id].name == suggestion.name and by_id[suggestion.id].type == suggestion.type
        # Shown without an id, a suggestion's spelling and type must pick it alone.
        if not suggestion.with_id:
            typed_as = suggestion.type if suggestion.with_type else None
            same = [h for h in hooks if h.name == suggestion.name and typed_as in (None, h.type)]
            assert len(same) == 1
