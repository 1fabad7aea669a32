"""Per-row token choice and stop rules, alone."""

from __future__ import annotations

import pytest
import torch

from bot.engine.sampling import NgramBan, RowSampler, StopRule, TextStream, TokenChooser
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


@pytest.mark.parametrize("top_p", [1.0, 0.99])  # the plain path and the sorted, filtering path
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
