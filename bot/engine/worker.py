"""What the engines whose model runs in a worker thread of this process share (the local engine,
CTranslate2's): each request's handle on the event loop's side, and the engine's queue, worker,
lifecycle and asyncio face."""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bot.config import ModelConfig
from bot.engine.types import (
    EngineBusy,
    EngineError,
    EngineStopping,
    EngineUnavailable,
    GenerationRequest,
    GenerationResult,
    GenerationTimeout,
)

log = logging.getLogger(__name__)

DEADLINE_GRACE_S = 5.0


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


@dataclass
class EngineStats:
    """A snapshot of the engine's load."""

    queued: int
    active: int
    completed: int
    failed: int
    restarts: int
    batch_cap: int
    prefix_hits: int = 0  # turns that encoded only what was new since a stored context
    prefix_mb: float = 0.0  # memory the stored contexts take


class WorkerEngine(abc.ABC):
    """What the engines whose model runs in one worker thread share: the queue the event loop
    fills, the worker's life (a worker that dies fails what it held and is started again), the
    asyncio face, and failing requests. A subclass loads its model (``_load``), serves the queue
    (``_serve``) and fails what its worker holds (``_fail_everything``)."""

    worker_name = "storybot-engine"

    def __init__(self, config: ModelConfig, loaded=None) -> None:
        self.config = config
        self._loaded = loaded
        self._queue: collections.deque[Pending] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._cutting = False  # cut_short() was called: rows end now, nothing new starts
        self._thread: threading.Thread | None = None
        self.completed = self.failed = self.restarts = 0

    # -- what a subclass provides ----------------------------------------------------------------

    @abc.abstractmethod
    def _load(self):
        """Load the model (in a thread, at start); what ``loaded`` returns."""

    @abc.abstractmethod
    def _serve(self) -> None:
        """The worker's loop: take requests from the queue and write them, until closing."""

    @abc.abstractmethod
    def _fail_everything(self, error: Callable[[], EngineError]) -> None:
        """Fail every request the engine holds, each with a fresh ``error()``."""

    @abc.abstractmethod
    def _estimated_wait(self, depth: int) -> float:
        """Seconds a request behind ``depth`` others would wait, for the busy message."""

    def _pending(self, request: GenerationRequest, deadline: float, on_delta) -> Pending:
        return Pending(request, deadline, on_delta)

    def _ready(self) -> None:  # noqa: B027 - a hook: most engines need nothing here
        """Make the loaded model ready to serve, before the worker starts (nothing by default)."""

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the model (in a thread) and start the worker."""
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(self._load)
        self._ready()
        self._closing = False
        self._start_worker()

    async def close(self) -> None:
        """Stop the worker; every request still waiting fails with EngineUnavailable."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self._fail_everything(lambda: EngineUnavailable("the engine was closed"))

    def cut_short(self) -> None:
        """End every part now: rows being written finish with what they have (finish reason
        "interrupted"), requests not yet started fail with :class:`EngineStopping`, and new ones
        are refused. For a graceful stop that has run out of time to wait."""
        with self._cond:
            self._cutting = True
            self._cond.notify_all()

    @property
    def loaded(self):
        if self._loaded is None:
            raise EngineUnavailable("the engine has not been started")
        return self._loaded

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def n_positions(self) -> int:
        return self.loaded.n_positions

    # -- the asyncio face ------------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, on_delta: Callable[[str], object] | None = None
    ) -> GenerationResult:
        """Continue ``request``'s prompt; cancelling the awaiting task ends its row.

        ``on_delta``, if given, is called on the event loop with each new piece of text as it is
        decoded (never a split character); the pieces add up to the result's text.
        """
        pending = self._submit(request, on_delta)
        # The worker ends a row at its deadline; the grace is a backstop should the worker fail to.
        wait = pending.deadline - time.monotonic() + DEADLINE_GRACE_S
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), max(0.0, wait))
        except TimeoutError:
            pending.cancelled = True
            raise GenerationTimeout("no result by the deadline") from None
        except asyncio.CancelledError:
            pending.cancelled = True
            raise

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Yield the continuation as text deltas, never splitting a character."""
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        pending = self._submit(request, deltas.put_nowait)
        # Deltas are queued before the result is set, so the end marker comes after the last one.
        pending.future.add_done_callback(lambda _: deltas.put_nowait(None))
        try:
            while (delta := await deltas.get()) is not None:
                yield delta
            pending.future.result()  # raise the request's error, if it had one
        finally:
            if not pending.future.done():
                pending.cancelled = True

    def _submit(self, request: GenerationRequest, on_delta) -> Pending:
        if self._cutting:
            raise EngineStopping("the engine is stopping")
        if self._thread is None or self._closing:
            raise EngineUnavailable("the engine is not running")
        deadline = request.deadline or time.monotonic() + self.config.request_timeout_s
        pending = self._pending(request, deadline, on_delta)
        with self._cond:
            depth = len(self._queue)
            if depth >= self.config.max_queue:
                raise EngineBusy(depth, self._estimated_wait(depth))
            self._queue.append(pending)
            self._cond.notify()
        return pending

    # -- the worker ------------------------------------------------------------------------------

    def _start_worker(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.worker_name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            log.exception("the engine worker stopped unexpectedly; starting a new one")
            self.restarts += 1
            self._fail_everything(lambda: EngineUnavailable("the engine worker stopped"))
            with self._cond:
                if not self._closing:
                    self._start_worker()

    def _empty_queue(self) -> list[Pending]:
        """Take every request still waiting in the queue."""
        with self._cond:
            queued, self._queue = list(self._queue), collections.deque()
        return queued

    def _decode(self, ids: list[int]) -> str:
        return self.loaded.tokenizer.decode(ids, skip_special_tokens=True)

    def _fail(self, pending: Pending, error: EngineError) -> None:
        self.failed += 1
        pending.finish(error=error)
