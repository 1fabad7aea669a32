"""The data layer: the only module with SQL. Stories, turns, settings and their audit in SQLite,
and the replies members are waiting for (so a crash does not leave them hanging).

One aiosqlite connection is the single writer; every write holds one asyncio lock, so a
transaction's statements never interleave with another coroutine's. Writes are explicit
``BEGIN IMMEDIATE`` transactions. Reads go through a second, read-only connection (WAL lets it
read while a write is in progress), so a writer waiting on a lock held by another process never
holds up a read. SQLite's errors become :class:`~bot.errors.StorageError` (a member is told to
try again) or :class:`~bot.errors.DatabaseBusy`. The schema is ``bot/migrations/NNNN_*.sql``, applied in order and
recorded in ``PRAGMA user_version``; an applied file is never edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import DatabaseBusy, DatabaseUnusable, StorageError
from bot.story import Story, Turn, TurnKind

log = logging.getLogger(__name__)

SERVER_WIDE = 0  # the channel_id of a server-wide setting
WRITE_WAIT_MS = 2000  # how long a write waits for another process's lock before "busy"


class StoryGone(Exception):
    """The story was archived while a turn was being added to it."""


@dataclass(frozen=True)
class NewTurn:
    """A turn to append; the store gives it its position."""

    kind: TurnKind
    author_id: int | None
    text: str
    settings: dict[str, Any] | None = None
    notes: bytes | None = None  # how sure the model was of each token (bot.explain.pack)
    requested_by: int | None = None  # the member who asked the model for it
    author_name: str | None = None  # a member's display name, for exports


@dataclass(frozen=True)
class PendingReply:
    """A member's command the bot has acknowledged and not yet answered.

    ``id`` is the interaction's; ``token`` answers it as the bot until ``expires_at`` (Unix
    time). ``saved`` are the turns committed for it so far (filled in by the store).
    """

    id: int
    application_id: int
    token: str
    expires_at: float
    channel_id: int
    user_id: int
    user_name: str
    saved: tuple[Turn, ...] = ()

    def __repr__(self) -> str:  # the token is a credential: keep it out of logs and tracebacks
        return f"PendingReply(id={self.id}, channel_id={self.channel_id}, saved={len(self.saved)})"


@dataclass(frozen=True)
class AuditEntry:
    """One settings change."""

    guild_id: int
    channel_id: int
    key: str
    old_value: Any
    new_value: Any
    changed_by: int
    changed_at: str


@dataclass(frozen=True)
class RequestRecord:
    """One request to write a part, for a server's statistics."""

    guild_id: int
    channel_id: int
    user_id: int
    at: float  # Unix time
    outcome: str  # "written", or the reason it was refused
    tokens: int = 0
    wait_ms: int | None = None
    write_ms: int | None = None


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` for every migration file, in order."""
    found = []
    for entry in resources.files("bot.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append((int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(
            f"migrations must be numbered 0001, 0002, … without gaps; found {versions}"
        )
    return found


class Store:
    """Stories, turns and settings in one SQLite file."""

    def __init__(self, connection: aiosqlite.Connection, path: str | Path = ":memory:") -> None:
        self._db = connection
        self._reader = connection  # until open() adds a read-only connection of its own
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._busy_timeout_ms = WRITE_WAIT_MS
        self.path = path

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
        if str(path) != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseUnusable(path, f"its folder cannot be created ({error})") from None
        try:
            db = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as error:
            raise DatabaseUnusable(path, str(error)) from None
        db.row_factory = aiosqlite.Row
        store = cls(db, path)
        try:
            for pragma in (
                "journal_mode = WAL",
                "synchronous = FULL",
                "foreign_keys = ON",
                f"busy_timeout = {WRITE_WAIT_MS}",
            ):
                await db.execute(f"PRAGMA {pragma}")
            await store.migrate()
            if str(path) != ":memory:":
                store._reader = await aiosqlite.connect(str(path), isolation_level=None)
                store._reader.row_factory = aiosqlite.Row
                await store._reader.execute("PRAGMA query_only = ON")
                await store._reader.execute("PRAGMA busy_timeout = 5000")
        except sqlite3.DatabaseError as error:
            await store._close_connections()
            raise DatabaseUnusable(path, _explain(error)) from None
        except BaseException:
            await store._close_connections()  # their threads would otherwise keep us alive
            raise
        return store

    async def _close_connections(self) -> None:
        if self._reader is not self._db:
            await self._reader.close()
        await self._db.close()

    async def close(self) -> None:
        async with self._lock, self._read_lock:
            await self._close_connections()

    async def backup(self, target: str | Path) -> None:
        """Copy the whole database into the new file ``target``; safe while the bot writes."""
        async with aiosqlite.connect(str(target)) as copy, self._read_lock:
            # A few pages at a time, so writers (this process's or another's) are not held up.
            await self._reader.backup(copy, pages=64, sleep=0.01)

    async def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check``: "ok", or what is damaged."""
        try:
            async with self._read_lock, self._reader.execute("PRAGMA quick_check") as cursor:
                rows = await cursor.fetchall()
        except sqlite3.DatabaseError as error:  # damage bad enough that the check cannot run
            return _explain(error)
        return "; ".join(str(row[0]) for row in rows[:5])

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """An explicit write transaction, committed on success and rolled back on error.

        A write waits at most ``WRITE_WAIT_MS`` in all, for this store's other writes and for
        another process's lock together, then gives up with :class:`DatabaseBusy`: writers queued
        behind a locked database each hear "busy" within that time, not one after another.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_WAIT_MS / 1000
        try:
            async with asyncio.timeout_at(deadline):
                await self._lock.acquire()
        except TimeoutError:
            log.error("database %s: busy (writes queued for %d ms)", self.path, WRITE_WAIT_MS)
            raise DatabaseBusy() from None
        try:
            await self._wait_for_locks_until(deadline)
            await self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            await self._db.execute("COMMIT")
        except BaseException as error:
            await asyncio.shield(self._roll_back())
            if _is_storage_fault(error):
                raise self._storage_error(error) from error
            raise
        finally:
            self._lock.release()

    async def _wait_for_locks_until(self, deadline: float) -> None:
        """Let SQLite wait for another process's lock only until ``deadline``."""
        left_ms = max(1, int((deadline - asyncio.get_running_loop().time()) * 1000))
        if left_ms < self._busy_timeout_ms - 50 or left_ms > self._busy_timeout_ms:
            await self._db.execute(f"PRAGMA busy_timeout = {left_ms}")
            self._busy_timeout_ms = left_ms

    async def _roll_back(self) -> None:
        """End the open transaction, if any, so the single writer connection stays usable."""
        # A cancelled BEGIN still runs in the connection's thread; statements run in order,
        # so once this no-op is through, in_transaction tells the truth.
        await self._db.execute("SELECT 1")
        if self._db.in_transaction:
            await self._db.execute("ROLLBACK")

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        lock = self._lock if self._reader is self._db else self._read_lock
        try:
            async with lock, self._reader.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            if _is_storage_fault(error):
                raise self._storage_error(error) from error
            raise

    def _storage_error(self, error: sqlite3.Error) -> StorageError:
        """The member-facing error for one of SQLite's; the host's log gets the details."""
        log.error("database %s: %s", self.path, error)
        if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
            return DatabaseBusy()
        return StorageError()

    async def schema_version(self) -> int:
        rows = await self._read("PRAGMA user_version")
        return rows[0][0]

    async def check_writable(self) -> None:
        """Write to the file and commit (a no-op change), or raise why that is impossible."""
        version = await self.schema_version()
        async with self._write() as db:
            await db.execute(f"PRAGMA user_version = {int(version)}")

    async def migrate(self) -> int:
        """Apply every migration newer than the database; return the resulting version."""
        current = await self.schema_version()
        known = len(migrations())
        if current > known:
            raise DatabaseUnusable(
                self.path,
                f"it was written by a newer storybot (schema version {current}; this one knows "
                f"{known}): upgrade storybot, or restore a backup made before the upgrade",
            )
        for version, name, sql in migrations():
            if version <= current:
                continue
            log.info("applying migration %s", name)
            async with self._lock:
                # executescript commits first, so the file runs inside its own BEGIN…COMMIT.
                await self._db.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
                )
            current = version
        return current

    # -- stories and turns ---------------------------------------------------------------------

    async def start_story(
        self,
        guild_id: int,
        channel_id: int,
        mode: str,
        opening: str,
        author_id: int,
        reply_id: int | None = None,
        author_name: str | None = None,
    ) -> tuple[Story, Turn, Story | None]:
        """Archive the channel's active story (if any) and start a new one with its opening.

        ``reply_id`` names the pending reply (if any) the opening is saved for.
        """
        title = " ".join(opening.split())[:100]
        async with self._write() as db:
            previous = await _archive_active(db, channel_id)
            cursor = await db.execute(
                "INSERT INTO stories (guild_id, channel_id, title, mode, created_by)"
                " VALUES (?, ?, ?, ?, ?) RETURNING *",
                (guild_id, channel_id, title, mode, author_id),
            )
            story = _story(await cursor.fetchone())
            await cursor.close()
            [turn] = await _insert_turns(
                db,
                story.id,
                [NewTurn("opening", author_id, opening, author_name=author_name)],
                reply_id,
            )
        archived = None if previous is None else replace(_story(previous), active=False)
        return story, turn, archived

    async def active_story(self, channel_id: int) -> Story | None:
        rows = await self._read(
            "SELECT * FROM stories WHERE channel_id = ? AND active = 1", (channel_id,)
        )
        return _story(rows[0]) if rows else None

    async def story(self, story_id: int) -> Story | None:
        rows = await self._read("SELECT * FROM stories WHERE id = ?", (story_id,))
        return _story(rows[0]) if rows else None

    async def stories(self, channel_id: int) -> list[Story]:
        """Every story of a channel, newest first."""
        rows = await self._read(
            "SELECT * FROM stories WHERE channel_id = ? ORDER BY id DESC", (channel_id,)
        )
        return [_story(r) for r in rows]

    async def turns(self, story_id: int, include_deleted: bool = False) -> list[Turn]:
        """A story's turns in order (undone ones too with ``include_deleted``)."""
        sql = f"SELECT {_TURN_COLUMNS} FROM turns WHERE story_id = ?"
        if not include_deleted:
            sql += " AND deleted = 0"
        rows = await self._read(sql + " ORDER BY position", (story_id,))
        return [_turn(r) for r in rows]

    async def append_turns(
        self, story_id: int, turns: Sequence[NewTurn], reply_id: int | None = None
    ) -> list[Turn]:
        """Append turns at the end of an active story, atomically (saved for ``reply_id``)."""
        async with self._write() as db:
            row = await _one(db, "SELECT active FROM stories WHERE id = ?", (story_id,))
            if row is None or not row["active"]:
                raise StoryGone(f"story {story_id} is not active")
            return await _insert_turns(db, story_id, turns, reply_id)

    async def turn(self, turn_id: int) -> Turn | None:
        rows = await self._read(f"SELECT {_TURN_COLUMNS} FROM turns WHERE id = ?", (turn_id,))
        return _turn(rows[0]) if rows else None

    async def turn_notes(self, turn_id: int) -> bytes | None:
        """The packed token notes of a model turn, if they were kept."""
        rows = await self._read("SELECT notes FROM turn_notes WHERE turn_id = ?", (turn_id,))
        return rows[0]["notes"] if rows else None

    async def undo_turn(self, turn_id: int, by: int) -> None:
        """Soft-delete a turn: it leaves the story but stays in the record, with who and when."""
        async with self._write() as db:
            await db.execute(
                "UPDATE turns SET deleted = 1, deleted_by = ?,"
                " deleted_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                (by, turn_id),
            )

    async def redo_turn(self, turn_id: int) -> None:
        """Put an undone turn back."""
        async with self._write() as db:
            await db.execute(
                "UPDATE turns SET deleted = 0, deleted_by = NULL, deleted_at = NULL WHERE id = ?",
                (turn_id,),
            )

    async def add_version(
        self,
        turn_id: int,
        text: str,
        settings: dict[str, Any] | None = None,
        notes: bytes | None = None,
        edited_by: int | None = None,
    ) -> Turn:
        """Give a turn a new version (a retry, an edit) and choose it; the others are kept."""
        async with self._write() as db:
            await _keep_first_version(db, turn_id)
            row = await _one(
                db, "SELECT MAX(number) FROM turn_versions WHERE turn_id = ?", (turn_id,)
            )
            await db.execute(
                "INSERT INTO turn_versions (turn_id, number, text, settings, notes, edited_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (turn_id, row[0] + 1, text, _json(settings), notes, edited_by),
            )
            await _choose(db, turn_id, row[0] + 1)
        return await self.turn(turn_id)

    async def choose_version(self, turn_id: int, number: int) -> Turn:
        """Make version ``number`` the story's (it must exist)."""
        async with self._write() as db:
            await _choose(db, turn_id, number)
        return await self.turn(turn_id)

    async def versions(self, turn_id: int) -> list[tuple[int, str, int | None]]:
        """A turn's versions, as (number, text, edited_by); empty when it has only itself."""
        rows = await self._read(
            "SELECT number, text, edited_by FROM turn_versions WHERE turn_id = ? ORDER BY number",
            (turn_id,),
        )
        return [(r["number"], r["text"], r["edited_by"]) for r in rows]

    # -- a story's memory, note and life -------------------------------------------------------

    async def set_memory(self, story_id: int, text: str) -> None:
        async with self._write() as db:
            await db.execute("UPDATE stories SET memory = ? WHERE id = ?", (text, story_id))

    async def set_note(self, story_id: int, text: str) -> None:
        async with self._write() as db:
            await db.execute("UPDATE stories SET note = ? WHERE id = ?", (text, story_id))

    async def end_story(self, story_id: int) -> None:
        """Archive a story as finished: the channel has none active until a /write or resume."""
        async with self._write() as db:
            await db.execute(
                "UPDATE stories SET active = 0,"
                " archived_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),"
                " ended_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                (story_id,),
            )

    async def resume_story(self, story_id: int) -> Story | None:
        """Make an archived story of its channel the active one again, archiving the current
        one; returns the story that was archived for it, if any."""
        async with self._write() as db:
            target = await _one(db, "SELECT * FROM stories WHERE id = ?", (story_id,))
            current = await _archive_active(db, target["channel_id"])
            await db.execute(
                "UPDATE stories SET active = 1, archived_at = NULL, ended_at = NULL WHERE id = ?",
                (story_id,),
            )
        return None if current is None else replace(_story(current), active=False)

    # -- replies members are waiting for -----------------------------------------------------

    async def open_reply(self, reply: PendingReply) -> None:
        """Remember an acknowledged command until :meth:`close_reply`."""
        async with self._write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO pending_replies"
                " (id, application_id, token, expires_at, channel_id, user_id, user_name)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    reply.id,
                    reply.application_id,
                    reply.token,
                    reply.expires_at,
                    reply.channel_id,
                    reply.user_id,
                    reply.user_name,
                ),
            )

    async def close_reply(self, reply_id: int) -> None:
        """The member has their answer: forget the reply."""
        async with self._write() as db:
            await db.execute("DELETE FROM pending_replies WHERE id = ?", (reply_id,))

    async def pending_replies(self) -> list[PendingReply]:
        """Every reply still open (left by a crash), oldest first, with the turns saved for it."""
        replies = await self._read("SELECT * FROM pending_replies ORDER BY id")
        saved = await self._read(
            "SELECT pending_reply_turns.reply_id, turns.* FROM pending_reply_turns"
            " JOIN turns ON turns.id = pending_reply_turns.turn_id ORDER BY turns.id"
        )
        turns: dict[int, list[Turn]] = {}
        for row in saved:
            turns.setdefault(row["reply_id"], []).append(_turn(row))
        return [
            PendingReply(
                id=r["id"],
                application_id=r["application_id"],
                token=r["token"],
                expires_at=r["expires_at"],
                channel_id=r["channel_id"],
                user_id=r["user_id"],
                user_name=r["user_name"],
                saved=tuple(turns.get(r["id"], ())),
            )
            for r in replies
        ]

    # -- settings ------------------------------------------------------------------------------

    async def settings(
        self, guild_id: int, channel_id: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The server-wide settings and this channel's overrides."""
        rows = await self._read(
            "SELECT channel_id, key, value FROM settings WHERE guild_id = ? AND channel_id IN (?, ?)",
            (guild_id, SERVER_WIDE, channel_id),
        )
        server = {r["key"]: json.loads(r["value"]) for r in rows if r["channel_id"] == SERVER_WIDE}
        channel = {r["key"]: json.loads(r["value"]) for r in rows if r["channel_id"] != SERVER_WIDE}
        return server, channel

    async def set_setting(
        self, guild_id: int, channel_id: int, key: str, value: Any, changed_by: int
    ) -> Any:
        """Set (or with ``value=None`` reset) one setting, auditing it; return the old value."""
        async with self._write() as db:
            row = await _one(
                db,
                "SELECT value FROM settings WHERE guild_id = ? AND channel_id = ? AND key = ?",
                (guild_id, channel_id, key),
            )
            old = None if row is None else row["value"]
            new = None if value is None else json.dumps(value)
            if old == new:
                return value  # nothing changes, so nothing to audit
            if new is None:
                await db.execute(
                    "DELETE FROM settings WHERE guild_id = ? AND channel_id = ? AND key = ?",
                    (guild_id, channel_id, key),
                )
            else:
                await db.execute(
                    "INSERT INTO settings (guild_id, channel_id, key, value, updated_by)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, channel_id, key) DO UPDATE SET"
                    " value = excluded.value, updated_by = excluded.updated_by,"
                    " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                    (guild_id, channel_id, key, new, changed_by),
                )
            await _audit(
                db, guild_id, channel_id, key,
                None if old is None else json.loads(old), value, changed_by,
            )  # fmt: skip
        return None if old is None else json.loads(old)

    async def channel_overrides(self, guild_id: int, key: str) -> dict[int, Any]:
        """Every channel of the server that sets ``key`` itself, and its value."""
        rows = await self._read(
            "SELECT channel_id, value FROM settings WHERE guild_id = ? AND key = ?"
            " AND channel_id != ? ORDER BY channel_id",
            (guild_id, key, SERVER_WIDE),
        )
        return {r["channel_id"]: json.loads(r["value"]) for r in rows}

    async def audit(
        self, guild_id: int, limit: int = 20, key: str | None = None, offset: int = 0
    ) -> list[AuditEntry]:
        """A server's settings changes (of ``key`` only, if given), newest first."""
        where, args = ("guild_id = ?", [guild_id])
        if key is not None:
            where, args = (where + " AND key = ?", [*args, key])
        rows = await self._read(
            f"SELECT * FROM settings_audit WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [
            AuditEntry(
                guild_id=r["guild_id"],
                channel_id=r["channel_id"],
                key=r["key"],
                old_value=None if r["old_value"] is None else json.loads(r["old_value"]),
                new_value=None if r["new_value"] is None else json.loads(r["new_value"]),
                changed_by=r["changed_by"],
                changed_at=r["changed_at"],
            )
            for r in rows
        ]

    async def audit_count(self, guild_id: int, key: str | None = None) -> int:
        where, args = ("guild_id = ?", [guild_id])
        if key is not None:
            where, args = (where + " AND key = ?", [*args, key])
        rows = await self._read(f"SELECT count(*) FROM settings_audit WHERE {where}", tuple(args))
        return rows[0][0]

    # -- banned words --------------------------------------------------------------------------

    async def banned_words(self, guild_id: int) -> list[str]:
        """The server's banned words and phrases, as they were added, in the order added."""
        rows = await self._read(
            "SELECT word FROM banned_words WHERE guild_id = ? ORDER BY rowid", (guild_id,)
        )
        return [r["word"] for r in rows]

    async def ban_word(self, guild_id: int, word: str, folded: str, by: int) -> bool:
        """Add a banned word (audited); False when it (or a look-alike) is already banned."""
        async with self._write() as db:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO banned_words (guild_id, word, folded, added_by)"
                " VALUES (?, ?, ?, ?)",
                (guild_id, word, folded, by),
            )
            if not cursor.rowcount:
                return False
            await _audit(db, guild_id, SERVER_WIDE, "banned_words", None, word, by)
        return True

    async def unban_word(self, guild_id: int, folded: str, by: int) -> str | None:
        """Remove a banned word (audited); the word as it was added, or None if not banned."""
        async with self._write() as db:
            row = await _one(
                db,
                "SELECT word FROM banned_words WHERE guild_id = ? AND folded = ?",
                (guild_id, folded),
            )
            if row is None:
                return None
            await db.execute(
                "DELETE FROM banned_words WHERE guild_id = ? AND folded = ?", (guild_id, folded)
            )
            await _audit(db, guild_id, SERVER_WIDE, "banned_words", row["word"], None, by)
        return row["word"]

    # -- requests, for /stats ------------------------------------------------------------------

    async def record_request(self, request: RequestRecord) -> None:
        """Note one request to write a part: written, or refused and why."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO requests (guild_id, channel_id, user_id, at, outcome, tokens,"
                " wait_ms, write_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.guild_id, request.channel_id, request.user_id, request.at,
                    request.outcome, request.tokens, request.wait_ms, request.write_ms,
                ),
            )  # fmt: skip

    async def requests_since(self, guild_id: int, since: float) -> list[RequestRecord]:
        rows = await self._read(
            "SELECT * FROM requests WHERE guild_id = ? AND at >= ? ORDER BY at",
            (guild_id, since),
        )
        return [
            RequestRecord(
                r["guild_id"], r["channel_id"], r["user_id"], r["at"], r["outcome"],
                r["tokens"], r["wait_ms"], r["write_ms"],
            )
            for r in rows
        ]  # fmt: skip

    async def forget_requests(self, before: float) -> int:
        """Drop request records older than ``before``; how many went."""
        async with self._write() as db:
            cursor = await db.execute("DELETE FROM requests WHERE at < ?", (before,))
            return cursor.rowcount


async def _audit(
    db: aiosqlite.Connection, guild_id: int, channel_id: int, key: str, old: Any, new: Any, by: int
) -> None:
    await db.execute(
        "INSERT INTO settings_audit (guild_id, channel_id, key, old_value, new_value, changed_by)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            guild_id, channel_id, key,
            None if old is None else json.dumps(old), None if new is None else json.dumps(new), by,
        ),
    )  # fmt: skip


async def _archive_active(db: aiosqlite.Connection, channel_id: int) -> aiosqlite.Row | None:
    """Archive the channel's active story, if it has one; return it as it was."""
    active = await _one(
        db, "SELECT * FROM stories WHERE channel_id = ? AND active = 1", (channel_id,)
    )
    if active is not None:
        await db.execute(
            "UPDATE stories SET active = 0, archived_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
            " WHERE id = ?",
            (active["id"],),
        )
    return active


async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> aiosqlite.Row | None:
    async with db.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def _insert_turns(
    db: aiosqlite.Connection, story_id: int, turns: Sequence[NewTurn], reply_id: int | None = None
) -> list[Turn]:
    row = await _one(
        db, "SELECT COALESCE(MAX(position), -1) FROM turns WHERE story_id = ?", (story_id,)
    )
    position = row[0]
    inserted = []
    for turn in turns:
        position += 1
        async with db.execute(
            "INSERT INTO turns (story_id, position, kind, author_id, text, settings, requested_by,"
            " author_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
            (
                story_id,
                position,
                turn.kind,
                turn.author_id,
                turn.text,
                _json(turn.settings),
                turn.requested_by,
                turn.author_name,
            ),
        ) as cursor:
            inserted.append(_turn(await cursor.fetchone()))
        if turn.notes is not None:
            await db.execute(
                "INSERT INTO turn_notes (turn_id, notes) VALUES (?, ?)",
                (inserted[-1].id, turn.notes),
            )
    if reply_id is not None:  # linked only while the reply is open (the console has none)
        for turn in inserted:
            await db.execute(
                "INSERT INTO pending_reply_turns (reply_id, turn_id)"
                " SELECT id, ? FROM pending_replies WHERE id = ?",
                (turn.id, reply_id),
            )
    return inserted


def _story(row: aiosqlite.Row) -> Story:
    return Story(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        title=row["title"],
        mode=row["mode"],
        active=bool(row["active"]),
        created_by=row["created_by"],
        created_at=row["created_at"],
        memory=row["memory"],
        note=row["note"],
        ended_at=row["ended_at"],
    )


# A turn as read back: its columns and how many versions it has.
_TURN_COLUMNS = (
    "turns.*, MAX(1, (SELECT COUNT(*) FROM turn_versions WHERE turn_id = turns.id)) AS versions"
)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


async def _keep_first_version(db: aiosqlite.Connection, turn_id: int) -> None:
    """Before a turn's first new version, keep the turn as it is as version 1."""
    await db.execute(
        "INSERT OR IGNORE INTO turn_versions (turn_id, number, text, settings, notes, edited_by)"
        " SELECT turns.id, 1, turns.text, turns.settings, turn_notes.notes, turns.edited_by"
        " FROM turns LEFT JOIN turn_notes ON turn_notes.turn_id = turns.id WHERE turns.id = ?",
        (turn_id,),
    )


async def _choose(db: aiosqlite.Connection, turn_id: int, number: int) -> None:
    version = await _one(
        db, "SELECT * FROM turn_versions WHERE turn_id = ? AND number = ?", (turn_id, number)
    )
    if version is None:
        raise ValueError(f"turn {turn_id} has no version {number}")
    await db.execute(
        "UPDATE turns SET text = ?, settings = ?, version = ?, edited_by = ? WHERE id = ?",
        (version["text"], version["settings"], number, version["edited_by"], turn_id),
    )
    await db.execute("DELETE FROM turn_notes WHERE turn_id = ?", (turn_id,))
    if version["notes"] is not None:
        await db.execute(
            "INSERT INTO turn_notes (turn_id, notes) VALUES (?, ?)", (turn_id, version["notes"])
        )


def _turn(row: aiosqlite.Row) -> Turn:
    return Turn(
        id=row["id"],
        story_id=row["story_id"],
        position=row["position"],
        kind=row["kind"],
        author_id=row["author_id"],
        text=row["text"],
        settings=None if row["settings"] is None else json.loads(row["settings"]),
        created_at=row["created_at"],
        deleted=bool(row["deleted"]),
        version=row["version"],
        versions=row["versions"] if "versions" in row.keys() else 1,  # noqa: SIM118 - a Row
        edited_by=row["edited_by"],
        requested_by=row["requested_by"],
        deleted_by=row["deleted_by"],
        author_name=row["author_name"],
    )


def _explain(error: sqlite3.DatabaseError) -> str:
    """SQLite's reason in words a host can act on."""
    text = str(error)
    if "not a database" in text:
        return "it is not a SQLite database (or it is encrypted or badly damaged)"
    if "malformed" in text:
        return "it is damaged (restore a backup, or try `sqlite3 FILE .recover`)"
    if "readonly" in text or "read-only" in text:
        return "it is read-only: give the bot's user write access to the file and its folder"
    return text


def _is_storage_fault(error: BaseException) -> bool:
    """A fault of the file or the disk (busy, full, read-only, damaged), not a bug in our SQL."""
    return isinstance(error, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.IntegrityError | sqlite3.ProgrammingError
    )


def inspect(path: str | Path) -> tuple[bool, str]:
    """Whether storybot can use the database at ``path``, and why; reads only, creates nothing.

    For ``storybot check``: a missing file is fine when its folder can be made and written; an
    existing one must be a sound SQLite file that storybot's user can write, with its folder
    (SQLite keeps its journal next to the file).
    """
    path = Path(path)
    if not path.exists():
        folder = path.parent
        while not folder.exists():
            folder = folder.parent
        if not os.access(folder, os.W_OK | os.X_OK):
            return False, f"{path} does not exist and cannot be created: {folder} is not writable"
        return True, f"{path} does not exist yet; it will be created at the first start"
    if path.is_dir():
        return False, f"{path} is a folder, not a database file"
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            found = db.execute("PRAGMA quick_check").fetchall()
            version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as error:
        return False, str(DatabaseUnusable(path, _explain(error)))
    health = "; ".join(str(row[0]) for row in found[:5])
    if health != "ok":
        return False, f"{path} is damaged: {health}"
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)):
        return False, _explain(sqlite3.OperationalError("readonly")) + f" ({path})"
    newest = len(migrations())
    if version > newest:
        return False, (
            f"{path} has schema version {version}, newer than this storybot knows ({newest}): "
            "it was used by a newer version; upgrade storybot"
        )
    pending = (
        f"; {newest - version} migration(s) will run at the next start" if version < newest else ""
    )
    return True, f"{path} is writable and sound (schema version {version}{pending})"
