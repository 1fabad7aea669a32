"""Steering a story through the service: versions, undo and redo, edits, memory and note, the
channel's stories and export, on the real store and the tiny GPT-2."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import InvalidSetting, NotAllowed, StaleMove, TextTooLong
from bot.service import Actor
from bot.story import (
    EXPORT_FORMATS,
    TURN_SEPARATOR,
    Turn,
    author_note,
    build_context,
    export_story,
    read_export,
)

CHANNEL = 100
ALICE = Actor(guild_id=10, channel_id=CHANNEL, user_id=1, name="Alice")
BOB = Actor(guild_id=10, channel_id=CHANNEL, user_id=2, name="Bob")
MOD = Actor(guild_id=10, channel_id=CHANNEL, user_id=9, is_moderator=True, name="Mod")


@pytest.fixture
def config(config):
    return dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, max_new_tokens=8, user_rate=30)
    )


async def visible(service):
    story = await service.store.active_story(CHANNEL)
    return await service.store.turns(story.id)


async def test_retry_keeps_every_version_and_the_chosen_one_feeds_the_next_part(service):
    await service.write(ALICE, "The lighthouse keeper woke")
    first = (await visible(service))[-1]
    for _ in range(2):
        retried = await service.retry(BOB, turn_id=first.id)
    part = retried.model_turn
    assert (part.id, part.version, part.versions) == (first.id, 3, 3)

    chosen = await service.choose_version(ALICE, step=-1, turn_id=part.id)
    assert chosen.version == 2 and chosen.text == (await service.store.versions(part.id))[1][1]
    with pytest.raises(InvalidSetting, match="versions 1 to 3"):
        await service.choose_version(ALICE, number=4)
    nxt = await service.continue_(ALICE, "And then?")
    assert [t.text for t in await visible(service)][1] == chosen.text  # version 2 is the story's
    with pytest.raises(StaleMove, match="no longer the newest"):
        await service.retry(ALICE, turn_id=part.id)  # a button under an older part
    assert nxt.model_turn.version == 1


async def test_undo_and_redo_belong_to_the_owner_or_a_moderator(service):
    await service.write(ALICE, "Once")
    await service.continue_(BOB, "Bob's line.")
    model_part = (await visible(service))[-1]  # asked for by Bob

    with pytest.raises(NotAllowed, match="who asked for that part"):
        await service.undo(ALICE)
    undone = await service.undo(BOB, turn_id=model_part.id)
    with pytest.raises(NotAllowed, match="who wrote that line"):
        await service.undo(ALICE)
    await service.undo(MOD)  # Bob's line, by a moderator
    assert [t.kind for t in await visible(service)] == ["opening", "model"]

    with pytest.raises(NotAllowed, match="only a moderator can put it back"):
        await service.redo(BOB)  # Bob's line, but a moderator took it back
    assert (await service.redo(MOD)).text == "Bob's line."  # the last undone comes back first
    assert (await service.redo(BOB)).id == undone.id  # Bob took his part back himself
    with pytest.raises(StaleMove, match="nothing to redo"):
        await service.redo(BOB)
    await service.undo(BOB)
    await service.continue_(ALICE)  # something new: the undone part stays undone
    with pytest.raises(StaleMove):
        await service.redo(BOB)
    every = await service.store.turns(undone.story_id, include_deleted=True)
    assert [t.deleted_by for t in every if t.deleted] == [BOB.user_id]


async def test_the_opening_cannot_be_undone(service):
    await service.write(ALICE, "Once")
    await service.undo(ALICE)  # the part Alice's /write asked for
    with pytest.raises(NotAllowed, match="opening stays"):
        await service.undo(ALICE)


async def test_members_edit_their_own_lines_and_moderators_any_part(service):
    await service.write(ALICE, "Once")
    await service.continue_(BOB, "Bob's lnie.")
    await service.undo(BOB)  # back to Bob's line as the newest
    with pytest.raises(NotAllowed, match="your own lines"):
        await service.edit(ALICE, "Hijacked.")
    fixed = await service.edit(BOB, "Bob's line.")
    assert (fixed.text, fixed.version, fixed.edited_by) == ("Bob's line.", 2, BOB.user_id)
    part = (await visible(service))[1]
    by_mod = await service.edit(MOD, "A better part.", turn_id=part.id)
    assert by_mod.edited_by == MOD.user_id and by_mod.kind == "model"
    with pytest.raises(InvalidSetting):
        await service.edit(BOB, "   ")


async def test_memory_and_note_are_capped_and_reach_the_context(service, config):
    await service.write(ALICE, "Once")
    story = await service.memory(ALICE, "Mira is a blind cartographer.")
    story = await service.note(ALICE, "Keep it gloomy.")
    assert (story.memory, story.note) == ("Mira is a blind cartographer.", "Keep it gloomy.")
    with pytest.raises(TextTooLong, match="memory"):
        await service.memory(ALICE, "word " * (config.caps.max_memory_tokens + 1))
    assert (await service.note(ALICE, "clear")).note == ""
    assert (await service.memory(ALICE)).memory == "Mira is a blind cartographer."


async def test_the_channels_stories_can_be_listed_resumed_and_ended(service):
    first = await service.write(ALICE, "The first tale")
    await service.write(BOB, "The second tale")

    page = await service.stories(ALICE)
    assert [s.title for s in page.stories] == ["The second tale", "The first tale"]
    resumed, archived = await service.resume(ALICE, first.story.id)
    assert resumed.active and archived.title == "The second tale"
    with pytest.raises(NotAllowed, match="who began this story"):
        await service.end(BOB)
    ended = await service.end(ALICE)
    assert not ended.active and ended.ended_at


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
async def test_an_export_reads_back_as_the_same_turns(service, fmt):
    await service.write(ALICE, "Once, with *stars* and\n### a false header")
    for n in range(3):
        await service.continue_(BOB, f"Line {n}\n> quoted")
    exported = await service.export(ALICE, fmt)

    turns = await visible(service)
    assert read_export(exported.data, fmt) == [(t.kind, t.position, t.text) for t in turns]
    if fmt == "json":
        document = json.loads(exported.data)
        assert document["schema"] == "storybot.story/1"
        bob_line, part = document["turns"][2], document["turns"][3]
        assert (
            bob_line["author"] == {"id": BOB.user_id, "name": "Bob"} and bob_line["model"] is None
        )
        assert part["author"] is None and part["model"] and part["settings"]["temperature"]
        assert document["machine_written"] == [1, 3, 5, 7]
    else:
        assert "🤖 storybot" in exported.data.decode() and "Bob" in exported.data.decode()


def test_a_200_turn_story_exports_and_reads_back_in_every_format():
    from bot.story import Story

    story = Story(1, 1, 1, "Long", "story", True, 1, "2026-11-29T10:00:00Z")
    turns = [
        Turn(i, 1, i, "opening" if i == 0 else ("model" if i % 2 else "member"), None if i % 2 else 5,
             f"Turn {i}.\n\nIt goes on — *{i}*.", {"temperature": 0.9} if i % 2 else None,
             "2026-11-29T10:00:00Z", author_name=None if i % 2 else "Zoe")
        for i in range(200)
    ]  # fmt: skip
    for fmt in EXPORT_FORMATS:
        _, data = export_story(story, turns, fmt, "gpt2")
        assert read_export(data, fmt) == [(t.kind, t.position, t.text) for t in turns]


# -- the context with memory and note --------------------------------------------------------------


def turn(i: int, kind: str, text: str) -> Turn:
    return Turn(i, 1, i, kind, None, text, None, "")


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    sizes=st.lists(st.integers(1, 120), min_size=0, max_size=30),
    memory_words=st.integers(0, 60),
    note_words=st.integers(0, 30),
    budget=st.integers(200, 900),
)
def test_memory_and_note_appear_once_and_the_window_never_overflows(
    tiny_loaded, sizes, memory_words, note_words, budget
):
    tokenizer = tiny_loaded.tokenizer
    turns = [turn(0, "opening", "The beginning of it all.")]
    turns += [turn(i + 1, "model", " ".join(["word"] * n) + ".") for i, n in enumerate(sizes)]
    memory = " ".join(["Mira"] * memory_words)
    note = " ".join(["gloom"] * note_words)

    context = build_context(tokenizer, "Chapter One\n\n", turns, budget, memory, note)

    assert len(context.ids) <= budget
    head = len(tokenizer.encode(f"Chapter One\n\n{memory}\n\nThe beginning of it all."))
    if memory and head < (budget - 2) // 2:  # the pinned head fits its half: memory is whole
        assert context.text.count(memory + TURN_SEPARATOR) == 1
    if memory:
        assert context.text.count(memory + TURN_SEPARATOR) <= 1
    if note:
        assert context.text.count(author_note(note)) <= 1
        if len(tokenizer.encode(context.text)) < budget // 2:  # room to spare: it is in
            assert context.text.count(author_note(note)) == 1
    assert context.turns_included + context.turns_dropped == len(sizes)


def test_an_export_header_cannot_be_faked_by_a_title_or_a_name():
    from bot.story import Story

    story = Story(1, 1, 1, "### X · part 5 · 2026-01-01 10:00", "story", True, 1, "2026-11-29")
    turns = [
        Turn(0, 1, 0, "opening", 5, "Once", None, "2026-11-29T10:00:00Z", author_name="A · part 9"),
        Turn(1, 1, 1, "model", None, "upon", {}, "2026-11-29T10:00:00Z"),
    ]
    for fmt in EXPORT_FORMATS:
        _, data = export_story(story, turns, fmt, "gpt2")
        assert read_export(data, fmt) == [("opening", 0, "Once"), ("model", 1, "upon")]
        assert b"/" not in data.split(b"gpt2")[0][-5:]  # the model by name, never a host's path


async def test_a_member_cannot_redo_what_a_moderator_took_back(service):
    await service.write(ALICE, "Once")
    await service.continue_(ALICE, "A rude line.")
    await service.undo(MOD)  # the model's part
    line = await service.undo(MOD)  # Alice's line
    with pytest.raises(NotAllowed, match="only a moderator can put it back"):
        await service.redo(ALICE)
    with pytest.raises(StaleMove, match="Another turn is next"):
        await service.redo(MOD, turn_id=line.id + 1)
    assert (await service.redo(MOD, turn_id=line.id)).text == "A rude line."


async def test_a_lone_surrogate_in_memory_note_or_edit_is_made_harmless(service):
    await service.write(ALICE, "Once")
    assert (await service.memory(ALICE, "Mira \ud800 sees")).memory == "Mira \ufffd sees"
    assert (await service.note(ALICE, "Storm \udfff")).note == "Storm \ufffd"
    await service.continue_(ALICE, "A line.")
    await service.undo(ALICE)
    assert (await service.edit(ALICE, "Fixed \ud83d")).text == "Fixed \ufffd"
