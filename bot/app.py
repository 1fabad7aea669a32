"""Composition root: builds the store, engine, limiter and service, and the Discord bot over them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Config
from bot.engine import LocalEngine
from bot.engine.remote import RemoteEngine
from bot.limits import Admission, ChannelOrder
from bot.service import StoryService
from bot.store import Store

if TYPE_CHECKING:
    from bot.engine.ctranslate2 import CTranslate2Engine


@dataclass
class Services:
    """Everything below the adapters, opened and ready."""

    store: Store
    engine: LocalEngine | RemoteEngine | CTranslate2Engine
    service: StoryService

    async def close(self) -> None:
        await self.engine.close()
        await self.store.close()


async def open_services(config: Config) -> Services:
    """Open the database, load the model and start its worker."""
    admission = Admission(config.moderation.limits_storage)
    await admission.ready()
    store = await Store.open(config.database.path)
    engine = make_engine(config)
    try:
        await engine.start()
    except BaseException:
        await store.close()
        raise
    service = StoryService(config, store, engine, admission, ChannelOrder())
    return Services(store, engine, service)


def make_engine(config: Config) -> LocalEngine | RemoteEngine | CTranslate2Engine:
    """The engine ``model.backend`` names: the model in this process, a remote server, or a
    model converted for CTranslate2 in this process."""
    if config.model.backend == "openai":
        return RemoteEngine(config.model, config.remote)
    if config.model.backend == "ctranslate2":
        # Imported here: CTranslate2's native library loads only for the hosts who use it.
        from bot.engine.ctranslate2 import CTranslate2Engine

        return CTranslate2Engine(config.model, config.ctranslate2)
    return LocalEngine(config.model)


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
    from bot.client import ShardedStoryBot, StoryBot  # discord only in the Discord adapter

    d = config.discord
    several = d.shard_count and len(d.shard_ids) != 1
    return (ShardedStoryBot if several else StoryBot)(config, open_services if serve else None)
