"""End to end: members steer a story with buttons and /story commands, through the local Discord."""

from __future__ import annotations

import json

from bot.render import safe
from tests.discord_emulator import EPHEMERAL
from tests.e2e.conftest import answer, configured, storybot, turns


def button(message, move: str) -> str:
    [custom_id] = [c for c in message.custom_ids if c.startswith(f"storybot:{move}:")]
    return custom_id


async def pressed(interaction, timeout: float = 30):
    await interaction.wait_done(timeout)
    return interaction


def ephemeral(interaction) -> str:
    return [m.content for m in interaction.messages if m.flags & EPHEMERAL and not m.deleted][-1]


async def test_retry_three_times_then_choose_version_2_and_continue_from_it(emu, world, bot_config):
    config = configured(bot_config, "generation", user_rate=30)
    async with storybot(emu, config):
        part = await answer(emu, await world.alice.slash(world.channel, "write", prompt="A fog"))
        for n in range(3):
            await pressed(await world.bob.click(part, button(part, "retry")))
            # the answer is an edit of the part, which may land after the interaction is done
            await emu.wait_for(lambda n=n: f"version {n + 2} of {n + 2}" in part.content, 30)
        assert "version 4 of 4" in part.content and "A fog" in part.content  # the opening too
        await pressed(await world.bob.click(part, button(part, "prev")))
        await emu.wait_for(lambda: "version 3 of 4" in part.content, 30)
        await pressed(await world.bob.click(part, button(part, "prev")))
        await emu.wait_for(lambda: "version 2 of 4" in part.content, 30)
        chosen = turns(config, world.channel.id)[1]["text"]
        await answer(emu, await world.alice.slash(world.channel, "continue", text="Then?"))

    rows = turns(config, world.channel.id)
    assert [r["kind"] for r in rows] == ["opening", "model", "member", "model"]
    assert rows[1]["version"] == 2 and rows[1]["text"] == chosen  # version 2 is the story's
    assert safe(chosen.split()[0]) in part.content  # as shown: markdown escaped


async def test_undo_and_redo_by_the_owner_are_refused_for_others_and_allowed_for_a_moderator(
    emu, world, bot_config
):
    async with storybot(emu, bot_config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Once"))
        part = await answer(emu, await world.bob.slash(world.channel, "continue", text="Bob."))

        refused = await pressed(await world.alice.click(part, button(part, "undo")))
        assert "Only the member who asked for that part" in ephemeral(refused)
        await pressed(await world.bob.click(part, button(part, "undo")))
        assert "took this part back" in part.content
        assert "**bob:** Bob." in part.content  # his line stays in the story, and in view
        await pressed(await world.bob.click(part, button(part, "redo")))
        assert "took this part back" not in part.content and "**bob:** Bob." in part.content
        await pressed(await world.mod.click(part, button(part, "undo")))

    rows = turns(bot_config, world.channel.id)
    assert [r["kind"] for r in rows] == ["opening", "model", "member"]  # Bob's line stays


async def test_a_button_works_after_a_restart_and_a_stale_one_changes_nothing(
    emu, world, bot_config
):
    async with storybot(emu, bot_config):
        first = await answer(emu, await world.alice.slash(world.channel, "write", prompt="A"))
    async with storybot(emu, bot_config):  # a new process
        go_on = await world.bob.click(first, button(first, "continue"))
        second = await answer(emu, go_on)
        stale = await pressed(await world.bob.click(first, button(first, "retry")))
        before = turns(bot_config, world.channel.id)
        also_stale = await pressed(await world.alice.click(first, button(first, "continue")))
        unchanged = turns(bot_config, world.channel.id)
        third = await answer(emu, await world.alice.slash(world.channel, "continue"))
        await emu.wait_for(lambda: second.custom_ids == [], 10)  # taken off after the answer

    assert not second.ephemeral and "written by a language model" in second.content
    assert "no longer the newest" in ephemeral(stale)
    assert "no longer the newest" in ephemeral(also_stale)
    assert unchanged == before  # nothing changed
    # Only the newest part keeps live buttons (a part shown before a restart keeps its own, which
    # are refused as stale, as above).
    assert second.custom_ids == [] and button(third, "retry")


async def test_edit_through_the_form(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Once"))
        await answer(emu, await world.bob.slash(world.channel, "continue", text="Bob's lnie."))
        form = await world.alice.slash(world.channel, "story edit")
        refused = await form.final()
        mod_form = await world.mod.slash(world.channel, "story edit")
        await mod_form.response()
        submitted = await world.mod.submit_modal(mod_form, text="A better ending.")
        shown = await submitted.final()

    assert refused.ephemeral and "edit your own line when it is the newest" in refused.content
    assert "edited the newest turn (version 2)" in shown.content
    rows = turns(bot_config, world.channel.id)
    assert rows[-1]["text"] == "A better ending." and rows[-1]["edited_by"] == world.mod.id


async def test_memory_note_list_resume_end_and_export(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="The first"))
        set_memory = await world.alice.slash(world.channel, "story memory", text="Mira is blind.")
        assert "Mira is blind." in (await set_memory.final()).content
        await (await world.alice.slash(world.channel, "story note", text="Gloomy.")).final()
        await answer(emu, await world.bob.slash(world.channel, "write", prompt="The second"))
        listed = await (await world.alice.slash(world.channel, "story list")).final()
        first_id = turns(bot_config, world.channel.id)[0]["story_id"] - 1
        resumed = await (
            await world.alice.slash(world.channel, "story resume", story=first_id)
        ).final()
        exported = await (
            await world.alice.slash(world.channel, "story export", format="json")
        ).final(timeout=30)
        ended = await (await world.alice.slash(world.channel, "story end")).final()

    assert listed.ephemeral and "The second" in listed.content and "The first" in listed.content
    assert "took up “The first” again" in resumed.content
    [file] = exported.attachments
    document = json.loads(file.data)
    assert (
        document["story"]["memory"] == "Mira is blind." and document["story"]["note"] == "Gloomy."
    )
    assert [t["kind"] for t in document["turns"]] == ["opening", "model"]
    assert "is finished" in ended.content
    assert turns(bot_config, world.channel.id) == []  # no active story after the end
