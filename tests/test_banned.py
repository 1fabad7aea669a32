"""Banned words: folding, whole-word and wildcard matches, masking, token sequences, and the masked
live preview."""

from __future__ import annotations

import pytest
from transformers import GPT2TokenizerFast

from bot.banned import MASK, BannedWords, MaskedProgress, entry_key, fold
from bot.engine.sampling import SequenceBan
from tests.tinymodel import TOKENIZER_DIR


@pytest.fixture(scope="module")
def tokenizer():
    return GPT2TokenizerFast.from_pretrained(TOKENIZER_DIR)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("GRUE", "grue"),
        ("g\u200bru\u200de", "grue"),  # zero-width space and joiner
        ("ｇｒｕｅ", "grue"),  # full width
        ("𝐠𝐫𝐮𝐞", "grue"),  # mathematical bold
        ("grüé", "grue"),  # accents
        ("gruе", "grue"),  # a Cyrillic е
        ("ɡrue", "grue"),  # Latin small script g
        ("G̶r̶u̶e̶", "grue"),  # combining strokes
    ],
)
def test_folding_undoes_every_disguise(text, folded):
    assert fold(text) == folded


def test_whole_words_and_phrases_match_and_parts_of_words_do_not():
    banned = BannedWords(["ass", "dark lord"])

    assert banned.find("a class of grass") is None
    assert banned.find("what an ASS") == "ass"
    assert banned.find("the dark\n\tlord") == "dark lord"
    assert banned.find("the darklord") is None


def test_a_trailing_star_matches_every_word_that_begins_with_it():
    banned = BannedWords(["dragon*"])

    assert banned.find("Two Dragons flew") == "dragon*"
    assert banned.find("a dragonfly") == "dragon*"
    assert banned.find("snapdragon") is None


def test_masking_covers_the_disguised_word_character_for_character():
    banned = BannedWords(["grue", "dark lord"])

    assert banned.mask("The G̶r̶u̶e̶ ate.") == f"The {MASK * 8} ate."
    assert banned.mask("a g\u200brue") == f"a {MASK * 5}"
    assert banned.mask("the Dark  Lord") == f"the {MASK * 4}  {MASK * 4}"
    assert banned.mask("nothing here") == "nothing here"


def test_entries_are_kept_folded_so_look_alikes_are_one_entry():
    assert entry_key("  Dark   LORD ") == entry_key("dark lord") == "dark lord"
    assert len(BannedWords(["grue", "GRUE", "gruе"])) == 1


def test_every_usual_spelling_becomes_a_token_sequence(tokenizer):
    sequences = BannedWords(["grue", "dragon*"]).token_sequences(tokenizer)

    for form in ("grue", " grue", "Grue", " Grue", "GRUE", " GRUE", " dragon", " Dragon"):
        assert tuple(tokenizer.encode(form)) in sequences


def test_the_sampler_bans_the_token_that_would_complete_a_sequence():
    ban = SequenceBan([(5,), (7, 8, 9), (7, 10)])

    assert ban.banned([1, 2]) == {5}
    assert ban.banned([1, 7]) == {5, 10}
    assert ban.banned([7, 8]) == {5, 9}
    assert ban.banned([]) == {5}


class Shown(list):
    def __call__(self, delta):
        self.append(delta)

    def restart(self):
        self.append("<restart>")


def test_the_live_preview_never_shows_a_banned_word_however_it_arrives():
    text = "Night fell. The grue came closer, and closer, and the keeper lit the lamp again."
    for size in (1, 2, 3, 7):
        shown = Shown()
        preview = MaskedProgress(BannedWords(["grue"]), shown)
        for start in range(0, len(text), size):
            preview(text[start : start + size])
            assert "grue" not in "".join(shown)
        assert "".join(shown) == BannedWords(["grue"]).mask(text)[: len("".join(shown))]
        assert "".join(shown).startswith(f"Night fell. The {MASK * 4} came")
