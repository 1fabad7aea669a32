"""Pointing an unmodified discord.py at the emulator.

discord.py 2.7 has exactly two hard-coded Discord addresses on the paths a bot uses:

* ``discord.http.Route.BASE`` (``https://discord.com/api/v10``): every REST
  call builds its URL from it when the ``Route`` is created, including the
  interaction callbacks, ``@original`` and follow-up webhooks made by
  ``discord/webhook/async_.py`` (which imports the same ``Route``).
* ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``
  (``wss://gateway.discord.gg/``): ``Client.connect`` opens the first
  websocket there without asking ``GET /gateway/bot`` (only
  ``AutoShardedClient`` asks), and falls back to it after INVALID_SESSION.
  Later connections use READY's ``resume_gateway_url``, which the emulator
  sets to itself.

Nothing else needs patching: ``Webhook.url`` and CDN asset URLs are only
formatted, never requested, unless the bot downloads avatars/emoji.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

if TYPE_CHECKING:
    from .server import DiscordEmulator


@contextlib.contextmanager
def patch_discord(emulator: DiscordEmulator) -> Iterator[None]:
    """Point ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` at ``emulator`` until exit."""
    with pointed_at(emulator.url):
        yield


@contextlib.contextmanager
def pointed_at(url: str) -> Iterator[None]:
    """Point discord.py at the emulator listening at ``url`` (``http://127.0.0.1:PORT``)."""
    saved_base, saved_gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = f"{url}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url.replace("http://", "ws://") + "/gateway")
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved_base, saved_gateway
