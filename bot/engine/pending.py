"""The event loop's side of one request, shared by the engines whose model runs in a worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from bot.engine.types import GenerationRequest, GenerationResult


class Pending:
    """The event loop's side of one request: its future and, when streaming, its delta callback."""

    def __init__(
        self,
        request: GenerationRequest,
        deadline: float,
        on_delta: Callable[[str], object] | None = None,
    ) -> None:
        self.request = request
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[GenerationResult] = self.loop.create_future()
        self.on_delta = on_delta
        self.submitted = time.monotonic()
        self.started: float | None = None
        self.first_token: float | None = None
        self.cancelled = False  # set from the loop, read by the worker

    @property
    def streaming(self) -> bool:
        return self.on_delta is not None

    def _call(self, fn, *args) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting any more
            self.loop.call_soon_threadsafe(fn, *args)

    def emit(self, delta: str) -> None:
        if self.on_delta is not None and delta:
            self._call(self.on_delta, delta)

    def finish(self, result: GenerationResult | None = None, error: BaseException | None = None):
        def settle() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self._call(settle)
