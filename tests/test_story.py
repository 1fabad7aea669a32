"""Story domain: the token-budgeted context with the real GPT-2 tokenizer, output cleanup, modes."""

from __future__ import annotations

import pytest

from bot.story import (
    MODES,
    TURN_SEPARATOR,
    Turn,
    build_context,
    clean_output,
    story_text,
    turn_piece,
)

STORY = MODES["story"]


@pytest.fixture(scope="module")
def tokenizer(tiny_loaded):
    """The real GPT-2 tokenizer, as the engine loads it."""
    return tiny_loaded.tokenizer


def make_turns(opening: str, *rest: str, deleted: tuple[int, ...] = ()) -> list[Turn]:
    kinds = ["opening"] + ["member" if i % 2 == 0 else "model" for i in range(len(rest))]
    return [
        Turn(
            id=i + 1,
            story_id=1,
            position=i,
            kind=kind,
            author_id=None if kind == "model" else 7,
            text=text,
            settings=None,
            created_at="2024-01-01T00:00:00Z",
            deleted=i in deleted,
        )
        for i, (kind, text) in enumerate(zip(kinds, (opening, *rest), strict=True))
    ]


def long_story(count: int = 30) -> list[Turn]:
    return make_turns(
        "The lighthouse keeper found a bottle on the shore.",
        *(
            f"Part {n}: the tide rose and the keeper wrote another page of the log."
            for n in range(count)
        ),
    )


# -- build_context -------------------------------------------------------------------------------


def test_short_story_is_included_whole(tokenizer):
    turns = make_turns("Once upon a time", "a dragon woke", "and flew away.")

    context = build_context(tokenizer, STORY, turns, budget=900)

    assert (
        tokenizer.decode(context.ids) == "Once upon a time\n\na dragon woke\n\nand flew away.\n\n"
    )
    assert (context.turns_included, context.turns_dropped, context.truncated) == (2, 0, False)


def test_long_story_is_cut_to_the_budget_keeping_the_opening_and_the_newest_turns(tokenizer):
    turns = long_story()
    whole = sum(len(tokenizer.encode(turn_piece(t))) for t in turns)
    budget = 120
    assert whole > 3 * budget  # the story really is too long

    context = build_context(tokenizer, STORY, turns, budget)

    opening = tokenizer.encode(turns[0].text)
    newest = tokenizer.encode(turn_piece(turns[-1])) + tokenizer.encode(TURN_SEPARATOR)
    assert len(context.ids) == budget  # filled to the token, never over
    assert context.ids[: len(opening)] == opening  # the opening is pinned first
    assert context.ids[-len(newest) :] == newest  # the newest turn, then a new paragraph
    assert context.turns_dropped > 0
    assert context.turns_included + context.turns_dropped == len(turns) - 1
    assert context.truncated  # the oldest turn that made it in was cut on a token boundary
    text = tokenizer.decode(context.ids)
    assert "Part 29:" in text and "Part 0:" not in text


def test_turns_that_fit_exactly_are_not_marked_truncated(tokenizer):
    turns = long_story(5)
    head = len(tokenizer.encode(turns[0].text)) + len(tokenizer.encode(TURN_SEPARATOR))
    last_two = [len(tokenizer.encode(turn_piece(t))) for t in turns[-2:]]

    context = build_context(tokenizer, STORY, turns, budget=head + sum(last_two))

    assert len(context.ids) == head + sum(last_two)
    assert (context.turns_included, context.turns_dropped, context.truncated) == (2, 3, False)


def test_a_partly_fitting_turn_keeps_its_newest_tokens(tokenizer):
    turns = make_turns("Opening.", "alpha beta gamma delta epsilon zeta eta theta")
    head = tokenizer.encode("Opening.")
    piece = tokenizer.encode(turn_piece(turns[1]))
    end = tokenizer.encode(TURN_SEPARATOR)

    context = build_context(tokenizer, STORY, turns, budget=len(head) + 3 + len(end))

    assert context.ids == head + piece[-3:] + end
    assert context.truncated
    assert context.turns_included == 1


def test_an_overlong_opening_keeps_its_first_tokens_and_leaves_room_for_recent_turns(tokenizer):
    opening = "It was a dark and stormy night; the rain fell in torrents. " * 20
    turns = make_turns(opening, "Then the lights went out.")
    budget = 60

    context = build_context(tokenizer, STORY, turns, budget)

    newest = tokenizer.encode(turn_piece(turns[-1])) + tokenizer.encode(TURN_SEPARATOR)
    half = (budget - 1) // 2  # the separator that ends the context takes one token
    assert len(context.ids) <= budget
    assert context.ids[:half] == tokenizer.encode(opening)[:half]
    assert context.ids[-len(newest) :] == newest
    assert context.truncated


def test_an_opening_alone_keeps_its_newest_tokens_next_to_the_new_part(tokenizer):
    opening = " ".join(f"w{n}" for n in range(200)) + " and the dragon finally"

    context = build_context(tokenizer, STORY, make_turns(opening), budget=50)

    end = tokenizer.encode(TURN_SEPARATOR)
    assert context.ids == tokenizer.encode(opening)[-(50 - len(end)) :] + end
    assert tokenizer.decode(context.ids).endswith("and the dragon finally\n\n")
    assert context.truncated


def test_cjk_and_emoji_are_counted_in_tokens_not_characters(tokenizer):
    ascii_text = "the cat sat on the mat " * 3
    budget = len(tokenizer.encode(ascii_text)) + len(tokenizer.encode(TURN_SEPARATOR))
    assert budget < len(ascii_text)  # ASCII packs several characters into a token

    fits = build_context(tokenizer, STORY, make_turns(ascii_text), budget)
    assert tokenizer.decode(fits.ids) == ascii_text + TURN_SEPARATOR
    assert not fits.truncated

    short_cjk = "猫坐在垫子上" * 3  # far fewer characters than the ASCII text...
    short_emoji = "🐉🔥" * 5
    for text in (short_cjk, short_emoji):
        assert len(text) <= budget
        context = build_context(tokenizer, STORY, make_turns(text), budget)
        assert len(tokenizer.encode(text)) > budget  # ...but more tokens than the budget
        assert len(context.ids) == budget
        assert context.truncated


def test_cjk_turns_take_their_token_cost_in_the_budget(tokenizer):
    cjk = "从前有一座山，山里有一座庙。"
    turns = make_turns("Start.", *[cjk] * 10)
    per_turn = len(tokenizer.encode(turn_piece(turns[1])))
    head = len(tokenizer.encode("Start.")) + len(tokenizer.encode(TURN_SEPARATOR))

    context = build_context(tokenizer, STORY, turns, budget=head + 3 * per_turn)

    assert per_turn > len(cjk)  # each character costs more than one token
    assert (context.turns_included, context.turns_dropped) == (3, 7)
    assert tokenizer.decode(context.ids) == "Start." + (TURN_SEPARATOR + cjk) * 3 + TURN_SEPARATOR


def test_mode_preamble_opens_the_context(tokenizer):
    turns = make_turns("Roses in the rain", "petals fall")

    context = build_context(tokenizer, MODES["poem"], turns, budget=200)

    assert tokenizer.decode(context.ids) == "A poem.\n\nRoses in the rain\n\npetals fall\n\n"


def test_preamble_counts_against_the_budget(tokenizer):
    turns = make_turns("Roses in the rain", "petals fall on the stone")
    budget = (
        len(tokenizer.encode("Roses in the rain"))
        + len(tokenizer.encode(turn_piece(turns[1])))
        + len(tokenizer.encode(TURN_SEPARATOR))
    )

    plain = build_context(tokenizer, STORY, turns, budget)
    framed = build_context(tokenizer, MODES["news"], turns, budget)

    assert not plain.truncated  # exactly fits without a preamble...
    assert len(framed.ids) == budget  # ...so the preamble must push something out
    text = tokenizer.decode(framed.ids)
    assert text.startswith("NEWS REPORT\n\nRoses")
    assert text.endswith("petals fall on the stone\n\n")
    assert framed.truncated


def test_no_turns_still_gives_the_model_something_to_continue(tokenizer):
    context = build_context(tokenizer, STORY, [], budget=10)

    assert context.ids == tokenizer.encode(TURN_SEPARATOR)


def test_budget_must_leave_room_for_the_story(tokenizer):
    with pytest.raises(ValueError, match="budget"):
        build_context(tokenizer, STORY, make_turns("hi"), budget=1)  # the separator alone


# -- clean_output --------------------------------------------------------------------------------


def test_cut_off_text_drops_its_unfinished_sentence():
    text = ' The door creaked open. "Who is there?" she asked. Then the lamp'

    assert clean_output(text, STORY, finished=False) == (
        'The door creaked open. "Who is there?" she asked.'
    )


def test_finished_text_keeps_its_last_words():
    text = " The door creaked open. Then the lamp"

    assert clean_output(text, STORY, finished=True) == "The door creaked open. Then the lamp"


def test_cut_off_text_without_any_sentence_end_is_kept():
    assert clean_output("and on and on", STORY, finished=False) == "and on and on"


def test_sentence_ends_inside_numbers_are_not_breaks():
    text = "It cost 3.5 million. The price of 2.5"

    assert clean_output(text, STORY, finished=False) == "It cost 3.5 million."


@pytest.mark.parametrize("name", ["poem", "song", "script"])
def test_line_modes_end_on_a_whole_line(name):
    text = "Roses are red,\nviolets are blue.\nsugar is swe"

    assert clean_output(text, MODES[name], finished=False) == "Roses are red,\nviolets are blue."
    assert clean_output(text, MODES[name], finished=True) == text


def test_line_mode_with_one_line_keeps_it():
    assert clean_output("a single line", MODES["poem"], finished=False) == "a single line"


def test_whitespace_is_tidied():
    text = "  \n\nFirst line.   \n\n\n\n\nSecond line.\t \n\n\n<|endoftext|>"

    assert clean_output(text, STORY, finished=True) == "First line.\n\nSecond line."


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", "<|endoftext|>", " \t\n "])
@pytest.mark.parametrize("finished", [True, False])
def test_empty_output_stays_empty(text, finished):
    assert clean_output(text, STORY, finished=finished) == ""
    assert clean_output(text, MODES["poem"], finished=finished) == ""


# -- modes and story text ------------------------------------------------------------------------


def test_every_writing_mode_is_offered():
    assert set(MODES) == {"story", "poem", "song", "script", "news", "blog", "ad", "email"}
    for name, mode in MODES.items():
        assert mode.name == name
        assert mode.description
        assert mode.top_p is None or 0 < mode.top_p <= 1
        assert mode.temperature is None or 0 <= mode.temperature <= 1.5
    assert {n for n, m in MODES.items() if m.by_line} == {"poem", "song", "script"}
    # Prose stories follow the server's own sampling settings; the other modes bring theirs.
    assert {n for n, m in MODES.items() if m.temperature is None} == {"story"}


def test_story_text_joins_visible_turns_and_skips_deleted_ones():
    turns = make_turns("Once.", "Twice.", "Thrice.", deleted=(1,))

    assert story_text(turns) == "Once.\n\nThrice."
