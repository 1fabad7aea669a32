"""Banned words: finding them however they are dressed up, keeping the model from writing them,
and masking what still slips through.

Text is *folded* before it is compared: compatibility forms (full-width letters, ligatures,
mathematical letters) become plain ones, look-alike letters from other scripts become the Latin
letter they imitate (Unicode's confusables data, TR39), accents and other combining marks and
invisible characters (zero-width spaces and joiners) are dropped, and case is folded. A banned
entry matches whole words only, so that banning "ass" leaves "class" alone; a phrase matches with
any run of spaces between its words. An entry that ends in ``*`` matches every word that begins
with it ("dragon*": dragon, dragons, dragonfly).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from confusable_homoglyphs import confusables

MASK = "▇"
LONGEST = 100  # characters in one banned word or phrase


@functools.cache
def _lookalikes() -> dict[str, str]:
    """Each non-ASCII character that imitates one ASCII letter or digit, and that character."""
    table: dict[str, str] = {}
    for char, entries in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for entry in entries:
            target = entry["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[char] = target
                break
    return table


@functools.cache
def _fold_char(char: str) -> str:
    pieces = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in ("Mn", "Me", "Cf"):
            continue  # combining marks and invisible format characters
        pieces.append(_lookalikes().get(part, part))
    return "".join(pieces).casefold()


def fold(text: str) -> str:
    """``text`` as banned words are compared with it."""
    return "".join(_fold_char(c) for c in text)


def _folded_with_origins(text: str) -> tuple[str, list[int]]:
    """The folded text, and for each of its characters the index of the character it came from."""
    out, origins = [], []
    for index, char in enumerate(text):
        piece = _fold_char(char)
        out.append(piece)
        origins.extend([index] * len(piece))
    return "".join(out), origins


def entry_key(word: str) -> str:
    """How an entry is stored and compared: folded, with single spaces."""
    return " ".join(fold(word).split())


class BannedWords:
    """A list of banned words and phrases, compiled once."""

    def __init__(self, words: Iterable[str]) -> None:
        entries: dict[str, str] = {}
        for word in words:
            key = entry_key(word)
            if key:
                entries.setdefault(key, word.strip())
        self.entries = entries  # folded key → the word as it was added
        alternatives = (
            r"\s+".join(map(re.escape, key.removesuffix("*").split()))
            + (r"\w*" if key.endswith("*") else "")
            for key in sorted(entries, key=len, reverse=True)
        )
        self._pattern = (
            re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)") if entries else None
        )
        self._sequences: dict[int, tuple[tuple[int, ...], ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, text: str) -> str | None:
        """The first banned entry in ``text`` (as it was added), or None."""
        if self._pattern is None:
            return None
        found = self._pattern.search(fold(text))
        if found is None:
            return None
        spelled = " ".join(found.group().split())
        return self.entries.get(spelled) or next(
            word
            for key, word in self.entries.items()
            if key.endswith("*") and spelled.startswith(key[:-1])
        )

    def mask(self, text: str) -> str:
        """``text`` with every banned entry covered, character for character."""
        if self._pattern is None:
            return text
        folded, origins = _folded_with_origins(text)
        chars = list(text)
        for found in self._pattern.finditer(folded):
            start, end = origins[found.start()], origins[found.end() - 1] + 1
            while end < len(chars) and not _fold_char(chars[end]):
                end += 1  # marks and invisible characters on the last letter
            for index in range(start, end):
                if not chars[index].isspace():
                    chars[index] = MASK
        return "".join(chars)

    def token_sequences(self, tokenizer) -> tuple[tuple[int, ...], ...]:
        """Every token sequence that spells a banned entry the usual ways: as added, lower case,
        capitalised, title case and upper case, each alone and after a space (GPT-2's tokens
        carry the space before a word)."""
        key = id(tokenizer)
        if key not in self._sequences:
            sequences: set[tuple[int, ...]] = set()
            for entry in self.entries.values():
                word = entry.removesuffix("*").strip()
                for form in {word, word.lower(), word.capitalize(), word.title(), word.upper()}:
                    for text in (form, " " + form):
                        ids = tuple(tokenizer.encode(text, add_special_tokens=False))
                        if ids:
                            sequences.add(ids)
            self._sequences[key] = tuple(sorted(sequences))
        return self._sequences[key]


class MaskedProgress:
    """Passes a part's live preview on with banned entries masked.

    A banned entry is only certain once the character after it is known, so the newest
    characters are held back until nothing later can change them (the finished part replaces
    the preview anyway).
    """

    def __init__(self, banned: BannedWords, progress) -> None:
        self.banned = banned
        self.progress = progress
        self.hold = 3 * max(map(len, banned.entries), default=0) + 8
        self._raw = ""
        self._sent = 0

    def __call__(self, delta: str) -> None:
        self._raw += delta
        self._send(len(self._raw) - self.hold)

    def restart(self) -> None:
        self._raw, self._sent = "", 0
        self.progress.restart()

    def waiting(self, ahead: int, eta_s: float) -> None:
        self.progress.waiting(ahead, eta_s)

    def _send(self, upto: int) -> None:
        if upto > self._sent:
            self.progress(self.banned.mask(self._raw)[self._sent : upto])
            self._sent = upto


def banned_in(banned: BannedWords, texts: Sequence[str]) -> str | None:
    """The first banned entry in any of ``texts``."""
    return next((word for word in map(banned.find, texts) if word), None)
