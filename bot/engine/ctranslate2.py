"""The CTranslate2 engine: a converted model (int8 on the CPU by default) behind the engine's face.

One worker thread owns the ``ctranslate2.Generator``. It takes the oldest waiting request and the
waiting ones that can share its call, and runs them as one ``generate_batch``. CTranslate2 takes
its sampling settings (temperature, top-k, top-p, repetition penalty, n-gram ban, minimum length,
banned sequences) per call, not per row, so only requests with the same settings share a call; and
it feeds a row's prompt tokens beyond the call's shortest prompt one step at a time, so only
prompts of about the same length share one. Each row's length limit is its own: the call runs to
the longest, and the per-step callback ends every other row at its limit.

The callback (on CTranslate2's own thread, while the worker waits for the call) streams each row's
text and ends a row at a stop string, its deadline, a cancel, a cut-short or a close. A row
finishes at once, except one that explains itself: the scores it is explained from come with the
call's results, so it finishes when the call does. Unlike the local engine there is no continuous
batching: a request that arrives during a call waits for the call to end.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from pathlib import Path

from bot.config import CTranslate2Config, ModelConfig
from bot.engine.converted import ConvertedModel, convert, load_converted
from bot.engine.ct2call import CallSettings, step_scores, token_choices
from bot.engine.sampling import StopRule, TextStream
from bot.engine.types import (
    EngineError,
    EngineStopping,
    EngineUnavailable,
    FinishReason,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    GenerationTimeout,
    TokenChoice,
)
from bot.engine.worker import EngineStats, Pending, WorkerEngine

__all__ = ["CTranslate2Engine", "convert"]  # convert: bot.engine.converted's, for the benchmarks

log = logging.getLogger(__name__)

# Most prompt tokens a row of a call may have beyond the call's shortest prompt: CTranslate2 feeds
# those one decoding step at a time, where a prompt of its own would be read in one pass.
PROMPT_SPREAD = 32


class _Pending(Pending):
    """A request with the prompt it is written after and the call settings it needs."""

    def __init__(
        self,
        request: GenerationRequest,
        prompt: list[int],
        deadline: float,
        on_delta: Callable[[str], object] | None,
    ) -> None:
        super().__init__(request, deadline, on_delta)
        self.prompt = prompt  # the newest tokens that fit with the answer
        self.settings = CallSettings.of(request, prompt)


class _Row:
    """One request in a call: what it has written and how it ended."""

    def __init__(self, pending: _Pending, eos_id: int | None, n_positions: int) -> None:
        request = pending.request
        self.pending = pending
        self.stop = StopRule(
            request.params, eos_id, request.stop_strings, n_positions - len(pending.prompt)
        )
        self.stream = TextStream(self.stop.stop_strings)
        self.generated: list[int] = []
        self.reason: FinishReason | None = None  # set when it has ended
        self.settled = False  # its result or error has been sent

    @property
    def writes_text(self) -> bool:
        """Whether each step needs the text so far: for the stream, or to find a stop string."""
        return self.pending.on_delta is not None or bool(self.stop.stop_strings)


class _Relay:
    """The callback CTranslate2 holds: it may keep it past the call, on its own thread, so it
    lets go of the engine when the call ends (were the engine's last reference dropped there,
    the generator would be destroyed on its own thread, which aborts the process)."""

    def __init__(self, target: Callable[[object], bool]) -> None:
        self.target: Callable[[object], bool] | None = target

    def __call__(self, step) -> bool:
        target = self.target
        return True if target is None else target(step)


class CTranslate2Engine(WorkerEngine):
    """Serves generation requests from a converted model in this process."""

    worker_name = "storybot-ct2"

    def __init__(
        self, model: ModelConfig, ct2: CTranslate2Config, loaded: ConvertedModel | None = None
    ) -> None:
        super().__init__(model, loaded)
        self.ct2 = ct2
        self._calling: list[_Row] = []  # the rows of the call under way
        self._seconds_per_call = 1.0

    def _load(self) -> ConvertedModel:
        if self.ct2.folder is None:
            raise EngineUnavailable("[ctranslate2] folder is not set")
        return load_converted(
            Path(self.ct2.folder), self.config.device, self.ct2.compute_type, self.ct2.threads
        )

    def stats(self) -> EngineStats:
        return EngineStats(
            queued=len(self._queue),
            active=sum(not row.settled for row in self._calling),
            completed=self.completed,
            failed=self.failed,
            restarts=self.restarts,
            batch_cap=self.config.max_batch_size,
        )

    def _pending(self, request: GenerationRequest, deadline: float, on_delta) -> _Pending:
        # Keep the newest tokens when the prompt and the answer would not fit (nanoGPT's crop).
        room = max(1, self.n_positions - request.params.max_new_tokens)
        return _Pending(request, list(request.prompt_ids[-room:]), deadline, on_delta)

    def _estimated_wait(self, depth: int) -> float:
        return (depth / self.config.max_batch_size + 1) * self._seconds_per_call

    # -- the worker --------------------------------------------------------------------------

    def _serve(self) -> None:
        while (taken := self._take()) is not None:
            if self._cutting:
                for pending in taken + self._empty_queue():
                    self._fail(pending, EngineStopping("stopped before it started"))
                continue
            if taken:
                self._call(taken)

    def _take(self) -> list[_Pending] | None:
        """The oldest waiting request and those that can share its call; None when closing."""
        cap = self.config.max_batch_size
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if self.config.batch_wait_ms and not self._closing:
                # A short gathering window lets a burst start as one call.
                self._cond.wait_for(
                    lambda: len(self._queue) >= cap or self._closing or self._cutting,
                    timeout=self.config.batch_wait_ms / 1000,
                )
            if self._closing:
                return None
            waiting = [p for p in self._queue if not p.cancelled]
            if not waiting:
                self._queue.clear()
                return []
            first = waiting[0]
            taken, shortest, longest = [first], len(first.prompt), len(first.prompt)
            for pending in waiting[1:]:
                if len(taken) >= cap:
                    break
                length = len(pending.prompt)
                spread = max(longest, length) - min(shortest, length)
                if pending.settings == first.settings and spread <= PROMPT_SPREAD:
                    taken.append(pending)
                    shortest, longest = min(shortest, length), max(longest, length)
            chosen = set(map(id, taken))
            self._queue = collections.deque(p for p in waiting if id(p) not in chosen)
        return taken

    def _call(self, taken: list[_Pending]) -> None:
        """Write the parts of ``taken`` (one set of settings) in one ``generate_batch``."""
        loaded = self.loaded
        now = time.monotonic()
        rows = []
        for pending in taken:
            if now > pending.deadline:
                self._fail(pending, GenerationTimeout("deadline passed while queued"))
                continue
            pending.started = now
            rows.append(_Row(pending, loaded.eos_id, loaded.n_positions))
        if not rows:
            return
        settings = taken[0].settings
        vocabulary = loaded.vocabulary
        self._calling = rows
        relay = _Relay(lambda step: self._on_step(rows[step.batch_id], step))
        try:
            results = loaded.generator.generate_batch(
                [[vocabulary[t] for t in row.pending.prompt] for row in rows],
                max_length=max(row.stop.max_new_tokens for row in rows),
                include_prompt_in_result=False,  # read the prompts in one pass, not token by token
                callback=relay,
                **settings.options(vocabulary, loaded.eos_id),
            )
        except Exception as error:  # these requests' fault (or the model's): they fail, not all
            log.exception("CTranslate2 failed on a call of %d rows", len(rows))
            for row in rows:
                if not row.settled:
                    self._settle_error(row, GenerationFailed(f"the model failed: {error!r}"))
            return
        finally:
            self._calling = []
            relay.target = None
        for row, result in zip(rows, results, strict=True):
            if not row.settled:
                self._deliver(row, row.reason or "length", result)
        self._seconds_per_call = 0.8 * self._seconds_per_call + 0.2 * (time.monotonic() - now)

    def _on_step(self, row: _Row, step) -> bool:
        """CTranslate2's callback for one row's new token; True ends the row."""
        try:
            return self._step(row, step)
        except Exception as error:  # a fault here must end the row, not the call's thread
            log.exception("a step of one row failed")
            self._settle_error(row, GenerationFailed(f"the engine failed: {error!r}"))
            return True

    def _step(self, row: _Row, step) -> bool:
        pending = row.pending
        if row.settled or row.reason is not None:
            return True
        if pending.cancelled:
            row.settled = True  # nobody is waiting for it
            return True
        if self._closing:
            self._settle_error(row, EngineUnavailable("the engine was closed"))
            return True
        if time.monotonic() > pending.deadline:
            self._settle_error(row, GenerationTimeout("deadline passed while generating"))
            return True
        if self._cutting:
            if not row.generated:  # cut before its first token: it never started
                self._settle_error(row, EngineStopping("stopped before it started"))
                return True
            return self._end(row, "interrupted")
        row.generated.append(step.token_id)
        if len(row.generated) == 1:
            row.pending.first_token = time.monotonic()
        text = self._decode(row.generated) if row.writes_text else None
        reason = row.stop.check(row.generated, text)
        if reason is None and step.is_last:
            reason = "length"  # the call's length limit, which no row's own is shorter than
        if reason is not None:
            return self._end(row, reason)
        if pending.on_delta is not None:
            pending.emit(row.stream.advance(text))
        return False

    def _end(self, row: _Row, reason: FinishReason) -> bool:
        """End the row; send its result now unless it waits for the call's scores."""
        row.reason = reason
        if not row.pending.settings.explain:
            self._deliver(row, reason)
        return True

    def _deliver(self, row: _Row, reason: FinishReason, result=None) -> None:
        """Send the row's text (and, with the call's ``result``, its explanation)."""
        eos = self.loaded.eos_id
        pending = row.pending
        ids = [t for t in row.generated if t != eos]
        text = row.stop.trim(self._decode(ids))
        pending.emit(row.stream.finish(text))
        choices: tuple[TokenChoice, ...] = ()
        if pending.settings.explain and result is not None:
            choices = self._choices(row, result)
        now = time.monotonic()
        row.settled = True
        self.completed += 1
        pending.finish(
            GenerationResult(
                text=text,
                token_ids=tuple(ids),
                finish_reason=reason,
                prompt_tokens=len(pending.prompt),
                queued_s=(pending.started or now) - pending.submitted,
                elapsed_s=now - pending.submitted,
                choices=choices,
                first_token_s=(pending.first_token or now) - pending.submitted,
            )
        )

    def _choices(self, row: _Row, result) -> tuple[TokenChoice, ...]:
        """How each written token was chosen, from the scores of the row's last steps (the steps
        before them fed the prompt's tokens)."""
        steps = result.logits[0] if result.logits else []
        written = len(row.generated)
        if not written or len(steps) < written:
            return ()
        scores = step_scores(steps[-written:])
        choices = token_choices(scores, row.generated, row.pending.request.params)
        return tuple(c for c in choices if c.token != self.loaded.eos_id)

    def _settle_error(self, row: _Row, error: EngineError) -> None:
        row.settled = True
        self._fail(row.pending, error)

    def _fail_everything(self, error: Callable[[], EngineError]) -> None:
        """Fail every request the engine holds, each with an error of its own."""
        for row in self._calling:
            if not row.settled:
                self._settle_error(row, error())
        for pending in self._empty_queue():
            self._fail(pending, error())
