"""Running a bot against the emulator for the length of a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import discord

from .errors import EmulatorError, EmulatorTimeout
from .patching import patch_discord
from .server import DiscordEmulator

ClientT = TypeVar("ClientT", bound=discord.Client)

GUILD_READY_TIMEOUT = 0.05
"""Replaces discord.py's 2 s wait for more GUILD_CREATEs: the emulator sends them all at once."""


@contextlib.asynccontextmanager
async def running_bot(
    emulator: DiscordEmulator, bot: ClientT, *, token: str = "test-token", timeout: float = 10.0
) -> AsyncIterator[ClientT]:
    """Run ``bot`` against ``emulator`` until the block ends; yields once ``on_ready`` has fired.

    Inside :func:`patch_discord`: ``await bot.login(token)`` (runs
    ``setup_hook``), ``bot.connect()`` in a task, wait for IDENTIFY and then
    ``bot.wait_until_ready()``.  discord.py fires ``on_ready``
    ``guild_ready_timeout`` (2 s) after the last GUILD_CREATE; the bot's value
    is cut to 0.05 s first.  On exit the bot is closed and its connect task
    awaited, so no session, socket or discord.py task outlives the block; an
    exception that ended ``bot.connect()`` is re-raised.
    """
    connect: asyncio.Task[None] | None = None
    connect_error: BaseException | None = None
    with patch_discord(emulator):
        try:
            bot._connection.guild_ready_timeout = GUILD_READY_TIMEOUT
            await bot.login(token)
            connect = asyncio.create_task(bot.connect(), name="emulated-bot-connect")
            await _wait_identified(emulator, connect, timeout)
            try:
                await asyncio.wait_for(bot.wait_until_ready(), timeout)
            except TimeoutError:
                raise EmulatorTimeout(f"on_ready did not fire within {timeout}s") from None
            yield bot
        finally:
            await bot.close()
            if connect is not None:
                await asyncio.wait({connect}, timeout=timeout)
                if not connect.done():
                    connect.cancel()
                    await asyncio.wait({connect})
                if not connect.cancelled():
                    connect_error = connect.exception()
    if connect_error is not None:
        raise connect_error


async def _wait_identified(
    emulator: DiscordEmulator, connect: asyncio.Task[None], timeout: float
) -> None:
    ready = asyncio.ensure_future(emulator.wait_ready(timeout))
    await asyncio.wait({ready, connect}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        raise EmulatorError(
            f"bot.connect() ended before the bot identified: {connect.exception()!r}"
        )
    ready.result()
