"""The rows being decoded together: their shared KV cache, attention mask and positions.

Rows of different lengths share one cache by left padding: a row shorter than the batch has zeros
in front of its keys and values and zeros in its attention mask there, so it never attends to them.
New rows are prefilled together (or after a stored prefix of their context) and then spliced in; a
finished row is cut out and the padding that no remaining row needs is trimmed. The cache grows in
place (``kvcache.GrowingLayer``), so a step copies nothing but its new position. Everything here
runs on the engine's worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel
from transformers.cache_utils import Cache

from bot.engine.kvcache import Prefix, growing_cache
from bot.engine.sampling import RowSampler, StopRule, TextStream


@dataclass(eq=False)
class Row:
    """One request while it is being decoded."""

    pending: object  # the engine's handle for delivering results
    ids: list[int]  # prompt + generated; the last one is not in the cache yet
    prompt_len: int
    sampler: RowSampler
    stop: StopRule
    deadline: float
    stream: TextStream
    generated: list[int] = field(default_factory=list)


@dataclass(eq=False)
class Prefilled:
    """Rows encoded together, ready to join the batch: their cache, mask and next-token logits."""

    cache: Cache
    mask: torch.Tensor  # [rows, length]: 0 where a row is padded on the left
    logits: torch.Tensor  # [rows, vocab]: after each row's last token

    def select(self, index: list[int]) -> Prefilled:
        """Only the rows at ``index`` (all of them: this one)."""
        if len(index) == self.mask.shape[0]:
            return self
        kept = torch.tensor(index, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(kept)
        return Prefilled(self.cache, self.mask[kept], self.logits[kept])


class Batch:
    """The active rows and their shared cache."""

    def __init__(self, model: PreTrainedModel, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.rows: list[Row] = []
        self.cache: Cache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def prefill(self, contexts: Sequence[Sequence[int]]) -> Prefilled:
        """Encode several contexts in one forward pass, each padded on the left to the longest."""
        longest = max(len(ids) for ids in contexts)
        padded = [[0] * (longest - len(ids)) + list(ids) for ids in contexts]
        mask = torch.tensor(
            [[0] * (longest - len(ids)) + [1] * len(ids) for ids in contexts],
            dtype=torch.long,
            device=self.device,
        )
        positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
        out = self.model(
            input_ids=torch.tensor(padded, dtype=torch.long, device=self.device),
            attention_mask=mask if len(contexts) > 1 else None,
            position_ids=positions,
            cache=growing_cache(),
            use_cache=True,
            logits_to_keep=1,
        )
        return Prefilled(out.cache, mask, out.logits[:, -1])

    def extend(self, prefix: Prefix, reused: int, ids: Sequence[int]) -> Prefilled:
        """Encode ``ids`` after the first ``reused`` tokens of a stored ``prefix``."""
        cache = prefix.cache(reused)
        new = ids[reused:]
        out = self.model(
            input_ids=torch.tensor([new], dtype=torch.long, device=self.device),
            position_ids=torch.arange(reused, len(ids), device=self.device).unsqueeze(0),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        mask = torch.ones((1, len(ids)), dtype=torch.long, device=self.device)
        return Prefilled(out.cache, mask, out.logits[:, -1])

    def add(self, rows: Sequence[Row], prefilled: Prefilled) -> None:
        """Splice prefilled rows into the batch, padding whichever side is shorter."""
        cache, mask = prefilled.cache, prefilled.mask
        if not self.rows:
            self.rows, self.cache, self.mask = list(rows), cache, mask
            return
        gap = self.length - mask.shape[1]
        if gap > 0:
            _pad_left(cache, gap)
            mask = F.pad(mask, (gap, 0))
        elif gap < 0:
            _pad_left(self.cache, -gap)
            self.mask = F.pad(self.mask, (-gap, 0))
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self.mask = torch.cat([self.mask, mask])
        self.rows.extend(rows)

    def prefix(self, row: Row) -> Prefix:
        """A copy of what ``row`` has encoded (all its tokens but the newest), without padding."""
        index = self.rows.index(row)
        length = len(row.ids) - 1
        start = self.length - length
        layers = [
            (layer.keys[index : index + 1, :, start:], layer.values[index : index + 1, :, start:])
            for layer in self.cache.layers
        ]
        return Prefix.copy_of(row.ids[:length], layers)

    def step(self) -> torch.Tensor:
        """Feed every row its latest token; return next-token logits, [rows, vocab]."""
        before = self.length
        input_ids = torch.tensor([[r.ids[-1]] for r in self.rows], device=self.device)
        positions = torch.tensor([[len(r.ids) - 1] for r in self.rows], device=self.device)
        mask = F.pad(self.mask, (0, 1), value=1)
        try:
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                cache=self.cache,
                use_cache=True,
            )
        except BaseException:
            _truncate(self.cache, before)  # layers that ran already appended this step
            raise
        self.cache, self.mask = out.cache, mask
        return out.logits[:, -1]

    def keep(self, keep: list[Row]) -> None:
        """Drop every row not in ``keep`` and trim padding that no remaining row needs."""
        if len(keep) == len(self.rows):
            return
        if not keep:
            self.clear()
            return
        index = torch.tensor(
            [i for i, r in enumerate(self.rows) if r in keep], dtype=torch.long, device=self.device
        )
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.rows = [self.rows[i] for i in index.tolist()]
        unused = int(self.mask.any(dim=0).int().argmax())
        if unused:
            for layer in self.cache.layers:
                layer.keys = layer.keys[:, :, unused:]
                layer.values = layer.values[:, :, unused:]
            self.mask = self.mask[:, unused:]

    def clear(self) -> list[Row]:
        """Empty the batch, returning the rows it held."""
        rows, self.rows, self.cache = self.rows, [], None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        return rows


def _pad_left(cache, n: int) -> None:
    """Put ``n`` zero positions in front of every layer of ``cache``."""
    for layer in cache.layers:
        layer.keys = F.pad(layer.keys, (0, 0, n, 0))
        layer.values = F.pad(layer.values, (0, 0, n, 0))


def _truncate(cache, length: int) -> None:
    """Cut every layer of ``cache`` back to ``length`` positions (those past it are dropped)."""
    for layer in cache.layers:
        if getattr(layer, "keys", None) is not None and layer.keys.shape[-2] > length:
            layer.keys = layer.keys[:, :, :length]
            layer.values = layer.values[:, :, :length]
