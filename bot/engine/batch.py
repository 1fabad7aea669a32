"""The rows being decoded together: their shared KV cache, attention mask and positions.

Rows of different lengths share one cache by left padding: a row shorter than the batch has zeros
in front of its keys and values and zeros in its attention mask there, so it never attends to them.
A new row is prefilled alone and then spliced in; a finished row is cut out and the padding that
no remaining row needs is trimmed. Everything here runs on the engine's worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

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


class Batch:
    """The active rows and their shared cache."""

    def __init__(self, model: PreTrainedModel, device: torch.device) -> None:
        self.model = model
        self.device = device
        self.rows: list[Row] = []
        self.cache = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=device)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def prefill(self, ids: list[int]) -> tuple[object, torch.Tensor]:
        """Run one row's tokens alone; return its cache and the logits after its last token."""
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=input_ids, use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[0, -1]

    def add(self, row: Row, cache) -> None:
        """Splice a prefilled row into the batch, padding whichever side is shorter."""
        row_len = cache.get_seq_length()
        row_mask = torch.ones((1, row_len), dtype=torch.long, device=self.device)
        if not self.rows:
            self.rows, self.cache, self.mask = [row], cache, row_mask
            return
        gap = self.length - row_len
        if gap > 0:
            _pad_left(cache, gap)
            row_mask = F.pad(row_mask, (gap, 0))
        elif gap < 0:
            _pad_left(self.cache, -gap)
            self.mask = F.pad(self.mask, (-gap, 0))
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys])
            mine.values = torch.cat([mine.values, theirs.values])
        self.mask = torch.cat([self.mask, row_mask])
        self.rows.append(row)

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
