"""Gateway v10: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME, dispatches.

One bot session per shard: a sharded IDENTIFY gets the guilds of its shard
(``(guild_id >> 22) % shard_count``), and every event goes to the session of its
guild's shard (events without a guild to shard 0).  Every dispatch gets a sequence
number and is kept for RESUME replay, so events dispatched while the bot is
reconnecting are delivered after it resumes, as on Discord.  Frames are JSON;
when the bot asks for ``compress=zlib-stream`` (discord.py always does) they are
sent as one shared zlib stream flushed with Z_SYNC_FLUSH, exactly like Discord.
Any other ``compress`` value (``zstd-stream``, only requested when the
``zstandard`` package is installed) is answered with plain text frames, which
discord.py also accepts.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import discord
from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from asyncio import Transport

    from .server import DiscordEmulator

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE_UPDATE, VOICE_STATE_UPDATE = 0, 1, 2, 3, 4
RESUME, RECONNECT, REQUEST_GUILD_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 6, 7, 8, 9, 10, 11

PRIVILEGED_INTENTS = discord.Intents(members=True, presences=True, message_content=True).value

# Close codes Discord uses for protocol errors.
UNKNOWN_OPCODE, DECODE_ERROR, NOT_AUTHENTICATED, AUTHENTICATION_FAILED = 4001, 4002, 4003, 4004
ALREADY_AUTHENTICATED, INVALID_SEQ, INVALID_API_VERSION, INVALID_INTENTS = 4005, 4007, 4012, 4013
INVALID_SHARD, DISALLOWED_INTENTS = 4010, 4014
FATAL_CLOSE_CODES = {
    AUTHENTICATION_FAILED,
    INVALID_SHARD,
    INVALID_API_VERSION,
    INVALID_INTENTS,
    DISALLOWED_INTENTS,
}


@dataclass(frozen=True)
class GatewayFrame:
    """One gateway payload, as logged in :attr:`DiscordEmulator.gateway_log`."""

    direction: str
    """``"to_bot"`` or ``"from_bot"``."""
    op: int
    event: str | None
    seq: int | None
    connection: int
    """1 for the bot's first websocket connection, 2 for the next, …"""
    time: float
    data: Any


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Session:
    """A gateway session: survives reconnects until the bot identifies afresh."""

    def owns(self, guild_id: int | None) -> bool:
        """Whether Discord would send this guild's events here: ``(guild_id >> 22) % count``
        is the shard; events without a guild go to shard 0."""
        if self.shard is None:
            return True
        index, count = self.shard
        return index == (0 if guild_id is None else (guild_id >> 22) % count)

    def __init__(self, session_id: str, intents: int, shard: tuple[int, int] | None = None) -> None:
        self.id = session_id
        self.intents = intents
        self.shard = shard  # (shard id, shard count), or None for an unsharded session
        self.seq = 0
        self.dispatched: list[dict[str, Any]] = []
        self.connection: Connection | None = None


class Connection:
    """One websocket connection and the task that writes to it in order."""

    def __init__(
        self, number: int, ws: web.WebSocketResponse, transport: Transport | None, zlib_stream: bool
    ):
        self.number = number
        self.ws = ws
        self.transport = transport
        self.session: Session | None = None
        self.outbox: asyncio.Queue[dict[str, Any] | _Close] = asyncio.Queue()
        self._compressor = zlib.compressobj() if zlib_stream else None
        self.writer: asyncio.Task[None] | None = None

    async def write_forever(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, _Close):
                await self.ws.close(code=item.code, message=item.reason.encode())
                return
            text = json.dumps(item)
            try:
                if self._compressor is None:
                    await self.ws.send_str(text)
                else:
                    data = self._compressor.compress(text.encode()) + self._compressor.flush(
                        zlib.Z_SYNC_FLUSH
                    )
                    await self.ws.send_bytes(data)
            except ConnectionError:
                return


class Gateway:
    """The websocket side of the emulator (mounted at ``/gateway``)."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self._emu = emulator
        self.log: list[GatewayFrame] = []
        self.connection_urls: list[str] = []
        """The URL (with query) of every websocket connection the bot opened."""
        self.sessions: dict[int, Session] = {}  # by shard id (0 when the bot is not sharded)
        self.connections: set[Connection] = set()
        self.identifies = 0
        self.resumes = 0
        self.fatal_close: str | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- aiohttp handler ------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self.connection_urls.append(str(request.rel_url))
        conn = Connection(
            len(self.connection_urls),
            ws,
            request.transport,
            request.query.get("compress") == "zlib-stream",
        )
        conn.writer = asyncio.create_task(conn.write_forever())
        self.connections.add(conn)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            if self._check_query(conn, request):
                self._send(
                    conn,
                    {
                        "op": HELLO,
                        "d": {"heartbeat_interval": int(self._emu.heartbeat_interval * 1000)},
                    },
                )
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    self._receive(conn, message.data)
                else:
                    self._protocol_error(conn, DECODE_ERROR, "the gateway expects JSON text frames")
        finally:
            self.connections.discard(conn)
            self._handlers.discard(task)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            await self._stop_writer(conn)
            self._emu.signal.changed()
        return ws

    def _check_query(self, conn: Connection, request: web.Request) -> bool:
        if request.query.get("v") != "10":
            self._protocol_error(
                conn, INVALID_API_VERSION, f"gateway version {request.query.get('v')!r}, want 10"
            )
            return False
        if request.query.get("encoding", "json") != "json":
            self._protocol_error(conn, DECODE_ERROR, "only encoding=json is modelled")
            return False
        return True

    # -- frames from the bot -------------------------------------------------------------

    def _receive(self, conn: Connection, text: str) -> None:
        try:
            frame = json.loads(text)
            op, data = frame["op"], frame.get("d")
        except (ValueError, KeyError, TypeError):
            self._protocol_error(conn, DECODE_ERROR, f"undecodable payload {text[:100]!r}")
            return
        self._log("from_bot", conn, op, data)
        if op == HEARTBEAT:
            self._send(conn, {"op": HEARTBEAT_ACK})
        elif op == IDENTIFY:
            self._identify(conn, data)
        elif op == RESUME:
            self._resume(conn, data)
        elif conn.session is None:
            self._protocol_error(conn, NOT_AUTHENTICATED, f"op {op} sent before IDENTIFY")
        elif op == REQUEST_GUILD_MEMBERS:
            self._send_member_chunk(conn.session, data)
        elif op not in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            self._protocol_error(conn, UNKNOWN_OPCODE, f"unknown opcode {op}")

    def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            self._protocol_error(
                conn, ALREADY_AUTHENTICATED, "IDENTIFY sent twice on one connection"
            )
            return
        if not self._emu.token_ok(data.get("token")):
            self._protocol_error(conn, AUTHENTICATION_FAILED, "IDENTIFY with an invalid token")
            return
        intents = data.get("intents")
        if not isinstance(intents, int):
            self._protocol_error(conn, INVALID_INTENTS, "IDENTIFY without intents")
            return
        disallowed = intents & PRIVILEGED_INTENTS & ~self._emu.privileged_intents
        if disallowed:
            names = [name for name, on in discord.Intents._from_value(disallowed) if on]
            self._protocol_error(
                conn,
                DISALLOWED_INTENTS,
                f"privileged intents {names} not enabled "
                "(pass privileged_intents= to DiscordEmulator)",
            )
            return
        shard = data.get("shard")
        if shard is not None and not (
            isinstance(shard, list) and len(shard) == 2 and 0 <= shard[0] < shard[1]
        ):
            self._protocol_error(conn, INVALID_SHARD, f"IDENTIFY with shard {shard!r}")
            return
        session = Session(secrets.token_hex(16), intents, tuple(shard) if shard else None)
        self.sessions[shard[0] if shard else 0] = session
        self._attach(conn, session)
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self._emu.bot_user.to_payload(), "verified": True, "mfa_enabled": False},
            "guilds": [
                {"id": str(guild_id), "unavailable": True}
                for guild_id in self._emu.guilds
                if session.owns(guild_id)
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self._emu.gateway_url,
            "application": {
                "id": str(self._emu.application_id),
                "flags": self._emu.application_flags,
            },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        self._dispatch_to(session, "READY", ready)
        for guild in self._emu.guilds.values():
            if session.owns(guild.id):
                self._dispatch_to(session, "GUILD_CREATE", guild.to_payload())
        self.identifies += 1

    def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            self._protocol_error(
                conn, ALREADY_AUTHENTICATED, "RESUME on an authenticated connection"
            )
            return
        if not self._emu.token_ok(data.get("token")):
            self._protocol_error(conn, AUTHENTICATION_FAILED, "RESUME with an invalid token")
            return
        session = next((s for s in self.sessions.values() if s.id == data.get("session_id")), None)
        if session is None:
            self._send(conn, {"op": INVALID_SESSION, "d": False})
            return
        seq = data.get("seq") or 0
        if seq > session.seq:
            self._protocol_error(
                conn, INVALID_SEQ, f"RESUME with seq {seq} > last sent {session.seq}"
            )
            return
        if session.connection is not None:
            self._queue_close(session.connection, 4000, "session resumed elsewhere")
        self._attach(conn, session)
        for frame in session.dispatched[seq:]:
            self._send(conn, frame)
        self._dispatch_to(session, "RESUMED", {})
        self.resumes += 1

    def _send_member_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self._emu.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            wanted = {int(user_id) for user_id in data["user_ids"]}
            members = [member for member in members if member.id in wanted]
        elif data.get("query"):
            members = [
                member
                for member in members
                if member.name.lower().startswith(data["query"].lower())
            ]
        if data.get("limit"):
            members = members[: data["limit"]]
        chunk = {
            "guild_id": str(guild.id),
            "members": [member.to_payload() for member in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        self._dispatch_to(session, "GUILD_MEMBERS_CHUNK", chunk)

    # -- frames to the bot ---------------------------------------------------------------

    @property
    def session(self) -> Session | None:
        """The bot's session (shard 0's, when it is sharded)."""
        return self.sessions.get(0) or next(iter(self.sessions.values()), None)

    def dispatch(self, event: str, data: dict[str, Any], *, intent: int | None = None) -> bool:
        """Dispatch to the session of the shard the event's guild is on; ``False`` if there is
        none or it lacks ``intent``."""
        guild = data.get("guild_id") or (data.get("id") if event == "GUILD_CREATE" else None)
        guild_id = None if guild is None else int(guild)
        session = next((s for s in self.sessions.values() if s.owns(guild_id)), None)
        if session is None or (intent is not None and not session.intents & intent):
            return False
        self._dispatch_to(session, event, data)
        return True

    def _dispatch_to(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.dispatched.append(frame)
        if session.connection is not None:
            self._send(session.connection, frame)

    def _attach(self, conn: Connection, session: Session) -> None:
        conn.session = session
        session.connection = conn

    def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        self._log(
            "to_bot", conn, frame["op"], frame.get("d"), event=frame.get("t"), seq=frame.get("s")
        )
        conn.outbox.put_nowait(frame)

    def _log(
        self,
        direction: str,
        conn: Connection,
        op: int,
        data: Any,
        *,
        event: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.log.append(
            GatewayFrame(direction, op, event, seq, conn.number, self._emu.clock.time(), data)
        )
        self._emu.signal.changed()

    def _protocol_error(self, conn: Connection, code: int, text: str) -> None:
        self._emu.record_violation("gateway_protocol", f"close {code}: {text}")
        if code in FATAL_CLOSE_CODES:
            self.fatal_close = f"close {code}: {text}"
        self._queue_close(conn, code, text)

    def _queue_close(self, conn: Connection, code: int, reason: str) -> None:
        conn.outbox.put_nowait(_Close(code, reason[:120]))

    # -- test controls -------------------------------------------------------------------

    def live_connection(self) -> Connection | None:
        session = self.session
        return None if session is None else session.connection

    def send_reconnect(self, conn: Connection) -> None:
        """Op 7: ask the bot to reconnect and resume."""
        self._send(conn, {"op": RECONNECT, "d": None})

    def drop(self, conn: Connection, code: int | None) -> None:
        """Cut the connection: a TCP abort (``code=None``) or a close frame with ``code``."""
        if code is None and conn.transport is not None:
            conn.transport.abort()
        else:
            self._queue_close(conn, code or 4000, "dropped by the test")

    async def close(self) -> None:
        """Close every connection (1001 going away) and wait for their handlers."""
        for conn in list(self.connections):
            await self._stop_writer(conn)
            await conn.ws.close(code=1001, message=b"emulator shutting down")
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    @staticmethod
    async def _stop_writer(conn: Connection) -> None:
        if conn.writer is not None and not conn.writer.done():
            conn.writer.cancel()
            await asyncio.gather(conn.writer, return_exceptions=True)
