"""The writing-quality metrics on small hand-made examples, including the ambiguous cases."""

from __future__ import annotations

import random
import time

import pytest

from bench.quality_metrics import (
    copied_span,
    distinct_n,
    ends_cleanly,
    framing_leak,
    has_framing_label,
    invented_word_share,
    repeated_ngram_rate,
    starts_with_list_marker,
    topic_overlap,
    words,
)


@pytest.mark.parametrize(
    "text",
    ["8. Long-distance lovers", "8) Love", "2017-08-31 was a Thursday", "1/ The thread", "42",
     "# Chapter One", "- milk", "* eggs", "• bread", "(a) first", "a) first", "B. second",
     "IV. The Return", "iv) the return", "(iii) third", "  \n 3. indented"],
)  # fmt: skip
def test_list_markers_and_numbers_are_list_starts(text):
    assert starts_with_list_marker(text)


@pytest.mark.parametrize(
    "text",
    ["The night", '"Hello," she said.', "'Twas brillig", "It was 1990.", "A man walked in.",
     "I'm here", "Mix the paint.", "did not answer.", "mix. Then", "—Wait!",
     "Ivy grew.", "", "   "],
)  # fmt: skip
def test_words_and_quotes_are_not_list_starts(text):
    # Words made of Roman-numeral letters ("Mix", "did", "Ivy") are still words.
    assert not starts_with_list_marker(text)


@pytest.mark.parametrize(
    "text",
    ["She left.", "Why?", "Run!", 'He said, "Go home."', "(It was over.)", "She left.  \n",
     "*She smiles.*", "It cost $3!", "No way?!", "He'd had enough, etc."],
)  # fmt: skip
def test_prose_ending_on_a_sentence_end_is_clean(text):
    assert ends_cleanly(text)


@pytest.mark.parametrize(
    "text",
    ["She left", "She left,", "and then…", "and then...", "It cost 3.", "They met in 1990.",
     "She turned to Mr.", "Some fruit, e.g.", "Ask Dr.", 'He said, "', "", "   ", "word-"],
)  # fmt: skip
def test_prose_cut_mid_sentence_or_ambiguous_is_not_clean(text):
    # A number before the final period might be a list item "3." that was cut, so it is not clean.
    assert not ends_cleanly(text)


@pytest.mark.parametrize(
    "text",
    ["Roses are red\nViolets are blue", "and the river runs;", "I wait...", "Verse 2",
     "Oh, love!", 'She sang "home"', "INT. KITCHEN - NIGHT\nMARY\nHello there"],
)  # fmt: skip
def test_verse_ending_on_a_finished_line_is_clean(text):
    assert ends_cleanly(text, by_line=True)


@pytest.mark.parametrize(
    "text",
    ["Roses are red,", "and then-", "and then —", "The list:", "and so (", 'She sang "', "“", "‘",
     '"', "", "\n\n"],
)  # fmt: skip
def test_verse_ending_on_an_unfinished_line_is_not_clean(text):
    assert not ends_cleanly(text, by_line=True)


def test_prose_rules_are_stricter_than_line_rules():
    assert not ends_cleanly("Roses are red") and ends_cleanly("Roses are red", by_line=True)


def test_words_are_lower_case_and_keep_inner_apostrophes_and_hyphens():
    assert words("'Twas a long-distance call, Jack’s 2nd—don't stop!") == [
        "twas", "a", "long-distance", "call", "jack's", "nd", "don't", "stop",
    ]  # fmt: skip
    assert words("  ... 123 !") == []


def test_distinct_n_counts_distinct_ngrams_over_all_texts():
    assert distinct_n(["a b a b"], 1) == 2 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3  # (a b), (b a), (a b)
    assert distinct_n(["the cat", "the dog"], 1) == 3 / 4
    # No n-gram spans two texts: "x y" and "z" give only (x y).
    assert distinct_n(["x y", "z"], 2) == 1.0
    assert distinct_n(["same words here", "same words here"], 3) == 1 / 2


def test_distinct_n_is_zero_without_ngrams_and_rejects_bad_n():
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["one"], 2) == 0.0
    with pytest.raises(ValueError):
        distinct_n(["a b"], 0)


def test_repeated_ngram_rate_counts_ngrams_seen_earlier_in_the_text():
    assert repeated_ngram_rate("one two three four five six") == 0.0
    # 8 words give 5 four-grams; the last one repeats the first.
    assert repeated_ngram_rate("I love you so I love you so") == 1 / 5
    assert repeated_ngram_rate("la la la la la la", n=1) == 5 / 6
    assert repeated_ngram_rate("too short") == 0.0


def test_real_english_has_no_invented_words():
    assert invented_word_share("the cat sat") == 0.0
    assert invented_word_share("'Twas evening; the dogs' don't-care mood—moon-pale.") == 0.0
    assert invented_word_share("It's Jack's turn, isn't it? B-but I can't!") == 0.0


def test_made_up_words_are_counted():
    assert invented_word_share("the blorft zquex") == 2 / 3
    assert invented_word_share("Blorft's zquex-cat") == 1.0  # "'s" stripped; a part is made up


def test_known_words_count_as_real_but_other_unknown_names_do_not():
    text = "Zorvath met Qilrien at dawn."
    assert invented_word_share(text) == 2 / 5
    assert invented_word_share(text, known=["Zorvath Vey", "the Qilrien wood"]) == 0.0
    assert invented_word_share(text, known="Zorvath") == 1 / 5  # a string, not its characters
    assert invented_word_share("Zorvath's sword", known=["Zorvath"]) == 0.0  # "'s" stripped


def test_single_letters_other_than_a_and_i_are_not_counted():
    assert invented_word_share("x y z") == 0.0
    assert invented_word_share("J. R. blorft") == 1.0
    assert invented_word_share("a blorft") == 1 / 2
    assert invented_word_share("") == 0.0


def test_topic_overlap_is_the_share_of_source_content_words_in_the_part():
    source = "A dragon guards the mountain treasure."  # content: dragon, guards, mountain, treasure
    assert topic_overlap("The dragon slept on its treasure.", source) == 2 / 4
    assert topic_overlap("A bird sang.", source) == 0.0
    assert topic_overlap("DRAGON! Mountain! Guards! Treasure!", source) == 1.0
    # Stopwords and short words are not content: nothing in the source to find.
    assert topic_overlap("the cat", "the cat would have been there") == 0.0
    assert topic_overlap("Tom's mountain", "Tom's mountain path") == 1 / 2  # "tom" has 3 letters


def test_framing_leak_finds_the_framings_own_lines_in_the_part():
    framing = "Title: The Lost Key\nGenre: mystery\n\nWrite the next part.\nGo"
    assert framing_leak("Title:  the lost KEY\nShe searched the house.", framing)
    assert framing_leak("She began. Write the next part. Then she stopped.", framing)
    assert not framing_leak("She searched the house for the lost key.", framing)
    # One-word framing lines are too common to count ("Go" is in "Go away").
    assert not framing_leak("Go away.", framing)
    assert not framing_leak("anything", "")


def test_framing_labels_are_found_at_line_starts_only():
    assert has_framing_label("Title: Night\nThe moon rose.")
    assert has_framing_label("The moon rose.\n  genre : horror")
    assert not has_framing_label("Her title: queen of nothing.")
    assert not has_framing_label("INT. KITCHEN - NIGHT")


def test_copied_span_is_the_longest_shared_run():
    assert copied_span([1, 2, 3, 4, 5], [9, 2, 3, 4, 8, 1, 2]) == 3
    assert copied_span([1, 2, 3], [3, 2, 1]) == 1
    assert copied_span([7, 7, 7], [7, 7]) == 2
    assert copied_span([1, 2], [3, 4]) == 0
    assert copied_span([], [1, 2]) == 0
    assert copied_span([1, 2], []) == 0


def test_copied_span_is_fast_on_a_long_context():
    rng = random.Random(0)
    context = [rng.randrange(50) for _ in range(1000)]
    part = [rng.randrange(50) for _ in range(100)] + context[500:560] + [rng.randrange(50)] * 40
    started = time.perf_counter()
    assert copied_span(part, context) >= 60
    assert time.perf_counter() - started < 1.0


def test_a_letter_ending_on_its_signature_ends_cleanly():
    assert ends_cleanly("See you next week!\nBest regards,\nAlex")
    assert ends_cleanly("Thanks again.\n\nTake care,\nEleanor Smith")
    assert not ends_cleanly("We will meet on Friday and\nAlex")
