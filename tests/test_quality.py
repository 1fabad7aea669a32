"""The quality guard's judgement of a part: what counts as degenerate, and what does not."""

from __future__ import annotations

import pytest

from bot.quality import assess

STORY = (
    "Mira was a blind cartographer who could map a city by its sounds. One morning, the city "
    "went silent.\n\nShe walked to the market, listening for anything at all."
)
FLUENT = (
    "The stalls stood empty. No gulls called over the harbour, and even the fountain in the "
    "square had stopped. Mira pressed her palm to the cold stone and waited."
)


def test_a_fluent_continuation_has_no_problems():
    assert assess(FLUENT, STORY) == ()


@pytest.mark.parametrize(
    "part",
    [
        "8. Long-distance lovers: a guide to staying close",
        "2017-08-31 6:45:39CITY COUNSELORY",
        "- first\n- second",
        "She listened.\n1. The market\n2. The harbour\n3. The square",
    ],
)
def test_a_list_where_the_story_has_none_is_a_problem(part):
    assert "list" in assess(part, STORY)


def test_one_more_item_of_a_list_the_story_is_writing_is_fine():
    listing = "Things Mira heard:\n\n1. The bells of the cathedral."
    assert "list" not in assess("2. The rattle of the tram on the hill.", listing)


def test_mostly_punctuation_or_numbers_is_a_problem():
    assert "symbols" in assess("!!! ... 1234 -- ?? ** 56 ## ::", STORY)


def test_a_loop_is_a_problem():
    loop = "and then she walked and then she walked and then she walked and then she walked"
    assert "loop" in assess(loop, STORY)
    verse = "the sea is deep and wide\n" * 3 + "the end"
    assert "loop" in assess(verse, STORY)


def test_invented_words_are_a_problem_but_the_storys_own_names_are_not():
    junk = "Beneficere ostlandehas diekaychoimipe Ibimagoi vereal crashelegrade ruera clave"
    assert "invented words" in assess(junk, STORY)
    named = "Mira smiled. Mira knew the cartographer's trick: listen, then draw the silence."
    assert "invented words" not in assess(named, STORY)


def test_a_story_in_another_language_is_not_called_invented():
    spanish = "La ciudad estaba en silencio. Mira caminó hasta el mercado sin oír nada."
    more = "Las calles vacías olían a pan y a lluvia, pero nadie hablaba en la plaza."
    assert "invented words" not in assess(more, spanish)


def test_copying_a_long_run_of_the_context_is_an_echo():
    context_ids = list(range(100, 160))
    assert "echo" in assess(FLUENT, STORY, context_ids[10:40], context_ids)
    assert "echo" not in assess(FLUENT, STORY, [*context_ids[10:20], 1, 2, 3], context_ids)


def test_short_parts_are_judged_on_their_characters_only():
    assert assess("Silence.", STORY) == ()
    assert assess("Yes yes yes.", STORY) == ()
