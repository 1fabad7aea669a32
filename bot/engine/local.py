"""The local engine: one worker thread owns the model and decodes every request in one batch.

Requests come in from asyncio through a bounded queue (``worker.WorkerEngine``). The worker takes
what has arrived, prefills it (requests of similar length together; one whose context starts like
a stored one only after that start), splices it into the running batch and decodes the whole batch
one token at a time (continuous batching): a row that finishes returns at once, leaving its encoded
context in the store for the story's next turn, and a new request joins at the next step instead
of waiting for the batch to drain. Results and stream deltas go back to the event loop with
``call_soon_threadsafe``; the event loop never runs model code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import torch

from bot.config import ModelConfig
from bot.engine.batch import Batch, Row
from bot.engine.kvcache import Prefix, PrefixCache
from bot.engine.loader import LoadedModel, load_model
from bot.engine.sampling import RowSampler, StopRule, TextStream, TokenChooser
from bot.engine.types import (
    EngineError,
    EngineStopping,
    FinishReason,
    GenerationFailed,
    GenerationResult,
    GenerationTimeout,
)
from bot.engine.worker import EngineStats, Pending, WorkerEngine

log = logging.getLogger(__name__)

PREFILL_TOKENS = 4096  # the most tokens (padding included) encoded in one forward pass


class LocalEngine(WorkerEngine):
    """Serves generation requests from a model in this process."""

    def __init__(self, config: ModelConfig, loaded: LoadedModel | None = None) -> None:
        super().__init__(config, loaded)
        self._batch: Batch | None = None
        self._resume: list[Row] = []
        self._admitting: list[Row | Pending] = []  # taken from the queue, not yet in the batch
        self._chooser = TokenChooser()
        self._prefixes = PrefixCache(config.prefix_cache_mb * 2**20)
        self._batch_cap = config.max_batch_size
        self._good_steps = 0
        self._seconds_per_request = 1.0

    def _load(self) -> LoadedModel:
        c = self.config
        return load_model(c.name, c.device, c.dtype, c.attention)

    def _ready(self) -> None:
        if self.config.compile:
            model = self.loaded.model
            model.forward = torch.compile(model.forward, dynamic=True)

    def stats(self) -> EngineStats:
        return EngineStats(
            queued=len(self._queue),
            active=len(self._batch or ()),
            completed=self.completed,
            failed=self.failed,
            restarts=self.restarts,
            batch_cap=self._batch_cap,
            prefix_hits=self._prefixes.hits,
            prefix_mb=self._prefixes.size / 2**20,
        )

    def _estimated_wait(self, depth: int) -> float:
        rounds = depth / max(1, self._batch_cap) + 1
        return rounds * self._seconds_per_request

    # -- the worker --------------------------------------------------------------------------

    def _serve(self) -> None:
        with torch.inference_mode():
            self._decode_batches()

    def _decode_batches(self) -> None:
        loaded = self.loaded
        self._batch = batch = Batch(loaded.model, loaded.device)
        while True:
            # Continuous batching admits new rows between steps; static batching only when empty.
            room = (
                self._batch_cap - len(batch) if self.config.continuous_batching or not batch else 0
            )
            arrivals = self._take(room=room, idle=not batch)
            if arrivals is None:
                return
            if self._cutting:
                self._cut_everything(batch, arrivals)
                continue
            self._admitting = arrivals
            self._admit_arrivals(batch)
            if not batch:
                continue
            self._drop_abandoned(batch)
            if batch:
                self._advance(batch)

    def _take(self, room: int, idle: bool) -> list[Row | Pending] | None:
        """Rows to add now: evicted rows first, then new requests. None when closing."""
        resumed, self._resume = self._resume[:room], self._resume[room:]
        room -= len(resumed)
        with self._cond:
            if idle and not resumed:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if self.config.batch_wait_ms and not self._closing:
                    # A short gathering window lets a burst start as one batch.
                    self._cond.wait_for(
                        lambda: len(self._queue) >= room or self._closing,
                        timeout=self.config.batch_wait_ms / 1000,
                    )
            if self._closing:
                self._resume = resumed + self._resume
                return None
            taken: list[Pending] = []
            while self._queue and len(taken) < room:
                pending = self._queue.popleft()
                if not pending.cancelled:
                    taken.append(pending)
        return resumed + taken

    def _admit_arrivals(self, batch: Batch) -> None:
        """Prefill what arrived and splice it into the batch.

        A context that starts like a stored one encodes only the rest; the others are encoded
        together, in groups of similar length.
        """
        self._admitting = [row for row in map(self._row_for, self._admitting) if row is not None]
        for group, hit in self._groups(list(self._admitting)):
            self._admit(batch, group, hit)
            self._admitting = [row for row in self._admitting if row not in group]

    def _row_for(self, item: Row | Pending) -> Row | None:
        """The row for an arrival, or None when it was cancelled or its deadline passed."""
        if isinstance(item, Row):
            return item
        if item.cancelled:
            return None
        if time.monotonic() > item.deadline:
            self._fail(item, GenerationTimeout("deadline passed while queued"))
            return None
        return self._new_row(item)

    def _groups(self, rows: list[Row]) -> Iterator[tuple[list[Row], tuple[Prefix, int] | None]]:
        """Rows to prefill together: alone after a stored prefix, else in groups of similar length
        (padding at most a quarter of a group, at most ``PREFILL_TOKENS`` tokens in all)."""
        fresh = []
        for row in rows:
            hit = self._prefixes.take(_context(row)[:-1]) if self._prefixes.budget else None
            if hit is None:
                fresh.append(row)
            else:
                yield [row], hit
        fresh.sort(key=lambda row: len(_context(row)))
        group: list[Row] = []
        used = 0  # the group's tokens without padding
        for row in fresh:
            longest = len(_context(row))
            tokens = longest * (len(group) + 1)
            if group and (tokens > PREFILL_TOKENS or used + longest < 0.75 * tokens):
                yield group, None
                group, used = [], 0
            group.append(row)
            used += longest
        if group:
            yield group, None

    def _admit(self, batch: Batch, rows: list[Row], hit: tuple[Prefix, int] | None) -> None:
        """Prefill ``rows`` together and splice them into the batch; when the model fails on a
        group, each row is tried alone, so that only a faulty one fails."""
        contexts = [_context(row) for row in rows]
        try:
            if hit is None:
                prefilled = batch.prefill(contexts)
            else:
                prefix, shared = hit
                prefilled = batch.extend(prefix, shared, contexts[0])
        except Exception as error:
            out_of_memory = isinstance(error, torch.OutOfMemoryError)
            if out_of_memory:
                self._release_memory()
            if len(rows) > 1:
                for row in rows:
                    self._admit(batch, [row], None)
            elif out_of_memory:
                self._fail(rows[0].pending, GenerationFailed("out of memory on a single request"))
            else:  # this request's fault: it fails, the batch goes on
                log.exception("the model failed on one request while admitting it")
                self._fail(rows[0].pending, GenerationFailed(f"the model failed: {error!r}"))
            return
        fresh = [i for i, row in enumerate(rows) if not row.generated]
        finished = set()
        if fresh:
            samplers = [rows[i].sampler for i in fresh]
            tokens = self._chooser.choose(prefilled.logits[fresh], samplers)
            finished = {i for i, t in zip(fresh, tokens, strict=True) if self._accept(rows[i], t)}
        staying = [i for i in range(len(rows)) if i not in finished]
        if staying:
            batch.add([rows[i] for i in staying], prefilled.select(staying))

    def _new_row(self, pending: Pending) -> Row:
        loaded = self.loaded
        request = pending.request
        params = request.params
        # Keep the newest tokens when the prompt and the answer would not fit (nanoGPT's crop).
        room = max(1, loaded.n_positions - params.max_new_tokens)
        prompt = list(request.prompt_ids[-room:])
        pending.started = time.monotonic()
        stop = StopRule(
            params, loaded.eos_id, request.stop_strings, loaded.n_positions - len(prompt)
        )
        return Row(
            pending=pending,
            ids=prompt,
            prompt_len=len(prompt),
            sampler=RowSampler(params, prompt, loaded.eos_id, request.explain, request.banned_ids),
            stop=stop,
            deadline=pending.deadline,
            stream=TextStream(stop.stop_strings),
        )

    def _cut_everything(self, batch: Batch, arrivals: list[Row | Pending]) -> None:
        """Finish every started row with what it has written; fail what has not started."""
        for row in batch.clear() + [a for a in arrivals if isinstance(a, Row)]:
            self._deliver(row, "interrupted")
        for pending in [a for a in arrivals if isinstance(a, Pending)] + self._empty_queue():
            self._fail(pending, EngineStopping("stopped before it started"))

    def _drop_abandoned(self, batch: Batch) -> None:
        now = time.monotonic()
        keep = []
        for row in batch.rows:
            if row.pending.cancelled:
                continue
            if now > row.deadline:
                self._fail(row.pending, GenerationTimeout("deadline passed while generating"))
                continue
            keep.append(row)
        batch.keep(keep)

    def _advance(self, batch: Batch) -> None:
        """One decoding step for every row; on out-of-memory, evict half and go on."""
        try:
            logits = batch.step()
        except torch.OutOfMemoryError:
            self._release_memory()
            self._on_out_of_memory(batch)
            return
        except Exception:
            log.exception("a decoding step failed with %d rows; retrying each alone", len(batch))
            self._step_alone(batch)
            return
        tokens = self._chooser.choose(logits, [r.sampler for r in batch.rows])
        ends = [
            (row, self._push(row, token)) for row, token in zip(batch.rows, tokens, strict=True)
        ]
        finished = [(row, reason) for row, reason in ends if reason is not None]
        for row, reason in finished:
            if self._prefixes.budget:
                self._prefixes.add(batch.prefix(row))  # the story's next turn starts from it
            self._deliver(row, reason)
        batch.keep([row for row, reason in ends if reason is None])
        self._good_steps += 1
        if self._good_steps >= 100 and self._batch_cap < self.config.max_batch_size:
            self._batch_cap += 1
            self._good_steps = 0

    def _step_alone(self, batch: Batch) -> None:
        """After a failed step, take each row's step alone, so that only a faulty row fails.

        A row's step alone is a prefill of all its tokens: the same next-token logits, and a fresh
        cache with which it rejoins the batch.
        """
        for row in batch.clear():
            try:
                prefilled = batch.prefill([row.ids])
            except Exception as error:
                self._release_memory()
                self._fail(row.pending, GenerationFailed(f"the model failed: {error!r}"))
                continue
            token = self._chooser.choose(prefilled.logits, [row.sampler])[0]
            if not self._accept(row, token):
                batch.add([row], prefilled)

    def _on_out_of_memory(self, batch: Batch) -> None:
        rows = batch.clear()
        if len(rows) == 1:
            self._fail(rows[0].pending, GenerationFailed("out of memory on a single request"))
            return
        self._batch_cap = max(1, len(rows) // 2)
        self._good_steps = 0
        log.warning("out of memory with %d rows; retrying %d at a time", len(rows), self._batch_cap)
        self._resume = rows + self._resume

    def _accept(self, row: Row, token: int) -> bool:
        """Record a new token; deliver the row and return True if it is finished."""
        reason = self._push(row, token)
        if reason is not None:
            self._deliver(row, reason)
        return reason is not None

    def _push(self, row: Row, token: int) -> FinishReason | None:
        """Record a new token and stream it; why the row is finished, or None."""
        row.ids.append(token)
        row.generated.append(token)
        if len(row.generated) == 1:
            row.pending.first_token = time.monotonic()
        row.sampler.push(token)
        streaming = row.pending.streaming
        text = self._decode(row.generated) if streaming or row.stop.stop_strings else None
        reason = row.stop.check(row.generated, text)
        if reason is None and streaming:
            row.pending.emit(row.stream.advance(text))
        return reason

    def _deliver(self, row: Row, reason: FinishReason) -> None:
        """Send the row's text as its result."""
        streaming = row.pending.streaming
        ids = [t for t in row.generated if t != self.loaded.eos_id]
        choices = [c for c in row.sampler.choices or () if c.token != self.loaded.eos_id]
        text = row.stop.trim(self._decode(ids))
        if streaming:
            row.pending.emit(row.stream.finish(text))
        now = time.monotonic()
        pending = row.pending
        result = GenerationResult(
            text=text,
            token_ids=tuple(ids),
            finish_reason=reason,
            prompt_tokens=row.prompt_len,
            queued_s=(pending.started or now) - pending.submitted,
            elapsed_s=now - pending.submitted,
            choices=tuple(choices),
            first_token_s=(pending.first_token or now) - pending.submitted,
        )
        self._seconds_per_request = 0.8 * self._seconds_per_request + 0.2 * result.elapsed_s
        self.completed += 1
        pending.finish(result)

    def _fail_everything(self, error: Callable[[], EngineError]) -> None:
        """Fail every request the engine holds: decoding, being admitted, evicted or queued.

        ``error`` makes a fresh exception for each request, so no two callers share one.
        """
        rows = (self._batch.clear() if self._batch else []) + self._resume
        admitting, self._admitting, self._resume = self._admitting, [], []
        queued = self._empty_queue()
        waiting = [r.pending for r in rows]
        waiting += [a if isinstance(a, Pending) else a.pending for a in admitting]
        for pending in waiting + queued:
            self._fail(pending, error())

    def _release_memory(self) -> None:
        """After running out of memory: drop the stored contexts, then the allocator's cache."""
        self._prefixes.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _context(row: Row) -> list[int]:
    """What a row's prefill encodes: a new row's whole prompt; for a row that was evicted and
    resumes, everything but its newest token (the next step feeds that one)."""
    return row.ids if not row.generated else row.ids[:-1]
