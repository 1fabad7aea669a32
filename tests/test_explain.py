"""Explanations of a part from its token notes, and the picture of it."""

from __future__ import annotations

import dataclasses
import io
import math
import struct

import pytest

from bot.errors import NoStory, NotExplainable
from bot.explain import (
    LOW,
    TokenNote,
    explain,
    kept_notes,
    longest_copy,
    pack,
    sections,
    unpack,
)
from bot.limits import Admission, ChannelOrder
from bot.picture import WIDTH_PX, confidence_png, layout
from bot.service import Actor, StoryService


def note(text: str, p_model: float, alternatives=()) -> TokenNote:
    return TokenNote(
        text, round(min(1.0, p_model * 1.5), 4), p_model, 1 if p_model > 0.5 else 4, alternatives
    )


PART = [
    note("The", 0.9),
    note(" ship", 0.05, ((" boat", 0.3), (" ship", 0.05))),
    note(" sank", 0.02, ((" sailed", 0.4),)),
    note(" at", 0.8),
    note(" dawn", 0.6),
    note(".", 0.95),
    note(" Nobody", 0.01, ((" Everyone", 0.2),)),
    note(" cried", 0.3),
    note(".", 0.9),
]


def test_notes_pack_small_and_unpack_unchanged():
    data = pack(PART)
    assert unpack(data) == PART
    assert len(data) < 40 * len(PART)


def test_explanation_figures_follow_the_probabilities():
    explained = explain(PART)

    mean_surprise = sum(-math.log(n.p_model) for n in PART) / len(PART)
    assert explained.perplexity == pytest.approx(math.exp(mean_surprise))
    assert explained.unsure_share == pytest.approx(3 / 9)
    first, second, third = explained.spans
    assert (first.text, first.confidence) == (" Nobody", 0.01)
    assert first.alternatives == ((" Everyone", 0.2),)
    assert (second.text, second.confidence) == (" ship sank", 0.02)  # one run, its weakest token
    assert second.alternatives == ((" sailed", 0.4),)
    assert third.confidence == 0.3  # a third unsure run is missing: the least sure other token
    assert all(s.confidence < LOW for s in (first, second))


def test_a_sure_part_has_perplexity_near_one_and_no_unsure_tokens():
    explained = explain([note(" a", 0.99), note(" b", 0.98)])
    assert explained.perplexity < 1.05 and explained.unsure_share == 0
    assert explain([]).tokens == 0


def test_kept_notes_follow_cleanup_at_both_ends():
    raw = "".join(n.text for n in PART)
    assert kept_notes(PART, raw, raw) == PART
    assert kept_notes(PART, raw, "The ship sank at dawn.") == PART[:6]
    assert kept_notes(PART, raw, "ship sank at dawn. Nobody cried.") == PART[1:]
    assert kept_notes(PART, raw, "The ship sank…") == PART[:3]


def test_longest_copy_finds_the_longest_shared_run():
    source = [1, 2, 3, 4, 5, 9, 9, 7, 8]
    assert longest_copy([0, 2, 3, 4, 6, 7, 8], source) == (1, 3)
    assert longest_copy([10, 11], source) == (0, 0)
    assert longest_copy([], source) == (0, 0)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("length", [10, 2000])
def test_the_picture_is_a_whole_png_as_wide_as_promised_and_as_tall_as_the_text(length):
    from matplotlib import image

    words = [note(f" w{i % 7}rd", (i % 10 + 1) / 11) for i in range(length // 5)]
    data = confidence_png(words, "A part · perplexity 3.2 · $100 and 50 % unsure")

    width, height = png_size(data)
    decoded = image.imread(io.BytesIO(data), format="png")
    assert decoded.shape[:2] == (height, width) and width == WIDTH_PX
    lines = len(layout(words, 105))
    assert height >= 24 * lines


def test_layout_wraps_at_spaces_and_keeps_every_character():
    notes = [note(" " + "x" * 8, 0.5) for _ in range(30)] + [note("\n\nEnd", 0.5)]
    lines = layout(notes, 40)
    assert all(sum(len(piece) for _, piece in line) <= 40 for line in lines)
    kept = "".join(piece for line in lines for _, piece in line)
    assert kept.replace(" ", "") == "".join(n.text for n in notes).replace(" ", "").replace(
        "\n", ""
    )


# -- through the service -------------------------------------------------------------------------


HERE = Actor(guild_id=10, channel_id=100, user_id=1)
ELSEWHERE = Actor(guild_id=10, channel_id=200, user_id=2)


async def test_every_part_is_explained_from_the_notes_kept_with_it(service):
    await service.write(HERE, "The lighthouse keeper woke")
    await service.continue_(HERE, "A ship was coming.")

    first = await service.explain(HERE, part=1)
    newest = await service.explain(HERE)

    assert (first.number, newest.number) == (1, 2)
    for explained in (first, newest):
        assert explained.turn.kind == "model" and explained.notes
        assert explained.explanation.tokens == len(explained.notes)
        shown = "".join(n.text for n in explained.notes)
        assert "".join(shown.split()) in "".join(explained.turn.text.split())
        headings = [h for h, _ in sections(explained.explanation, explained.record)]
        assert headings == ["How sure", "Least sure", "Written with", "What it read", "Originality"]
    assert first.turn.id != newest.turn.id
    assert newest.record["copied_tokens"] >= 0 and newest.record["model"]


async def test_a_part_that_is_not_there_is_refused_with_the_range(service):
    with pytest.raises(NoStory):
        await service.explain(HERE)
    await service.write(HERE, "Once")
    with pytest.raises(NotExplainable, match=r"no part 2: I have written 1 part of this story"):
        await service.explain(HERE, part=2)


async def test_a_button_of_an_archived_story_or_another_channel_is_refused_clearly(service):
    written = await service.write(HERE, "The old tale")
    old_part, opening = written.model_turn.id, written.turns[0].id

    with pytest.raises(NotExplainable, match="another channel"):
        await service.explain(ELSEWHERE, turn_id=old_part)
    with pytest.raises(NotExplainable, match="no longer in the story"):
        await service.explain(HERE, turn_id=opening)
    await service.write(HERE, "A new tale")  # archives the old one
    with pytest.raises(NotExplainable, match="archived story"):
        await service.explain(HERE, turn_id=old_part)
    assert (await service.explain(HERE)).story.title == "A new tale"


async def test_with_explanations_off_no_notes_are_kept_and_asking_says_why(
    config, store, engine, clock
):
    off = dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, explanations=False)
    )
    service = StoryService(off, store, engine, Admission(clock=clock), ChannelOrder(), clock)
    written = await service.write(HERE, "Quietly")

    assert await store.turn_notes(written.model_turn.id) is None
    with pytest.raises(NotExplainable, match="kept no notes"):
        await service.explain(HERE)
