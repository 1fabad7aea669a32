"""Per-row token choice and stop rules, alone."""

from __future__ import annotations

import itertools

import pytest
import torch

from bot.engine.sampling import (
    NgramBan,
    RowSampler,
    StopRule,
    TextStream,
    TokenChooser,
    nucleus_floor,
    penalty_ramp,
    top_k_floor,
)
from bot.engine.types import SamplingParams

EOS = 9


def row(prompt=(1, 2, 3), **params) -> RowSampler:
    return RowSampler(SamplingParams(**params), list(prompt), EOS)


def logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_greedy_rows_take_the_largest_logit_and_sampled_rows_use_their_own_settings():
    scores = logits([0, 5, 1, 0, 0, 0, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0, 2.9, 0, 0])
    greedy = row(temperature=0)
    top1 = row(temperature=1.5, top_k=1)
    assert TokenChooser().choose(scores, [greedy, top1]) == [1, 0]


def test_top_p_keeps_only_the_nucleus():
    scores = logits([10, 9.5, 0, 0, 0, 0, 0, 0, 0, 0])
    picks = {
        TokenChooser().choose(scores.clone(), [row(temperature=1, top_p=0.5, seed=s)])[0]
        for s in range(40)
    }
    assert picks == {0}
    wide = {
        TokenChooser().choose(scores.clone(), [row(temperature=1, top_p=1.0, seed=s)])[0]
        for s in range(40)
    }
    assert wide == {0, 1}


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    sampler = row(prompt=(1, 2), repetition_penalty=2.0)
    scores = torch.tensor([1.0, 4.0, -4.0, 3.0, 0, 0, 0, 0, 0, 0])
    sampler.adjust(scores)
    assert scores[:4].tolist() == [1.0, 2.0, -8.0, 3.0]


def test_no_repeat_ngram_bans_the_token_that_would_repeat_a_trigram():
    ban = NgramBan(3, [5, 6, 7, 5])
    assert ban.banned() == set()
    ban.push(6)
    assert ban.banned() == {7}
    sampler = row(prompt=(5, 6, 7, 5, 6), no_repeat_ngram_size=3)
    scores = torch.zeros(10)
    scores[7] = 10
    sampler.adjust(scores)
    assert scores[7] == float("-inf")


# -- the repetition penalty's window and slope ---------------------------------------------------

VOCAB = 40


def penalised(sampler: RowSampler, value: float = 2.0) -> torch.Tensor:
    """The factor by which ``sampler`` divides each token's positive logit."""
    scores = torch.full((VOCAB,), value)
    sampler.adjust(scores)
    return value / scores


def test_repetition_range_penalises_only_the_newest_tokens():
    prompt = (11, 12, 13, 14, 15)
    sampler = row(prompt=prompt, repetition_penalty=2.0, repetition_range=2)

    factors = penalised(sampler)
    assert factors[[14, 15]].tolist() == [2.0, 2.0]  # the newest two
    assert factors[[11, 12, 13]].tolist() == [1.0, 1.0, 1.0]  # older: free again
    assert factors[20] == 1.0  # never seen

    sampler.push(16)  # what the row writes joins the window, and the oldest leaves it
    factors = penalised(sampler)
    assert factors[[15, 16]].tolist() == [2.0, 2.0]
    assert factors[14] == 1.0


def test_a_token_used_again_lately_is_penalised_even_if_it_was_also_used_long_ago():
    sampler = row(prompt=(20, 11, 12, 13, 20), repetition_penalty=2.0, repetition_range=2)

    factors = penalised(sampler)
    assert factors[[13, 20]].tolist() == [2.0, 2.0]
    assert factors[11] == 1.0


@pytest.mark.parametrize("repetition_range", [0, 5, 100])
def test_a_range_of_zero_or_past_the_history_penalises_every_token(repetition_range):
    prompt = (11, 12, 13, 14, 15)
    sampler = row(prompt=prompt, repetition_penalty=1.5, repetition_range=repetition_range)

    factors = penalised(sampler)
    assert torch.allclose(factors[list(prompt)], torch.tensor(1.5))
    assert factors[20] == 1.0


def test_slope_penalises_older_tokens_less_than_newer_ones():
    prompt = (11, 12, 13, 14, 15, 16, 17, 18)
    sampler = row(prompt=prompt, repetition_penalty=2.0, repetition_range=8, repetition_slope=1.0)

    factors = penalised(sampler)[list(prompt)]  # oldest first
    assert factors[-1] == pytest.approx(2.0)  # the newest token gets the whole penalty
    assert factors[0] == pytest.approx(1.0)  # the oldest in range almost none
    assert all(older < newer for older, newer in itertools.pairwise(factors))
    flat = penalised(row(prompt=prompt, repetition_penalty=2.0, repetition_range=8))
    assert torch.allclose(flat[list(prompt)], torch.tensor(2.0))  # slope 0: all alike

    # Negative logits are multiplied, by the same sloped factors.
    scores = torch.full((VOCAB,), -1.0)
    sampler.adjust(scores)
    assert torch.allclose(-scores[list(prompt)], factors)


def test_with_a_slope_a_tokens_penalty_depends_on_how_long_ago_it_was_used():
    params = {"repetition_penalty": 1.5, "repetition_range": 10, "repetition_slope": 0.7}
    short = penalised(row(prompt=(11, 12, 13), **params))
    long = penalised(row(prompt=(20, 21, 22, 23, 24, 25, 11, 12, 13), **params))

    assert torch.allclose(short[[11, 12, 13]], long[[11, 12, 13]])
    assert short[11] > 1.0  # two tokens back in a range of ten is still penalised


def test_a_token_is_penalised_by_its_newest_use():
    params = {"repetition_penalty": 2.0, "repetition_range": 6, "repetition_slope": 1.0}
    reused = penalised(row(prompt=(11, 12, 13, 14, 15, 11), **params))
    fresh = penalised(row(prompt=(11, 12, 13, 14, 15, 16), **params))

    assert reused[11] == pytest.approx(fresh[16].item())  # as the newest, not as the oldest


def test_penalty_ramp_runs_from_no_penalty_to_the_whole_penalty():
    ramp = penalty_ramp(1.3, 10, 0.7)

    assert ramp.shape == (10,)
    assert ramp[0] == pytest.approx(1.0)  # the oldest position
    assert ramp[-1] == pytest.approx(1.3)  # the newest
    assert torch.all(ramp[1:] > ramp[:-1])  # rising in between
    assert torch.allclose(penalty_ramp(1.3, 10, 1.0), torch.linspace(1.0, 1.3, 10))  # straight
    # A steeper slope keeps the penalty high for longer among the newer tokens.
    assert penalty_ramp(2.0, 9, 3.0)[6] > penalty_ramp(2.0, 9, 1.0)[6]
    assert penalty_ramp(2.0, 1, 0.7).tolist() == [2.0]
    assert penalty_ramp(2.0, 0, 0.7).tolist() == []


# -- the n-gram ban's window ---------------------------------------------------------------------


def banned(sampler: RowSampler) -> set[int]:
    scores = torch.zeros(VOCAB)
    sampler.adjust(scores)
    return {i for i, score in enumerate(scores.tolist()) if score == float("-inf")}


def test_the_ngram_ban_forgets_ngrams_older_than_its_window():
    old = (11, 12, 13)  # a trigram early in the story
    filler = tuple(range(20, 30))
    prompt = (*old, *filler, 11, 12)  # the story ends with its first two tokens again

    def sampler(window: int) -> RowSampler:
        return row(prompt=prompt, no_repeat_ngram_size=3, no_repeat_ngram_range=window)

    assert banned(sampler(len(prompt))) == {13}  # inside the window: repeating it is banned
    assert banned(sampler(len(prompt) - 1)) == set()  # one token older: free to use again
    assert banned(sampler(0)) == {13}  # 0: the whole context


def test_the_ngram_ban_covers_what_the_row_writes_itself():
    sampler = row(prompt=(20, 21, 22, 23), no_repeat_ngram_size=3, no_repeat_ngram_range=2)
    for token in (11, 12, 13, 11, 12):
        assert 13 not in banned(sampler)
        sampler.push(token)

    assert banned(sampler) == {13}


def test_the_ngram_ban_joins_the_window_to_what_the_row_writes():
    sampler = row(prompt=(20, 21, 11, 12, 13, 11), no_repeat_ngram_size=3, no_repeat_ngram_range=4)
    assert banned(sampler) == set()

    sampler.push(12)  # completes 11 12 from the window's last token and its own

    assert banned(sampler) == {13}


def test_end_of_text_is_forbidden_until_min_new_tokens():
    sampler = row(temperature=0, min_new_tokens=2, max_new_tokens=5)
    scores = torch.zeros(1, 10)
    scores[0, EOS] = 100
    assert TokenChooser().choose(scores.clone(), [sampler]) != [EOS]
    sampler.push(4)
    sampler.push(4)
    assert TokenChooser().choose(scores.clone(), [sampler]) == [EOS]


def test_seeded_rows_sample_the_same_tokens_whatever_their_neighbours():
    torch.manual_seed(0)
    scores = torch.randn(3, 10)

    def sample(rows):
        return TokenChooser().choose(scores[: len(rows)].clone(), rows)

    alone = [sample([row(temperature=1, seed=7)])[0] for _ in range(3)]
    with_neighbours = [
        sample([row(temperature=1, seed=7), row(temperature=1), row(temperature=0)])[0]
        for _ in range(3)
    ]
    assert alone == with_neighbours


@pytest.mark.parametrize(
    ("generated", "text", "expected"),
    [
        ([1, 2], "ab", None),
        ([1, EOS], "a", "eos"),
        ([1, 2, 3, 4], "abcd", "length"),
        ([1, 2], "a END", "stop"),
    ],
)
def test_stop_rule(generated, text, expected):
    rule = StopRule(SamplingParams(max_new_tokens=4), EOS, ["END"])
    assert rule.check(generated, text) == expected


def test_stop_rule_respects_the_room_left_in_the_window_and_trims_at_the_stop():
    rule = StopRule(SamplingParams(max_new_tokens=100), EOS, ["\n\n"], room=3)
    assert rule.check([1, 2, 3]) == "length"
    assert rule.trim("one\n\ntwo") == "one"


def test_text_stream_holds_partial_characters_and_stop_string_starts():
    stream = TextStream(["THE END"])
    assert stream.advance("Hello \ufffd") == "Hello "
    assert stream.advance("Hello 🙂 TH") == "🙂 "
    assert stream.advance("Hello 🙂 THE cat") == "THE cat"
    assert stream.finish("Hello 🙂 THE cat ") == " "


@pytest.mark.parametrize("top_p", [1.0, 0.99])  # the plain path and the filtering path
def test_sampled_tokens_follow_the_model_probabilities(top_p):
    probs = torch.tensor([0.1, 0.5, 0.0, 0.4])
    sampler = row(temperature=1.0, top_p=top_p, seed=3)
    chooser = TokenChooser()
    draws = [chooser.choose(probs.log().unsqueeze(0), [sampler])[0] for _ in range(4000)]
    freq = torch.bincount(torch.tensor(draws), minlength=4).float() / len(draws)
    assert freq[2] == 0
    assert torch.allclose(freq, probs, atol=0.03), freq


def test_an_unseeded_row_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    row(temperature=1.0)
    assert torch.equal(torch.rand(3), expected)


def sorted_nucleus(probs: torch.Tensor, top_p: float) -> tuple[set[int], set[int]]:
    """The nucleus as a full sort defines it (likeliest first, while the mass before is within
    top_p), in float64; and the tokens so near its edge that float32 sums may place them apart."""
    ranked, order = probs.double().sort(descending=True)
    before = ranked.cumsum(0) - ranked
    first = torch.arange(len(probs)) == 0
    edge = (before - top_p).abs() < 1e-5
    return set(order[(before <= top_p) | first].tolist()), set(order[edge & ~first].tolist())


@pytest.mark.parametrize("spread", [0.3, 1.0, 3.0, 8.0])  # from nearly flat to very peaked
@pytest.mark.parametrize("top_p", [0.05, 0.5, 0.9, 0.95, 0.999])
def test_the_nucleus_found_without_sorting_is_the_sorted_one(spread, top_p):
    generator = torch.Generator().manual_seed(int(spread * 10) + int(top_p * 1000))
    probs = (torch.randn(6, 50257, generator=generator) * spread).softmax(dim=-1)
    probs[5, 100:] = 0.0  # banned tokens have no probability at all
    probs[5] /= probs[5].sum()
    floor = nucleus_floor(probs, torch.full((6,), top_p))
    for row_probs, row_floor in zip(probs, floor, strict=True):
        kept = set((row_probs >= row_floor).nonzero().squeeze(1).tolist())
        nucleus, edge = sorted_nucleus(row_probs, top_p)
        assert kept ^ nucleus <= edge and len(kept ^ nucleus) <= 2


def test_top_k_floor_keeps_each_rows_k_likeliest_and_zero_means_no_limit():
    probs = torch.tensor([[0.1, 0.4, 0.2, 0.3], [0.25, 0.25, 0.3, 0.2], [0.5, 0.2, 0.2, 0.1]])
    floor = top_k_floor(probs, [2, 1, 0])
    assert floor.tolist() == pytest.approx([0.3, 0.3, 0.0])
