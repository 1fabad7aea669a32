"""The emulator itself: one aiohttp server for REST and the gateway, plus the test API."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import discord
from aiohttp import web

from .clock import Clock, Snowflakes
from .errors import BotNotConnected, EmulatorError, EmulatorTimeout, EmulatorViolations, Violation
from .gateway import Connection, Gateway, GatewayFrame
from .interactions import Interactions
from .models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    CommandStore,
    Guild,
    Message,
    StoredFile,
    TextChannel,
    User,
)
from .rest import API_PREFIX, RecordedRequest, Rest
from .waiting import Signal


class DiscordEmulator:
    """A local Discord (gateway v10 + REST v10) for one bot.

    ``ack_window`` and ``token_lifetime`` are the Discord deadlines (3 s,
    15 min) measured on ``clock``; ``token`` is the only bot token accepted
    (``None``: any); ``privileged_intents`` are the privileged intents enabled
    "in the developer portal"; ``bot_permissions`` go to the bot's managed role
    in every guild.
    """

    def __init__(
        self,
        *,
        ack_window: float = 3.0,
        token_lifetime: float = 15 * 60.0,
        clock: Clock | None = None,
        bot_name: str = "TestBot",
        token: str | None = None,
        heartbeat_interval: float = 41.25,
        privileged_intents: discord.Intents | int = 0,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> None:
        self.ack_window = ack_window
        self.token_lifetime = token_lifetime
        self.clock = clock or Clock()
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.privileged_intents = (
            privileged_intents.value
            if isinstance(privileged_intents, discord.Intents)
            else privileged_intents
        )
        self.bot_permissions = bot_permissions
        # How many shards may IDENTIFY at once (GET /gateway/bot's session_start_limit): 1 for
        # most bots, 16 and more for large ones.
        self.max_concurrency = 1
        self.snowflakes = Snowflakes(self.clock)
        self.signal = Signal()
        self.application_id = self.snowflakes.next()
        self.bot_user = User(self.application_id, bot_name, bot=True)
        self.application_owner = User(self.snowflakes.next(), "app-owner")
        self.guilds: dict[int, Guild] = {}
        self.transcript: list[RecordedRequest] = []
        """Every REST request the bot made, in arrival order."""
        self.violations: list[Violation] = []
        """Everything the bot did that Discord would reject, not yet consumed by the test."""
        self.commands = CommandStore(self)
        self.interactions = Interactions(self)
        self.gateway = Gateway(self)
        self.rest = Rest(self)
        self._files: dict[int, StoredFile] = {}
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> DiscordEmulator:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/attachments/{file_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self, *, check: bool = True) -> None:
        """Close every socket, then (``check``) raise :class:`EmulatorViolations` if any remain.

        Close the bot first (:func:`running_bot` does), or it will try to reconnect.
        """
        if not self._closed:
            self._closed = True
            for code, text in self.interactions.unanswered_report():
                self.record_violation(code, text)
            await self.gateway.close()
            if self._runner is not None:
                await self._runner.cleanup()
        if check:
            self.assert_no_violations()

    async def __aenter__(self) -> DiscordEmulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(check=exc_info[0] is None)

    # -- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise EmulatorError("the emulator is not started (await emu.start())")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be: ``http://127.0.0.1:PORT/api/v10``."""
        return self.url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/gateway"

    # -- the world -------------------------------------------------------------------------

    def add_guild(
        self,
        name: str,
        *,
        owner_name: str = "owner",
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
    ) -> Guild:
        """A guild the bot is in, owned by a new member ``owner_name`` (``guild.owner``)."""
        guild = Guild(
            self,
            self.snowflakes.next(),
            name,
            owner_name=owner_name,
            everyone_permissions=everyone_permissions,
            bot_user=self.bot_user,
            bot_permissions=self.bot_permissions,
        )
        self.guilds[guild.id] = guild
        self.gateway.dispatch(
            "GUILD_CREATE", guild.to_payload(), intent=discord.Intents.guilds.flag
        )
        return guild

    def channel(self, channel_id: int) -> TextChannel | None:
        return next(
            (g.channels[channel_id] for g in self.guilds.values() if channel_id in g.channels), None
        )

    @property
    def application_flags(self) -> int:
        enabled = discord.Intents._from_value(self.privileged_intents)
        return discord.ApplicationFlags(
            gateway_presence_limited=enabled.presences,
            gateway_guild_members_limited=enabled.members,
            gateway_message_content_limited=enabled.message_content,
            app_commands_badge=True,
        ).value

    def application_payload(self) -> dict[str, object]:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.name,
            "description": "",
            "icon": None,
            "summary": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.application_owner.to_payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.application_flags,
            "bot": self.bot_user.to_payload(),
            "rpc_origins": [],
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(self.guilds),
        }

    def token_ok(self, token: object) -> bool:
        return (
            isinstance(token, str) and bool(token) and (self.token is None or token == self.token)
        )

    # -- messages and files ----------------------------------------------------------------

    def store_message(
        self,
        channel: TextChannel,
        payload: dict[str, object],
        files: list[StoredFile],
        *,
        type: int = 0,
        interaction_metadata: dict[str, object] | None = None,
    ) -> Message:
        """A new message by the bot (an interaction's when ``interaction_metadata`` is given)."""
        message = Message(
            self.snowflakes.next(),
            channel,
            self.bot_user,
            self.clock.time(),
            type=type,
            application_id=self.application_id if interaction_metadata is not None else None,
            interaction_metadata=interaction_metadata,
        )
        message.fill(payload, files)
        channel.messages.append(message)
        return message

    def delete_message(self, message: Message) -> None:
        message.deleted = True
        message.channel.messages.remove(message)

    def store_file(
        self, filename: str, data: bytes, content_type: str, description: str | None
    ) -> StoredFile:
        file_id = self.snowflakes.next()
        url = f"{self.url}/attachments/{file_id}/{quote(filename)}"
        stored = StoredFile(file_id, filename, data, content_type, description, url)
        self._files[file_id] = stored
        return stored

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        stored = self._files.get(int(request.match_info["file_id"]))
        if stored is None:
            raise web.HTTPNotFound()
        return web.Response(body=stored.data, content_type=stored.content_type)

    # -- observing the bot -----------------------------------------------------------------

    @property
    def gateway_log(self) -> list[GatewayFrame]:
        """Every gateway payload in both directions."""
        return self.gateway.log

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (re-checked whenever the bot does something)."""
        if not await self.signal.wait_for(predicate, timeout):
            raise EmulatorTimeout(
                f"condition still false after {timeout}s; violations: {self.violations}"
            )

    def requests(self, route: str) -> list[RecordedRequest]:
        """Transcript entries for one route, e.g. ``"POST /channels/{channel_id}/messages"``."""
        return [record for record in self.transcript if record.route == route]

    def record_violation(
        self, code: str, message: str, request: RecordedRequest | None = None
    ) -> None:
        self.violations.append(Violation(code, message, self.clock.time(), request))
        self.signal.changed()

    def pop_violations(self, code: str | None = None) -> list[Violation]:
        """Remove and return the violations (of one ``code``): the test has seen them."""
        taken: list[Violation] = []
        kept: list[Violation] = []
        for violation in self.violations:
            (taken if code is None or violation.code == code else kept).append(violation)
        self.violations = kept
        return taken

    async def expect_violation(self, code: str, timeout: float = 2.0) -> Violation:
        """Wait for a violation of ``code``, consume it and return it."""
        if not await self.signal.wait_for(
            lambda: any(v.code == code for v in self.violations), timeout
        ):
            raise EmulatorTimeout(
                f"no {code!r} violation within {timeout}s; have: {self.violations}"
            )
        return self.pop_violations(code)[0]

    def assert_no_violations(self) -> None:
        if self.violations:
            raise EmulatorViolations(self.pop_violations())

    # -- gateway controls ------------------------------------------------------------------

    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until the bot identified and its READY and GUILD_CREATEs are on the wire."""
        gateway = self.gateway
        ready = await self.signal.wait_for(
            lambda: gateway.identifies > 0 or gateway.fatal_close is not None, timeout
        )
        if gateway.fatal_close is not None:
            raise EmulatorError(f"the gateway refused the bot: {gateway.fatal_close}")
        if not ready:
            raise EmulatorTimeout(f"the bot did not IDENTIFY within {timeout}s")

    async def force_reconnect(self, timeout: float = 5.0) -> None:
        """Send op 7 RECONNECT and wait until the bot has RESUMEd on a new connection."""
        connection = self._live_connection()
        resumes = self.gateway.resumes
        self.gateway.send_reconnect(connection)
        await self._wait_resumed(resumes, timeout)

    async def drop_connection(self, code: int | None = None, timeout: float = 5.0) -> None:
        """Cut the bot's websocket and wait until it has RESUMEd.

        ``code=None`` aborts the TCP connection; otherwise the emulator closes
        with ``code`` (use a resumable one such as 4000 or 1011).
        """
        connection = self._live_connection()
        resumes = self.gateway.resumes
        self.gateway.drop(connection, code)
        await self._wait_resumed(resumes, timeout)

    def _live_connection(self) -> Connection:
        connection = self.gateway.live_connection()
        if connection is None:
            raise BotNotConnected("the bot has no live gateway connection")
        return connection

    async def _wait_resumed(self, resumes: int, timeout: float) -> None:
        if not await self.signal.wait_for(lambda: self.gateway.resumes > resumes, timeout):
            raise EmulatorTimeout(f"the bot did not RESUME within {timeout}s")
