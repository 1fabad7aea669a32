"""Admission: moving-window rate limits per member, channel and server, a channel's cooldown, and
one writer at a time per channel, in arrival order.

The windows are kept by the `limits` library: in this process (``memory://``), or in Redis when
several bot processes share them. A part counts from the moment it is asked for: while it is being
written it holds its place here, and once written it is recorded in the window; a part that fails
gives its place back (a refund), so nobody pays for a part they never got.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from limits.aio.storage import MemoryStorage, MovingWindowSupport
from limits.storage import storage_from_string

from bot.errors import LimitsUnavailable, RateLimited, StoryBusy

RECORD_ALWAYS = 2**31  # a "limit" no window reaches
LimitScope = Literal["user", "server", "channel", "cooldown"]


@dataclass(frozen=True)
class Limit:
    """One limit a request must fit: who it counts against, and how many parts in what window.

    The window's counter is named by ``key`` and the window's length, not by the amount, so a
    moderator who lowers a limit lowers it on the parts already written.
    """

    scope: LimitScope
    key: tuple[str, ...]  # identifiers of the counter, e.g. ("user", guild, member)
    amount: int
    window_s: int = 60

    @classmethod
    def per_minute(cls, scope: LimitScope, key: tuple[object, ...], amount: int) -> Limit:
        return cls(scope, tuple(map(str, key)), int(amount))

    @classmethod
    def cooldown(cls, key: tuple[object, ...], seconds: int) -> Limit:
        """One part per ``seconds``: the channel rests that long after each part."""
        return cls("cooldown", tuple(map(str, key)), 1, int(seconds))

    @property
    def counter(self) -> str:
        return "/".join(("storybot", *self.key, str(self.window_s)))


@dataclass(eq=False)
class Ticket:
    """An admitted request: ``spend`` when its part is written, ``refund`` when it is not."""

    _admission: Admission
    _limits: tuple[Limit, ...]
    _open: bool = field(default=True)

    async def spend(self) -> None:
        """Record the part in every window and give up the places it held."""
        if self._release():
            for limit in self._limits:
                await self._admission.record(limit)

    def refund(self) -> None:
        """The part was not written: give its places back, recording nothing."""
        self._release()

    def _release(self) -> bool:
        if not self._open:
            return False
        self._open = False
        for limit in self._limits:
            self._admission._holding(limit, -1)
        return True


class Admission:
    """Admits a request when every limit it must fit has room, counting parts being written.

    The windows are the `limits` library's moving windows (its memory or Redis storage, which
    keep each counter's timestamps: a Redis list updated by Lua scripts).
    """

    def __init__(self, uri: str = "memory://", clock: Callable[[], float] = time.time) -> None:
        self.uri = uri
        self.clock = clock  # wall-clock seconds, as the windows keep them
        self._storage: MovingWindowSupport | None = None
        self._held: collections.Counter[str] = collections.Counter()
        self._lock = asyncio.Lock()

    @property
    def storage(self) -> MovingWindowSupport:
        if self._storage is None:
            # Made on first use, inside the event loop that the memory storage schedules on.
            if self.uri == "memory://":
                self._storage = MemoryStorage()
            else:
                self._storage = storage_from_string(f"async+{self.uri}", implementation="redispy")
        return self._storage

    @property
    def shown_uri(self) -> str:
        """The storage's URI without a password in it."""
        return re.sub(r"//[^@/]*@", "//***@", self.uri)

    async def ready(self) -> None:
        """Make sure the storage answers (Redis is reachable), or say why not."""
        try:
            answered = await asyncio.wait_for(self.storage.check(), 5)
            reason = "it did not answer a ping"
        except Exception as error:  # the client's own errors vary by library version
            answered, reason = False, type(error).__name__
        if not answered:
            raise LimitsUnavailable(self.shown_uri, reason)

    async def admit(self, limits: Sequence[Limit]) -> Ticket:
        """Hold a place in every limit, or refuse with the first that is full and when it frees.

        Nothing is held unless every limit has room, so a refusal costs nothing.
        """
        async with self._lock:  # no other admission between looking and holding
            for limit in limits:
                oldest, count = await self.storage.get_moving_window(
                    limit.counter, limit.amount, limit.window_s
                )
                held = self._held[limit.counter]
                if count + held >= limit.amount:
                    # A place frees when the oldest part counted leaves the window; when only
                    # parts being written fill it, a whole window after they are recorded.
                    wait = oldest + limit.window_s - self.clock() if count else limit.window_s
                    raise RateLimited(limit.scope, limit.amount, max(0.0, wait), limit.window_s)
            for limit in limits:
                self._holding(limit, +1)
        return Ticket(self, tuple(limits))

    async def record(self, limit: Limit) -> None:
        """One part in ``limit``'s window. It was admitted with room for it, so it is recorded
        whatever the window holds by now."""
        await self.storage.acquire_entry(limit.counter, RECORD_ALWAYS, limit.window_s)

    def _holding(self, limit: Limit, change: int) -> None:
        self._held[limit.counter] += change
        if self._held[limit.counter] <= 0:
            del self._held[limit.counter]


@dataclass(eq=False)
class _Waiter:
    notify: Callable[[int], object] | None


class ChannelOrder:
    """One writer at a time per channel, in arrival order, with a bounded line.

    Whoever waits may be told how many are ahead of them, each time the line moves.
    """

    def __init__(self, max_waiting: int = 8) -> None:
        self.max_waiting = max_waiting
        self._locks: dict[int, asyncio.Lock] = {}
        self._lines: dict[int, list[_Waiter]] = {}

    def waiting(self, channel_id: int) -> int:
        """How many requests hold or wait for this channel's turn."""
        return len(self._lines.get(channel_id, ()))

    @asynccontextmanager
    async def turn(
        self,
        channel_id: int,
        wait_s: float | None = None,
        on_wait: Callable[[int], object] | None = None,
    ) -> AsyncIterator[None]:
        """Wait (at most ``wait_s``) for this channel's turn; asyncio.Lock wakes waiters in order.

        ``on_wait(ahead)`` hears how many requests are ahead, when this one has to wait and
        whenever that number falls.
        """
        line = self._lines.setdefault(channel_id, [])
        if len(line) > self.max_waiting:
            raise StoryBusy()
        lock = self._locks.setdefault(channel_id, asyncio.Lock())
        me = _Waiter(on_wait)
        line.append(me)
        if len(line) > 1 and on_wait is not None:
            on_wait(len(line) - 1)
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
            place = line.index(me)
            line.remove(me)
            for ahead, waiter in enumerate(line[place:], place):
                if ahead and waiter.notify is not None:
                    waiter.notify(ahead)  # everyone behind moved up one
            if not line:
                del self._lines[channel_id]
                self._locks.pop(channel_id, None)
