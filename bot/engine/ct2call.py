"""What one CTranslate2 ``generate_batch`` call takes and gives back, apart from the engine.

CTranslate2 takes its sampling settings once per call: :class:`CallSettings` are those of one
request, and requests share a call only when theirs are equal. From the scores a call reports for
each step, :func:`token_choices` notes how each written token was chosen, for explanations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import ctranslate2
import numpy as np
import torch

from bot.engine.sampling import token_notes
from bot.engine.types import GenerationRequest, SamplingParams, TokenChoice

# Top-p's kept tokens are looked for among so many likeliest before the whole vocabulary.
TOP_P_SEARCH = (64, 1024)


@dataclass(frozen=True)
class CallSettings:
    """What CTranslate2 takes per call: requests share a call only when these are equal."""

    temperature: float  # 0: greedy, and then top_k and top_p do not matter
    top_k: int
    top_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    min_new_tokens: int
    banned: tuple[tuple[int, ...], ...]
    explain: bool
    # A call whose shortest prompt is one token reads nothing ahead, and would count the longer
    # prompts' tokens as written ones.
    one_token_prompt: bool

    @classmethod
    def of(cls, request: GenerationRequest, prompt: Sequence[int]) -> CallSettings:
        p = request.params
        return cls(
            temperature=0.0 if p.greedy else p.temperature,
            top_k=0 if p.greedy else p.top_k,
            top_p=1.0 if p.greedy else p.top_p,
            repetition_penalty=p.repetition_penalty,
            no_repeat_ngram_size=p.no_repeat_ngram_size,
            min_new_tokens=p.min_new_tokens,
            banned=tuple(sorted(set(request.banned_ids))),
            explain=request.explain,
            one_token_prompt=len(prompt) == 1,
        )

    def options(self, vocabulary: list[str], eos_id: int | None) -> dict[str, object]:
        """These settings as ``generate_batch``'s keyword arguments."""
        sampling = (
            {"sampling_topk": 1}
            if self.temperature == 0
            else {
                "sampling_topk": self.top_k,  # 0: the whole vocabulary, as in SamplingParams
                "sampling_topp": self.top_p,
                "sampling_temperature": self.temperature,
            }
        )
        known = len(vocabulary)
        banned = [
            [vocabulary[t] for t in sequence]
            for sequence in self.banned
            if sequence and all(0 <= t < known for t in sequence)
        ]
        return sampling | {
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "min_length": self.min_new_tokens,
            "suppress_sequences": banned or None,
            "end_token": None if eos_id is None else [eos_id],
            "return_logits_vocab": self.explain,
        }


def token_choices(
    scores: torch.Tensor, tokens: Sequence[int], params: SamplingParams
) -> list[TokenChoice]:
    """How each of ``tokens`` was chosen, from the scores CTranslate2 gave each step ([tokens,
    vocab], after its repetition penalty and bans): the model's probability, rank and likeliest
    tokens, and the chance its sampler (top-k, then temperature, then top-p) gave the token."""
    chosen_ids = torch.tensor(list(tokens), dtype=torch.long)
    chance = _sampler_chance(scores, chosen_ids.unsqueeze(1), params)
    return token_notes(scores, chosen_ids, chance)


def _sampler_chance(
    scores: torch.Tensor, chosen_ids: torch.Tensor, params: SamplingParams
) -> torch.Tensor:
    """The probability CTranslate2's sampler gave each chosen token (1 when greedy)."""
    if params.greedy:
        return torch.ones(len(chosen_ids))
    if 0 < params.top_k < scores.shape[-1]:
        kth = scores.topk(params.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = (scores / params.temperature).softmax(dim=-1)
    chosen = probs.gather(1, chosen_ids).squeeze(1)
    if params.top_p >= 1.0:
        return chosen
    # Top-p keeps the likeliest tokens until their mass reaches top_p: a token is kept when the
    # tokens likelier than it hold less, and the kept ones share the draw.
    likelier = (probs * (probs > chosen.unsqueeze(1))).sum(dim=-1)
    for k in (*TOP_P_SEARCH, probs.shape[-1]):  # a short search first: sorting it all is slow
        ordered = probs.topk(min(k, probs.shape[-1]), dim=-1).values
        if bool((ordered.sum(dim=-1) >= params.top_p).all()):
            break
    kept = ordered.masked_fill(ordered.cumsum(dim=-1) - ordered >= params.top_p, 0.0)
    return torch.where(likelier < params.top_p, chosen / kept.sum(dim=-1), 0.0)


def step_scores(steps: Sequence) -> torch.Tensor:
    """The scores of some steps of one row ([steps, vocab], float32, on the CPU), from the
    ``StorageView``s a call returns (copied from the GPU when the model runs there)."""
    arrays = []
    for scores in steps:
        if scores.dtype != ctranslate2.DataType.float32:
            scores = scores.to(ctranslate2.DataType.float32)  # NumPy has no bfloat16
        if scores.device != "cpu":
            scores = scores.to_device(ctranslate2.Device.cpu)
        arrays.append(np.array(scores).reshape(-1))
    return torch.from_numpy(np.stack(arrays))
