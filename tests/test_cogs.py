"""The real discord.py command callbacks of /write, /continue, /story and /settings, without a network.

The bot is built by the composition root and its extensions are loaded by its own ``setup_hook``;
members are real ``discord.Member`` objects in a real ``discord.Guild`` (so the moderator check is
the real one). Only the interaction is a stand-in: it records what the bot answers, in order.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.app import Services, create_bot
from bot.client import APOLOGY
from bot.cogs.story import WRITING, LiveProgress
from bot.config import parse_config
from bot.engine.types import EngineStopping
from bot.errors import NoStory, NotModerator
from bot.render import MACHINE_WRITTEN, MESSAGE_LIMIT, safe
from bot.service import StoryService
from bot.story import MODES

GUILD_ID = 111111111111111111
CHANNEL_ID = 222222222222222222
MANAGER_ROLE = 333333333333333333  # has Manage Server
STORY_MOD_ROLE = 444444444444444444  # named in config.discord.moderator_role_ids
PLAIN_ROLE = 555555555555555555

INTERACTION_IDS = itertools.count(1000)
USER_MENTION = re.compile(r"<@!?([0-9]{15,20})>")
ROLE_MENTION = re.compile(r"<@&([0-9]{15,20})>")
MASS_MENTION = re.compile(r"@(everyone|here)")


def live_mentions(text: str) -> list[str]:
    return USER_MENTION.findall(text) + ROLE_MENTION.findall(text) + MASS_MENTION.findall(text)


def words(text: str) -> str:
    return "".join(text.split())


# -- the stand-in interaction --------------------------------------------------------------------


class FakeResponse:
    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction
        self._done = False

    def is_done(self) -> bool:
        return self._done

    def _respond(self) -> None:
        if self._done:  # Discord accepts one response per interaction
            raise discord.InteractionResponded(self._interaction)
        self._done = True

    async def defer(self, *, ephemeral: bool = False, thinking: bool = False) -> None:
        self._respond()
        self._interaction.sent.append(("defer", {"ephemeral": ephemeral, "thinking": thinking}))

    async def send_message(self, content: str | None = None, *, ephemeral: bool = False, **kw):
        self._respond()
        sent = {"content": content, "ephemeral": ephemeral}
        if kw.get("embed") is not None:
            sent["embed"] = kw["embed"].to_dict()
        self._interaction.sent.append(("respond", sent))


class FakeFollowup:
    def __init__(self, interaction: FakeInteraction) -> None:
        self._interaction = interaction

    async def send(self, content: str | None = None, *, ephemeral: bool = False, **kw) -> None:
        assert self._interaction.response.is_done(), "a follow-up needs a response first"
        self._interaction.sent.append(("followup", {"content": content, "ephemeral": ephemeral}))


class FakeInteraction:
    """What the cogs and the error handler use of a ``discord.Interaction``, recorded in order."""

    def __init__(self, client, user, command=None, guild_id=GUILD_ID, channel_id=CHANNEL_ID):
        self.id = next(INTERACTION_IDS)
        self.application_id = 777
        self.token = f"token-{self.id}"
        self.created_at = datetime.now(UTC)
        self.client = client
        self.user = user
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.command = command
        self.extras: dict[str, Any] = {}
        self.sent: list[tuple[str, dict]] = []
        self.response = FakeResponse(self)
        self.followup = FakeFollowup(self)

    async def edit_original_response(self, *, content: str | None = None, **kw) -> None:
        assert self.response.is_done(), "there is no original response to edit"
        self.sent.append(("edit", {"content": content}))

    async def delete_original_response(self) -> None:
        assert self.response.is_done(), "there is no original response to delete"
        self.sent.append(("delete", {}))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]

    def contents(self) -> list[str]:
        return [m["content"] for kind, m in self.sent if m.get("content") is not None]

    def answer(self) -> list[str]:
        """A public reply: the deferral, edited (live previews, then the first part), follow-ups."""
        kinds = self.kinds()
        edits = kinds.count("edit")
        assert edits >= 1
        assert kinds == ["defer"] + ["edit"] * edits + ["followup"] * (len(kinds) - 1 - edits)
        assert self.sent[0][1] == {"ephemeral": False, "thinking": True}
        assert all(not m["ephemeral"] for kind, m in self.sent if kind == "followup")
        for content in self.contents():  # previews included: every message is sendable and safe
            assert 0 < len(content) <= MESSAGE_LIMIT
            assert live_mentions(content) == []
        return self.contents()[edits - 1 :]  # the last edit is the answer's first part


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def config(config):
    return dataclasses.replace(
        config,
        discord=dataclasses.replace(config.discord, moderator_role_ids=(STORY_MOD_ROLE,)),
        generation=dataclasses.replace(config.generation, max_new_tokens=8),
        caps=dataclasses.replace(config.caps, max_prompt_tokens=900),
    )


@pytest.fixture
async def bot(config, store, engine):
    """The real StoryBot with its real extensions, over the test's store and the tiny engine."""
    bot = create_bot(config, serve=False)
    await bot.setup_hook()  # loads the extensions; no development guilds, so no network
    bot.services = Services(store, engine, StoryService(config, store, engine))
    yield bot
    await bot.close()


def role(role_id: int, name: str, permissions: int = 0) -> dict:
    return {
        "id": str(role_id), "name": name, "permissions": str(permissions), "position": 1,
        "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
    }  # fmt: skip


@pytest.fixture
def guild(bot) -> discord.Guild:
    manage_guild = discord.Permissions(manage_guild=True).value
    return discord.Guild(
        data={
            "id": str(GUILD_ID),
            "name": "Story Club",
            "owner_id": "1",
            "roles": [
                role(GUILD_ID, "@everyone"),
                role(MANAGER_ROLE, "managers", manage_guild),
                role(STORY_MOD_ROLE, "story mods"),
                role(PLAIN_ROLE, "readers"),
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
        },
        state=bot._connection,
    )


def make_member(bot, guild, user_id: int, name: str, roles: list[int]) -> discord.Member:
    return discord.Member(
        data={
            "user": {"id": str(user_id), "username": name.lower(), "discriminator": "0",
                     "avatar": None, "global_name": name},
            "roles": [str(r) for r in roles], "joined_at": None, "deaf": False, "mute": False,
            "flags": 0,
        },
        guild=guild,
        state=bot._connection,
    )  # fmt: skip


@pytest.fixture
def reader(bot, guild) -> discord.Member:
    return make_member(bot, guild, 700000000000000001, "Reader **Bold** @everyone", [PLAIN_ROLE])


@pytest.fixture
def manager(bot, guild) -> discord.Member:
    return make_member(bot, guild, 700000000000000002, "Manager", [MANAGER_ROLE])


@pytest.fixture
def story_mod(bot, guild) -> discord.Member:
    return make_member(bot, guild, 700000000000000003, "Story Mod", [STORY_MOD_ROLE])


def command(bot, path: str) -> app_commands.Command:
    name, _, sub = path.partition(" ")
    found = bot.tree.get_command(name)
    return found.get_command(sub) if sub else found


async def invoke(bot, path: str, user, **options) -> FakeInteraction:
    """Run a command's real callback as discord.py would, errors through the tree's handler."""
    cmd = command(bot, path)
    interaction = FakeInteraction(bot, user, command=cmd)
    try:
        await cmd.callback(cmd.binding, interaction, **options)
    except Exception as error:  # what Command._do_call does before the tree's on_error
        await bot.tree.on_error(interaction, app_commands.CommandInvokeError(cmd, error))
    return interaction


async def story_turns(bot):
    story = await bot.services.store.active_story(CHANNEL_ID)
    return await bot.services.store.turns(story.id)


# -- how the commands look to Discord ------------------------------------------------------------


def test_commands_are_registered_as_discord_will_see_them(bot):
    names = {c.name for c in bot.tree.get_commands()}
    assert names == {"write", "continue", "story", "settings", "stats"}

    write = command(bot, "write").to_dict(bot.tree)
    assert write["description"]
    prompt, mode = write["options"]
    assert (prompt["name"], prompt["required"], prompt["min_length"], prompt["max_length"]) == (
        "prompt", True, 1, 1500,
    )  # fmt: skip
    assert {c["value"] for c in mode["choices"]} == set(MODES)
    for name in ("write", "continue", "story"):
        assert command(bot, name).guild_only
    story = command(bot, "story").to_dict(bot.tree)
    assert {o["name"] for o in story["options"]} == {
        "show",
        "explain",
        "edit",
        "memory",
        "note",
        "list",
        "resume",
        "end",
        "export",
    }
    [part] = command(bot, "story explain").to_dict(bot.tree)["options"]
    assert (part["name"], part["required"], part["min_value"]) == ("part", False, 1)

    settings = bot.tree.get_command("settings")
    assert isinstance(settings, app_commands.Group)
    assert settings.guild_only
    assert settings.default_permissions == discord.Permissions(manage_guild=True)
    payload = settings.to_dict(bot.tree)
    assert payload["default_member_permissions"] == discord.Permissions(manage_guild=True).value
    assert payload["dm_permission"] is False
    assert {o["name"] for o in payload["options"]} == {"show", "set", "reset", "banned", "history"}
    banned = next(o for o in payload["options"] if o["name"] == "banned")
    assert {o["name"] for o in banned["options"]} == {"add", "remove", "list"}
    set_ = next(o for o in payload["options"] if o["name"] == "set")
    assert {o["name"]: o.get("autocomplete", False) for o in set_["options"]} == {
        "key": True, "value": True, "scope": False, "channel": False,
    }  # fmt: skip

    stats = command(bot, "stats")
    assert stats.guild_only
    assert stats.default_permissions == discord.Permissions(manage_guild=True)


def test_moderators_are_managers_or_holders_of_a_configured_role(bot, reader, manager, story_mod):
    assert bot.is_moderator(manager)
    assert bot.is_moderator(story_mod)
    assert not bot.is_moderator(reader)
    stranger = discord.User(
        state=bot._connection,
        data={"id": "1", "username": "dm", "discriminator": "0", "avatar": None},
    )
    assert not bot.is_moderator(stranger)  # no server, no moderation


# -- /write and /continue ------------------------------------------------------------------------


async def test_write_defers_first_then_answers_in_safe_messages_of_at_most_2000(bot, reader):
    prompt = f"@everyone <@&{STORY_MOD_ROLE}> look! " + ("**a** __b__ ~~c~~ " * 100)[:1400]

    interaction = await invoke(bot, "write", reader, prompt=prompt, mode=None)

    messages = interaction.answer()  # deferred first, then edited and followed up
    assert len(messages) >= 2  # escaping made it longer than one message
    shown = "\n".join(messages)
    assert "@\u200beveryone" in shown
    assert shown.count("\\*\\*a\\*\\*") == prompt.count("**a**")  # the prompt's bold is not bold

    opening, model = await story_turns(bot)
    assert opening.text == prompt.strip() and opening.author_id == reader.id
    assert messages[0].startswith(f"📖 **A new story** begun by {safe(reader.display_name)}")
    assert words(safe(opening.text)) in words(shown)  # every character of the story arrives
    assert words(safe(model.text)) in words(shown)


async def test_write_says_when_it_archived_the_previous_story(bot, reader):
    await invoke(bot, "write", reader, prompt="The first @here tale", mode=None)

    interaction = await invoke(bot, "write", reader, prompt="The second tale", mode="poem")

    first = interaction.answer()[0]
    assert first.startswith("📖 **A new poem**")
    assert "is archived" in first and "The first @\u200bhere tale" in first


async def test_continue_adds_the_members_line_under_their_name(bot, reader, manager):
    await invoke(bot, "write", reader, prompt="The ship left port.", mode=None)
    line = f"<@{manager.id}> and @here climbed the **mast**."

    interaction = await invoke(bot, "continue", manager, text=line)

    shown = "\n".join(interaction.answer())
    assert shown.startswith(f"**{safe(manager.display_name)}:** {safe(line)}")
    *_, member_turn, model_turn = await story_turns(bot)
    assert (member_turn.kind, member_turn.author_id, member_turn.text) == (
        "member",
        manager.id,
        line,
    )
    assert model_turn.kind == "model" and words(safe(model_turn.text)) in words(shown)


async def test_continue_without_text_shows_only_the_models_part(bot, reader):
    await invoke(bot, "write", reader, prompt="The ship left port.", mode=None)

    interaction = await invoke(bot, "continue", reader, text=None)

    *_, model_turn = await story_turns(bot)
    assert model_turn.kind == "model"
    answer = words("".join(interaction.answer()))
    assert answer == words(safe(model_turn.text) + MACHINE_WRITTEN)  # machine-written, and says so


async def test_a_refusal_after_the_public_deferral_becomes_one_private_line(bot, reader):
    interaction = await invoke(bot, "continue", reader, text="Is anyone here?")

    assert interaction.kinds() == ["defer", "delete", "followup"]
    _, message = interaction.sent[-1]
    assert message == {"content": NoStory.user_message, "ephemeral": True}


async def test_a_too_long_prompt_is_refused_privately_with_its_token_count(bot, reader):
    prompt = "猫" * 400  # 400 characters, 1200 tokens: over the 900-token cap

    interaction = await invoke(bot, "write", reader, prompt=prompt, mode=None)

    assert interaction.kinds() == ["defer", "delete", "followup"]
    message = interaction.sent[-1][1]
    assert message["ephemeral"]
    assert message["content"].startswith("Your prompt is 1200 tokens long; the limit is 900")


async def test_an_unexpected_error_is_logged_and_answered_with_an_apology(bot, reader, caplog):
    async def broken(*args, **kwargs):
        raise RuntimeError("database on fire")

    bot.services.service.show = broken  # fault injection: something the bot did not expect

    with caplog.at_level(logging.ERROR, logger="bot.client"):
        interaction = await invoke(bot, "story show", reader)

    assert interaction.sent == [("respond", {"content": APOLOGY, "ephemeral": True})]
    assert "database on fire" not in APOLOGY
    assert "/story show failed" in caplog.text and "database on fire" in caplog.text


# -- /story --------------------------------------------------------------------------------------


async def test_story_is_shown_privately_and_safely(bot, reader):
    await invoke(
        bot, "write", reader, prompt="Once @everyone met <@&444444444444444444>.", mode=None
    )
    await invoke(bot, "continue", reader, text="**Loud** noises.")

    interaction = await invoke(bot, "story show", reader)

    assert interaction.kinds()[0] == "respond"
    assert all(m["ephemeral"] for _, m in interaction.sent)
    shown = "\n".join(interaction.contents())
    turns = await story_turns(bot)
    # The only mentions are the authors' names over their own words (the client pings nobody).
    assert live_mentions(shown) == [str(reader.id)] * 2
    for turn in turns:
        label = "🤖 " if turn.kind == "model" else f"**<@{reader.id}>:** "
        assert words(label + safe(turn.text)) in words(shown)


# -- /settings -----------------------------------------------------------------------------------


async def test_a_manager_changes_a_setting_and_it_is_stored(bot, manager):
    interaction = await invoke(
        bot, "settings set", manager, key="temperature", value="0.5", scope="server"
    )

    assert interaction.sent == [
        (
            "respond",
            {"content": "`temperature` for this server: unset → **0.5**.", "ephemeral": True},
        )
    ]
    assert await bot.services.store.settings(GUILD_ID, CHANNEL_ID) == ({"temperature": 0.5}, {})
    [entry] = await bot.services.store.audit(GUILD_ID)
    assert (entry.key, entry.new_value, entry.changed_by) == ("temperature", 0.5, manager.id)


async def test_a_configured_moderator_role_may_set_a_channel_override(bot, story_mod):
    interaction = await invoke(
        bot, "settings set", story_mod, key="max_new_tokens", value="4", scope="channel"
    )

    [(kind, message)] = interaction.sent
    assert kind == "respond" and message["ephemeral"]
    assert f"<#{CHANNEL_ID}>" in message["content"] and "**4**" in message["content"]
    assert await bot.services.store.settings(GUILD_ID, CHANNEL_ID) == ({}, {"max_new_tokens": 4})


async def test_a_member_without_rights_is_refused_even_if_discord_let_the_command_through(
    bot, reader
):
    cmd = command(bot, "settings set")
    interaction = FakeInteraction(bot, reader, command=cmd)

    with pytest.raises(NotModerator) as caught:
        await cmd.callback(cmd.binding, interaction, key="temperature", value="1.4", scope="server")
    await bot.on_app_command_error(interaction, app_commands.CommandInvokeError(cmd, caught.value))

    assert interaction.sent == [
        ("respond", {"content": NotModerator.user_message, "ephemeral": True})
    ]
    assert await bot.services.store.settings(GUILD_ID, CHANNEL_ID) == ({}, {})
    assert await bot.services.store.audit(GUILD_ID) == []


async def test_an_out_of_range_value_is_explained_privately(bot, manager):
    interaction = await invoke(
        bot, "settings set", manager, key="temperature", value="9", scope="server"
    )

    [(kind, message)] = interaction.sent
    assert kind == "respond" and message["ephemeral"]
    assert "`temperature` takes 0, or a number from 0.05 to 1.5" in message["content"]
    assert await bot.services.store.settings(GUILD_ID, CHANNEL_ID) == ({}, {})


async def test_settings_show_and_reset(bot, manager):
    await invoke(bot, "settings set", manager, key="temperature", value="0.25", scope="server")

    shown = await invoke(bot, "settings show", manager, mode=None)
    reset = await invoke(bot, "settings reset", manager, key="temperature", scope="server")

    [(kind, message)] = shown.sent
    assert kind == "respond" and message["ephemeral"]
    fields = {f["name"]: f["value"] for f in message["embed"]["fields"]}
    assert list(fields) == ["Writing", "Pace", "Access", "Banned words"]
    assert "`temperature` **0.25** · server" in fields["Writing"]
    assert "`top_p` **0.95** · host default" in fields["Writing"]
    assert "`user_rate` **5** · host default" in fields["Pace"]
    assert "`write_roles` **everyone** · host default" in fields["Access"]
    assert reset.sent == [
        (
            "respond",
            {
                "content": "`temperature` reset for this server; it is now **0.9**.",
                "ephemeral": True,
            },
        )
    ]
    assert await bot.services.store.settings(GUILD_ID, CHANNEL_ID) == ({}, {})


async def test_a_changed_setting_is_used_by_the_next_write(bot, manager, reader):
    await invoke(bot, "settings set", manager, key="temperature", value="0.3", scope="server")

    await invoke(bot, "write", reader, prompt="A calm sea", mode=None)

    _, model = await story_turns(bot)
    assert model.settings["temperature"] == 0.3


# -- the live preview ----------------------------------------------------------------------------


async def test_the_live_preview_stays_within_the_limit_and_mention_safe(bot, reader):
    interaction = FakeInteraction(bot, reader)
    await interaction.response.defer(thinking=True)
    progress = LiveProgress(interaction, prefix="@everyone " * 300, interval=0)

    progress("<@123456789012345678> ")
    progress("**bold** ")  # an edit is already on its way: this piece rides along with it
    await asyncio.sleep(0)  # the edit lands
    progress("@here " * 50)
    await progress.stop()
    progress("late text")  # after stop, nothing more is shown

    edits = [m["content"] for kind, m in interaction.sent if kind == "edit"]
    assert len(edits) == 2
    for content in edits:
        assert len(content) <= MESSAGE_LIMIT
        assert content.endswith(WRITING)
        assert live_mentions(content) == []
    assert "\\*\\*bold\\*\\*" in edits[0] and "@\u200bhere" in edits[1]
    assert "late text" not in edits[-1]


# -- the composition root ------------------------------------------------------------------------


async def test_the_real_setup_hook_opens_services_and_close_closes_them(config, reader):
    bot = create_bot(config)
    story_command = None
    try:
        await bot.setup_hook()
        assert bot.services is not None
        assert {c.name for c in bot.tree.get_commands()} == {
            "write",
            "continue",
            "story",
            "settings",
            "stats",
        }
        store = bot.services.store
        interaction = FakeInteraction(bot, reader)
        cmd = command(bot, "write")
        await cmd.callback(cmd.binding, interaction, prompt="Through the real services", mode=None)
        [shown] = interaction.answer()
        assert "Through the real services" in shown
        story_command = command(bot, "story show")
    finally:
        await bot.close()

    assert bot.services is None
    with pytest.raises(Exception):  # noqa: B017 - the database connection is closed
        await store.active_story(CHANNEL_ID)

    # A failure that surfaces while shutting down is not answered on a dead connection.
    late = FakeInteraction(bot, reader, command=story_command)
    await bot.on_app_command_error(late, app_commands.CommandInvokeError(story_command, NoStory()))
    assert late.sent == []


class RefusingDiscord(FakeInteraction):
    """Discord refuses the edit that would show the finished part (previews go through)."""

    async def edit_original_response(self, *, content: str | None = None, **kw) -> None:
        if content is not None and not content.endswith(WRITING):
            response = SimpleNamespace(status=400, reason="Bad Request")
            raise discord.HTTPException(response, "Invalid Form Body")
        await super().edit_original_response(content=content, **kw)


async def test_a_stored_part_discord_refuses_to_show_is_not_called_a_failure(bot, reader):
    cmd = command(bot, "write")
    interaction = RefusingDiscord(bot, reader, command=cmd)
    try:
        await cmd.callback(cmd.binding, interaction, prompt="A calm sea", mode=None)
    except Exception as error:
        await bot.tree.on_error(interaction, app_commands.CommandInvokeError(cmd, error))

    [said] = [m["content"] for kind, m in interaction.sent if m.get("ephemeral")]
    assert "saved" in said and "/story" in said and "no need to write it again" in said
    assert [t.kind for t in await story_turns(bot)] == ["opening", "model"]


# -- replies a crash could leave open --------------------------------------------------------------


async def test_a_reply_is_remembered_while_the_part_is_written_and_forgotten_once_answered(
    bot, reader
):
    seen = []
    real_write = bot.services.service.write

    async def write_and_look(actor, *args, **kwargs):
        seen.extend(await bot.services.store.pending_replies())
        return await real_write(actor, *args, **kwargs)

    bot.services.service.write = write_and_look
    interaction = await invoke(bot, "write", reader, prompt="A quiet town")

    interaction.answer()
    [remembered] = seen
    assert (remembered.id, remembered.token, remembered.channel_id) == (
        interaction.id, interaction.token, CHANNEL_ID,
    )  # fmt: skip
    assert remembered.expires_at == pytest.approx(interaction.created_at.timestamp() + 900)
    assert remembered.user_name == reader.display_name
    assert await bot.services.store.pending_replies() == []


async def test_a_reply_is_forgotten_once_its_error_is_delivered(bot, reader):
    interaction = await invoke(bot, "continue", reader, text="No story yet")

    assert interaction.kinds() == ["defer", "delete", "followup"]
    assert await bot.services.store.pending_replies() == []


async def test_a_reply_the_closing_bot_cannot_answer_is_kept_for_the_next_start(
    bot, reader, monkeypatch
):
    await invoke(bot, "write", reader, prompt="A quiet town")

    async def engine_closed(*args, **kwargs):
        raise EngineStopping()

    monkeypatch.setattr(bot.services.service, "_generate", engine_closed)
    monkeypatch.setattr(bot, "is_closed", lambda: True)
    interaction = await invoke(bot, "continue", reader, text="Saved, then the engine stopped")

    assert interaction.kinds() == ["defer"]  # nobody left to answer on
    [kept] = await bot.services.store.pending_replies()
    assert kept.id == interaction.id
    assert [(t.kind, t.text) for t in kept.saved] == [("member", "Saved, then the engine stopped")]


async def test_a_second_close_returns_only_once_the_services_are_closed(bot, monkeypatch):
    services = bot.services
    real_close = services.close
    closed = asyncio.Event()

    async def slow_close():
        await asyncio.sleep(0.2)  # the engine finishing its step, the store its last write
        await real_close()
        closed.set()

    monkeypatch.setattr(services, "close", slow_close)
    first = asyncio.ensure_future(bot.close())  # as a graceful stop does
    await asyncio.sleep(0.01)
    await bot.close()  # as leaving `async with bot` does, after which asyncio.run ends

    assert closed.is_set()
    await first


class ShownPart:
    """A message showing a part: records its buttons being taken off."""

    def __init__(self, message_id: int) -> None:
        self.id, self.edits = message_id, []

    async def edit(self, **changes) -> None:
        self.edits.append(changes)


async def test_only_the_newest_part_keeps_buttons_even_when_answers_arrive_out_of_order(bot):
    cog = bot.get_cog("StoryCog")
    first, third, second = ShownPart(1), ShownPart(3), ShownPart(2)
    await cog._move_buttons(CHANNEL_ID, (7, 1), first)
    await cog._move_buttons(CHANNEL_ID, (7, 3), third)  # the newer part is shown first
    await cog._move_buttons(CHANNEL_ID, (7, 2), second)  # then the older one

    assert first.edits == [{"view": None}] and second.edits == [{"view": None}]
    assert third.edits == []  # the newest part keeps its buttons
    another_story = ShownPart(4)
    await cog._move_buttons(CHANNEL_ID, (8, 1), another_story)  # a /write: the new story's part
    assert third.edits == [{"view": None}] and another_story.edits == []


@pytest.mark.parametrize(
    ("discord", "kind", "shards"),
    [
        ({}, "StoryBot", (None, None)),
        ({"shard_count": 4, "shard_ids": [2]}, "StoryBot", (4, 2)),
        ({"shard_count": 4, "shard_ids": [0, 1]}, "ShardedStoryBot", (4, [0, 1])),
        ({"shard_count": 4}, "ShardedStoryBot", (4, None)),
    ],
)
async def test_each_process_runs_the_shards_its_config_names(discord, kind, shards):
    bot = create_bot(parse_config({"discord": discord}), serve=False)

    assert type(bot).__name__ == kind
    one = bot.shard_id if kind == "StoryBot" else bot.shard_ids
    assert (bot.shard_count, one) == shards
    assert bot.allowed_mentions.everyone is False  # one StoryBot, sharded or not
