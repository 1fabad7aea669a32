"""The quality guard: notice a degenerate part before anyone sees it.

A small model sometimes loops, lists, spells out junk or copies its context. :func:`assess` names
what is wrong with a part (each problem a short tag); the service regenerates such a part once
with steadier sampling and keeps whichever attempt has fewer problems, recording what it did on
the turn. The measures here are also the writing-quality benchmark's (``bench.quality``), so what
the guard enforces is what the benchmark reports. Pure code: no torch, no discord.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence

# Letters, with apostrophes or hyphens only inside a word ("don't", "long-distance").
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")

# A valid Roman numeral; lower case only from i, v and x, so that ordinary lower-case words made
# of the letters c, d, l, m ("mix.", "did.") at the start of a continuation are not list markers.
_UPPER_ROMAN = r"(?=[MDCLXVI])M{0,3}(?:CM|CD|D?C{0,3})(?:XC|XL|L?X{0,3})(?:IX|IV|V?I{0,3})"
_LOWER_ROMAN = r"(?=[xvi])x{0,3}(?:ix|iv|v?i{0,3})"
_LIST_MARKER = re.compile(
    r"\d"  # "8.", "8)", "2017-08-31", "1/" and any other number
    r"|[#*•+·◦▪-]"  # bullets and headings
    rf"|\((?:\d+|[A-Za-z]|{_UPPER_ROMAN}|{_LOWER_ROMAN})\)"  # "(a)", "(2)", "(iv)"
    rf"|(?:[A-Za-z]|{_UPPER_ROMAN}|{_LOWER_ROMAN})[.)](?:\s|$)"  # "a)", "B.", "IV."
)

# When a part counts as degenerate. Chosen on real output (bench.quality): fluent parts stay
# well under each, the junk this guard exists for goes far over.
REPEATED_4GRAMS = 0.2  # share of a part's word 4-grams that repeat an earlier one in it
MIN_LETTER_SHARE = 0.6  # letters among the part's visible characters
INVENTED_WORDS = 0.12  # words in no English wordlist nor the context, above the context's own rate
ECHO_TOKENS = 16  # a run of this many tokens copied from the context
MIN_WORDS = 6  # shorter parts are judged only on their characters


def starts_with_list_marker(text: str) -> bool:
    """Whether the part begins, after leading whitespace, with a number or a list marker."""
    return _LIST_MARKER.match(text.lstrip()) is not None


def words(text: str) -> list[str]:
    """Lower-case word tokens: runs of letters, with inner apostrophes or hyphens."""
    return _WORD.findall(text.replace("’", "'").lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    """Share of the word n-grams in ``text`` that already occurred earlier in it; 0.0 if none."""
    grams = ngrams(words(text), n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


@functools.cache
def english_words() -> frozenset[str]:
    """The ``wordfreq`` English wordlist ("large", about 321k lower-case words), loaded once."""
    import wordfreq  # the optional ``quality`` extra; the other metrics work without it

    return frozenset(wordfreq.iter_wordlist("en", wordlist="large"))


def invented_word_share(text: str, known: Iterable[str] = ()) -> float:
    """Share of the words in ``text`` that are neither English nor in ``known``; 0.0 if none."""
    # ``known`` holds strings whose words count as real, e.g. the prompt and context, so that their
    # names are not counted as invented; any other name the wordlist lacks is, on purpose. A
    # possessive "'s" is ignored, and a hyphenated word is real when all its parts are ("b-but").
    # One-letter words other than "a" and "i" (initials, spelled-out letters) are not counted.
    if isinstance(known, str):
        known = [known]  # one string, not its characters
    english = english_words()
    known_words = {word for entry in known for word in words(entry)}

    def is_listed(word: str) -> bool:
        return word in english or word in known_words

    def is_real(word: str) -> bool:
        return is_listed(word) or all(is_listed(part) for part in word.split("-"))

    counted = [word.removesuffix("'s") for word in words(text)]
    counted = [word for word in counted if len(word) > 1 or word in ("a", "i")]
    if not counted:
        return 0.0
    return sum(not is_real(word) for word in counted) / len(counted)


def copied_span(part_ids: Sequence[int], context_ids: Sequence[int]) -> int:
    """Length of the longest run of consecutive ``part_ids`` found consecutively in the context."""
    positions: dict[int, list[int]] = {}
    for j, token in enumerate(context_ids):
        positions.setdefault(token, []).append(j)
    longest = 0
    # Run lengths ending at each context position for the previous part token; only positions
    # that match are stored, so the work is proportional to the number of matching pairs.
    previous: dict[int, int] = {}
    for token in part_ids:
        current = {j: previous.get(j - 1, 0) + 1 for j in positions.get(token, ())}
        if current:
            longest = max(longest, *current.values())
        previous = current
    return longest


def assess(
    part: str,
    context: str,
    part_ids: Sequence[int] = (),
    context_ids: Sequence[int] = (),
) -> tuple[str, ...]:
    """What is wrong with ``part`` as the continuation of ``context``; empty when it reads well."""
    problems = []
    found = words(part)
    visible = [c for c in part if not c.isspace()]
    if not _ends_in_a_list(context) and (starts_with_list_marker(part) or _turns_into_a_list(part)):
        problems.append("list")
    if visible and sum(c.isalpha() for c in visible) < MIN_LETTER_SHARE * len(visible):
        problems.append("symbols")
    if len(found) >= MIN_WORDS:
        if repeated_ngram_rate(part) > REPEATED_4GRAMS or _repeated_line(part):
            problems.append("loop")
        baseline = invented_word_share(context) if context else 0.0
        if invented_word_share(part, [context]) > baseline + INVENTED_WORDS:
            problems.append("invented words")
    if part_ids and context_ids and copied_span(part_ids, context_ids) >= ECHO_TOKENS:
        problems.append("echo")
    return tuple(problems)


def _ends_in_a_list(context: str) -> bool:
    """Whether the story's last paragraph is itself a list, so that one more item is right."""
    last = context.rstrip().rsplit("\n\n", 1)[-1]
    return starts_with_list_marker(last)


def _turns_into_a_list(part: str) -> bool:
    """Two or more lines that begin with a number: prose or verse that became a numbered list."""
    lines = part.splitlines()[1:]
    return sum(bool(re.match(r"\s*\(?\d+[.):]", line)) for line in lines) >= 2


def _repeated_line(part: str) -> bool:
    """A line of three or more words that comes back three times: a loop in verse or script."""
    lines = Counter(" ".join(line.split()).lower() for line in part.splitlines())
    return any(count >= 3 and len(line.split()) >= 3 for line, count in lines.items())
