"""StoryBot: the discord.py client, its start-up and shutdown, and the single error handler."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator

import discord
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from bot import paths
from bot.config import Config
from bot.errors import StoryError
from bot.render import interrupted_answer
from bot.store import PendingReply

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.story", "bot.cogs.settings")
PUBLIC_DEFERRAL = "storybot.public_deferral"
PENDING_REPLY = "storybot.pending_reply"
TOKEN_LIFETIME_S = 15 * 60  # how long Discord accepts answers to an interaction
HEARTBEAT_S = 30.0  # how often a running bot refreshes its health file
APOLOGY = "Sorry, something went wrong on my side. The error has been logged; please try again."
RESTARTING = "I'm restarting right now. Please try again in a minute."
# After the drain, parts cut short still have to be saved and shown before the bot goes.
CUT_SHORT_GRACE_S = 5.0


def shard_options(config: Config) -> dict[str, object]:
    """discord.py's sharding options for ``[discord] shard_count`` and ``shard_ids``."""
    d = config.discord
    if not d.shard_count:
        return {}
    if len(d.shard_ids) == 1:
        return {"shard_id": d.shard_ids[0], "shard_count": d.shard_count}
    return {"shard_ids": list(d.shard_ids) or None, "shard_count": d.shard_count}


class StoryBot(commands.Bot):
    """The Discord face of storybot. Built by :func:`bot.app.create_bot`."""

    def __init__(self, config: Config, open_services: Callable[[Config], Awaitable] | None) -> None:
        # The bot never joins voice: no warning on every start that voice libraries are missing.
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=discord.Intents.default(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            **shard_options(config),
        )
        self.config = config
        self._open_services = open_services
        self.services = None
        self.draining = False
        self._in_flight: set[asyncio.Task] = set()
        self._closing = asyncio.Lock()
        self._heartbeat: asyncio.Task | None = None
        self._gateway_up = False  # discord.py stays "ready" while it reconnects; this does not
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
        if self.services is not None:
            await self._answer_interrupted()
            self._heartbeat = asyncio.create_task(self.heartbeat(), name="storybot-heartbeat")

    async def remember(self, interaction: discord.Interaction) -> int:
        """Record an acknowledged interaction until :meth:`settle`: a crash before its answer is
        then told to the member at the next start. Returns the reply's id."""
        reply = PendingReply(
            id=interaction.id,
            application_id=interaction.application_id,
            token=interaction.token,
            expires_at=interaction.created_at.timestamp() + TOKEN_LIFETIME_S,
            channel_id=interaction.channel_id,
            user_id=interaction.user.id,
            user_name=interaction.user.display_name,
        )
        await self.service.open_reply(reply)
        interaction.extras[PENDING_REPLY] = reply.id
        return reply.id

    async def settle(self, interaction: discord.Interaction) -> None:
        """The member has their answer (or their error): forget the pending reply."""
        reply_id = interaction.extras.pop(PENDING_REPLY, None)
        if reply_id is None or self.services is None:
            return
        try:
            await self.service.close_reply(reply_id)
        except StoryError:  # at worst, the next start tells them again what was saved
            log.warning("could not mark interaction %s as answered", interaction.id)

    async def _answer_interrupted(self) -> None:
        """Answer every request a crash left open, while Discord still accepts the answers."""
        replies = await self.service.unanswered(time.time())
        for reply in replies:
            route = Route(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                webhook_id=reply.application_id,
                webhook_token=reply.token,
            )
            payload = {"content": interrupted_answer(reply), "allowed_mentions": {"parse": []}}
            try:
                await self.http.request(route, json=payload)
            except discord.HTTPException as error:
                log.warning("could not answer interrupted interaction %s: %s", reply.id, error)
            await self.service.close_reply(reply.id)
        if replies:
            log.info("answered %d interactions a restart had left open", len(replies))

    async def close(self) -> None:
        """Close the connection, then the services. A second call returns only once the first
        is through, so that nothing (``asyncio.run`` ending, for one) cuts the closing short."""
        async with self._closing:
            beating, self._heartbeat = self._heartbeat, None
            if beating is not None:
                beating.cancel()
            try:
                await super().close()
            finally:
                if beating is not None:  # after the gateway's goodbye, which writes it once more
                    with contextlib.suppress(OSError):
                        (paths.home() / paths.HEALTH_NAME).unlink(missing_ok=True)
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

    async def heartbeat(self) -> None:
        """Keep the health file fresh for ``storybot health`` (Docker's HEALTHCHECK)."""
        while True:
            self.write_health()
            await asyncio.sleep(HEARTBEAT_S)

    def write_health(self) -> None:
        path = paths.home() / paths.HEALTH_NAME
        beat = {
            "time": time.time(),
            "pid": os.getpid(),
            "connected": self._gateway_up and not self.is_closed(),
            "latency_ms": round(self.latency * 1000) if math.isfinite(self.latency) else None,
            "guilds": len(self.guilds),
            "parts_in_flight": len(self._in_flight),
            "draining": self.draining,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            partial.write_text(json.dumps(beat), encoding="utf-8")
            partial.replace(path)  # readers never see half a file
        except OSError as error:
            log.warning("cannot write the health file %s: %s", path, error)

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

    async def on_disconnect(self) -> None:
        self._gateway_up = False
        self.write_health()

    async def on_resumed(self) -> None:
        self._gateway_up = True
        self.write_health()

    async def on_ready(self) -> None:
        self._gateway_up = True
        self.write_health()
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
            command = (
                f"/{interaction.command.qualified_name}"
                if interaction.command
                else f"button {(interaction.data or {}).get('custom_id', '?')}"
            )
            log.error("%s failed", command, exc_info=cause)
            message = APOLOGY
        if self.is_closed():  # shutting down: the next start answers it (see remember)
            log.info("not answering interaction %s: the bot is closing", interaction.id)
            return
        await send_ephemeral(interaction, message)
        await self.settle(interaction)


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


class ShardedStoryBot(StoryBot, commands.AutoShardedBot):
    """StoryBot running several shards in one process (one gateway connection each)."""

    _concurrency: int | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Identify as fast as Discord allows: ``max_concurrency`` shards at once (shard ids with
        different ``shard_id % max_concurrency``), the next bucket 5 s later. (discord.py's own
        hook waits 5 s before every shard: 100 shards would take over 8 minutes to start.)"""
        if self._concurrency is None:
            limits = await self.fetch_session_start_limits()
            self._concurrency = max(1, limits.max_concurrency)
        if not initial and shard_id and shard_id % self._concurrency == 0:
            await asyncio.sleep(5.0)
