"""StoryBot: the discord.py client, its start-up and shutdown, and the single error handler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

import discord
from discord import app_commands
from discord.ext import commands

from bot.config import Config
from bot.errors import StoryError

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.story", "bot.cogs.settings")
PUBLIC_DEFERRAL = "storybot.public_deferral"
APOLOGY = "Sorry, something went wrong on my side. The error has been logged; please try again."
RESTARTING = "I'm restarting right now. Please try again in a minute."
# After the drain, parts cut short still have to be saved and shown before the bot goes.
CUT_SHORT_GRACE_S = 5.0


class StoryBot(commands.Bot):
    """The Discord face of storybot. Built by :func:`bot.app.create_bot`."""

    def __init__(self, config: Config, open_services: Callable[[Config], Awaitable] | None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
        )
        self.config = config
        self._open_services = open_services
        self.services = None
        self.draining = False
        self._in_flight: set[asyncio.Task] = set()
        self.tree.on_error = self.on_app_command_error
        self.tree.interaction_check = self._admit_interaction

    @property
    def service(self):
        if self.services is None:
            raise RuntimeError("the bot's services are not open (setup_hook has not run)")
        return self.services.service

    async def setup_hook(self) -> None:
        if self._open_services is not None:
            self.services = await self._open_services(self.config)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        for guild_id in self.config.discord.dev_guild_ids:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to development guild %s", len(synced), guild_id)

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self.services is not None:
                services, self.services = self.services, None
                await services.close()

    async def shutdown(self) -> None:
        """Stop gracefully: refuse new interactions, let parts being written finish within the
        drain limit (then cut them short: what was written is saved and shown), then close the
        connection, the engine and the store, in that order."""
        if self.draining:
            return
        self.draining = True
        waiting = set(self._in_flight)
        log.info(
            "stopping: waiting up to %gs for %d parts", self.config.discord.drain_s, len(waiting)
        )
        if waiting:
            _, waiting = await asyncio.wait(waiting, timeout=self.config.discord.drain_s)
        if waiting and self.services is not None:
            log.info("cutting %d parts short", len(waiting))
            self.services.engine.cut_short()
            await asyncio.wait(waiting, timeout=CUT_SHORT_GRACE_S)
        await self.close()

    @contextlib.contextmanager
    def part_in_flight(self) -> Iterator[None]:
        """Mark the running command as writing a part, which a graceful stop waits for."""
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            yield
        finally:
            self._in_flight.discard(task)

    async def _admit_interaction(self, interaction: discord.Interaction) -> bool:
        if self.draining:
            await send_ephemeral(interaction, RESTARTING)
            return False
        return True

    async def on_ready(self) -> None:
        log.info("connected as %s (%s) to %d servers", self.user, self.user.id, len(self.guilds))

    def is_moderator(self, member: discord.abc.User) -> bool:
        """Manage Server, or one of the host's moderator roles."""
        if not isinstance(member, discord.Member):
            return False
        if member.guild_permissions.manage_guild:
            return True
        wanted = set(self.config.discord.moderator_role_ids)
        return any(role.id in wanted for role in member.roles)

    async def on_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        """Every failure of every command becomes one ephemeral line for the member."""
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(cause, StoryError):
            message = cause.user_message
        elif isinstance(cause, app_commands.MissingPermissions):
            message = "You need the Manage Server permission for that."
        elif isinstance(cause, app_commands.NoPrivateMessage):
            message = "This command only works inside a server."
        elif isinstance(cause, app_commands.CheckFailure):
            message = "You can't use that command here."
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed", command, exc_info=cause)
            message = APOLOGY
        if self.is_closed():  # shutting down: the connection to answer on is gone
            log.info("not answering interaction %s: the bot is closing", interaction.id)
            return
        await send_ephemeral(interaction, message)


async def send_ephemeral(interaction: discord.Interaction, message: str) -> None:
    """Answer with an ephemeral line, replacing a public "thinking…" deferral if there is one."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(message, ephemeral=True)
            return
        if interaction.extras.get(PUBLIC_DEFERRAL):
            # The first follow-up after a public deferral would edit it in public.
            await interaction.delete_original_response()
            interaction.extras[PUBLIC_DEFERRAL] = False
        await interaction.followup.send(message, ephemeral=True)
    except discord.HTTPException:
        log.warning("could not deliver an error message to interaction %s", interaction.id)


async def defer_public(interaction: discord.Interaction) -> None:
    """Answer Discord at once with a public "thinking…" state; the reply edits it later."""
    await interaction.response.defer(thinking=True)
    interaction.extras[PUBLIC_DEFERRAL] = True
