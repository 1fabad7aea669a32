"""End to end: moderators run storytelling in their server, through the local Discord."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from bot.cogs.story import WAITING
from tests.discord_emulator import EPHEMERAL
from tests.e2e.conftest import answer, bot_requests, storybot, turns
from tests.e2e.test_storybot import ephemeral_lines


def everything_sent(emu, but=()) -> str:
    """Every payload the bot sent to Discord (but its answers to the interactions ``but``)."""
    skipped = [i.token for i in but]
    return "\n".join(
        json.dumps(r.json, ensure_ascii=False)
        for r in emu.transcript
        if r.json and not any(token in r.path for token in skipped)
    )


def embed_text(message) -> str:
    parts = []
    for embed in message.embeds:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    return "\n".join(parts)


async def moderate(emu, world, command: str, **options):
    done = await world.mod.slash(world.channel, command, **options)
    await answer(emu, done)
    return done


async def test_a_banned_word_in_a_prompt_is_refused_and_nothing_is_stored(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await moderate(emu, world, "settings banned add", words="grue, dark lord")
        refused = await world.alice.slash(world.channel, "write", prompt="The Grue waited below")
        await answer(emu, refused)

    [line] = ephemeral_lines(refused)
    assert "“grue”" in line and "not allowed here" in line
    assert turns(bot_config, world.channel.id) == []


@pytest.mark.local_engine
async def test_a_model_scripted_to_write_a_banned_word_never_shows_it(emu, world, bot_config):
    from tests.e2e.test_storybot import ScriptedChooser

    async with storybot(emu, bot_config) as bot:
        banning = await moderate(emu, world, "settings banned add", words="grue")
        engine = bot.services.engine
        eos = engine.loaded.eos_id
        # Both attempts write it (the chooser ignores the sampler's bans): first " The grue
        # came.", then, written again, " A GRUE again."
        script = [*engine.tokenizer.encode(" The grue came."), eos]
        script += engine.tokenizer.encode(" A GRUE again.")
        engine._chooser = ScriptedChooser(script, eos)
        write = await world.alice.slash(world.channel, "write", prompt="In the cellar")
        shown = await answer(emu, write)

    assert "▇▇▇▇ again." in shown.content
    # Not in a preview, not anywhere (but the moderator's own list).
    assert "grue" not in everything_sent(emu, but=[banning]).lower()
    model = turns(bot_config, world.channel.id)[1]
    assert "grue" not in model["text"].lower()
    assert json.loads(model["settings"])["guard"]["banned"] == "masked"


async def test_a_disabled_channel_refuses_and_names_where_the_bot_works(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await moderate(emu, world, "settings set", key="enabled", value="off")
        await moderate(
            emu, world, "settings set", key="enabled", value="on", channel=world.other_channel
        )
        refused = await world.alice.slash(world.channel, "write", prompt="Hello")
        await answer(emu, refused)
        allowed = await world.alice.slash(world.other_channel, "write", prompt="Hello there")
        await answer(emu, allowed)

    assert ephemeral_lines(refused) == [
        f"I'm turned off in this channel. I write in <#{world.other_channel.id}>."
    ]
    assert len(turns(bot_config, world.other_channel.id)) == 2


async def test_only_members_with_a_listed_role_start_stories(emu, world, bot_config):
    writers = world.guild.add_role("Writers")
    carol = world.members[2]
    carol.roles.append(writers)
    async with storybot(emu, bot_config):
        await moderate(emu, world, "settings set", key="write_roles", value=f"<@&{writers.id}>")
        refused = await world.alice.slash(world.channel, "write", prompt="Hello")
        await answer(emu, refused)
        allowed = await carol.slash(world.channel, "write", prompt="Hello from a writer")
        await answer(emu, allowed)
        goes_on = await world.alice.slash(world.channel, "continue", text="Alice goes on.")
        await answer(emu, goes_on)

    [line] = ephemeral_lines(refused)
    assert "Only members with one of these roles can start stories here" in line
    assert [r["kind"] for r in turns(bot_config, world.channel.id)] == [
        "opening", "model", "member", "model",
    ]  # fmt: skip


async def test_a_locked_story_takes_only_moderators(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Once"))
        await moderate(emu, world, "settings set", key="locked", value="on", scope="channel")
        refused = await world.bob.slash(world.channel, "continue", text="Bob tries.")
        await answer(emu, refused)
        await answer(emu, await world.mod.slash(world.channel, "continue", text="The mod goes on."))

    assert ephemeral_lines(refused)[0].startswith("The story in this channel is locked")
    assert [r["text"] for r in turns(bot_config, world.channel.id) if r["kind"] == "member"] == [
        "The mod goes on."
    ]


async def test_history_shows_five_changes_newest_first(emu, world, bot_config):
    async with storybot(emu, bot_config):
        for value in ("0.5", "0.6", "0.7"):
            await moderate(emu, world, "settings set", key="temperature", value=value)
        await moderate(emu, world, "settings set", key="cooldown_s", value="5", scope="channel")
        await moderate(emu, world, "settings banned add", words="grue")
        history = await moderate(emu, world, "settings history")

    [message] = [m for m in history.messages if not m.deleted]
    assert message.flags & EPHEMERAL
    lines = message.embeds[0]["description"].split("\n")
    assert len(lines) == 5
    assert "banned “grue”" in lines[0]
    assert f"`cooldown_s` (<#{world.channel.id}>): unset → **5**" in lines[1]
    assert "`temperature` (server): 0.6 → **0.7**" in lines[2]
    assert "`temperature` (server): unset → **0.5**" in lines[4]
    assert all(f"<@{world.mod.id}>" in line for line in lines)
    assert "page 1 of 1" in message.embeds[0]["footer"]["text"]


async def test_stats_match_what_was_done(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await moderate(emu, world, "settings set", key="user_rate", value="2")
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Once"))
        await answer(emu, await world.alice.slash(world.channel, "continue"))
        await answer(emu, await world.alice.slash(world.channel, "continue"))  # over the limit
        await answer(emu, await world.bob.slash(world.channel, "continue"))
        stats = await moderate(emu, world, "stats")

    parts = [r for r in turns(bot_config, world.channel.id) if r["kind"] == "model"]
    tokens = sum(json.loads(r["settings"])["new_tokens"] for r in parts)
    text = embed_text(stats.messages[0])
    assert "Parts written: 3 of 4 requests" in text
    assert f"Tokens written: {tokens:,}" in text
    assert "Refused: member limit: 1" in text
    assert re.search(r"Wait \(median / 95th\): \d+\.\d s / \d+\.\d s", text)


async def test_members_waiting_in_one_channel_see_their_place_in_line(emu, world, bot_config):
    async with storybot(emu, bot_config) as bot:
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Four friends"))
        order = bot.services.service.order
        async with order.turn(world.channel.id):  # a part is being written: all four must wait
            at_once = await asyncio.gather(
                *(m.slash(world.channel, "continue") for m in world.members[1:5])
            )
            await emu.wait_for(lambda: order.waiting(world.channel.id) == 5, 30)
        await asyncio.gather(*(answer(emu, i, timeout=60) for i in at_once))

    lines = {
        i.member.id: [
            r.json["content"]
            for r in bot_requests(emu, i.token)
            if r.method == "PATCH" and (r.json or {}).get("content", "").startswith(WAITING)
        ]
        for i in at_once
    }
    heard = sorted(lines.values(), key=len)
    assert [len(h) for h in heard] == [1, 2, 3, 4]  # each hears its place, then each step
    assert heard[0][0].startswith(f"{WAITING} 1 part ahead of yours, about")
    assert heard[3][0].startswith(f"{WAITING} 4 parts ahead of yours, about")
    assert heard[3][-1].startswith(f"{WAITING} 1 part ahead of yours")
    for interaction in at_once:  # and every one got its part in the end
        assert not interaction.messages[0].content.startswith(WAITING)


async def test_autocomplete_shows_each_setting_with_its_value_and_range(emu, world, bot_config):
    writers = world.guild.add_role("Writers")
    async with storybot(emu, bot_config):
        await moderate(emu, world, "settings set", key="temperature", value="0.7")
        keys = await world.mod.autocomplete(
            world.channel, "settings set", focused="key", value="temp"
        )
        roles = await world.mod.autocomplete(
            world.channel, "settings set", focused="value", value="Wri", key="write_roles"
        )
        modes = await world.mod.autocomplete(
            world.channel, "settings set", focused="value", value="story, p", key="modes"
        )
        key_choices, role_choices, mode_choices = (
            await keys.choices(),
            await roles.choices(),
            await modes.choices(),
        )

    assert key_choices == [
        {"name": "temperature = 0.7 · 0, or a number from 0.05 to 1.5", "value": "temperature"}
    ]
    assert {"name": "@Writers", "value": f"<@&{writers.id}>"} in role_choices
    assert [c["value"] for c in mode_choices] == ["story, poem", "story, script"]


async def test_history_pages_with_its_buttons(emu, world, bot_config):
    async with storybot(emu, bot_config):
        for n in range(12):
            await moderate(emu, world, "settings set", key="top_k", value=str(n + 1))
        history = await moderate(emu, world, "settings history", key="top_k")
        [first] = [m for m in history.messages if not m.deleted]
        assert "page 1 of 2" in first.embeds[0]["footer"]["text"]
        assert "storybot:history:2:top_k" in first.custom_ids
        await (await world.mod.click(first, "storybot:history:2:top_k")).wait_done()
        await emu.wait_for(lambda: "page 2 of 2" in first.embeds[0]["footer"]["text"], 10)

    lines = first.embeds[0]["description"].split("\n")
    assert len(lines) == 2 and "unset → **1**" in lines[-1]
