"""The in-place cache and the store of encoded story contexts, alone."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from bot.engine.kvcache import GrowingLayer, Prefix, PrefixCache, common_length, growing_cache


def test_a_growing_cache_gives_the_logits_of_the_usual_cache_and_writes_in_place(tiny_loaded):
    model = tiny_loaded.model
    prompt = torch.tensor([[464, 1468, 1097, 373, 257, 3797]])
    with torch.inference_mode():
        ours = model(input_ids=prompt, cache=growing_cache(), use_cache=True)
        usual = model(input_ids=prompt, cache=DynamicCache(), use_cache=True)
        buffers = {layer._keys.data_ptr() for layer in ours.cache.layers}
        for token in (290, 11, 340, 318):
            step = torch.tensor([[token]])
            ours = model(input_ids=step, cache=ours.cache, use_cache=True)
            usual = model(input_ids=step, cache=usual.cache, use_cache=True)
            assert torch.allclose(ours.logits, usual.logits, atol=1e-5)
    assert all(isinstance(layer, GrowingLayer) for layer in ours.cache.layers)
    assert {layer._keys.data_ptr() for layer in ours.cache.layers} == buffers  # no copies
    assert ours.cache.get_seq_length() == usual.cache.get_seq_length() == 10


def test_a_layer_given_new_keys_moves_them_into_a_buffer_with_room():
    layer = GrowingLayer()
    keys = torch.randn(2, 3, 5, 4)
    layer.update(keys, keys)
    layer.keys = layer.keys[:, :, 2:]  # trimmed, as the batch trims padding
    layer.values = layer.values[:, :, 2:]
    new = torch.randn(2, 3, 1, 4)
    out, _ = layer.update(new, new)
    assert torch.equal(out, torch.cat([keys[:, :, 2:], new], dim=2))
    assert layer._keys.shape[2] > 4  # room for the next steps


def prefix(ids, size=10) -> Prefix:
    """A one-layer stored context whose keys and values take about ``size`` bytes a token."""
    width = max(1, size // 8)
    tensor = torch.zeros(1, 1, len(ids), width, dtype=torch.float32)
    return Prefix.copy_of(ids, [(tensor, tensor)])


def test_the_longest_shared_start_is_found_and_taken_out_of_the_store():
    store = PrefixCache(budget_bytes=10**6, min_tokens=2)
    store.add(prefix([1, 2, 3, 4]))
    store.add(prefix([1, 2, 9, 9, 9]))
    found, shared = store.take([1, 2, 3, 4, 5, 6])
    assert found.ids == (1, 2, 3, 4) and shared == 4 and len(store) == 1
    assert store.take([7, 8]) is None and store.take([1, 5]) is None  # shares one: too few
    assert (store.hits, store.misses) == (1, 2)


def test_a_context_sharing_only_a_short_start_is_copied_and_stays_for_its_own_story():
    store = PrefixCache(budget_bytes=10**6, min_tokens=2)
    story = prefix(range(100, 140))
    story.layers[0][0][:, :, :40] = torch.arange(40.0).reshape(1, 1, 40, 1)
    store.add(story)
    found, shared = store.take([100, 101, 102, 103, 104, 999])  # another story, same framing
    assert shared == 5 and found is not story and found.ids == tuple(range(100, 105))
    assert found.layers[0][0][0, 0, :5, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert store.take(list(range(100, 141)))[0] is story  # its own next turn still finds it


def test_a_longer_context_of_the_same_story_replaces_the_one_it_extends():
    store = PrefixCache(budget_bytes=10**6, min_tokens=1)
    store.add(prefix([1, 2, 3]))
    store.add(prefix([1, 2, 3, 4, 5]))
    assert len(store) == 1 and store.take([1, 2, 3, 4, 5])[0].ids == (1, 2, 3, 4, 5)


def test_the_least_recently_used_context_goes_first_beyond_the_budget():
    one = prefix(range(100, 110), size=800).nbytes
    store = PrefixCache(budget_bytes=int(2.5 * one), min_tokens=1)
    for start in (100, 200, 300):
        store.add(prefix(range(start, start + 10), size=800))
    assert len(store) == 2 and store.size <= store.budget
    assert store.take(list(range(100, 110))) is None  # the oldest was dropped
    too_big = prefix(range(500, 900), size=800)
    store.add(too_big)
    assert too_big.nbytes > store.budget and store.take(list(range(500, 900))) is None


def test_common_length():
    assert common_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_length([1, 2], [1, 2, 3]) == 2
    assert common_length([], [1]) == 0
