"""Self-tests for tests/discord_emulator, driven by a throwaway discord.py bot (not storybot)."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_emulator import (
    EPHEMERAL,
    DiscordEmulator,
    EmulatorError,
    EmulatorViolations,
    InteractionFailed,
    InvalidInteraction,
    MissingPermissions,
    UnknownCommand,
    running_bot,
)

MANAGE_GUILD = discord.Permissions(manage_guild=True).value

# -- the throwaway bot -----------------------------------------------------------------------


class AgainView(discord.ui.View):
    @discord.ui.button(label="Again", custom_id="again")
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="pong again", view=None)


class StoryModal(discord.ui.Modal, title="Your story"):
    text = discord.ui.TextInput(label="Story", custom_id="story_text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"got: {self.text.value}")


@app_commands.command(description="Write something")
@app_commands.describe(prompt="What about", mode="What kind")
async def write(interaction: discord.Interaction, prompt: str, mode: str = "story") -> None:
    await interaction.response.defer(thinking=True)
    await interaction.followup.send(f"{mode}: {prompt}")


@write.autocomplete("mode")
async def write_mode(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    return [
        app_commands.Choice(name=m, value=m)
        for m in ("poem", "story", "haiku")
        if m.startswith(current)
    ]


@app_commands.command(description="Answer with a button")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong", view=AgainView())


@app_commands.command(description="Moderators only")
@app_commands.default_permissions(manage_guild=True)
async def admin(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("admin ok", ephemeral=True)


settings = app_commands.Group(name="settings", description="Bot settings")


@settings.command(name="set", description="Set a value")
async def settings_set(interaction: discord.Interaction, key: str, value: str) -> None:
    await interaction.response.send_message(f"{key}={value}", ephemeral=True)


advanced = app_commands.Group(name="advanced", description="Advanced settings", parent=settings)


@advanced.command(name="reset", description="Reset everything")
async def settings_advanced_reset(interaction: discord.Interaction, confirm: bool) -> None:
    await interaction.response.send_message(f"reset={confirm}", ephemeral=True)


@app_commands.command(description="Greet someone somewhere")
async def greet(
    interaction: discord.Interaction, who: discord.Member, where: discord.TextChannel
) -> None:
    await interaction.response.send_message(f"hi {who.name} in #{where.name}")


@app_commands.command(description="Waits for the test before answering")
async def slow(interaction: discord.Interaction) -> None:
    await interaction.client.release.wait()
    try:
        await interaction.response.send_message("finally")
    except discord.NotFound as error:
        interaction.client.errors.append(error)


@app_commands.command(description="Too long, then a fallback")
async def long(interaction: discord.Interaction) -> None:
    try:
        await interaction.response.send_message("x" * 2001)
    except discord.HTTPException as error:
        interaction.client.errors.append(error)
        await interaction.response.send_message("too long, sorry")


@app_commands.command(description="Too many embed fields")
async def fields(interaction: discord.Interaction) -> None:
    embed = discord.Embed(title="stats")
    for number in range(26):
        embed.add_field(name=f"f{number}", value="v")
    try:
        await interaction.response.send_message(embed=embed)
    except discord.HTTPException as error:
        interaction.client.errors.append(error)
        await interaction.response.send_message("stats unavailable")


@app_commands.command(description="Uses an unmodelled route")
async def pins(interaction: discord.Interaction) -> None:
    await interaction.response.defer()
    try:
        [message async for message in interaction.channel.pins()]
    except discord.NotFound as error:
        interaction.client.errors.append(error)
    await interaction.followup.send("no pins")


@app_commands.command(description="Open a modal")
async def compose(interaction: discord.Interaction) -> None:
    await interaction.response.send_modal(StoryModal())


@app_commands.command(description="Send a file privately")
async def export(interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True)
    story = discord.File(io.BytesIO(b"once upon a time"), filename="story.txt")
    await interaction.followup.send("here it is", file=story)
    await interaction.followup.send("and a public note")


@app_commands.command(description="Post in the channel")
async def announce(interaction: discord.Interaction, text: str) -> None:
    await interaction.response.send_message("posting", ephemeral=True)
    message = await interaction.channel.send(text)
    await message.edit(content=text + "!")


class SelfTestBot(commands.Bot):
    def __init__(self, guild_id: int, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.guild_id = guild_id
        self.release = asyncio.Event()
        self.errors: list[discord.HTTPException] = []
        for command in (
            write,
            ping,
            admin,
            settings,
            greet,
            slow,
            long,
            fields,
            pins,
            compose,
            export,
            announce,
        ):
            self.tree.add_command(command)

    async def setup_hook(self) -> None:
        guild = discord.Object(self.guild_id)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def emu():
    emulator = DiscordEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()  # fails the test on unconsumed violations


@pytest.fixture
def world(emu):
    guild = emu.add_guild("Story Club")
    mods = guild.add_role("Mods", permissions=MANAGE_GUILD)
    return SimpleNamespace(
        guild=guild,
        channel=guild.add_text_channel("story"),
        mods=mods,
        alice=guild.add_member("alice"),
        mod=guild.add_member("mod", roles=[mods]),
    )


@pytest.fixture
async def bot(emu, world):
    async with running_bot(emu, SelfTestBot(world.guild.id)) as running:
        yield running


async def raw(emu: DiscordEmulator, method: str, path: str, **kwargs) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emu.api_base + path, **kwargs) as reply,
    ):
        return reply.status, await reply.json()


# -- tests -----------------------------------------------------------------------------------


async def test_login_identify_and_command_sync(emu, world, bot):
    routes = [record.route for record in emu.transcript]
    assert routes == [
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        "PUT /applications/{application_id}/guilds/{guild_id}/commands",
    ]
    assert {c.name for c in emu.commands.in_scope(world.guild)} >= {"write", "admin", "settings"}
    assert emu.commands.in_scope() == []
    assert emu.commands.get("admin", world.guild).default_member_permissions == MANAGE_GUILD
    assert "compress=zlib-stream" in emu.gateway.connection_urls[0]
    identify = next(frame for frame in emu.gateway_log if frame.op == 2)
    assert identify.data["intents"] == discord.Intents.default().value
    dispatched = [
        (f.event, f.seq) for f in emu.gateway_log if f.direction == "to_bot" and f.op == 0
    ]
    assert dispatched == [("READY", 1), ("GUILD_CREATE", 2)]
    assert emu.gateway_log[0].op == 10  # HELLO first


async def test_ready_bot_caches_the_guild(world, bot):
    guild = bot.get_guild(world.guild.id)
    assert bot.is_ready() and guild.owner_id == world.guild.owner.id
    assert guild.me.guild_permissions.send_messages
    assert not guild.me.guild_permissions.manage_guild
    assert {c.name for c in guild.text_channels} == {"story"}
    assert guild.get_role(world.mods.id).permissions.manage_guild


async def test_heartbeats_are_acknowledged():
    async with DiscordEmulator(heartbeat_interval=0.02) as emulator:
        guild = emulator.add_guild("Beats")
        async with running_bot(emulator, SelfTestBot(guild.id)):
            await emulator.wait_for(lambda: sum(f.op == 1 for f in emulator.gateway_log) >= 3)
        beats = [f for f in emulator.gateway_log if f.op == 1]
        assert len([f for f in emulator.gateway_log if f.op == 11]) == len(beats)
        assert emulator.gateway_log[0].data == {"heartbeat_interval": 20}


async def test_privileged_intents_must_be_enabled(emu, world):
    with pytest.raises(EmulatorError, match="4014"):
        async with running_bot(emu, SelfTestBot(world.guild.id, intents=discord.Intents.all())):
            pass
    assert "members" in (await emu.expect_violation("gateway_protocol")).message


async def test_slash_defer_then_follow_up(emu, world, bot):
    interaction = await world.alice.slash(world.channel, "write", prompt="a dragon", mode="poem")
    assert (await interaction.response()).type == 5
    message = await interaction.final()
    assert message.content == "poem: a dragon"
    assert not message.loading and not message.ephemeral
    assert interaction.messages == [message] == world.channel.messages
    assert [r.route for r in emu.transcript[-2:]] == [
        "POST /interactions/{interaction_id}/{interaction_token}/callback",
        "POST /webhooks/{application_id}/{interaction_token}",
    ]
    assert emu.transcript[-1].query["wait"] == "1"
    assert emu.transcript[-2].query == {"with_response": "1"}


async def test_button_click_updates_message(world, bot):
    interaction = await world.alice.slash(world.channel, "ping")
    message = await interaction.final()
    assert message.content == "pong" and message.custom_ids == ["again"]
    click = await world.alice.click(message, "again")
    assert (await click.response()).type == 7
    assert message.content == "pong again" and message.components == []
    assert click.messages == [message]
    assert message.revisions[0]["content"] == "pong"


async def test_missing_permission_is_refused_before_dispatch(emu, world, bot):
    dispatched = len([f for f in emu.gateway_log if f.event == "INTERACTION_CREATE"])
    with pytest.raises(MissingPermissions):
        await world.alice.slash(world.channel, "admin")
    assert len([f for f in emu.gateway_log if f.event == "INTERACTION_CREATE"]) == dispatched
    for allowed in (world.mod, world.guild.owner):
        assert (await (await allowed.slash(world.channel, "admin")).final()).ephemeral
    world.guild.allow_command("admin", world.alice)
    message = await (await world.alice.slash(world.channel, "admin")).final()
    assert message.content == "admin ok" and message.flags & EPHEMERAL


async def test_subcommand_options_and_resolved_objects(world, bot):
    message = await (
        await world.mod.slash(world.channel, "settings set", key="temperature", value="0.7")
    ).final()
    assert message.content == "temperature=0.7"
    reset = await world.mod.slash(world.channel, "settings advanced reset", confirm=True)
    assert (await reset.final()).content == "reset=True"
    assert reset.payload["data"]["options"][0]["options"][0]["options"] == [
        {"type": 5, "name": "confirm", "value": True}
    ]
    greeting = await (
        await world.alice.slash(world.channel, "greet", who=world.mod, where=world.channel)
    ).final()
    assert greeting.content == "hi mod in #story"
    with pytest.raises(InvalidInteraction):
        await world.alice.slash(world.channel, "settings")
    with pytest.raises(InvalidInteraction):
        await world.alice.slash(world.channel, "write", prompt=3)
    with pytest.raises(UnknownCommand):
        await world.alice.slash(world.channel, "nope")


async def test_autocomplete_choices(world, bot):
    interaction = await world.alice.autocomplete(
        world.channel, "write", focused="mode", value="po", prompt="x"
    )
    assert await interaction.choices() == [{"name": "poem", "value": "poem"}]


async def test_modal_round_trip(world, bot):
    opened = await world.alice.slash(world.channel, "compose")
    assert (await opened.response()).type == 9
    submitted = await world.alice.submit_modal(opened, story_text="It was a dark night")
    assert (await submitted.final()).content == "got: It was a dark night"


async def test_files_and_ephemeral_follow_ups(world, bot):
    interaction = await world.alice.slash(world.channel, "export")
    first, second = await interaction.wait_for_messages(2)
    assert first is interaction.original and first.ephemeral and first.content == "here it is"
    assert [(f.filename, f.data) for f in first.attachments] == [("story.txt", b"once upon a time")]
    assert not second.ephemeral and second.content == "and a public note"
    assert world.channel.public_messages == [second]
    async with aiohttp.ClientSession() as session, session.get(first.attachments[0].url) as reply:
        assert await reply.read() == b"once upon a time"


async def test_channel_messages(emu, world, bot):
    await world.alice.slash(world.channel, "announce", text="Chapter one")
    await emu.wait_for(lambda: any(m.content == "Chapter one!" for m in world.channel.messages))
    posted = world.channel.public_messages[-1]
    assert posted.interaction_metadata is None and posted.revisions[0]["content"] == "Chapter one"
    assert posted.allowed_mentions == discord.AllowedMentions.none().to_dict()
    assert [r.route for r in emu.transcript[-2:]] == [
        "POST /channels/{channel_id}/messages",
        "PATCH /channels/{channel_id}/messages/{message_id}",
    ]


async def test_late_initial_response_is_a_violation(emu, world, bot):
    interaction = await world.alice.slash(world.channel, "slow")
    emu.clock.advance(3.5)
    bot.release.set()
    violation = await emu.expect_violation("interaction_timeout")
    assert "/slow" in violation.message
    with pytest.raises(InteractionFailed):
        await interaction.response()
    await asyncio.sleep(0.05)
    assert [error.code for error in bot.errors] == [10062]


async def test_second_initial_response_is_a_violation(emu, world, bot):
    interaction = await world.alice.slash(world.channel, "ping")
    await interaction.final()
    status, body = await raw(
        emu,
        "POST",
        f"/interactions/{interaction.id}/{interaction.token}/callback",
        json={"type": 4, "data": {"content": "again"}},
    )
    assert (status, body["code"]) == (400, 40060)
    await emu.expect_violation("already_acknowledged")


async def test_token_expires_after_fifteen_minutes(emu, world, bot):
    interaction = await world.alice.slash(world.channel, "write", prompt="p")
    await interaction.final()
    emu.clock.advance(15 * 60 + 1)
    status, body = await raw(
        emu,
        "PATCH",
        f"/webhooks/{emu.application_id}/{interaction.token}/messages/@original",
        json={"content": "late"},
    )
    assert (status, body["code"]) == (401, 50027)
    await emu.expect_violation("token_expired")


async def test_content_and_embed_limits(emu, world, bot):
    message = await (await world.alice.slash(world.channel, "long")).final()
    assert message.content == "too long, sorry"
    assert "content" in (await emu.expect_violation("content_too_long")).message
    stats = await (await world.alice.slash(world.channel, "fields")).final()
    assert stats.content == "stats unavailable"
    await emu.expect_violation("embed_limits")
    assert [error.status for error in bot.errors] == [400, 400]
    assert bot.errors[0].code == 50035


async def test_reconnect_resumes_and_keeps_answering(emu, world, bot):
    await emu.force_reconnect()
    await emu.drop_connection()
    ops = [(f.direction, f.op, f.event) for f in emu.gateway_log]
    assert ("to_bot", 7, None) in ops
    assert ops.count(("from_bot", 6, None)) == 2
    assert ops.count(("to_bot", 0, "RESUMED")) == 2
    assert ops.count(("from_bot", 2, None)) == 1
    message = await (await world.alice.slash(world.channel, "write", prompt="after")).final()
    assert message.content == "story: after"


async def test_unknown_route_is_a_violation(emu, world, bot):
    message = await (await world.alice.slash(world.channel, "pins")).final()
    assert message.content == "no pins"
    violation = await emu.expect_violation("unknown_route")
    assert "/pins" in violation.message
    assert bot.errors[0].status == 404


async def test_close_raises_on_unconsumed_violations():
    emulator = await DiscordEmulator().start()
    status, _ = await raw(emulator, "GET", "/guilds/1/nothing", headers={"Authorization": "Bot t"})
    assert status == 404
    with pytest.raises(EmulatorViolations, match="unknown_route"):
        await emulator.close()


def test_a_modal_text_input_past_discords_limits_is_refused():
    from tests.discord_emulator.limits import check_modal

    def modal(**field) -> dict:
        text_input = {"type": 4, "custom_id": "text", "label": "Text", "style": 2} | field
        return {"title": "Edit", "custom_id": "m", "components": [
            {"type": 1, "components": [text_input]}
        ]}  # fmt: skip

    assert check_modal(modal(value="x" * 4000, max_length=4000)) == []
    too_long = check_modal(modal(value="x" * 4001))
    assert [p.field for p in too_long] == ["data.components.0.components.0.value"]
    assert check_modal(modal(value="x" * 11, max_length=10))
    assert check_modal(modal(max_length=4001)) and check_modal(modal(label="L" * 46))
