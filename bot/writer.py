"""Writing one part: the context, the sampling, the quality guard and what the turn records.

Pure of storage and of Discord: the service hands in the story so far and the settings in force,
and commits what comes back. The engine is passed in, so any engine with a tokenizer will do.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.banned import BannedWords, MaskedProgress
from bot.config import Config
from bot.engine.types import GenerationRequest, GenerationResult, SamplingParams
from bot.explain import TokenNote, kept_notes, longest_copy
from bot.paths import model_label
from bot.quality import assess
from bot.settings import Resolved
from bot.story import Cleaned, Context, Mode, Story, Turn, build_context, clean_output

log = logging.getLogger(__name__)


class Progress(Protocol):
    """Receives a part as the model writes it."""

    def __call__(self, delta: str) -> object:
        """A new piece of the part's raw text."""

    def restart(self) -> object:
        """Forget what was shown: the part is being written again."""

    def waiting(self, ahead: int, eta_s: float) -> object:
        """The request waits behind ``ahead`` others, for about ``eta_s`` seconds."""


class Engine(Protocol):
    """What writing needs of an engine (the local one, or later a remote one)."""

    @property
    def tokenizer(self): ...

    @property
    def n_positions(self) -> int: ...

    async def generate(
        self, request: GenerationRequest, on_delta: Callable[[str], object] | None = None
    ) -> GenerationResult: ...


@dataclass(frozen=True)
class Part:
    """A part written: the text to show and store, what to record with it, and (when explained)
    how sure the model was of each of its tokens."""

    text: str
    record: dict[str, Any]
    notes: list[TokenNote]
    queued_s: float = 0.0  # time spent waiting for the engine, over every attempt


async def write_part(
    engine: Engine,
    config: Config,
    clock: Callable[[], float],
    story: Story,
    mode: Mode,
    turns: list[Turn],
    settings: Resolved,
    deadline: float,
    on_progress: Progress | None = None,
    banned: BannedWords | None = None,
) -> Part:
    """The model's next part of ``story`` (text to show and store) and the record to keep with it.

    ``deadline`` is on ``clock``; ``on_progress`` receives each new piece of raw text as the model
    writes it, and a restart when the guard has the part written again.

    ``banned`` words are kept out three ways: their usual token sequences are banned while
    sampling, the live preview is masked, and a part that still holds one is written once more,
    then masked.
    """
    host = config.generation
    # The model's window, capped so that re-reading a long story stays quick on a CPU.
    window = min(engine.n_positions, config.model.context_tokens)
    # Leave the story at least half of it, whatever the settings ask for.
    max_new = min(int(settings["max_new_tokens"]), window // 2)
    params = SamplingParams(
        temperature=float(settings["temperature"]),
        top_p=float(settings["top_p"]),
        top_k=int(settings["top_k"]),
        repetition_penalty=float(settings["repetition_penalty"]),
        repetition_range=host.repetition_range,
        repetition_slope=host.repetition_slope,
        no_repeat_ngram_size=int(settings["no_repeat_ngram_size"]),
        no_repeat_ngram_range=host.no_repeat_ngram_range,
        max_new_tokens=max_new,
        min_new_tokens=min(8, max_new),
    )
    framing = mode.framing(story.created_at)
    budget = window - max_new
    # A long story leaves out its older turns a quarter of the budget at a time, so that its
    # context keeps its start for a few turns: the engine's stored context of the last part
    # then spares it encoding the whole story again.
    context = build_context(
        engine.tokenizer, framing, turns, budget, story.memory, story.note, step=budget // 4
    )
    banned = banned or None
    if banned is not None and on_progress is not None:
        on_progress = MaskedProgress(banned, on_progress)
    attempt = _Attempt(
        context, mode, framing, deadline, on_progress, host.explanations,
        banned.token_sequences(engine.tokenizer) if banned else (),
    )  # fmt: skip
    result, cleaned, problems = await _attempt(engine, clock, attempt, params)
    queued = result.queued_s
    guard: dict[str, object] = {"problems": list(problems)}
    if problems and host.quality_guard and result.finish_reason != "interrupted":
        # Degenerate: write it once more with steadier sampling, before anyone sees it.
        steadier = _steadier(params)
        if on_progress is not None:
            on_progress.restart()
        retry = await _attempt(engine, clock, attempt, steadier)
        queued += retry[0].queued_s
        guard["retry_problems"] = list(retry[2])
        guard["kept"] = "retry" if len(retry[2]) < len(problems) else "first"
        if guard["kept"] == "retry":
            (result, cleaned, problems), params = retry, steadier
        log.info("quality guard: %s, then %s", guard["problems"], guard["retry_problems"])
    if banned is not None and banned.find(cleaned.text):
        # Spelled some way the token bans did not cover: once more, then masked.
        guard["banned"] = "written again"
        if on_progress is not None:
            on_progress.restart()
        again = await _attempt(engine, clock, attempt, dataclasses.replace(params, seed=None))
        queued += again[0].queued_s
        result, cleaned, problems = again
        if banned.find(cleaned.text):
            guard["banned"] = "masked"
            cleaned = dataclasses.replace(cleaned, text=banned.mask(cleaned.text))
    text = cleaned.text or "…"
    copied_at, copied = longest_copy(result.token_ids, context.ids)
    # The settings it was written with (those a moderator or host can choose), then what happened.
    sampling = dataclasses.asdict(params)
    record = {k: v for k, v in sampling.items() if k not in ("seed", "min_new_tokens")} | {
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "new_tokens": len(result.token_ids),
        "turns_dropped": context.turns_dropped,
        "context_truncated": context.truncated,
        "cut": cleaned.cut,
        "guard": guard,
        "model": model_label(config.model.name),
        # Originality: the longest run of tokens copied from the story so far.
        "copied_tokens": copied,
        "copied_text": engine.tokenizer.decode(result.token_ids[copied_at : copied_at + copied]),
    }
    notes = kept_notes(token_notes(engine.tokenizer, result), result.text, cleaned.text)
    if banned is not None:
        notes = [] if guard.get("banned") == "masked" else _unbanned(notes, banned)
    return Part(text, record, notes, queued)


def token_notes(tokenizer, result: GenerationResult) -> list[TokenNote]:
    """The engine's choices as notes with text: each token's piece of the part, decoded in
    running text (a character split over two tokens belongs to the second), and the text of
    each alternative."""
    notes, shown = [], ""
    ids = list(result.token_ids)
    for n, choice in enumerate(result.choices):
        text = tokenizer.decode(ids[: n + 1])
        complete = len(text.rstrip("\ufffd"))
        piece, shown = text[len(shown) : complete], text[:complete]
        alternatives = tuple((tokenizer.decode([t]), p) for t, p in choice.alternatives)
        notes.append(TokenNote(piece, choice.p, choice.p_model, choice.rank, alternatives))
    return notes


def _unbanned(notes: list[TokenNote], banned: BannedWords) -> list[TokenNote]:
    """Notes without the banned words the model almost wrote (explanations show alternatives)."""
    return [
        dataclasses.replace(
            note,
            alternatives=tuple(a for a in note.alternatives if not banned.find(a[0])),
        )
        for note in notes
    ]


async def _attempt(
    engine: Engine, clock: Callable[[], float], attempt: _Attempt, params: SamplingParams
) -> tuple[GenerationResult, Cleaned, tuple[str, ...]]:
    """One generation of the part: the engine's result, cleaned, and what the guard found."""
    remaining = attempt.deadline - clock()
    request = GenerationRequest(
        tuple(attempt.context.ids),
        params,
        deadline=time.monotonic() + max(0.0, remaining),
        explain=attempt.explain,
        banned_ids=attempt.banned_ids,
    )
    result = await engine.generate(request, attempt.on_progress)
    finished = result.finish_reason not in ("length", "interrupted")
    cleaned = clean_output(result.text, attempt.mode, finished, attempt.framing)
    problems = assess(cleaned.text, attempt.context.text, result.token_ids, attempt.context.ids)
    return result, cleaned, problems


@dataclass(frozen=True)
class _Attempt:
    """What every attempt at one part shares."""

    context: Context
    mode: Mode
    framing: str
    deadline: float
    on_progress: Progress | None
    explain: bool
    banned_ids: tuple[tuple[int, ...], ...] = ()


def _steadier(params: SamplingParams) -> SamplingParams:
    """Sampling for a second attempt at a degenerate part: cooler, narrower, firmer on repeats."""
    return dataclasses.replace(
        params,
        temperature=round(params.temperature * 0.8, 3),
        top_p=min(params.top_p, 0.9),
        repetition_penalty=max(params.repetition_penalty, 1.2),
        seed=None if params.seed is None else params.seed + 1,
    )
