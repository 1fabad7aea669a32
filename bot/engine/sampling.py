"""What to sample and when to stop, per row of a batch.

:class:`TokenChooser` turns one step's logits for a whole batch into one token per row, each row
with its own temperature, top-k, top-p, repetition penalty, n-gram ban and random generator.
:class:`StopRule` decides when one row is finished. They are separate, small and tested alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from bot.engine.types import FinishReason, SamplingParams, TokenChoice

ALTERNATIVES = 5  # the model's likeliest tokens noted with each explained token


class NgramBan:
    """Remembers every n-gram of one row so the next token cannot complete a repeat."""

    def __init__(self, n: int, ids: Sequence[int]) -> None:
        self.n = n
        self._seen: dict[tuple[int, ...], set[int]] = {}
        self._ids: list[int] = []
        for token in ids:
            self.push(token)

    def push(self, token: int) -> None:
        self._ids.append(token)
        if self.n > 0 and len(self._ids) >= self.n:
            gram = self._ids[-self.n :]
            self._seen.setdefault(tuple(gram[:-1]), set()).add(gram[-1])

    def banned(self) -> set[int]:
        if self.n <= 0 or len(self._ids) < self.n - 1:
            return set()
        prefix = tuple(self._ids[len(self._ids) - self.n + 1 :])
        return self._seen.get(prefix, set())


class SequenceBan:
    """Token sequences a row must not write: the token that would complete one is banned."""

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        self._ends: dict[tuple[int, ...], set[int]] = {}
        for sequence in sequences:
            if sequence:
                self._ends.setdefault(tuple(sequence[:-1]), set()).add(sequence[-1])
        self._lengths = sorted({len(prefix) for prefix in self._ends})

    def banned(self, recent: Sequence[int]) -> set[int]:
        out: set[int] = set()
        for length in self._lengths:
            if length <= len(recent):
                prefix = tuple(recent[len(recent) - length :]) if length else ()
                out |= self._ends.get(prefix, set())
        return out


class RowSampler:
    """The sampling state of one row: its settings, its recent tokens and its generator."""

    def __init__(
        self,
        params: SamplingParams,
        prompt_ids: Sequence[int],
        eos_id: int | None,
        explain: bool = False,
        banned: Sequence[Sequence[int]] = (),
    ) -> None:
        self.params = params
        self.banned_sequences = SequenceBan(banned) if banned else None
        self.eos_id = eos_id
        # How each token was chosen, noted by the chooser when the request asked for it.
        self.choices: list[TokenChoice] | None = [] if explain else None
        self.generated = 0
        self.recent: list[int] = list(prompt_ids)
        # A long story's common words and phrases must stay usable: the ban sees recent text only.
        window = params.no_repeat_ngram_range
        self.ngrams = NgramBan(
            params.no_repeat_ngram_size, prompt_ids[-window:] if window else prompt_ids
        )
        self.generator = torch.Generator()
        if params.seed is None:
            self.generator.seed()  # a fresh random seed; torch's global generator is left alone
        else:
            self.generator.manual_seed(params.seed)

    def push(self, token: int) -> None:
        self.generated += 1
        self.recent.append(token)
        self.ngrams.push(token)

    def adjust(self, logits: torch.Tensor) -> None:
        """Apply this row's penalties to its logits in place (a 1-D float32 tensor)."""
        p = self.params
        if p.repetition_penalty != 1.0 and self.recent:
            tokens, penalty = self._penalties()
            tokens, penalty = tokens.to(logits.device), penalty.to(logits.device)
            picked = logits[tokens]
            logits[tokens] = torch.where(picked < 0, picked * penalty, picked / penalty)
        banned = self.ngrams.banned()
        if self.banned_sequences is not None:
            banned = banned | self.banned_sequences.banned(self.recent)
        if banned:
            logits[torch.tensor(sorted(banned), dtype=torch.long, device=logits.device)] = float(
                "-inf"
            )
        if self.eos_id is not None and self.generated < p.min_new_tokens:
            logits[self.eos_id] = float("-inf")

    def _penalties(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token in the penalty window, and its penalty (its newest use decides)."""
        p = self.params
        window = self.recent[-p.repetition_range :] if p.repetition_range else self.recent
        newest = {token: i for i, token in enumerate(window)}
        tokens = torch.tensor(list(newest), dtype=torch.long)
        if p.repetition_slope == 0:
            return tokens, torch.full((len(newest),), p.repetition_penalty)
        ramp = penalty_ramp(
            p.repetition_penalty, p.repetition_range or len(window), p.repetition_slope
        )
        return tokens, ramp[-len(window) :][list(newest.values())]


def penalty_ramp(penalty: float, length: int, slope: float) -> torch.Tensor:
    """The penalty at each of ``length`` positions, oldest first, as KoboldAI shapes it.

    The newest position gets the full penalty and the oldest almost none; ``slope`` bends the
    curve between them (1 is a straight line, higher keeps the penalty high for longer).
    """
    if length < 2:
        return torch.full((max(length, 0),), penalty)
    x = torch.linspace(-1.0, 1.0, length)
    curve = slope * x / (1 + x.abs() * (slope - 1))
    return 1 + (curve + 1) / 2 * (penalty - 1)


class TokenChooser:
    """Picks the next token for every row of a batch at once."""

    def choose(self, logits: torch.Tensor, rows: Sequence[RowSampler]) -> list[int]:
        """``logits`` is [batch, vocab]; returns one token id per row.

        For a row that explains itself, the choice is noted on the row (``RowSampler.choices``):
        the model's probabilities come from the logits as the model gave them, the sampler's
        from the distribution it drew from.
        """
        explained = [i for i, row in enumerate(rows) if row.choices is not None]
        raw = logits[explained].float() if explained else None  # a copy: adjust works in place
        logits = logits.float()
        for i, row in enumerate(rows):
            row.adjust(logits[i])
        device = logits.device  # every tensor made here lives where the logits do (CPU or GPU)
        tokens = torch.zeros(len(rows), dtype=torch.long, device=device)
        chance = torch.ones(len(rows), device=device)  # a greedy row's token is drawn for sure
        greedy = [i for i, row in enumerate(rows) if row.params.greedy]
        if greedy:
            index = torch.tensor(greedy, dtype=torch.long, device=device)
            tokens[index] = logits[index].argmax(dim=-1)
        sampled = [i for i, row in enumerate(rows) if not row.params.greedy]
        if sampled:
            index = torch.tensor(sampled, dtype=torch.long, device=device)
            draws = torch.cat([torch.rand(1, generator=rows[i].generator) for i in sampled])
            draws = draws.to(device)  # drawn on the CPU, from each row's own generator
            params = [rows[i].params for i in sampled]
            their = logits if len(sampled) == len(rows) else logits[index]
            tokens[index], chance[index] = self._sample(their, params, draws)
        if raw is not None:
            self._note(raw, [rows[i] for i in explained], tokens[explained], chance[explained])
        return tokens.tolist()

    @staticmethod
    def _note(
        raw: torch.Tensor, rows: Sequence[RowSampler], tokens: torch.Tensor, chance: torch.Tensor
    ) -> None:
        """Note each explained row's choice: its probability, rank and the likeliest tokens."""
        for row, choice in zip(rows, token_notes(raw, tokens, chance), strict=True):
            row.choices.append(choice)

    @staticmethod
    def _sample(logits: torch.Tensor, params: Sequence[SamplingParams], draws: torch.Tensor):
        """Temperature, then top-k and top-p, then one token per row by inverse CDF; returns the
        tokens and the probability each had of being drawn.

        ``draws`` holds one uniform number per row from the row's own generator, so a seeded row
        samples the same token whatever else is in the batch. Top-k and top-p each set a floor
        under which a row's tokens are dropped, found without sorting the vocabulary.
        """
        device = logits.device
        temperature = torch.tensor([p.temperature for p in params], device=device).unsqueeze(1)
        scaled = logits / temperature
        probs = scaled.softmax(dim=-1)
        floor = torch.zeros(len(params), device=device)
        if any(p.top_k > 0 for p in params):
            floor = torch.maximum(floor, top_k_floor(probs, [p.top_k for p in params]))
        if any(p.top_p < 1.0 for p in params):
            top_p = torch.tensor([p.top_p for p in params], device=device)
            floor = torch.maximum(floor, nucleus_floor(probs, top_p, scaled))
        if floor.any():
            probs = torch.where(probs >= floor.unsqueeze(1), probs, 0.0)
        cdf = probs.cumsum(dim=-1)
        picked = torch.searchsorted(cdf, draws.unsqueeze(1) * cdf[:, -1:], right=True)
        picked = picked.clamp_max(probs.shape[-1] - 1)
        chance = (probs.gather(1, picked) / cdf[:, -1:]).squeeze(1)
        return picked.squeeze(1), chance


def token_notes(
    scores: torch.Tensor, tokens: torch.Tensor, chance: torch.Tensor
) -> list[TokenChoice]:
    """How each of ``tokens`` was chosen, one per row of ``scores`` ([rows, vocab] logits): the
    model's probability of it, its rank and the likeliest tokens, and ``chance``, the probability
    the sampler gave it."""
    probs = scores.softmax(dim=-1)
    chosen = probs.gather(1, tokens.unsqueeze(1)).squeeze(1)
    ranks = (probs > chosen.unsqueeze(1)).sum(dim=-1) + 1
    top_p, top_ids = probs.topk(ALTERNATIVES, dim=-1)
    return [
        TokenChoice(
            token=int(tokens[n]),
            p=float(chance[n]),
            p_model=float(chosen[n]),
            rank=int(ranks[n]),
            alternatives=tuple(zip(top_ids[n].tolist(), top_p[n].tolist(), strict=True)),
        )
        for n in range(len(tokens))
    ]


NUCLEUS_BINS = 512  # the histogram's bins, each 1/16 of a nat (about 6 %) below the one before
BINS_PER_NAT = 16


def top_k_floor(probs: torch.Tensor, top_k: Sequence[int]) -> torch.Tensor:
    """Per row, the probability of its ``top_k``-th likeliest token (0 where top_k is 0)."""
    largest = probs.topk(max(top_k), dim=-1).values
    k = torch.tensor([max(k, 1) - 1 for k in top_k], device=probs.device).unsqueeze(1)
    floor = largest.gather(1, k).squeeze(1)
    return floor.masked_fill(torch.tensor(top_k, device=probs.device) == 0, 0.0)


def nucleus_floor(
    probs: torch.Tensor, top_p: torch.Tensor, logits: torch.Tensor | None = None
) -> torch.Tensor:
    """Per row, the smallest probability its nucleus keeps: tokens are kept likeliest first while
    those before them hold at most ``top_p`` of the mass (the likeliest always).

    Without sorting the vocabulary: a histogram of the probabilities on a log scale, weighted by
    the probabilities, says which bin the nucleus ends in; only that bin's tokens are sorted.
    ``logits`` (whose softmax ``probs`` is) spares taking logarithms.
    """
    if logits is None:
        logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    depth = (logits.amax(dim=-1, keepdim=True) - logits) * BINS_PER_NAT
    bins = depth.clamp_(0, NUCLEUS_BINS - 1).long()
    mass = probs.new_zeros((probs.shape[0], NUCLEUS_BINS)).scatter_add_(1, bins, probs)
    through = mass.cumsum(dim=1)
    last = (through <= top_p.unsqueeze(1)).sum(dim=1, keepdim=True)  # the bin it ends in
    everything = last.squeeze(1) >= NUCLEUS_BINS  # rounding: the whole mass is within top_p
    last = last.clamp_max(NUCLEUS_BINS - 1)
    before = (through.gather(1, last) - mass.gather(1, last)).squeeze(1)  # likelier bins' mass
    in_last = bins == last
    candidates = torch.where(in_last, probs, 0.0)
    ranked = candidates.topk(int(in_last.sum(dim=1).max()), dim=-1).values
    kept = (before.unsqueeze(1) + ranked.cumsum(dim=1) - ranked <= top_p.unsqueeze(1)) & (
        ranked > 0
    )
    count = kept.sum(dim=1, keepdim=True).clamp_min(1)
    floor = ranked.gather(1, count - 1).squeeze(1)
    return floor.masked_fill(everything, 0.0)


class StopRule:
    """Decides when one row is done: end-of-text, its length, or a stop string."""

    def __init__(
        self,
        params: SamplingParams,
        eos_id: int | None,
        stop_strings: Sequence[str] = (),
        room: int | None = None,
    ) -> None:
        limit = params.max_new_tokens if room is None else min(params.max_new_tokens, room)
        self.max_new_tokens = max(1, limit)
        self.min_new_tokens = params.min_new_tokens
        self.eos_id = eos_id
        self.stop_strings = tuple(s for s in stop_strings if s)

    def check(self, generated: Sequence[int], text: str | None = None) -> FinishReason | None:
        """Why the row should stop after its latest token, or None to go on."""
        if generated and generated[-1] == self.eos_id:
            return "eos"  # the chooser forbids end-of-text until min_new_tokens
        stopped = text is not None and any(s in text for s in self.stop_strings)
        if stopped and len(generated) >= self.min_new_tokens:
            return "stop"
        if len(generated) >= self.max_new_tokens:
            return "length"
        return None

    def trim(self, text: str) -> str:
        """Cut the text at the first stop string."""
        cut = min((text.find(s) for s in self.stop_strings if s in text), default=-1)
        return text if cut < 0 else text[:cut]


class TextStream:
    """Turns a row's growing text into deltas that never split a character or leak a stop string."""

    def __init__(self, stop_strings: Sequence[str] = ()) -> None:
        self.stop_strings = tuple(stop_strings)  # as StopRule keeps them: empty ones dropped
        self.sent = ""

    def advance(self, text: str) -> str:
        """The new part of ``text`` that is safe to show now."""
        return self._emit(text[: len(text) - self._held_back(text)])

    def finish(self, text: str) -> str:
        """Whatever of the final ``text`` has not been shown yet."""
        return self._emit(text)

    def _emit(self, visible: str) -> str:
        if len(visible) <= len(self.sent) or not visible.startswith(self.sent):
            return ""
        delta, self.sent = visible[len(self.sent) :], visible
        return delta

    def _held_back(self, text: str) -> int:
        """How many trailing characters to hold: a partial character, or a stop string's start."""
        hold = len(text) - len(text.rstrip("\ufffd"))
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:size]):
                    hold = max(hold, size)
                    break
        return hold
