"""Pure text metrics for the writing-quality benchmark.

The benchmark asks a small language model to write one "part" of a story (usually 1-120 words of
prose, sometimes a poem, song or script with line breaks) and scores what came back. Each function
here measures one way such a part goes wrong, on plain strings or token ids, with no model:

- **format**: the part starts like a list (``starts_with_list_marker``) or stops mid-sentence
  (``ends_cleanly``);
- **diversity**: the parts repeat each other (``distinct_n``) or themselves
  (``repeated_ngram_rate``);
- **vocabulary**: the part makes up words (``invented_word_share``, against the ``wordfreq``
  English wordlist from the ``quality`` extra, loaded only when first needed);
- **relevance**: the part ignores its prompt (``topic_overlap``), repeats the prompt's framing
  (``framing_leak``, ``has_framing_label``) or copies long stretches of its context
  (``copied_span``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.quality import (  # the guard's own measures, so the benchmark reports what it enforces
    copied_span,
    invented_word_share,
    ngrams,
    repeated_ngram_rate,
    starts_with_list_marker,
    words,
)

__all__ = [
    "copied_span",
    "distinct_n",
    "ends_cleanly",
    "framing_leak",
    "has_framing_label",
    "invented_word_share",
    "repeated_ngram_rate",
    "starts_with_list_marker",
    "topic_overlap",
    "words",
]

_CLOSERS = "\"'”’)]}»*"  # may follow the sentence's final punctuation: ."  !)  ?*
# Abbreviations whose period does not end a sentence, compared lower case without the final ".".
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "cf", "approx"}
)
# How a line that is obviously unfinished ends: a dash, a comma or colon, an open bracket.
_UNFINISHED_LINE_END = tuple("-–—,:([{")
_OPENING_QUOTES = "\"'“‘«"

_STOPWORDS = frozenset(
    """
    about above after again against also been before being below between both could does doing
    down during each even ever every from further have having here hers herself himself into
    just more most much must never once only other ours ourselves over same shall should some
    such than that their theirs them themselves then there these they this those through under
    until upon very were what when where which while whom with would your yours yourself
    """.split()  # noqa: SIM905 (a word list reads better as text)
)

_SIGN_OFF = re.compile(
    r"\b(?:regards|wishes|thanks|thank you|sincerely|cheers|best|love|care|soon|yours)[,!.]?$",
    re.IGNORECASE,
)
_FRAMING_LABEL = re.compile(r"^\s*(?:title|genre|subject)\s*:", re.IGNORECASE | re.MULTILINE)


def ends_cleanly(text: str, by_line: bool = False) -> bool:
    """Whether the part ends at a sentence end (prose) or a finished line (``by_line``, verse)."""
    text = text.rstrip()
    if not text:
        return False
    if by_line:
        # A line in a poem or song may end without a full stop, on "…" or on ";". Only the
        # endings that promise more text count as cut: "-", ",", ":", "(" or an opening quote.
        if text.endswith(_UNFINISHED_LINE_END) or text[-1] in "“‘«":
            return False
        # A straight quote opens a quotation when nothing or a space comes before it: 'He said, "'.
        return not (text[-1] in "\"'" and (len(text) == 1 or text[-2].isspace()))
    if _signed(text):
        return True
    core = text.rstrip(_CLOSERS)
    if not core.endswith((".", "!", "?")):
        return False  # also catches "…", the model trailing off
    if core.endswith(".."):
        return False  # "..." is the model trailing off, as "…"
    if core.endswith("."):
        last_token = core.split()[-1].lstrip(_OPENING_QUOTES + "([{")[:-1].lower()
        # "It cost 3." cannot be told apart from the start of a numbered list item "3.", so a
        # number before the final period is not taken as a sentence end; nor is "Mr." or "e.g.".
        if core[-2:-1].isdigit() or last_token in _ABBREVIATIONS:
            return False
    return True


def _signed(text: str) -> bool:
    """Whether the text ends on a letter's sign-off and a short signature ("Best regards,\nAlex")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (
        len(lines) >= 2 and len(lines[-1].split()) <= 4 and _SIGN_OFF.search(lines[-2]) is not None
    )


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all n-grams in ``texts`` (none spans two texts); 0.0 if none."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _content_words(text: str) -> set[str]:
    stems = (word.removesuffix("'s") for word in words(text))
    return {word for word in stems if len(word) >= 4 and word not in _STOPWORDS}


def topic_overlap(part: str, source: str) -> float:
    """Share of the source's content words (4+ letters, not stopwords) that the part uses."""
    wanted = _content_words(source)
    if not wanted:
        return 0.0
    used = {word.removesuffix("'s") for word in words(part)}
    return len(wanted & used) / len(wanted)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def framing_leak(part: str, framing: str) -> bool:
    """Whether the part repeats a line of the framing text that has at least two words."""
    haystack = _normalise(part)
    lines = (_normalise(line) for line in framing.splitlines())
    return any(len(line.split()) >= 2 and line in haystack for line in lines)


def has_framing_label(part: str) -> bool:
    """Whether a line of the part starts with a prompt label such as "Title:" or "Genre:"."""
    return _FRAMING_LABEL.search(part) is not None
