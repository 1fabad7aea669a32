"""The real StoryBot (from ``create_bot``) over the local Discord emulator, on the tiny GPT-2."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from dataclasses import dataclass

import discord
import pytest

from bot.app import create_bot
from bot.cogs.story import WAITING, WRITING
from bot.config import (
    Config,
    CTranslate2Config,
    DatabaseConfig,
    DiscordConfig,
    GenerationConfig,
    ModelConfig,
    RemoteConfig,
)
from tests.discord_emulator import (
    DiscordEmulator,
    Guild,
    Interaction,
    Member,
    Message,
    TextChannel,
    running_bot,
)

MANAGE_GUILD = discord.Permissions(manage_guild=True).value


@dataclass
class World:
    """Two servers: the story club (two channels, members, a moderator) and a second one."""

    guild: Guild
    channel: TextChannel
    other_channel: TextChannel
    alice: Member
    bob: Member
    members: list[Member]
    mod: Member
    second_guild: Guild
    second_channel: TextChannel
    second_member: Member


@pytest.fixture
async def emu():
    emulator = await DiscordEmulator().start()
    yield emulator
    await emulator.close()  # fails the test if the bot broke a Discord rule


@pytest.fixture
def world(emu) -> World:
    guild = emu.add_guild("Story Club")
    mods = guild.add_role("Mods", permissions=MANAGE_GUILD)
    members = [guild.add_member(name) for name in ("alice", "bob", "carol", "dave", "erin")]
    second = emu.add_guild("Elsewhere")
    return World(
        guild=guild,
        channel=guild.add_text_channel("story"),
        other_channel=guild.add_text_channel("poetry"),
        alice=members[0],
        bob=members[1],
        members=members,
        mod=guild.add_member("moderator", roles=[mods]),
        second_guild=second,
        second_channel=second.add_text_channel("tales"),
        second_member=second.add_member("zoe"),
    )


@pytest.fixture(params=["local", "openai", "ctranslate2"])
def backend(request) -> str:
    """Every scenario runs on every engine: the model in the bot's process, a remote
    OpenAI-compatible server (`transformers serve` with the same tiny model), and the same model
    converted for CTranslate2 (int8). A scenario that drives the local engine's own parts says so
    with ``@pytest.mark.local_engine``."""
    if request.param != "local" and request.node.get_closest_marker("local_engine"):
        pytest.skip("drives the local engine's sampler or batch directly")
    return request.param


@pytest.fixture
def bot_config(request, tmp_path, tiny_model_dir, world, backend) -> Config:
    """Commands synced to both test servers at start-up, the tiny model, a fresh database."""
    model = ModelConfig(name=str(tiny_model_dir), device="cpu", batch_wait_ms=5, backend=backend)
    remote = RemoteConfig()
    if backend == "openai":
        remote = RemoteConfig(base_url=request.getfixturevalue("served"))
    ct2 = CTranslate2Config()
    if backend == "ctranslate2":
        ct2 = CTranslate2Config(folder=request.getfixturevalue("tiny_ct2_dir"), threads=1)
    return Config(
        discord=DiscordConfig(dev_guild_ids=(world.guild.id, world.second_guild.id)),
        model=model,
        remote=remote,
        ctranslate2=ct2,
        database=DatabaseConfig(path=tmp_path / "storybot.db"),
        # The guard would rewrite every part of random weights (tests/test_quality.py has it).
        generation=GenerationConfig(max_new_tokens=40, user_rate=30, quality_guard=False),
    )


def configured(config: Config, section: str, **changes) -> Config:
    return dataclasses.replace(
        config, **{section: dataclasses.replace(getattr(config, section), **changes)}
    )


@contextlib.asynccontextmanager
async def storybot(emu: DiscordEmulator, config: Config):
    """The unmodified bot, logged in and ready, closed at the end."""
    async with running_bot(emu, create_bot(config)) as bot:
        yield bot


def turns(config: Config, channel_id: int) -> list[sqlite3.Row]:
    """The active story's visible turns in the channel, read straight from the database file."""
    with contextlib.closing(sqlite3.connect(config.database.path)) as db:
        db.row_factory = sqlite3.Row
        return db.execute(
            "SELECT turns.* FROM turns JOIN stories ON stories.id = turns.story_id"
            " WHERE stories.channel_id = ? AND stories.active = 1 AND turns.deleted = 0"
            " ORDER BY turns.position",
            (channel_id,),
        ).fetchall()


async def answer(emu: DiscordEmulator, interaction: Interaction, timeout: float = 30) -> Message:
    """The bot's finished answer: past "thinking…", the "⏳ … ahead of yours" line and the live
    "✍️" previews."""

    def finished() -> bool:
        shown = [m for m in interaction.messages if not m.deleted and not m.loading]
        return bool(shown) and not (
            shown[0].content.endswith(WRITING) or shown[0].content.startswith(WAITING)
        )

    await interaction.wait_done(timeout)
    await emu.wait_for(finished, timeout)
    return [m for m in interaction.messages if not m.deleted][-1]


def bot_requests(emu: DiscordEmulator, interaction_token: str) -> list:
    """What the bot sent about one interaction, in order."""
    return [r for r in emu.transcript if interaction_token in r.path]
