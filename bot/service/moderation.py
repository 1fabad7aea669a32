"""Moderating storybot in a server: its settings (for the server or one channel), banned words,
the history of every change, and how busy the bot is (``/stats``).

Every method checks that the actor moderates the server here: Manage Server (the adapter says so)
or one of the server's moderator roles (stored with its settings). Every change is audited.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Literal

from bot.banned import LONGEST, entry_key
from bot.errors import InvalidSetting
from bot.service.core import Actor, ServiceCore
from bot.settings import Resolved, Scope, SettingSpec
from bot.store import SERVER_WIDE, AuditEntry

log = logging.getLogger(__name__)

HISTORY_PAGE = 10
MOST_BANNED = 500  # words and phrases per server
PERIODS = {"hour": 3600.0, "day": 86400.0}
BANNED_KEY = "banned_words"


@dataclass(frozen=True)
class SettingsView:
    resolved: Resolved
    specs: dict[str, SettingSpec]
    scope_channel: int
    banned: list[str]  # the server's banned words
    host_banned: tuple[str, ...]  # the host's, in force everywhere


@dataclass(frozen=True)
class SettingChange:
    key: str
    scope: Scope
    channel_id: int  # SERVER_WIDE for the server
    old: Any
    new: Any
    effective: Any
    spec: SettingSpec


@dataclass(frozen=True)
class BannedChange:
    changed: list[str]  # added (or removed)
    unchanged: list[str]  # already banned (or not banned)
    banned: list[str]  # the server's list now


@dataclass(frozen=True)
class HistoryPage:
    entries: list[AuditEntry]
    page: int  # from 1
    pages: int
    key: str | None


@dataclass(frozen=True)
class Stats:
    """What the bot did in a server over the last ``period``."""

    period: str
    requests: int
    written: int
    tokens: int
    refusals: dict[str, int]  # reason → how many, most first
    wait_p50: float | None  # seconds from a request to the model starting on it
    wait_p95: float | None
    write_p50: float | None  # seconds the model took to write a part
    write_p95: float | None


class Moderation(ServiceCore):
    """Settings, banned words, their history and the server's statistics (mixed into
    StoryService)."""

    async def settings(self, actor: Actor, mode: str | None = None) -> SettingsView:
        """The settings in force in the actor's channel; moderators only."""
        here = await self._require_moderator(actor)
        resolved = here.settings if mode is None else await self._settings(actor, self.mode(mode))
        return SettingsView(
            resolved,
            self.specs,
            actor.channel_id,
            await self.store.banned_words(actor.guild_id),
            self.config.moderation.banned_words,
        )

    async def set_setting(
        self,
        actor: Actor,
        key: str,
        value: str | float | None,
        scope: Scope = "server",
        channel_id: int | None = None,
    ) -> SettingChange:
        """Set one setting for the server or a channel (this one unless ``channel_id``);
        ``value=None`` resets it."""
        await self._require_moderator(actor)
        spec = self.spec(key)
        if scope not in spec.scopes:
            raise InvalidSetting(
                f"`{spec.key}` is set for the whole server only: use `scope: server`."
            )
        new = None if value is None else spec.parse(value)
        channel = SERVER_WIDE if scope == "server" else (channel_id or actor.channel_id)
        old = await self.store.set_setting(actor.guild_id, channel, spec.key, new, actor.user_id)
        where = actor if channel == SERVER_WIDE else replace(actor, channel_id=channel)
        resolved = await self._settings(where, await self._mode_here(where))
        log.info(
            "guild %s: %s set %s (%s) from %r to %r",
            actor.guild_id, actor.user_id, spec.key, scope, old, new,
        )  # fmt: skip
        return SettingChange(spec.key, scope, channel, old, new, resolved[spec.key], spec)

    def spec(self, key: str) -> SettingSpec:
        spec = self.specs.get(key.strip().lower())
        if spec is None:
            raise InvalidSetting(f"There is no setting `{key}`. Settings: {', '.join(self.specs)}.")
        return spec

    # -- banned words ----------------------------------------------------------------------------

    async def ban(self, actor: Actor, words: str) -> BannedChange:
        """Ban words or phrases (separated by commas) in this server."""
        await self._require_moderator(actor)
        entries = _entries(words)
        banned = await self.store.banned_words(actor.guild_id)
        if len(banned) + len(entries) > MOST_BANNED:
            raise InvalidSetting(
                f"A server can ban at most {MOST_BANNED} words and phrases; this one has "
                f"{len(banned)}. Remove some with `/settings banned remove` first."
            )
        added, already = [], []
        for word in entries:
            done = await self.store.ban_word(actor.guild_id, word, entry_key(word), actor.user_id)
            (added if done else already).append(word)
        return BannedChange(added, already, await self.store.banned_words(actor.guild_id))

    async def unban(self, actor: Actor, words: str) -> BannedChange:
        """Allow banned words or phrases (separated by commas) again."""
        await self._require_moderator(actor)
        removed, missing = [], []
        for word in _entries(words):
            gone = await self.store.unban_word(actor.guild_id, entry_key(word), actor.user_id)
            if gone is None:
                missing.append(word)
            else:
                removed.append(gone)
        return BannedChange(removed, missing, await self.store.banned_words(actor.guild_id))

    # -- history and statistics ------------------------------------------------------------------

    async def history(self, actor: Actor, key: str | None = None, page: int = 1) -> HistoryPage:
        """The server's settings changes, newest first, ``HISTORY_PAGE`` a page."""
        await self._require_moderator(actor)
        if key is not None and key.strip().lower() != BANNED_KEY:
            key = self.spec(key).key
        elif key is not None:
            key = BANNED_KEY
        total = await self.store.audit_count(actor.guild_id, key)
        pages = max(1, math.ceil(total / HISTORY_PAGE))
        page = min(max(1, page), pages)
        entries = await self.store.audit(
            actor.guild_id, HISTORY_PAGE, key, offset=(page - 1) * HISTORY_PAGE
        )
        return HistoryPage(entries, page, pages, key)

    async def stats(self, actor: Actor, period: Literal["hour", "day"] = "hour") -> Stats:
        """What the bot did in this server over the last hour or day."""
        await self._require_moderator(actor)
        if period not in PERIODS:
            raise InvalidSetting(f"Statistics cover the last {' or '.join(PERIODS)}.")
        since = self.wall_clock() - PERIODS[period]
        records = await self.store.requests_since(actor.guild_id, since)
        written = [r for r in records if r.outcome == "written"]
        refusals = Counter(r.outcome for r in records if r.outcome != "written")
        waits = [r.wait_ms / 1000 for r in written if r.wait_ms is not None]
        writes = [r.write_ms / 1000 for r in written if r.write_ms is not None]
        return Stats(
            period,
            len(records),
            len(written),
            sum(r.tokens for r in written),
            dict(refusals.most_common()),
            percentile(waits, 50),
            percentile(waits, 95),
            percentile(writes, 50),
            percentile(writes, 95),
        )


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile (the median for 50), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _entries(words: str) -> list[str]:
    """Comma-separated words and phrases, each checked."""
    entries = [" ".join(w.split()) for w in words.split(",")]
    entries = [w for w in entries if w]
    if not entries:
        raise InvalidSetting("Name a word or phrase; separate several with commas.")
    for word in entries:
        if len(word) > LONGEST:
            raise InvalidSetting(
                f"A banned word or phrase is at most {LONGEST} characters; "
                f"“{word[:20]}…” has {len(word)}."
            )
        if not entry_key(word):
            raise InvalidSetting(f"“{word}” has no letters or digits to match.")
    return list(dict.fromkeys(entries))
