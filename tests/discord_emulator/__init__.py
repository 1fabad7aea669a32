"""A local Discord for tests: gateway v10 + REST v10 enough for an unmodified discord.py 2.7 bot.

Usage
=====

::

    emu = DiscordEmulator()
    await emu.start()
    guild = emu.add_guild("Story Club")
    channel = guild.add_text_channel("story")
    mods = guild.add_role("Mods", permissions=discord.Permissions(manage_guild=True).value)
    alice = guild.add_member("alice")
    mod = guild.add_member("mod", roles=[mods])

    async with running_bot(emu, MyBot(...), token="test-token") as bot:
        interaction = await alice.slash(channel, "write", prompt="a dragon", mode="poem")
        message = await interaction.final()          # after a deferral: the edit/follow-up
        assert message.content.startswith("Once")
        clicked = await alice.click(message, "again")  # component interaction
        await clicked.wait_done()
    await emu.close()    # raises EmulatorViolations if the bot broke a Discord rule

``running_bot`` = ``with patch_discord(emu)`` + ``await bot.login(token)``
(which runs ``setup_hook``, where the bot typically syncs its commands) + a
task running ``bot.connect()`` + ``await emu.wait_ready()`` +
``await bot.wait_until_ready()`` (the bot's ``guild_ready_timeout`` is cut from
2 s to 0.05 s, as the emulator sends every GUILD_CREATE at once); on exit it
closes the bot and awaits the connect task.  Commands must be synced
(globally or to the guild) before members can use them.  The typical fixture::

    @pytest.fixture
    async def emu():
        emulator = await DiscordEmulator().start()
        yield emulator
        await emulator.close()   # fails the test on unconsumed violations

How discord.py is pointed here
==============================

:func:`patch_discord` sets ``discord.http.Route.BASE`` to
``http://127.0.0.1:PORT/api/v10`` (all REST, including the interaction
callback and the webhook routes used for ``@original``/follow-ups) and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` to
``ws://127.0.0.1:PORT/gateway`` (``Client.connect`` goes there directly;
READY's ``resume_gateway_url`` points back here too).  Both are restored on
exit.  No bot code changes.

Test API
========

``DiscordEmulator(ack_window=3.0, token_lifetime=900.0, clock=None, bot_name="TestBot",
token=None, heartbeat_interval=41.25, privileged_intents=0, bot_permissions=...)``
  ``await start()``, ``await close(check=True)``, ``async with``; ``url``,
  ``api_base``, ``gateway_url``; ``clock`` (``clock.advance(seconds)``);
  ``add_guild(name, owner_name="owner", everyone_permissions=...)``;
  ``await wait_ready(timeout)``; ``await force_reconnect(timeout)`` (op 7 →
  waits for RESUME); ``await drop_connection(code=None, timeout)`` (TCP abort
  or close code → waits for RESUME); ``await wait_for(predicate, timeout)``
  (re-checked whenever anything happens); ``transcript`` (:class:`RecordedRequest`:
  method, route template, path, query, json, uploads, time, status, response)
  and ``requests(route)``; ``gateway_log`` (:class:`GatewayFrame`);
  ``gateway.connection_urls``; ``commands`` (:class:`CommandStore`:
  ``in_scope(guild=None)``, ``get(name, guild=None)``); ``interactions.all``; ``violations``,
  ``pop_violations(code=None)``, ``await expect_violation(code, timeout)``,
  ``assert_no_violations()``.
:class:`Guild`
  ``add_text_channel(name, topic=None, nsfw=False)``, ``add_role(name, permissions=0)``,
  ``add_member(name, roles=(), permissions=None)``, ``allow_command(name, member_or_role)``,
  ``owner``, ``bot_member``, ``everyone``.
:class:`Member`
  ``await slash(channel, "cmd" | "group sub", **options)``,
  ``await autocomplete(channel, "cmd", focused=..., value=..., **options)``,
  ``await click(message, custom_id, values=None)``,
  ``await submit_modal(interaction, **values)`` → :class:`Interaction`.
  Option values: ``str``/``int``/``float``/``bool``, or emulator
  :class:`Member`/:class:`User`/:class:`Role`/:class:`TextChannel` objects
  (sent with ``resolved`` data), checked against the synced definition
  (required, choices, ranges, lengths) like the Discord client does.
:class:`Interaction`
  ``await response()`` (:class:`InitialResponse`), ``await wait_done()``,
  ``await final()`` (last :class:`Message`), ``await wait_for_messages(n)``,
  ``await choices()``; ``messages`` (``@original`` then follow-ups),
  ``original``, ``followups``, ``initial``, ``payload``, ``failure``.
:class:`Message`
  ``content``, ``embeds``, ``components``, ``custom_ids``, ``flags``,
  ``ephemeral``, ``loading``, ``attachments`` (:class:`StoredFile` with
  ``data``), ``allowed_mentions``, ``revisions``, ``deleted``.
:class:`TextChannel`
  ``messages`` (live messages, ephemeral included), ``public_messages``.

Enforced (violation recorded + Discord's error returned to the bot)
===================================================================

* initial response within ``ack_window`` (3 s) of dispatch, else 404 10062;
  only once, else 400 40060; response type valid for the interaction type;
* ``@original``/follow-ups only after the initial response (404 10015) and
  within ``token_lifetime`` (15 min) of the interaction (401 50027);
* content ≤ 2000; ≤ 10 embeds, title 256, description 4096, ≤ 25 fields,
  field name 256 / value 1024, footer 2048, author 256, total 6000; no empty
  messages (50006); action rows ≤ 5 × 5 buttons or 1 select, custom_id ≤ 100,
  label ≤ 80, ≤ 25 select options; autocomplete ≤ 25 choices; modal title ≤ 45
  and 1-5 components; command definitions (names, descriptions, ≤ 25 options,
  required-before-optional, ≤ 100 commands, no duplicates);
* ``default_member_permissions``: members without them (after owner and
  ADMINISTRATOR, roles + @everyone) cannot invoke the command —
  ``slash()`` raises :class:`MissingPermissions` and nothing is dispatched —
  unless ``guild.allow_command(name, member_or_role)``;
* the bot's own permissions for channel routes (send, attach, read history,
  manage messages), editing others' messages, ephemeral messages being
  invisible to channel routes;
* bot token on REST (401) and gateway (4004); gateway protocol (unknown op,
  payload before IDENTIFY, double IDENTIFY, bad RESUME seq, API version,
  privileged intents not enabled → 4014);
* any route not modelled → 404/405 + ``unknown_route``;
* at ``close()``: interactions never acknowledged, deferrals never completed.

Unconsumed violations make ``close()`` raise :class:`EmulatorViolations`; a
test that provokes one on purpose consumes it with ``expect_violation``.

Modelled behaviour worth knowing
================================

* The first follow-up after a type-5 deferral replaces the "thinking…"
  placeholder (same message id, keeps the deferral's ephemerality).
* Events dispatched while the bot is disconnected are replayed on RESUME;
  RESUME with an unknown session gets op 9 (discord.py then re-identifies
  after its own 5 s pause).
* zlib-stream transport compression as discord.py requests it.
* ``with_response=1`` on callbacks returns ``{interaction, resource}`` as Discord does.

Not modelled
============

* DMs, group DMs and user-installed apps (every interaction is in a guild
  text channel); threads, forums, categories, voice, stage.
* Channel permission overwrites and per-channel command permissions;
  integration overrides only allow, never deny; ``contexts`` and
  ``dm_permission`` are stored but not checked.
* Rate limits (no ``X-RateLimit-*`` headers, never 429), heartbeat timeouts
  (a silent bot is never disconnected), ``session_start_limit``, the shard
  count Discord recommends (always 1; sessions for any shard count are served), ETF
  encoding, zstd compression (plain text frames instead).
* Message history (``GET /channels/{id}/messages``), reactions, pins,
  threads from messages, polls, stickers, webhooks other than interaction
  tokens, guild/member/user fetch routes: all answer ``unknown_route``.
* Mention parsing (``mentions`` is always empty; the payload's
  ``allowed_mentions`` is kept on :class:`Message` for assertions).
* Gateway events for the bot's own messages (MESSAGE_CREATE/UPDATE/DELETE),
  users posting messages, presences; GUILD_MEMBER_ADD is only sent with the
  members intent.
* As member actions: context-menu commands, attachment options, user/role/
  channel select menus.
"""

from .clock import Clock
from .errors import (
    BotNotConnected,
    EmulatorError,
    EmulatorTimeout,
    EmulatorViolations,
    InteractionFailed,
    InvalidInteraction,
    MissingPermissions,
    UnknownCommand,
    Violation,
)
from .gateway import GatewayFrame
from .harness import running_bot
from .interactions import InitialResponse, Interaction
from .models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    EPHEMERAL,
    LOADING,
    Command,
    CommandStore,
    Guild,
    Member,
    Message,
    Role,
    StoredFile,
    TextChannel,
    User,
)
from .patching import patch_discord
from .rest import RecordedRequest, Upload
from .server import DiscordEmulator

__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "EPHEMERAL",
    "LOADING",
    "BotNotConnected",
    "Clock",
    "Command",
    "CommandStore",
    "DiscordEmulator",
    "EmulatorError",
    "EmulatorTimeout",
    "EmulatorViolations",
    "GatewayFrame",
    "Guild",
    "InitialResponse",
    "Interaction",
    "InteractionFailed",
    "InvalidInteraction",
    "Member",
    "Message",
    "MissingPermissions",
    "RecordedRequest",
    "Role",
    "StoredFile",
    "TextChannel",
    "UnknownCommand",
    "Upload",
    "User",
    "Violation",
    "patch_discord",
    "running_bot",
]
