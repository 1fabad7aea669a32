"""Admission: sliding-window rate limits per user and per server, and one writer per channel."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.errors import RateLimited, StoryBusy

WINDOW_S = 60.0
SWEEP_AT = 4096  # keys held before forgetting the idle ones


@dataclass
class Ticket:
    """A granted generation; ``refund`` gives it back when the generation did not happen."""

    _limiter: RateLimiter
    _keys: tuple[Hashable, ...]
    _at: float

    def refund(self) -> None:
        for key in self._keys:
            self._limiter._forget(key, self._at)


class RateLimiter:
    """Counts generations per key in a sliding one-minute window."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = WINDOW_S):
        self.clock = clock
        self.window = window
        self._hits: dict[Hashable, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )
        self._sweep_at = SWEEP_AT

    def _recent(self, key: Hashable, now: float) -> collections.deque[float]:
        hits = self._hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def admit(self, limits: dict[str, tuple[Hashable, int]]) -> Ticket:
        """Record one generation against every ``scope: (key, per-minute limit)``, or refuse.

        Nothing is recorded unless every scope has room, so a refusal costs nothing.
        """
        now = self.clock()
        for scope, (key, limit) in limits.items():
            hits = self._recent(key, now)
            if len(hits) >= limit:
                raise RateLimited(scope, limit, hits[len(hits) - limit] + self.window - now)
        keys = tuple(key for key, _ in limits.values())
        for key in keys:
            self._hits[key].append(now)
        if len(self._hits) > self._sweep_at:
            self._sweep(now)
        return Ticket(self, keys, now)

    def _sweep(self, now: float) -> None:
        """Forget keys with no hit in the window, so memory follows active users, not all users."""
        for key in [k for k in self._hits if not self._recent(k, now)]:
            del self._hits[key]
        self._sweep_at = max(SWEEP_AT, 2 * len(self._hits))

    def _forget(self, key: Hashable, at: float) -> None:
        hits = self._hits.get(key)
        if hits and at in hits:
            hits.remove(at)


class ChannelOrder:
    """One writer at a time per channel, in arrival order, with a bounded line."""

    def __init__(self, max_waiting: int = 8) -> None:
        self.max_waiting = max_waiting
        self._locks: dict[int, asyncio.Lock] = {}
        self._waiting: collections.Counter[int] = collections.Counter()

    @asynccontextmanager
    async def turn(self, channel_id: int, wait_s: float | None = None) -> AsyncIterator[None]:
        """Wait (at most ``wait_s``) for this channel's turn; asyncio.Lock wakes waiters in order."""
        if self._waiting[channel_id] > self.max_waiting:
            raise StoryBusy()
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        self._waiting[channel_id] += 1
        try:
            try:
                async with asyncio.timeout(wait_s):
                    await lock.acquire()
            except TimeoutError:
                raise StoryBusy(
                    "The story in this channel was busy for too long. Try again in a moment."
                ) from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._waiting[channel_id] -= 1
            if not self._waiting[channel_id]:
                del self._waiting[channel_id]
                self._locks.pop(channel_id, None)
