"""Story domain: the token-budgeted context with real tokenizers, output cleanup, modes.

The context tests run on two tokenizer families: GPT-2's, and SmolLM2's (a different byte-level
BPE, from the real offline model that ``bench.real_model`` prepares). In both, a paragraph break
at the very end of a text is one token of its own (GPT-2 628, SmolLM2 1116), but before a word it
is two newlines (198 198): a context must end the second way, as running text does.
"""

from __future__ import annotations

import itertools

import pytest
from transformers import AutoTokenizer

from bot.story import (
    MIN_KEPT_SHARE,
    MODES,
    TURN_SEPARATOR,
    Cleaned,
    Turn,
    build_context,
    clean_output,
    encode_open,
    story_text,
)

STORY = MODES["story"]
CHAPTER = STORY.framing()  # "Chapter One\n\n"
NEWLINE = 198  # "\n" in both families
PARAGRAPH_END = {"gpt2": 628, "smollm2": 1116}  # "\n\n" as the very last thing in a text


@pytest.fixture(scope="module")
def gpt2(tiny_loaded):
    """The real GPT-2 tokenizer, as the engine loads it."""
    return tiny_loaded.tokenizer


@pytest.fixture(scope="module")
def smollm2(real_model_dir):
    """SmolLM2's tokenizer, as the engine would load it from the prepared real model."""
    return AutoTokenizer.from_pretrained(str(real_model_dir))


@pytest.fixture(params=["gpt2", "smollm2"])
def family(request) -> str:
    return request.param


@pytest.fixture
def tokenizer(request, family):
    return request.getfixturevalue(family)


def make_turns(opening: str | None, *rest: str, deleted: tuple[int, ...] = ()) -> list[Turn]:
    """An opening (unless None) and then members' and the model's turns, alternating."""
    texts = ([] if opening is None else [opening]) + list(rest)
    kinds = (["opening"] if opening is not None else []) + [
        "member" if i % 2 == 0 else "model" for i in range(len(rest))
    ]
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
        for i, (kind, text) in enumerate(zip(kinds, texts, strict=True))
    ]


def long_story(count: int = 30) -> list[Turn]:
    return make_turns(
        "The lighthouse keeper found a bottle on the shore.",
        *(
            f"Part {n}: the tide rose and the keeper wrote another page of the log."
            for n in range(count)
        ),
    )


def running_ids(tokenizer, text: str) -> list[int]:
    """``text``'s ids as running text: encoded with a word after it, which is then left out."""
    ids = tokenizer.encode(text + "The", add_special_tokens=False)
    assert tokenizer.decode(ids[-1:]) == "The"
    return ids[:-1]


def paragraphs(text: str) -> list[str]:
    """The paragraphs of a context's text, which always ends with a paragraph break."""
    assert text.endswith(TURN_SEPARATOR)
    return text[: -len(TURN_SEPARATOR)].split(TURN_SEPARATOR)


def assert_running_text(tokenizer, family: str, context) -> None:
    """The ids are the kept text encoded once, as text that goes on: no seams, no 628 at the end."""
    assert context.ids == running_ids(tokenizer, context.text)
    assert context.ids == encode_open(tokenizer, context.text)
    assert tokenizer.decode(context.ids) == context.text
    assert context.ids[-2:] == [NEWLINE, NEWLINE]
    assert PARAGRAPH_END[family] not in context.ids
    assert "\n\n\n" not in context.text  # pieces meet with one paragraph break, never two


# -- the paragraph break the model continues -----------------------------------------------------


def test_the_two_families_encode_a_final_paragraph_break_differently(tokenizer, family):
    # What the context must avoid: at the very end of a text "\n\n" is one token of its own...
    assert tokenizer.encode("Once upon a time\n\n")[-1] == PARAGRAPH_END[family]
    # ...but before a word, as in the middle of a story, it is two newlines.
    assert tokenizer.encode("Once upon a time\n\nThe")[-3:-1] == [NEWLINE, NEWLINE]


def test_encode_open_gives_the_ids_a_text_has_before_more_words(tokenizer, family):
    assert encode_open(tokenizer, "Once upon a time\n\n")[-2:] == [NEWLINE, NEWLINE]
    assert encode_open(tokenizer, "\n\n") == [NEWLINE, NEWLINE]
    for text in ("Once upon a time", "猫坐在垫子上", "🐉🔥", "end.\n", ""):
        assert encode_open(tokenizer, text) == running_ids(tokenizer, text)
        assert tokenizer.decode(encode_open(tokenizer, text)) == text
    # A space at the end stays the text's own, rather than joining the next word.
    assert tokenizer.decode(encode_open(tokenizer, "a dragon ")) == "a dragon "


# -- build_context -------------------------------------------------------------------------------


def test_short_story_is_included_whole_after_its_framing(tokenizer, family):
    turns = make_turns("Once upon a time", "a dragon woke", "and flew away.")

    context = build_context(tokenizer, CHAPTER, turns, budget=900)

    assert context.text == "Chapter One\n\nOnce upon a time\n\na dragon woke\n\nand flew away.\n\n"
    assert_running_text(tokenizer, family, context)
    assert (context.turns_included, context.turns_dropped, context.truncated) == (2, 0, False)


def test_long_story_is_cut_to_the_budget_keeping_the_opening_and_the_newest_turns(
    tokenizer, family
):
    turns = long_story()
    whole = CHAPTER + TURN_SEPARATOR.join(t.text for t in turns) + TURN_SEPARATOR
    budget = 120
    assert len(encode_open(tokenizer, whole)) > 3 * budget  # the story really is too long

    context = build_context(tokenizer, CHAPTER, turns, budget)

    # Filled to the token and never over, but for a cut that falls on a paragraph break: the
    # break's two newlines cannot be kept without the paragraph they open.
    assert budget - 2 <= len(context.ids) <= budget
    assert_running_text(tokenizer, family, context)  # the kept text encoded once: no seams
    kept = paragraphs(context.text)
    assert kept[:2] == ["Chapter One", turns[0].text]  # framing and opening pinned first
    assert kept[-2:] == [turns[-2].text, turns[-1].text]  # then the newest turns, in order
    assert context.text.endswith(turns[-1].text + "\n\n")  # ...and a new paragraph
    assert "Part 29:" in context.text and "Part 0:" not in context.text
    assert context.turns_dropped > 0
    assert context.turns_included + context.turns_dropped == len(turns) - 1
    assert context.truncated  # the oldest turn that made it in was cut on a token boundary


def test_a_long_story_leaves_out_old_turns_in_steps_and_keeps_its_start_meanwhile(
    tokenizer, family
):
    """Turn after turn, each context starts like the one before (so a stored encoding of it can
    be reused) until the next step of old turns is left out; never over the budget, never under
    it by more than the step."""
    budget, step = 300, 100  # a step of about six turns
    turns = long_story(80)
    contexts = [
        build_context(tokenizer, CHAPTER, turns[:n], budget, step=step) for n in range(40, 81)
    ]
    kept_start = 0
    for before, after in itertools.pairwise(contexts):
        assert budget - step - 2 <= len(after.ids) <= budget
        assert_running_text(tokenizer, family, after)
        assert paragraphs(after.text)[:2] == ["Chapter One", turns[0].text]
        if after.ids[: len(before.ids) - 2] == before.ids[:-2]:  # all but its final break
            kept_start += 1
    assert kept_start >= len(contexts) * 0.6  # most turns reuse the context before them
    unstepped = [build_context(tokenizer, CHAPTER, turns[:n], budget) for n in range(40, 81)]
    assert not any(
        after.ids[: len(before.ids) - 2] == before.ids[:-2]
        for before, after in itertools.pairwise(unstepped)
    )


def test_a_step_never_cuts_into_the_newest_turn(tokenizer, family):
    long_line = " ".join(["The sea was grey and the wind was cold."] * 12)
    turns = make_turns("The lighthouse keeper found a bottle.", *(["Short line."] * 20), long_line)
    context = build_context(tokenizer, CHAPTER, turns, budget=200, step=150)
    assert context.text.endswith(long_line + "\n\n")
    assert len(context.ids) <= 200


@pytest.mark.parametrize("framing", ["", CHAPTER, MODES["news"].framing("2024-03-05T10:00:00")])
def test_a_cut_story_fills_the_budget_but_for_a_cut_paragraph_break(tokenizer, family, framing):
    turns = long_story()
    pinned = framing + turns[0].text
    for budget in range(40, 400, 7):
        context = build_context(tokenizer, framing, turns, budget)

        # A cut that falls on a paragraph break cannot use the break's two newlines.
        assert budget - 2 <= len(context.ids) <= budget, budget
        assert_running_text(tokenizer, family, context)
        assert context.text.startswith(framing)
        if len(encode_open(tokenizer, pinned)) <= (budget - 2) // 2:
            assert context.text.startswith(pinned + TURN_SEPARATOR)  # pinned whole
        assert turns[-1].text.endswith(paragraphs(context.text)[-1])  # the newest words last


def test_a_partly_kept_turn_is_a_paragraph_of_its_own_after_the_opening(tokenizer, family):
    turn = "alpha beta gamma delta epsilon zeta eta theta"
    turns = make_turns("Opening.", turn)
    budget = len(encode_open(tokenizer, "Opening.\n\nzeta eta theta\n\n"))

    context = build_context(tokenizer, "", turns, budget)

    assert context.text == "Opening.\n\nzeta eta theta\n\n"  # its newest words, not glued on
    assert_running_text(tokenizer, family, context)
    assert (context.turns_included, context.turns_dropped, context.truncated) == (1, 0, True)


def test_the_oldest_kept_turn_of_a_long_story_is_cut_to_its_own_paragraph(tokenizer, family):
    turns = long_story()
    for budget in range(60, 200, 11):
        context = build_context(tokenizer, CHAPTER, turns, budget)

        kept = paragraphs(context.text)
        newest = [t.text for t in turns[-(len(kept) - 2) :]]
        assert kept[:2] == ["Chapter One", turns[0].text]
        assert kept[3:] == newest[1:]  # whole turns after the cut one
        cut, whole = kept[2], newest[0]
        assert cut and whole.endswith(cut)  # the cut turn keeps its newest words...
        assert not cut[0].isspace()  # ...and starts its paragraph like any other
        assert context.turns_included == len(kept) - 2


def test_turns_that_fit_exactly_are_not_marked_truncated(tokenizer, family):
    turns = long_story(5)
    kept = CHAPTER + "\n\n".join([turns[0].text, turns[-2].text, turns[-1].text]) + "\n\n"
    budget = len(encode_open(tokenizer, kept))

    context = build_context(tokenizer, CHAPTER, turns, budget)

    assert context.text == kept
    assert len(context.ids) == budget
    assert (context.turns_included, context.turns_dropped, context.truncated) == (2, 3, False)


def test_an_overlong_opening_keeps_its_first_tokens_and_leaves_room_for_recent_turns(
    tokenizer, family
):
    opening = "It was a dark and stormy night; the rain fell in torrents. " * 20
    turns = make_turns(opening, "Then the lights went out.")
    budget = 60

    context = build_context(tokenizer, CHAPTER, turns, budget)

    half = (budget - 2) // 2  # the paragraph break that ends the context takes two tokens
    assert len(context.ids) <= budget
    assert_running_text(tokenizer, family, context)
    assert context.ids[:half] == encode_open(tokenizer, CHAPTER + opening)[:half]
    head, newest = paragraphs(context.text)[-2:]
    assert (CHAPTER + opening).startswith(CHAPTER + head)  # the opening's first words
    assert len(encode_open(tokenizer, CHAPTER + head)) <= half  # at most half the room
    assert newest == "Then the lights went out."
    assert context.truncated


def test_an_opening_alone_keeps_its_newest_tokens_next_to_the_new_part(tokenizer, family):
    opening = " ".join(f"w{n}" for n in range(200)) + " and the dragon finally"

    for framing in ("", CHAPTER):
        context = build_context(tokenizer, framing, make_turns(opening), budget=50)

        assert len(context.ids) == 50
        assert_running_text(tokenizer, family, context)
        assert context.text.startswith(framing + "w1")  # the framing stays, then newest words
        assert context.text.endswith(" w199 and the dragon finally\n\n")
        assert opening.endswith(context.text[len(framing) : -2])
        assert context.truncated


@pytest.mark.parametrize("framing", ["", CHAPTER, MODES["news"].framing("2024-03-05T10:00:00")])
@pytest.mark.parametrize(
    "opening",
    [
        # Words that take more tokens without their leading space, which a cut before them
        # takes off; characters that take several tokens, which a cut must not split.
        " ".join(["finally", "incomprehensible", "proliferated", "antidisestablishment"] * 30),
        "猫坐在垫子上，🐉🔥。" * 30,
    ],
    ids=["words", "cjk"],
)
def test_an_opening_alone_is_cut_to_the_budget_as_running_text(tokenizer, family, framing, opening):
    for budget in range(5, 80):
        context = build_context(tokenizer, framing, make_turns(opening), budget)

        assert len(context.ids) <= budget, budget
        assert_running_text(tokenizer, family, context)
        assert opening.endswith(context.text.removeprefix(framing)[:-2]), budget
        if budget >= len(encode_open(tokenizer, framing)) + 8:
            assert context.text.startswith(framing)  # pinned while it leaves room
            assert len(context.ids) >= budget - 3  # a cut word or character costs a token or two


@pytest.mark.parametrize(
    "rest",
    [
        ["从前有一座山，山里有一座庙。", "猫坐在垫子上🐉🔥"] * 8,
        ["Supercalifragilisticexpialidocious, thermodynamically photosynthesising"] * 12,
        ["line one\nline two", "  spaced out  ", "a\n\n\nb", "last words"] * 4,
    ],
    ids=["cjk", "long-words", "odd-whitespace"],
)
def test_a_cut_story_is_always_running_text_within_the_budget(tokenizer, family, rest):
    turns = make_turns("The opening.", *rest)
    for budget in range(8, 150, 3):
        context = build_context(tokenizer, CHAPTER, turns, budget)

        assert len(context.ids) <= budget, budget
        assert context.ids == running_ids(tokenizer, context.text), budget
        assert tokenizer.decode(context.ids) == context.text
        assert context.ids[-2:] == [NEWLINE, NEWLINE]
        if "\n\n\n" not in context.text:  # a member's own triple newline may encode as 628 198
            assert PARAGRAPH_END[family] not in context.ids


def test_cjk_and_emoji_are_counted_in_tokens_not_characters(tokenizer, family):
    ascii_text = "the cat sat on the mat " * 3
    budget = len(encode_open(tokenizer, ascii_text + TURN_SEPARATOR))
    assert budget < len(ascii_text)  # ASCII packs several characters into a token

    fits = build_context(tokenizer, "", make_turns(ascii_text), budget)
    assert fits.text == ascii_text + TURN_SEPARATOR
    assert not fits.truncated

    short_cjk = "猫坐在垫子上" * 3  # far fewer characters than the ASCII text...
    short_emoji = "🐉🔥" * 5
    for text in (short_cjk, short_emoji):
        assert len(text) <= budget
        context = build_context(tokenizer, "", make_turns(text), budget)
        assert len(tokenizer.encode(text)) > budget  # ...but more tokens than the budget
        assert budget - 2 <= len(context.ids) <= budget  # a character may not split its tokens
        assert_running_text(tokenizer, family, context)
        assert text.endswith(context.text[:-2])
        assert context.truncated


def test_cjk_turns_take_their_token_cost_in_the_budget(tokenizer, family):
    cjk = "从前有一座山，山里有一座庙。"
    turns = make_turns("Start.", *[cjk] * 10)
    kept = "Start." + (TURN_SEPARATOR + cjk) * 3 + TURN_SEPARATOR
    budget = len(encode_open(tokenizer, kept))

    context = build_context(tokenizer, "", turns, budget)

    assert len(tokenizer.encode(cjk)) > len(cjk)  # each character costs more than one token
    assert (context.turns_included, context.turns_dropped) == (3, 7)
    assert context.text == kept
    assert_running_text(tokenizer, family, context)


def test_mode_framing_opens_the_context(tokenizer, family):
    turns = make_turns("Roses in the rain", "petals fall")

    context = build_context(tokenizer, MODES["poem"].framing(), turns, budget=200)

    assert context.text == "Selected Poems\n\nUntitled\n\nRoses in the rain\n\npetals fall\n\n"
    assert_running_text(tokenizer, family, context)


def test_framing_counts_against_the_budget(tokenizer, family):
    turns = make_turns(
        "Roses in the rain.",
        "Petals fall on the stone.",
        "The gardener sweeps them into a pile.",
        "A blackbird watches from the wall.",
        "The wind picks up and scatters the pile again.",
        "The gardener sighs and starts over.",
        "Clouds drift slowly across the hills.",
        "Then the sun comes out at last.",
    )
    framing = MODES["news"].framing("2024-03-05T10:00:00+00:00")
    story = TURN_SEPARATOR.join(t.text for t in turns) + TURN_SEPARATOR
    budget = len(encode_open(tokenizer, story))

    plain = build_context(tokenizer, "", turns, budget)
    framed = build_context(tokenizer, framing, turns, budget)

    assert plain.text == story and not plain.truncated  # exactly fits without the framing...
    assert len(framed.ids) <= budget  # ...so the framing must push something out
    assert framed.text.startswith("LOCAL NEWS\n\nUpdated March 5, 2024\n\nRoses in the rain.\n\n")
    assert framed.text.endswith("\n\nThen the sun comes out at last.\n\n")
    assert "Petals fall" not in framed.text
    assert framed.turns_dropped >= 1
    assert_running_text(tokenizer, family, framed)


def test_no_turns_give_the_model_the_framing_to_continue(tokenizer, family):
    context = build_context(tokenizer, CHAPTER, [], budget=10)

    assert context.text == "Chapter One\n\n"
    assert_running_text(tokenizer, family, context)
    assert (context.turns_included, context.turns_dropped, context.truncated) == (0, 0, False)


def test_a_story_without_an_opening_keeps_its_newest_turns(tokenizer, family):
    turns = make_turns(None, *(f"Turn {n} of the story goes on." for n in range(20)))

    context = build_context(tokenizer, CHAPTER, turns, budget=40)

    assert len(context.ids) <= 40
    assert_running_text(tokenizer, family, context)
    assert context.text.startswith(CHAPTER)
    assert context.text.endswith("\n\nTurn 19 of the story goes on.\n\n")
    assert context.turns_included + context.turns_dropped == 20


@pytest.mark.parametrize("budget", [0, 1, 2])
def test_budget_must_leave_room_for_the_story(tokenizer, budget):
    with pytest.raises(ValueError, match="budget"):
        build_context(tokenizer, CHAPTER, make_turns("hi"), budget)  # the paragraph break alone


# -- clean_output --------------------------------------------------------------------------------


def test_cut_off_text_drops_its_unfinished_sentence():
    text = ' The door creaked open. "Who is there?" she asked. Then the lamp'

    assert clean_output(text, STORY, finished=False) == Cleaned(
        'The door creaked open. "Who is there?" she asked.', dropped=len(" Then the lamp")
    )


@pytest.mark.parametrize("name", ["story", "poem", "news"])
def test_finished_text_is_returned_whole(name):
    for text in (
        " The door creaked open. Then the lamp went out.",
        "and on and on",
        "1. Eggs\n2. Mil",
    ):
        assert clean_output(text, MODES[name], finished=True) == Cleaned(text.strip())


def test_prose_the_model_ended_without_a_sentence_end_is_trimmed_but_not_marked():
    text = "The door creaked open and the wind came in. Then the lamp"

    assert clean_output(text, STORY, finished=True) == Cleaned(
        "The door creaked open and the wind came in.", dropped=len(" Then the lamp")
    )
    # Verse may end without punctuation, and so may prose with no sentence end late enough.
    assert clean_output("Roses in the rain", MODES["poem"], finished=True).text == (
        "Roses in the rain"
    )
    assert clean_output("Hi. And on and on and on", STORY, finished=True).text == (
        "Hi. And on and on and on"
    )


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (
            "The family left the old farm and moved to the city in 1990. Years later, the",
            "The family left the old farm and moved to the city in 1990.",
        ),
        (
            "She asked him to stay for one more night, but he said no. He took his coat and",
            "She asked him to stay for one more night, but he said no.",
        ),
        ("It cost 3.5 million. The price of 2.5", "It cost 3.5 million."),
        (
            'He waited and waited for hours. Then she said, "Stop!" and he ran off into the',
            'He waited and waited for hours. Then she said, "Stop!"',
        ),
        ("Wait... what was that noise? The wind, or", "Wait... what was that noise?"),
        ("It was over... The", "It was over..."),
    ],
)
def test_cut_off_text_ends_on_its_last_sentence(text, kept):
    cleaned = clean_output(text, STORY, finished=False)

    assert cleaned == Cleaned(kept, dropped=len(text) - len(kept))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A list number at the start of a line does not end a sentence...
        (
            "Pack these things:\n1. A lantern\n2. Some rope\n3. Bread and cheese for the",
            "Pack these things:\n1. A lantern\n2. Some rope\n3. Bread and cheese for…",
        ),
        # ...nor does a title, an abbreviation or an initial.
        (
            "Everyone waited in the dark hall for the arrival of Mr. Holmes and his friend",
            "Everyone waited in the dark hall for the arrival of Mr. Holmes and his…",
        ),
        (
            'Everyone waited in the dark hall until the inspector said, "Mr. Holmes, is it',
            'Everyone waited in the dark hall until the inspector said, "Mr. Holmes, is…',
        ),
        (
            "The old book on the highest shelf was signed by J. R. R. Tolkien in green",
            "The old book on the highest shelf was signed by J. R. R. Tolkien in…",
        ),
        (
            "The letter was addressed to the house at No. 5 on the corner of Baker",
            "The letter was addressed to the house at No. 5 on the corner of…",
        ),
    ],
)
def test_list_numbers_titles_and_initials_are_not_sentence_ends(text, expected):
    cleaned = clean_output(text, STORY, finished=False)

    assert cleaned.text == expected
    assert cleaned.cut


@pytest.mark.parametrize(
    "text",
    [
        "and on and on and on",
        "The wind howled through the broken windows and the shutters were following e m",
        "It was late. Then the long procession of carts wound down the valley towards the riv",
        "They walked for hours, past the mill, the church, the old stone brid",
        "He said nothing; he only looked at her and then at the door, and then -",
        "Roses are red, violets are blue, and all of the garden is waiting for yo",
    ],
)
def test_cut_off_text_without_a_late_sentence_end_keeps_whole_words_and_says_so(text):
    cleaned = clean_output(text, STORY, finished=False)

    assert cleaned.cut
    assert cleaned.text.endswith("…")
    kept = cleaned.text[:-1]
    assert text.startswith(kept)
    assert text[len(kept)].isspace()  # it ends where a word of the text ended, never inside one
    assert kept[-1].isalnum()  # not on a dangling comma, dash or semicolon
    assert len(kept) < len(text.rstrip())  # the last word, maybe unfinished, is left out
    assert len(kept) >= MIN_KEPT_SHARE * len(text)  # most of the part stays
    assert cleaned.dropped == len(text) - len(kept)


def test_a_sentence_end_too_early_in_the_text_does_not_throw_most_of_it_away():
    text = "It was late. Then the long procession of carts wound down the valley towards the riv"

    cleaned = clean_output(text, STORY, finished=False)

    assert cleaned.text == (
        "It was late. Then the long procession of carts wound down the valley towards the…"
    )
    assert cleaned.cut


@pytest.mark.parametrize("name", ["poem", "song", "script"])
def test_line_modes_end_on_a_whole_line(name):
    text = "Roses are red,\nviolets are blue.\nsugar is swe"

    assert clean_output(text, MODES[name], finished=False) == Cleaned(
        "Roses are red,\nviolets are blue.", dropped=len("\nsugar is swe")
    )
    assert clean_output(text, MODES[name], finished=True) == Cleaned(text)


def test_a_line_mode_without_a_usable_newline_ends_on_a_sentence():
    poem = MODES["poem"]
    flat = "Roses are red. Violets are blue. Sugar is swe"
    early = "Roses,\nred and blue and every colour of the garden, are waiting. And you, my"

    assert clean_output(flat, poem, finished=False) == Cleaned(
        "Roses are red. Violets are blue.", dropped=len(" Sugar is swe")
    )
    assert clean_output(early, poem, finished=False).text == (
        "Roses,\nred and blue and every colour of the garden, are waiting."
    )
    assert clean_output("a single line", poem, finished=False) == Cleaned(
        "a single…", cut=True, dropped=len(" line")
    )


def test_lines_that_repeat_the_framing_are_removed():
    poem = MODES["poem"]
    text = "Selected Poems\n\n  untitled \nRoses are red,\nUntitled roses are red too."

    cleaned = clean_output(text, poem, finished=True, framing=poem.framing())

    assert cleaned.text == "Roses are red,\nUntitled roses are red too."
    assert clean_output(text, poem, finished=True).text == text.replace("untitled \n", "untitled\n")
    news = MODES["news"]
    dated = "Updated March 5, 2024\nThe council met on Tuesday."
    assert clean_output(
        dated, news, finished=True, framing=news.framing("2024-03-05T09:00:00")
    ) == Cleaned("The council met on Tuesday.")


def test_whitespace_is_tidied():
    text = "  \n\nFirst line.   \n\n\n\n\nSecond line.\t \n\n\n<|endoftext|>"

    assert clean_output(text, STORY, finished=True) == Cleaned("First line.\n\nSecond line.")


@pytest.mark.parametrize("text", ["", "   ", "\n\n\n", "<|endoftext|>", " \t\n "])
@pytest.mark.parametrize("finished", [True, False])
def test_empty_output_stays_empty(text, finished):
    assert clean_output(text, STORY, finished=finished) == Cleaned("")
    assert clean_output(text, MODES["poem"], finished=finished) == Cleaned("")


# -- modes and story text ------------------------------------------------------------------------


def test_every_writing_mode_is_offered():
    assert set(MODES) == {"story", "poem", "song", "script", "news", "blog", "ad", "email"}
    for name, mode in MODES.items():
        assert mode.name == name
        assert mode.description
        assert mode.frame.strip()  # every mode opens a real document of its kind
        assert mode.top_p is None or 0 < mode.top_p <= 1
        assert mode.temperature is None or 0 <= mode.temperature <= 1.5
    assert {n for n, m in MODES.items() if m.by_line} == {"poem", "song", "script"}
    # Prose stories follow the server's own sampling settings; the other modes bring theirs.
    assert {n for n, m in MODES.items() if m.temperature is None} == {"story"}


def test_framing_fills_in_the_story_date():
    assert MODES["news"].framing("2024-03-05T23:30:00+00:00") == (
        "LOCAL NEWS\n\nUpdated March 5, 2024\n\n"
    )
    assert (
        MODES["email"].framing("2023-12-25T08:00:00")
        == "Date: December 25, 2023\n\nHi everyone,\n\n"
    )
    assert "{date}" not in MODES["blog"].framing()  # today, when the story has no date
    assert MODES["poem"].framing("2024-03-05T10:00:00") == "Selected Poems\n\nUntitled\n\n"


def test_story_text_joins_visible_turns_and_skips_deleted_ones():
    turns = make_turns("Once.", "Twice.", "Thrice.", deleted=(1,))

    assert story_text(turns) == "Once.\n\nThrice."


def test_a_cut_part_prefers_a_firm_sentence_end_to_an_ellipsis():
    text = "The rain stopped. She waited and waited and waited for the bus... and then the"
    firm = "The rain had stopped by noon. She waited and waited by the gate for the bus to come."
    trailing = firm + " Nobody came... and then the"

    assert clean_output(text, STORY, finished=False).text.endswith("for the bus...")
    assert clean_output(trailing, STORY, finished=False).text == firm
