"""Time for the emulator: an injectable clock and a snowflake factory.

Every deadline the emulator enforces (the 3 s acknowledgement window, the
15 min interaction-token lifetime) is measured on :class:`Clock`, so a test can
jump forward with :meth:`Clock.advance` instead of sleeping.  Snowflakes carry
the clock's time too, which keeps ids, timestamps and deadlines consistent.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time

DISCORD_EPOCH_MS = 1_420_070_400_000
"""2015-01-01T00:00:00Z in Unix milliseconds, the origin of Discord snowflakes."""


class Clock:
    """Wall-clock seconds since the Unix epoch, shifted by a test-controlled offset."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        """The current (possibly advanced) time in Unix seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward; deadlines that would pass in ``seconds`` pass now."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds


def isoformat(timestamp: float) -> str:
    """A Unix timestamp as the ISO 8601 string Discord puts in payloads."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()


class Snowflakes:
    """Issues unique snowflakes: ``(ms since 2015-01-01) << 22 | counter``."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counter = itertools.count()

    def next(self) -> int:
        millis = int(self._clock.time() * 1000) - DISCORD_EPOCH_MS
        return (millis << 22) | (next(self._counter) & 0x3FFFFF)
