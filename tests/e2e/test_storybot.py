"""End to end: members use the real StoryBot over real sockets, through the local Discord."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time

import pytest

from bot.cogs.story import WRITING
from bot.config import parse_config
from bot.engine.batch import Batch
from bot.engine.sampling import TokenChooser
from tests.discord_emulator import EPHEMERAL, MissingPermissions
from tests.e2e.conftest import answer, bot_requests, configured, storybot, turns

LIVE_MENTION = re.compile(r"@(everyone|here)(?!\u200b)|<@[!&]?\d+>")


class ScriptedChooser:
    """Makes the model write exactly ``script`` (then end), whatever the logits say."""

    def __init__(self, script: list[int], eos: int) -> None:
        self.script = [*script, eos]

    def choose(self, logits, rows):
        return [self.script.pop(0) if self.script else 0 for _ in rows]


def script_model(bot, text: str) -> None:
    engine = bot.services.engine
    engine._chooser = ScriptedChooser(engine.tokenizer.encode(text), engine.loaded.eos_id)


def ephemeral_lines(interaction) -> list[str]:
    return [m.content for m in interaction.messages if m.flags & EPHEMERAL and not m.deleted]


async def test_two_members_build_one_story(emu, world, bot_config):
    async with storybot(emu, bot_config):
        write = await world.alice.slash(world.channel, "write", prompt="The lighthouse keeper woke")
        opening = await answer(emu, write)
        bob_line = await world.bob.slash(world.channel, "continue", text="A ship was coming.")
        bob_answer = await answer(emu, bob_line)
        plain = await world.alice.slash(world.channel, "continue")
        await answer(emu, plain)

    for interaction in (write, bob_line, plain):
        sent = bot_requests(emu, interaction.token)
        assert sent[0].route.endswith("/callback") and sent[0].json["type"] == 5  # deferred first
        assert any(r.method == "PATCH" and "@original" in r.path for r in sent[1:])
        assert not interaction.messages[0].loading and not interaction.messages[0].ephemeral
    assert "The lighthouse keeper woke" in opening.content
    assert "**bob:** A ship was coming." in bob_answer.content

    rows = turns(bot_config, world.channel.id)
    assert [(r["kind"], r["author_id"]) for r in rows] == [
        ("opening", world.alice.id),
        ("model", None),
        ("member", world.bob.id),
        ("model", None),
        ("model", None),
    ]
    assert [r["position"] for r in rows] == list(range(5))
    assert rows[2]["text"] == "A ship was coming."


async def test_five_members_continue_at_once_and_every_turn_lands_once(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await answer(
            emu, await world.alice.slash(world.channel, "write", prompt="Five friends met")
        )
        lines = {member.id: f"{member.name} says hello." for member in world.members}
        at_once = [
            member.slash(world.channel, "continue", text=lines[member.id])
            for member in world.members
        ]
        elsewhere = world.alice.slash(
            world.other_channel, "write", prompt="Meanwhile, a poem", mode="poem"
        )
        interactions = await asyncio.gather(*at_once, elsewhere)
        answers = await asyncio.gather(*(answer(emu, i, timeout=60) for i in interactions))

    rows = turns(bot_config, world.channel.id)
    member_rows = [r for r in rows if r["kind"] == "member"]
    assert sorted(r["author_id"] for r in member_rows) == sorted(lines)
    for row in member_rows:  # each member's line is followed at once by the model's answer to it
        assert rows[row["position"] + 1]["kind"] == "model"
        assert row["text"] == lines[row["author_id"]]
    assert [r["position"] for r in rows] == list(range(len(rows))) and len(rows) == 2 + 2 * 5

    # The answers were shown in the order their turns were written.
    def shown_at(interaction) -> int:  # (a later edit that only takes its buttons off is not)
        return max(
            i
            for i, r in enumerate(emu.transcript)
            if interaction.token in r.path and "content" in (r.json or {})
        )

    shown = [i.member.id for i in sorted(interactions[:5], key=shown_at)]
    assert shown == [r["author_id"] for r in member_rows]
    for interaction, reply in zip(interactions[:5], answers[:5], strict=True):
        assert lines[interaction.member.id] in reply.content
    assert [r["kind"] for r in turns(bot_config, world.other_channel.id)] == ["opening", "model"]


async def test_only_moderators_change_settings_and_changes_stay_in_their_server(
    emu, world, bot_config
):
    async with storybot(emu, bot_config):
        with pytest.raises(MissingPermissions):
            await world.alice.slash(world.channel, "settings set", key="temperature", value="0")

        world.guild.allow_command("settings", world.alice)  # an admin lets her see the command
        refused = await world.alice.slash(
            world.channel, "settings set", key="temperature", value="0"
        )
        await answer(emu, refused)
        assert ephemeral_lines(refused) == [
            "Only moderators (Manage Server, or a moderator role) can change settings."
        ]

        changed = await world.mod.slash(world.channel, "settings set", key="temperature", value="0")
        assert "temperature" in (await answer(emu, changed)).content

        await answer(emu, await world.bob.slash(world.channel, "write", prompt="Cold open"))
        warm = await world.second_member.slash(world.second_channel, "write", prompt="Warm open")
        await answer(emu, warm)

    here = turns(bot_config, world.channel.id)[1]["settings"]
    there = turns(bot_config, world.second_channel.id)[1]["settings"]
    assert '"temperature": 0.0' in here
    assert '"temperature": 0.9' in there


async def test_a_member_over_the_rate_limit_is_told_when_to_retry(emu, world, bot_config):
    config = configured(bot_config, "generation", user_rate=2)
    async with storybot(emu, config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Quick"))
        await answer(emu, await world.alice.slash(world.channel, "continue", text="Quicker."))
        before = turns(config, world.channel.id)
        refused = await world.alice.slash(world.channel, "continue", text="Too quick.")
        await answer(emu, refused)
        from_bob = await world.bob.slash(world.channel, "continue")
        await answer(emu, from_bob)

    [line] = ephemeral_lines(refused)
    assert re.fullmatch(
        r"You have reached the limit of 2 parts a minute\. Try again in \d+ seconds?\.", line
    )
    assert all(m.deleted or m.ephemeral for m in refused.messages)  # no public trace
    after = turns(config, world.channel.id)
    assert "Too quick." not in [r["text"] for r in after]
    assert len(after) == len(before) + 1  # only bob's generation


@pytest.mark.local_engine
async def test_no_payload_can_ping_anyone(emu, world, bot_config):
    role = world.guild.add_role("Everyone Important")
    prompt = f"@everyone @here <@&{role.id}> <@{world.bob.id}> <@!{world.bob.id}> listen"
    async with storybot(emu, bot_config) as bot:
        script_model(bot, f" Hey @everyone and @here, <@&{role.id}> and <@{world.bob.id}>!")
        write = await world.alice.slash(world.channel, "write", prompt=prompt)
        await answer(emu, write)
        script_model(bot, " Again @here.")
        more = await world.alice.slash(
            world.channel, "continue", text=f"Ping <@{world.alice.id}> @everyone"
        )
        await answer(emu, more)

    payloads = [r.json for r in emu.transcript if isinstance(r.json, dict) and "content" in r.json]
    payloads += [
        r.json["data"]
        for r in emu.transcript
        if isinstance(r.json, dict) and "content" in r.json.get("data", {})
    ]
    assert len(payloads) >= 2
    for payload in payloads:
        assert payload["allowed_mentions"]["parse"] == []
        assert not payload["allowed_mentions"].get("users") and not payload["allowed_mentions"].get(
            "roles"
        )
        assert not LIVE_MENTION.search(payload["content"]), payload["content"]
    shown = "\n".join(m.content for m in world.channel.messages)
    assert "everyone" in shown and "listen" in shown  # escaped, not dropped


@pytest.mark.local_engine
async def test_an_answer_longer_than_a_message_arrives_in_several(emu, world, bot_config):
    config = configured(bot_config, "generation", max_new_tokens=400)
    async with storybot(emu, config) as bot:
        word = " international"
        assert len(bot.services.engine.tokenizer.encode(word)) == 1
        script_model(bot, word * 390)
        write = await world.alice.slash(world.channel, "write", prompt="Words")
        await answer(emu, write)
        messages = await write.wait_for_messages(3, timeout=10)

    assert all(len(m.content) <= 2000 for m in messages)
    assert sum(m.content.count("international") for m in messages) == 390
    assert turns(config, world.channel.id)[1]["text"].count("international") == 390


async def test_the_story_survives_a_restart(emu, world, bot_config):
    async with storybot(emu, bot_config):
        await answer(
            emu, await world.alice.slash(world.channel, "write", prompt="Before the restart")
        )
        await answer(emu, await world.bob.slash(world.channel, "continue", text="Still here."))
    before = turns(bot_config, world.channel.id)

    async with storybot(emu, bot_config):
        after_restart = await world.alice.slash(
            world.channel, "continue", text="After the restart."
        )
        await answer(emu, after_restart)

    after = turns(bot_config, world.channel.id)
    assert [dict(r) for r in after[: len(before)]] == [dict(r) for r in before]
    assert {r["story_id"] for r in after} == {before[0]["story_id"]}
    assert after[len(before)]["text"] == "After the restart."
    assert [r["kind"] for r in after[len(before) :]] == ["member", "model"]


@pytest.mark.local_engine
async def test_a_generation_past_its_deadline_is_explained_and_the_next_works(
    emu, world, bot_config, monkeypatch
):
    config = configured(bot_config, "model", request_timeout_s=1.0)
    real_step = Batch.step

    def slow_step(self):
        time.sleep(0.1)
        return real_step(self)

    async with storybot(emu, config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="On time"))
        monkeypatch.setattr(Batch, "step", slow_step)
        late = await world.bob.slash(world.channel, "continue", text="Hurry up.")
        await answer(emu, late)
        monkeypatch.setattr(Batch, "step", real_step)
        next_one = await world.alice.slash(world.channel, "continue")
        reply = await answer(emu, next_one)

    [line] = ephemeral_lines(late)
    assert "took too long" in line and "Your line is saved" in line
    assert not reply.ephemeral and reply.content
    kinds = [r["kind"] for r in turns(config, world.channel.id)]
    assert kinds == ["opening", "model", "member", "model"]


# -- a graceful stop -------------------------------------------------------------------------------


def slow_steps(monkeypatch, seconds: float) -> None:
    real_step = Batch.step

    def slow_step(self):
        time.sleep(seconds)
        return real_step(self)

    monkeypatch.setattr(Batch, "step", slow_step)


async def writing(emu, interaction) -> None:
    """Wait until the bot has deferred ``interaction`` and its part is being written."""
    await emu.wait_for(lambda: bool(interaction.messages), 10)
    await asyncio.sleep(0.3)


@pytest.mark.local_engine
async def test_a_stop_lets_the_part_in_flight_finish_and_tells_newcomers_to_retry(
    emu, world, bot_config, monkeypatch
):
    config = configured(bot_config, "discord", drain_s=30.0)
    slow_steps(monkeypatch, 0.02)
    async with storybot(emu, config) as bot:
        write = await world.alice.slash(world.channel, "write", prompt="The last ferry")
        await writing(emu, write)
        stop = asyncio.ensure_future(bot.shutdown())
        await asyncio.sleep(0.05)
        late = await world.bob.slash(world.other_channel, "write", prompt="Too late")
        shown = await answer(emu, write)
        started = time.monotonic()
        await asyncio.wait_for(stop, timeout=10)
        assert time.monotonic() - started < 5

    assert bot.is_closed() and bot.services is None
    assert "cut short" not in shown.content and "The last ferry" in shown.content
    assert ephemeral_lines(late) == ["I'm restarting right now. Please try again in a minute."]
    [_opening, part] = turns(config, world.channel.id)
    assert part["kind"] == "model" and '"finish_reason": "interrupted"' not in part["settings"]
    assert turns(config, world.other_channel.id) == []


@pytest.mark.local_engine
async def test_past_the_drain_limit_a_part_is_saved_as_it_is_and_marked_cut_short(
    emu, world, bot_config, monkeypatch
):
    config = configured(bot_config, "discord", drain_s=0.5)
    config = configured(config, "generation", max_new_tokens=400)
    async with storybot(emu, config) as bot:
        script_model(bot, "It was late.")
        line = await world.alice.slash(world.channel, "write", prompt="A long night")
        await answer(emu, line)
        bot.services.engine._chooser = TokenChooser()  # the model writes freely again
        slow_steps(monkeypatch, 0.05)  # 400 tokens would take 20 s
        more = await world.bob.slash(world.channel, "continue", text="Bob's line.")
        await writing(emu, more)
        started = time.monotonic()
        await asyncio.wait_for(bot.shutdown(), timeout=10)
        stopped_in = time.monotonic() - started
        shown = await answer(emu, more)

    assert stopped_in < 0.5 + 5
    assert "cut short" in shown.content and "Bob's line." in shown.content
    rows = turns(config, world.channel.id)
    assert [r["kind"] for r in rows] == ["opening", "model", "member", "model"]
    assert '"finish_reason": "interrupted"' in rows[-1]["settings"]


# -- a crash -----------------------------------------------------------------------------------------


def pending_replies(config) -> list[sqlite3.Row]:
    with contextlib.closing(sqlite3.connect(config.database.path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM pending_replies ORDER BY id").fetchall()


async def crash_while_writing(emu, world, config, monkeypatch):
    """Two members wait for parts when the bot dies without a graceful stop (as by kill -9):
    bob added a line, alice did not. Returns their interactions."""
    async with storybot(emu, config) as bot:
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="A dark sea"))
        await answer(emu, await world.alice.slash(world.other_channel, "write", prompt="A poem"))
        slow_steps(monkeypatch, 0.05)  # 400 tokens would take 20 s
        bob = await world.bob.slash(world.channel, "continue", text="Bob's line.")
        alice = await world.alice.slash(world.other_channel, "continue")
        await writing(emu, bob)
        await writing(emu, alice)
        await bot.close()  # no drain, no answers: the process is gone
    monkeypatch.undo()
    return bob, alice


@pytest.mark.local_engine
async def test_after_a_crash_the_next_start_tells_each_waiting_member_what_was_saved(
    emu, world, bot_config, monkeypatch
):
    config = configured(bot_config, "generation", max_new_tokens=400)
    bob, alice = await crash_while_writing(emu, world, config, monkeypatch)
    for waiting in (bob.original, alice.original):  # "thinking…", or a frozen preview
        assert waiting.loading or waiting.content.endswith(WRITING)
    left = pending_replies(config)
    assert [r["id"] for r in left] == [bob.id, alice.id]
    assert all(r["token"] for r in left)

    async with storybot(emu, config):
        bob_told = await answer(emu, bob)
        alice_told = await answer(emu, alice)

    assert "**bob:** Bob's line." in bob_told.content
    assert "Your line is saved: `/continue` goes on from it." in bob_told.content
    assert "nothing was saved. Please try again." in alice_told.content
    assert not bob_told.ephemeral and not alice_told.ephemeral
    assert pending_replies(config) == []
    assert [r["kind"] for r in turns(config, world.channel.id)] == ["opening", "model", "member"]
    assert [r["kind"] for r in turns(config, world.other_channel.id)] == ["opening", "model"]


@pytest.mark.local_engine
async def test_a_reply_past_its_token_lifetime_is_forgotten_not_sent(
    emu, world, bot_config, monkeypatch
):
    config = configured(bot_config, "generation", max_new_tokens=400)
    await crash_while_writing(emu, world, config, monkeypatch)
    with contextlib.closing(sqlite3.connect(config.database.path)) as db, db:
        db.execute("UPDATE pending_replies SET expires_at = expires_at - 900")
    sent_before = len(emu.transcript)

    async with storybot(emu, config):
        pass

    assert pending_replies(config) == []
    assert not [r for r in emu.transcript[sent_before:] if "/webhooks/" in r.path]
    await emu.close(check=False)  # Discord would show both as failed: too late to answer
    assert [v.code for v in emu.pop_violations()] == ["never_answered", "never_answered"]


# -- explanations ------------------------------------------------------------------------------------


@pytest.mark.local_engine
async def test_the_explain_button_works_after_a_restart_and_refuses_an_archived_story(
    emu, world, bot_config
):
    async with storybot(emu, bot_config):
        shown = await answer(emu, await world.alice.slash(world.channel, "write", prompt="A fog"))
    [button] = [c for c in shown.custom_ids if c.startswith("storybot:explain:")]
    assert "written by a language model" in shown.content

    async with storybot(emu, bot_config):  # a new process: the button still works
        pressed = await world.bob.click(shown, button)
        explained = await pressed.final(timeout=30)
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="A new tale"))
        stale = await world.bob.click(shown, button)
        refused = await stale.final(timeout=30)
        by_number = await world.bob.slash(world.channel, "story explain", part=1)
        numbered = await by_number.final(timeout=30)

    assert explained.ephemeral and len(explained.embeds) == 1
    embed = explained.embeds[0]
    assert embed["title"] == "Part 1 of “A fog”"
    assert [f["name"] for f in embed["fields"]][:2] == ["Least sure", "Written with"]
    [picture] = explained.attachments
    assert picture.filename == "part.png" and picture.data.startswith(b"\x89PNG")
    assert embed["image"]["url"] == "attachment://part.png"
    assert refused.ephemeral and "archived story" in refused.content
    assert numbered.embeds[0]["title"] == "Part 1 of “A new tale”"


async def test_a_running_bot_keeps_a_health_file_and_removes_it_when_it_stops(
    emu, world, bot_config
):
    from bot import paths

    health = paths.home() / paths.HEALTH_NAME
    async with storybot(emu, bot_config):
        beat = json.loads(health.read_text())
        assert beat["connected"] and beat["guilds"] == 2 and not beat["draining"]
        assert abs(beat["time"] - time.time()) < 30
    assert not health.exists()


async def test_a_process_running_one_shard_of_one_serves_its_guilds(emu, world, bot_config):
    config = configured(bot_config, "discord", shard_count=1, shard_ids=(0,))
    async with storybot(emu, config):
        await answer(emu, await world.alice.slash(world.channel, "write", prompt="Shard zero"))

    [identify] = [f for f in emu.gateway_log if f.direction == "from_bot" and f.op == 2]
    assert identify.data["shard"] == [0, 1]
    assert [r["kind"] for r in turns(config, world.channel.id)] == ["opening", "model"]


def shards_apart(*guild_ids: int) -> int:
    """The smallest shard count that puts each of these guilds on its own shard."""
    return next(
        n for n in range(2, 64) if len({(g >> 22) % n for g in guild_ids}) == len(guild_ids)
    )


async def later_guild(emu, world):
    """A guild made a few milliseconds after the world's (a guild's shard comes from the time
    in its id), with a channel and a member: (guild, channel, member)."""
    await asyncio.sleep(0.01)
    guild = emu.add_guild("Later")
    return guild, guild.add_text_channel("tales"), guild.add_member("zed")


async def write_in_both_guilds(emu, world, tales, zed) -> None:
    """A story started in the world's channel and one in the later guild's, both answered."""
    here = await world.alice.slash(world.channel, "write", prompt="In the first guild")
    there = await zed.slash(tales, "write", prompt="In the later guild")
    await answer(emu, here)
    await answer(emu, there)


def identified_shards(emu) -> list:
    """The ``[shard_id, shard_count]`` of every IDENTIFY the bots sent."""
    return [f.data["shard"] for f in emu.gateway_log if f.direction == "from_bot" and f.op == 2]


async def test_two_shard_groups_each_serve_their_guilds_from_their_own_database(
    emu, world, bot_config, tmp_path
):
    later, tales, zed = await later_guild(emu, world)
    count = shards_apart(world.guild.id, later.id)
    mine, theirs = (world.guild.id >> 22) % count, (later.id >> 22) % count
    path = str(tmp_path / "stories-{shard_group}.db")

    def group(shard: int):
        return parse_config(
            {
                "discord": {"shard_count": count, "shard_ids": [shard],
                            "dev_guild_ids": [world.guild.id, later.id]},
                "model": {"name": bot_config.model.name, "device": "cpu",
                          "backend": bot_config.model.backend},
                "remote": {"base_url": bot_config.remote.base_url},
                "ctranslate2": {"folder": str(bot_config.ctranslate2.folder or ""), "threads": 1},
                "database": {"path": path},
                "generation": {"max_new_tokens": 8, "quality_guard": False},
            }
        )  # fmt: skip

    first, second = group(mine), group(theirs)
    async with storybot(emu, first), storybot(emu, second):
        await write_in_both_guilds(emu, world, tales, zed)

    identifies = identified_shards(emu)
    assert sorted(identifies) == sorted([[mine, count], [theirs, count]])
    assert [r["kind"] for r in turns(first, world.channel.id)] == ["opening", "model"]
    assert [r["kind"] for r in turns(second, tales.id)] == ["opening", "model"]
    assert turns(first, tales.id) == [] and turns(second, world.channel.id) == []
    assert first.database.path != second.database.path


async def test_one_process_runs_several_shards(emu, world, bot_config):
    later, tales, zed = await later_guild(emu, world)
    count = shards_apart(world.guild.id, later.id)
    config = configured(
        bot_config, "discord", shard_count=count, dev_guild_ids=(world.guild.id, later.id)
    )
    emu.max_concurrency = 16  # a large bot's: every shard identifies at once
    async with storybot(emu, config) as bot:
        assert type(bot).__name__ == "ShardedStoryBot"
        await write_in_both_guilds(emu, world, tales, zed)

    identifies = identified_shards(emu)
    assert sorted(identifies) == [[n, count] for n in range(count)]
    assert len(turns(config, world.channel.id)) == len(turns(config, tales.id)) == 2
