"""Composition root: builds the store, engine, limiter and service, and the Discord bot over them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.config import Config
from bot.engine import LocalEngine
from bot.limits import Admission, ChannelOrder
from bot.service import StoryService
from bot.store import Store


@dataclass
class Services:
    """Everything below the adapters, opened and ready."""

    store: Store
    engine: LocalEngine
    service: StoryService

    async def close(self) -> None:
        await self.engine.close()
        await self.store.close()


async def open_services(config: Config) -> Services:
    """Open the database, load the model and start its worker."""
    admission = Admission(config.moderation.limits_storage)
    await admission.ready()
    store = await Store.open(config.database.path)
    engine = LocalEngine(config.model)
    try:
        await engine.start()
    except BaseException:
        await store.close()
        raise
    service = StoryService(config, store, engine, admission, ChannelOrder())
    return Services(store, engine, service)


@contextlib.asynccontextmanager
async def services(config: Config) -> AsyncIterator[Services]:
    """``open_services`` as a context manager that always closes them."""
    opened = await open_services(config)
    try:
        yield opened
    finally:
        await opened.close()


def create_bot(config: Config, *, serve: bool = True):
    """An unstarted :class:`~bot.client.StoryBot`; its ``setup_hook`` opens the services.

    With ``serve=False`` it only registers its commands (for ``storybot sync``).
    """
    from bot.client import StoryBot  # discord is imported only by the Discord adapter

    return StoryBot(config, open_services if serve else None)
