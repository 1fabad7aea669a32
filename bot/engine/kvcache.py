"""Key/value caches for the local engine: one that grows in place, and a store of story prefixes.

:class:`GrowingLayer` keeps a layer's keys and values in a buffer with room to spare, so that a
decoding step writes its one new position in place; Hugging Face's ``DynamicLayer`` copies the whole
cache (``torch.cat``) at every step instead. :class:`PrefixCache` keeps the encoded context of the
stories written lately, within a memory budget, so that a turn encodes only what is new since.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer

ROOM = 64  # positions a full buffer grows by, at the least (a quarter of its length at the most)


class GrowingLayer(DynamicLayer):
    """A layer whose ``keys``/``values`` are views of a larger buffer, written in place.

    Anything may assign ``keys``/``values`` (splicing rows, trimming padding, selecting rows); the
    next update finds them outside its buffer and moves them into a new one with room to grow.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        start = self.get_seq_length()
        end = start + key_states.shape[-2]
        if not self._room_for(end):
            self._grow(start, end, key_states, value_states)
        self._keys[:, :, start:end] = key_states
        self._values[:, :, start:end] = value_states
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def _room_for(self, end: int) -> bool:
        """Whether the buffer holds the current keys and has room up to ``end``."""
        buffer = self._keys
        return (
            buffer is not None
            and end <= buffer.shape[-2]
            and self.keys.data_ptr() == buffer.data_ptr()
            and self.keys.shape[:2] == buffer.shape[:2]
            and self.keys.stride() == buffer.stride()
        )

    def _grow(self, start: int, end: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        self._keys = with_room(self.keys, start, end, keys)
        self._values = with_room(self.values, start, end, values)

    def adopt(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        """Take buffers whose first ``length`` positions hold this layer's keys and values; the
        positions after them are written over."""
        self.device, self.is_initialized = keys.device, True
        self._keys, self._values = keys, values
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]


def with_room(held: torch.Tensor, length: int, end: int, like: torch.Tensor) -> torch.Tensor:
    """A new buffer for ``end`` positions and room to grow, with ``held``'s first ``length``."""
    rows, heads, _, width = like.shape
    buffer = like.new_empty((rows, heads, end + max(ROOM, end // 4), width))
    if length:
        buffer[:, :, :length] = held[:, :, :length]
    return buffer


def growing_cache() -> Cache:
    """An empty cache whose layers grow in place (one per model layer, made as the model runs)."""
    return Cache(layer_class_to_replicate=GrowingLayer)


@dataclass(eq=False)
class Prefix:
    """A context the model has encoded: its token ids and each layer's keys and values, in buffers
    with room for the next turn's tokens (a cache resuming from it writes on into them)."""

    ids: tuple[int, ...]
    layers: tuple[tuple[torch.Tensor, torch.Tensor], ...]  # [1, heads, room, width] each

    @classmethod
    def copy_of(cls, ids: Sequence[int], layers) -> Prefix:
        """A prefix holding copies of ``layers``' keys and values (each [1, heads, len(ids), w])."""
        n = len(ids)
        return cls(
            tuple(ids),
            tuple((with_room(k, n, n, k), with_room(v, n, n, v)) for k, v in layers),
        )

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self.layers)

    def head(self, length: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's keys and values of the first ``length`` tokens (views, not copies)."""
        return [(k[:, :, :length], v[:, :, :length]) for k, v in self.layers]

    def cache(self, length: int) -> Cache:
        """A growing cache resuming after the first ``length`` tokens, in this prefix's buffers."""
        cache = growing_cache()
        for keys, values in self.layers:
            layer = GrowingLayer()
            layer.adopt(keys, values, length)
            cache.layers.append(layer)
        return cache


def common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens ``a`` and ``b`` share from the start."""
    for i, (x, y) in enumerate(zip(a, b)):  # noqa: B905 - the shorter one ends the prefix
        if x != y:
            return i
    return min(len(a), len(b))


class PrefixCache:
    """The encoded contexts of recent stories, least recently used dropped first beyond a budget.

    Keyed by token ids, not by story: a turn finds the stored context sharing the most tokens with
    its own, whichever story or version wrote it. A context that was trimmed from the front or
    edited early shares little and is encoded afresh; undo and retry share all but the last part
    (every finished part stores its context, so a retry finds the one its first version left).
    """

    def __init__(self, budget_bytes: int, min_tokens: int = 32) -> None:
        self.budget = budget_bytes
        self.min_tokens = min_tokens
        self._entries: collections.OrderedDict[int, Prefix] = collections.OrderedDict()
        self.size = 0
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, ids: Sequence[int]) -> tuple[Prefix, int] | None:
        """The stored context sharing the longest start with ``ids`` (at least ``min_tokens``),
        and how long that start is.

        A context that ``ids`` mostly continue (the same story's next turn, a retry, an undo)
        leaves the store: the turn resuming from it writes on in its buffers, and stores its own
        context when it is done. Of one it shares only a short start with (another story in the
        same mode shares the framing), a copy of that start is given and the context stays.
        """
        best, length = None, 0
        for prefix in self._entries.values():
            shared = common_length(prefix.ids, ids)
            if shared > length:
                best, length = prefix, shared
        if best is None or length < self.min_tokens:
            self.misses += 1
            return None
        self.hits += 1
        if 2 * length >= len(best.ids):
            self._drop(id(best))
            return best, length
        self._entries.move_to_end(id(best))
        return Prefix.copy_of(best.ids[:length], best.head(length)), length

    def add(self, prefix: Prefix) -> None:
        """Keep ``prefix``, replacing stored contexts it extends; drop the oldest beyond budget."""
        if len(prefix.ids) < self.min_tokens or prefix.nbytes > self.budget:
            return
        for key, old in list(self._entries.items()):
            if prefix.ids[: len(old.ids)] == old.ids:
                self._drop(key)
        self._entries[id(prefix)] = prefix
        self.size += prefix.nbytes
        while self.size > self.budget:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

    def _drop(self, key: int) -> None:
        self.size -= self._entries.pop(key).nbytes
