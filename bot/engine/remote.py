"""The remote engine: parts written by an OpenAI-compatible completion server.

vLLM, `transformers serve` and TGI serve a model behind ``/v1/completions`` with their own
batching, caching and kernels; this engine speaks to one through the official ``openai`` async
client, with the same face as :class:`~bot.engine.local.LocalEngine`: the service cannot tell them
apart. The tokenizer is loaded here from the same model id, so the context is counted exactly.

What each request carries: the context as text (the ids decoded: `transformers serve` takes text
only, and the text re-encodes to the same ids), ``temperature``, ``top_p``, ``max_tokens``,
``seed`` and ``stop``; then what the server (told by its ``/v1/models`` answer, or by
``[remote] server``) reads beyond the standard: vLLM's ``top_k``, ``repetition_penalty``,
``min_tokens`` and ``bad_words``; `transformers serve`'s ``generation_config``, with all of those
and the n-gram ban. A plain OpenAI server gets the standard fields only. vLLM has no n-gram ban,
and no server has storybot's range and slope of the repetition penalty.
Text arrives as server-sent events and goes on to ``on_delta`` as it comes. Cancelling the
awaiting task, or passing the deadline, closes the stream (vLLM aborts the request then).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import openai

from bot.config import ModelConfig, RemoteConfig
from bot.engine.loader import load_tokenizer
from bot.engine.types import (
    EngineBusy,
    EngineStopping,
    EngineUnavailable,
    FinishReason,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    GenerationTimeout,
)

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0  # when a busy server does not say how long to wait
# The HTTP libraries under the openai client: their errors mid-stream are a broken connection.
TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "h11", "anyio")


class RemoteEngine:
    """Sends each request to an OpenAI-compatible server, at most ``concurrency`` at once."""

    def __init__(self, model: ModelConfig, remote: RemoteConfig) -> None:
        self.config = model
        self.remote = remote
        self.served = remote.model or model.name
        self._tokenizer = None
        self._positions = 0
        self._client: openai.AsyncOpenAI | None = None
        self._slots = asyncio.Semaphore(remote.concurrency)
        self._waiting = 0
        self._cutting = False
        self._writing: set[_Stream] = set()
        self.flavour = "openai"  # which server: "vllm", "transformers" or plain "openai"
        self.completed = self.failed = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the tokenizer, then ask the server which models it serves."""
        self._tokenizer, self._positions, _ = await asyncio.to_thread(
            load_tokenizer, self.config.name
        )
        self._client = openai.AsyncOpenAI(
            base_url=self.remote.base_url,
            api_key=os.environ.get(self.remote.api_key_env) or "none",
            timeout=openai.Timeout(
                self.config.request_timeout_s, connect=self.remote.connect_timeout_s
            ),
            max_retries=0,
        )
        served = await self.models()
        if self.remote.server != "auto":
            self.flavour = self.remote.server
        if self.served not in served:
            log.warning(
                "%s serves %s, not %s: requests name %s anyway",
                self.remote.base_url, ", ".join(served) or "no model", self.served, self.served,
            )  # fmt: skip
        window = served.get(self.served)
        if window and window < self._positions:
            log.info("%s serves %s with %d positions", self.remote.base_url, self.served, window)
            self._positions = window
        log.info("writing with %s at %s", self.served, self.remote.base_url)

    async def models(self) -> dict[str, int | None]:
        """The models the server serves, and their context length where it says (vLLM does).
        Which server it is shows in the answer, and decides the fields requests carry."""
        try:
            page = await self._ready_client().models.list()
        except openai.APIError as error:
            raise self._unavailable(error) from None
        owners = {getattr(m, "owned_by", None) for m in page.data}
        if "vllm" in owners:
            self.flavour = "vllm"
        elif any(hasattr(m, "status") for m in page.data) and "local" in owners:
            self.flavour = "transformers"
        else:
            self.flavour = "openai"
        return {m.id: getattr(m, "max_model_len", None) for m in page.data}

    async def close(self) -> None:
        for stream in list(self._writing):
            stream.cancel()
        if self._client is not None:
            await self._client.close()

    def cut_short(self) -> None:
        """End every part now with what it has; refuse new ones (a graceful stop's last step)."""
        self._cutting = True
        for stream in list(self._writing):
            stream.interrupt()

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            raise EngineUnavailable("the engine has not been started")
        return self._tokenizer

    @property
    def n_positions(self) -> int:
        return self._positions

    # -- the asyncio face --------------------------------------------------------------------

    async def generate(
        self, request: GenerationRequest, on_delta: Callable[[str], object] | None = None
    ) -> GenerationResult:
        """Continue ``request``'s prompt on the server; ``on_delta`` hears the text as it comes."""
        if self._cutting:
            raise EngineStopping("the engine is stopping")
        client = self._ready_client()
        if self._waiting >= self.config.max_queue:
            raise EngineBusy(self._waiting, RETRY_AFTER_S)
        deadline = request.deadline or time.monotonic() + self.config.request_timeout_s
        submitted = started = time.monotonic()
        self._waiting += 1
        waiting = True
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async with self._slots:
                    self._waiting -= 1
                    waiting = False
                    started = time.monotonic()
                    stream = _Stream(self, client, request, on_delta)
                    self._writing.add(stream)
                    try:
                        text, finish, prompt_tokens = await stream.run()
                    finally:
                        self._writing.discard(stream)
        except TimeoutError:
            self.failed += 1
            raise GenerationTimeout("no result by the deadline") from None
        except openai.APIError as error:
            self.failed += 1
            raise self._error(error) from None
        finally:
            if waiting:
                self._waiting -= 1
        self.completed += 1
        ids = tuple(self.tokenizer.encode(text)) if text else ()
        return GenerationResult(
            text, ids, finish, prompt_tokens, started - submitted, time.monotonic() - started
        )

    # -- the pieces ----------------------------------------------------------------------------

    def _ready_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            raise EngineUnavailable("the engine has not been started")
        return self._client

    def body(self, request: GenerationRequest) -> dict[str, Any]:
        """The request's sampling, in the fields OpenAI-compatible servers read."""
        p = request.params
        greedy = p.temperature == 0
        generation = {
            "do_sample": not greedy,
            "max_new_tokens": p.max_new_tokens,
            "min_new_tokens": p.min_new_tokens,
            "repetition_penalty": p.repetition_penalty,
            "no_repeat_ngram_size": p.no_repeat_ngram_size,
        }
        if not greedy:
            generation |= {"temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k}
        if request.banned_ids:
            generation["bad_words_ids"] = [list(ids) for ids in request.banned_ids]
        extra: dict[str, Any] = {}
        if self.flavour == "vllm":
            extra = {
                "top_k": p.top_k or -1,  # -1 is no limit
                "repetition_penalty": p.repetition_penalty,
                "min_tokens": p.min_new_tokens,
            }
            if request.banned_ids:
                extra["bad_words"] = sorted(
                    {self.tokenizer.decode(list(ids)) for ids in request.banned_ids}
                )
        elif self.flavour == "transformers":
            extra = {"generation_config": json.dumps(generation)}
        return {
            "model": self.served,
            "prompt": self.tokenizer.decode(list(request.prompt_ids)),
            "max_tokens": p.max_new_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "seed": p.seed,
            "stop": list(request.stop_strings) or None,
            "extra_body": extra or None,
        }

    def _error(self, error: openai.APIError):
        """The engine error members understand, for what the server said."""
        if isinstance(error, openai.APIConnectionError):
            return self._unavailable(error)
        status = getattr(error, "status_code", None)
        if status in (429, 503):
            return EngineBusy(self._waiting, _retry_after(error))
        log.warning("%s refused a request: %s", self.remote.base_url, error)
        return GenerationFailed(f"the server answered {status}: {error}")

    def _unavailable(self, error: Exception) -> EngineUnavailable:
        log.error(
            "the model server at %s cannot be reached (%s). Is it running, and is "
            "[remote] base_url right?", self.remote.base_url, type(error).__name__,
        )  # fmt: skip
        return EngineUnavailable(f"the model server at {self.remote.base_url} cannot be reached")


class _Stream:
    """One request's stream of server-sent events."""

    def __init__(self, engine: RemoteEngine, client, request: GenerationRequest, on_delta) -> None:
        self.engine, self.client, self.request, self.on_delta = engine, client, request, on_delta
        self.task: asyncio.Task | None = None
        self.interrupted = False
        self.text = ""

    async def run(self) -> tuple[str, FinishReason, int]:
        self.task = asyncio.current_task()
        finish: FinishReason = "eos"
        prompt_tokens = len(self.request.prompt_ids)
        create = self.client.completions.with_streaming_response.create
        try:
            # The raw event stream, read here: the client's typed events cost about 0.2 ms each
            # to build, more than the rest of a part's work in the bot (bench.capacity).
            async with create(**self.engine.body(self.request), stream=True) as response:
                async for line in response.iter_lines():
                    if self.interrupted:
                        return self.text, "interrupted", prompt_tokens
                    if not line.startswith("data:"):
                        continue  # blank lines between events, comments, other fields
                    data = line[5:].strip()
                    if data == "[DONE]":
                        continue  # read to the end, so the connection goes back to the pool
                    event = json.loads(data)
                    if not isinstance(event, dict) or "error" in event:
                        raise GenerationFailed(f"the server sent an error event: {data[:200]}")
                    usage = event.get("usage") or {}
                    prompt_tokens = usage.get("prompt_tokens") or prompt_tokens
                    for choice in (event.get("choices") or [])[:1]:
                        text = choice.get("text") or ""
                        if text:
                            self.text += text
                            if self.on_delta is not None:
                                self.on_delta(text)
                        if choice.get("finish_reason") == "length":
                            finish = "length"
                        elif choice.get("finish_reason") == "stop":
                            finish = "stop" if self._stopped() else "eos"
                        break
            # Leaving the block closes the response: the server sees the disconnect (vLLM
            # aborts the request then), also when the task is cancelled.
        except asyncio.CancelledError:
            if not self.interrupted:
                raise
            self.task.uncancel()  # cut short: the part ends with what came
            return self.text, "interrupted", prompt_tokens
        except (json.JSONDecodeError, ValueError, AttributeError) as error:
            raise GenerationFailed(f"the server sent a malformed event: {error}") from None
        except Exception as error:
            if type(error).__module__.split(".")[0] in TRANSPORT_MODULES:
                # the connection broke mid-stream (the server died, or a proxy cut it)
                raise self.engine._unavailable(error) from None
            raise
        return self.text, finish, prompt_tokens

    def _stopped(self) -> bool:
        """Whether the part ended on one of the request's stop strings (the server leaves it
        out, so the text ends just before it)."""
        return bool(self.request.stop_strings) and len(self.engine.tokenizer.encode(self.text)) < (
            self.request.params.max_new_tokens
        )

    def interrupt(self) -> None:
        """End now with what has come so far."""
        self.interrupted = True
        if self.task is not None:
            self.task.cancel()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _retry_after(error: openai.APIError) -> float:
    response = getattr(error, "response", None)
    header = response.headers.get("retry-after") if response is not None else None
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(header))
    return RETRY_AFTER_S
