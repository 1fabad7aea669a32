"""REST API v10: the route table, request recording and the handlers.

Every request lands in :attr:`DiscordEmulator.transcript` as a
:class:`RecordedRequest`.  Routes not in :data:`ROUTES` answer 404 (405 for a
known path with another method) and record an ``unknown_route`` violation.
Responses are JSON with ``Content-Type: application/json`` exactly (discord.py
compares the header verbatim) or empty 204s.
"""

from __future__ import annotations

import json
import mimetypes
import re
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord
from aiohttp import BodyPartReader, web

from .errors import ApiError
from .limits import check_commands, check_message, form_error
from .models import StoredFile, TextChannel

if TYPE_CHECKING:
    from .interactions import Interaction
    from .server import DiscordEmulator

API_PREFIX = "/api/v10"
JSON_HEADERS = {"Content-Type": "application/json"}
FILE_FIELD = re.compile(r"^files\[(\d+)\]$")
VIEW_AND_SEND = discord.Permissions(view_channel=True, send_messages=True).value
ATTACH_FILES = discord.Permissions(attach_files=True).value
READ_HISTORY = discord.Permissions(view_channel=True, read_message_history=True).value
MANAGE_MESSAGES = discord.Permissions(manage_messages=True).value
REPLY = 19


@dataclass
class Upload:
    """A file part of a multipart body, before it is stored."""

    field: str
    filename: str
    data: bytes
    content_type: str


@dataclass
class RecordedRequest:
    """One request the bot made.

    ``route`` is the matched template, e.g. ``POST /channels/{channel_id}/messages``;
    ``path`` is relative to ``/api/v10``.
    """

    method: str
    path: str
    query: dict[str, str]
    json: Any
    """The JSON body, or the ``payload_json`` part of a multipart body."""
    uploads: list[Upload]
    time: float
    route: str = "(unknown)"
    status: int = 0
    response: Any = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    handler: str
    bot_auth: bool
    pattern: re.Pattern[str]


def _route(method: str, template: str, handler: str, *, bot_auth: bool = True) -> Route:
    """``{x_id}`` matches a snowflake, any other ``{x}`` one path segment."""
    regex = re.sub(r"\\\{(\w+_id)\\\}", r"(?P<\1>[0-9]+)", re.escape(template))
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
    return Route(method, template, handler, bot_auth, re.compile(f"^{regex}$"))


WEBHOOK = "/webhooks/{application_id}/{interaction_token}"
ROUTES = [
    _route("GET", "/gateway", "get_gateway", bot_auth=False),
    _route("GET", "/gateway/bot", "get_gateway_bot"),
    _route("GET", "/users/@me", "get_current_user"),
    _route("GET", "/oauth2/applications/@me", "get_application"),
    _route("GET", "/applications/@me", "get_application"),
    _route("GET", "/applications/{application_id}/commands", "get_commands"),
    _route("PUT", "/applications/{application_id}/commands", "put_commands"),
    _route("GET", "/applications/{application_id}/guilds/{guild_id}/commands", "get_commands"),
    _route("PUT", "/applications/{application_id}/guilds/{guild_id}/commands", "put_commands"),
    _route(
        "POST",
        "/interactions/{interaction_id}/{interaction_token}/callback",
        "callback",
        bot_auth=False,
    ),
    _route("POST", WEBHOOK, "follow_up", bot_auth=False),
    _route("GET", WEBHOOK + "/messages/@original", "get_webhook_message", bot_auth=False),
    _route("PATCH", WEBHOOK + "/messages/@original", "edit_webhook_message", bot_auth=False),
    _route("DELETE", WEBHOOK + "/messages/@original", "delete_webhook_message", bot_auth=False),
    _route("GET", WEBHOOK + "/messages/{message_id}", "get_webhook_message", bot_auth=False),
    _route("PATCH", WEBHOOK + "/messages/{message_id}", "edit_webhook_message", bot_auth=False),
    _route("DELETE", WEBHOOK + "/messages/{message_id}", "delete_webhook_message", bot_auth=False),
    _route("GET", "/channels/{channel_id}", "get_channel"),
    _route("POST", "/channels/{channel_id}/typing", "trigger_typing"),
    _route("POST", "/channels/{channel_id}/messages", "create_message"),
    _route("GET", "/channels/{channel_id}/messages/{message_id}", "get_message"),
    _route("PATCH", "/channels/{channel_id}/messages/{message_id}", "edit_message"),
    _route("DELETE", "/channels/{channel_id}/messages/{message_id}", "delete_message"),
]


class Rest:
    """Serves ``/api/v10/*`` (and records anything else as an unknown route)."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self._emu = emulator

    async def handle(self, request: web.Request) -> web.Response:
        body, uploads = await _read_body(request)
        versioned = request.path.startswith(API_PREFIX + "/")
        record = RecordedRequest(
            request.method,
            request.path.removeprefix(API_PREFIX) if versioned else request.path,
            dict(request.query),
            body,
            uploads,
            self._emu.clock.time(),
        )
        self._emu.transcript.append(record)
        try:
            route = self._match(record, versioned)
            if route.bot_auth and not self._authorized(request):
                raise ApiError.violation(
                    401, 0, "401: Unauthorized", "unauthorized", "missing or wrong bot token"
                )
            result = await getattr(self, route.handler)(record)
            status = 204 if result is None else 200
        except ApiError as error:
            for code, text in error.violations:
                self._emu.record_violation(code, text, record)
            status, result = error.status, error.body()
        except (
            Exception
        ) as error:  # an emulator bug: fail the test, and do not make the bot retry a 5xx
            self._emu.record_violation("emulator_bug", traceback.format_exc(), record)
            status, result = 400, {"message": f"emulator bug: {error!r}", "code": 0}
        record.status, record.response = status, result
        self._emu.signal.changed()
        if result is None:
            return web.Response(status=204)
        return web.Response(status=status, body=json.dumps(result).encode(), headers=JSON_HEADERS)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return scheme == "Bot" and self._emu.token_ok(token)

    @staticmethod
    def _match(record: RecordedRequest, versioned: bool) -> Route:
        path_matched = False
        for route in ROUTES if versioned else ():
            found = route.pattern.match(record.path)
            if found is None:
                continue
            path_matched = True
            if route.method == record.method:
                record.route = f"{route.method} {route.template}"
                record.params = found.groupdict()
                return route
        text = f"{record.method} {record.path} is not modelled by the emulator"
        if path_matched:
            raise ApiError.violation(405, 0, "405: Method Not Allowed", "unknown_route", text)
        raise ApiError.violation(404, 0, "404: Not Found", "unknown_route", text)

    # -- session & application -------------------------------------------------------------

    async def get_gateway(self, record: RecordedRequest) -> Any:
        return {"url": self._emu.gateway_url}

    async def get_gateway_bot(self, record: RecordedRequest) -> Any:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000,
                 "max_concurrency": self._emu.max_concurrency}  # fmt: skip
        return {"url": self._emu.gateway_url, "shards": 1, "session_start_limit": limit}

    async def get_current_user(self, record: RecordedRequest) -> Any:
        return {
            **self._emu.bot_user.to_payload(),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }

    async def get_application(self, record: RecordedRequest) -> Any:
        return self._emu.application_payload()

    # -- application commands --------------------------------------------------------------

    async def get_commands(self, record: RecordedRequest) -> Any:
        return [
            command.to_payload()
            for command in self._emu.commands.in_scope(self._command_scope(record))
        ]

    async def put_commands(self, record: RecordedRequest) -> Any:
        scope = self._command_scope(record)
        payloads = record.json
        if not isinstance(payloads, list):
            raise ApiError.violation(
                400, 50035, "Invalid Form Body", "invalid_command", "body must be a list"
            )
        problems = check_commands(payloads)
        if problems:
            raise form_error(problems)
        return [command.to_payload() for command in self._emu.commands.overwrite(scope, payloads)]

    def _command_scope(self, record: RecordedRequest) -> int | None:
        if record.params["application_id"] != str(self._emu.application_id):
            raise ApiError.violation(
                404,
                10002,
                "Unknown Application",
                "unknown_application",
                f"application {record.params['application_id']}",
            )
        if "guild_id" not in record.params:
            return None
        guild_id = int(record.params["guild_id"])
        if guild_id not in self._emu.guilds:
            raise ApiError.violation(
                403, 50001, "Missing Access", "unknown_guild", f"bot is not in guild {guild_id}"
            )
        return guild_id

    # -- interactions ----------------------------------------------------------------------

    async def callback(self, record: RecordedRequest) -> Any:
        interaction = self._emu.interactions.get(int(record.params["interaction_id"]))
        if interaction is None or interaction.token != record.params["interaction_token"]:
            raise ApiError.violation(
                404,
                10062,
                "Unknown interaction",
                "unknown_interaction",
                "callback for an unknown interaction/token",
            )
        body = record.json or {}
        files = self._store_uploads(record, body.get("data") or {})
        response = interaction.acknowledge(
            body.get("type"), body.get("data") or {}, files, self._emu.clock.time()
        )
        return response if _truthy(record.query.get("with_response")) else None

    async def follow_up(self, record: RecordedRequest) -> Any:
        interaction = self._interaction(record)
        payload = record.json or {}
        message = interaction.follow_up(
            payload, self._store_uploads(record, payload), self._emu.clock.time()
        )
        return message.to_payload() if _truthy(record.query.get("wait")) else None

    async def get_webhook_message(self, record: RecordedRequest) -> Any:
        interaction = self._interaction(record)
        return interaction.get_message(_message_target(record), self._emu.clock.time()).to_payload()

    async def edit_webhook_message(self, record: RecordedRequest) -> Any:
        interaction = self._interaction(record)
        payload = record.json or {}
        files = self._store_uploads(record, payload)
        message = interaction.edit_message(
            _message_target(record), payload, files, self._emu.clock.time()
        )
        return message.to_payload()

    async def delete_webhook_message(self, record: RecordedRequest) -> Any:
        self._interaction(record).delete_message(_message_target(record), self._emu.clock.time())

    def _interaction(self, record: RecordedRequest) -> Interaction:
        interaction = self._emu.interactions.by_token(record.params["interaction_token"])
        if interaction is None or record.params["application_id"] != str(self._emu.application_id):
            raise ApiError.violation(
                404,
                10015,
                "Unknown Webhook",
                "unknown_interaction",
                "webhook call with an unknown application/token",
            )
        return interaction

    # -- channels --------------------------------------------------------------------------

    async def get_channel(self, record: RecordedRequest) -> Any:
        return self._channel(record).to_payload()

    async def trigger_typing(self, record: RecordedRequest) -> Any:
        self._require(self._channel(record), VIEW_AND_SEND, "send messages")

    async def create_message(self, record: RecordedRequest) -> Any:
        channel = self._channel(record)
        payload = record.json or {}
        self._require(channel, VIEW_AND_SEND, "send messages")
        if record.uploads:
            self._require(channel, ATTACH_FILES, "attach files")
        problems = check_message(payload, has_files=bool(record.uploads), creating=True)
        if problems:
            raise form_error(problems)
        files = self._store_uploads(record, payload)
        kind = REPLY if payload.get("message_reference") else 0
        return self._emu.store_message(channel, payload, files, type=kind).to_payload()

    async def get_message(self, record: RecordedRequest) -> Any:
        channel = self._channel(record)
        self._require(channel, READ_HISTORY, "read message history")
        return self._channel_message(channel, record).to_payload()

    async def edit_message(self, record: RecordedRequest) -> Any:
        channel = self._channel(record)
        message = self._channel_message(channel, record)
        if message.author is not self._emu.bot_user:
            raise ApiError.violation(
                403,
                50005,
                "Cannot edit a message authored by another user",
                "missing_permissions",
                repr(message),
            )
        payload = record.json or {}
        problems = check_message(payload, has_files=bool(record.uploads), creating=False)
        if problems:
            raise form_error(problems)
        message.edit(payload, self._store_uploads(record, payload), self._emu.clock.time())
        return message.to_payload()

    async def delete_message(self, record: RecordedRequest) -> Any:
        channel = self._channel(record)
        message = self._channel_message(channel, record)
        if message.author is not self._emu.bot_user:
            self._require(channel, MANAGE_MESSAGES, "manage messages")
        self._emu.delete_message(message)

    def _channel(self, record: RecordedRequest) -> TextChannel:
        channel = self._emu.channel(int(record.params["channel_id"]))
        if channel is None:
            raise ApiError.violation(
                404,
                10003,
                "Unknown Channel",
                "unknown_channel",
                f"channel {record.params['channel_id']}",
            )
        return channel

    @staticmethod
    def _channel_message(channel: TextChannel, record: RecordedRequest) -> Any:
        """A live, non-ephemeral message (channel routes cannot see ephemeral ones)."""
        wanted = record.params["message_id"]
        message = next(
            (m for m in channel.messages if str(m.id) == wanted and not m.ephemeral), None
        )
        if message is None:
            raise ApiError.violation(
                404,
                10008,
                "Unknown Message",
                "unknown_message",
                f"no message {wanted} in {channel!r}",
            )
        return message

    def _require(self, channel: TextChannel, permissions: int, what: str) -> None:
        if channel.guild.bot_member.permissions & permissions != permissions:
            raise ApiError.violation(
                403,
                50013,
                "Missing Permissions",
                "missing_permissions",
                f"bot cannot {what} in {channel!r}",
            )

    # -- files -----------------------------------------------------------------------------

    def _store_uploads(self, record: RecordedRequest, payload: dict[str, Any]) -> list[StoredFile]:
        """Store ``files[n]`` parts, taking description/filename from ``payload["attachments"]``."""
        described = {str(entry.get("id")): entry for entry in payload.get("attachments") or []}
        stored = []
        for upload in record.uploads:
            match = FILE_FIELD.match(upload.field)
            if match is None:
                continue
            entry = described.get(match.group(1), {})
            filename = entry.get("filename") or upload.filename
            content_type = mimetypes.guess_type(filename)[0] or upload.content_type
            stored.append(
                self._emu.store_file(filename, upload.data, content_type, entry.get("description"))
            )
        return stored


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    if request.content_type == "application/json":
        text = await request.text()
        return (json.loads(text) if text else None), []
    if request.content_type != "multipart/form-data":
        return None, []
    body: Any = None
    uploads: list[Upload] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            body = json.loads(await part.text())
        else:
            data = await part.read(decode=False)
            content_type = part.headers.get("Content-Type", "application/octet-stream")
            uploads.append(Upload(part.name or "", part.filename or "", bytes(data), content_type))
    return body, uploads


def _message_target(record: RecordedRequest) -> str:
    return record.params.get("message_id", "@original")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")
