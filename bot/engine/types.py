"""What goes into the engine and what comes out of it; no torch, no discord."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from bot.errors import StoryError

# "interrupted": the bot is stopping and the part ends with what was written so far.
FinishReason = Literal["eos", "length", "stop", "interrupted"]


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its next token and how long it may run."""

    temperature: float = 0.9  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no limit
    repetition_penalty: float = 1.0
    # The penalty looks at this many of the newest tokens (context and written); 0: all of them.
    repetition_range: int = 0
    # 0: every token in range is penalised alike; above 0 older tokens less (KoboldAI's slope).
    repetition_slope: float = 0.0
    no_repeat_ngram_size: int = 0
    # The n-gram ban covers what this part writes and this many of the newest context tokens
    # (0: the whole context).
    no_repeat_ngram_range: int = 0
    max_new_tokens: int = 120
    min_new_tokens: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = (
            ("temperature", self.temperature >= 0 and math.isfinite(self.temperature)),
            ("top_p", 0 < self.top_p <= 1),
            ("top_k", self.top_k >= 0),
            ("repetition_penalty", self.repetition_penalty > 0),
            ("repetition_range", self.repetition_range >= 0),
            ("repetition_slope", self.repetition_slope >= 0),
            ("no_repeat_ngram_size", self.no_repeat_ngram_size >= 0),
            ("no_repeat_ngram_range", self.no_repeat_ngram_range >= 0),
            ("max_new_tokens", self.max_new_tokens >= 1),
            ("min_new_tokens", 0 <= self.min_new_tokens <= self.max_new_tokens),
        )
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class GenerationRequest:
    """One piece of text to continue: token ids in, sampling and stop rules, and a deadline."""

    prompt_ids: tuple[int, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    stop_strings: tuple[str, ...] = ()
    deadline: float | None = None  # time.monotonic() value; None uses the engine's timeout
    explain: bool = False  # note how sure the model was of each token (TokenChoice)
    # Token sequences it must not write (a server's banned words, spelled the usual ways).
    banned_ids: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        if not self.prompt_ids:
            raise ValueError("a generation request needs at least one prompt token")


@dataclass(frozen=True)
class TokenChoice:
    """How one written token was chosen: the model's view of it, and the sampler's."""

    token: int
    p: float  # the probability the sampler gave it, after every sampling setting
    p_model: float  # the model's own probability of it (a softmax of its logits)
    rank: int  # 1: the model's likeliest token
    alternatives: tuple[tuple[int, float], ...]  # the model's likeliest tokens: (id, p_model)


@dataclass(frozen=True)
class GenerationResult:
    """The continuation of one request."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    queued_s: float
    elapsed_s: float
    choices: tuple[TokenChoice, ...] = ()  # one per token id, when the request asked to explain
    first_token_s: float | None = None  # from submission to the first token, where measured


class EngineError(StoryError):
    """Base of the engine's errors; ``user_message`` is safe to show to people."""

    user_message = "The writer is having trouble right now. Please try again in a moment."
    reason = "engine error"

    def __init__(self, detail: str = "") -> None:
        Exception.__init__(self, detail or self.user_message)


class EngineBusy(EngineError):
    """The request queue is full."""

    reason = "queue full"

    def __init__(self, depth: int, estimated_wait_s: float) -> None:
        self.depth = depth
        self.estimated_wait_s = estimated_wait_s
        wait = max(1, math.ceil(estimated_wait_s))
        self.user_message = (
            f"The writer is busy: {depth} requests are waiting. "
            f"Please try again in about {wait} seconds."
        )
        super().__init__(f"engine queue is full ({depth} waiting, ~{estimated_wait_s:.0f}s wait)")

    def __reduce__(self):
        # Copies (one per waiting member, with their own note) are made from the arguments.
        return type(self), (self.depth, self.estimated_wait_s), self.__dict__


class GenerationTimeout(EngineError):
    """The request passed its deadline before it finished."""

    reason = "timeout"

    user_message = "The writer took too long on that one and gave up. Please try again."


class GenerationFailed(EngineError):
    """The request could not run, even alone (for example, out of GPU memory)."""

    user_message = "The writer could not finish that request. Try a shorter length or try again."


class EngineUnavailable(EngineError):
    """The engine is closed, or its worker stopped while the request waited."""


class EngineStopping(EngineUnavailable):
    """The bot is stopping: the request was not started and will not be."""

    user_message = "I'm restarting right now. Please try again in a minute."
