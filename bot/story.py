"""The story domain: stories and turns, writing modes, token-budgeted context, output cleanup.

Pure code: no discord, no SQL, no model. The tokenizer is passed in, so the context is counted in
the model's real tokens, never characters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

TurnKind = Literal["opening", "member", "model"]
TURN_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Story:
    """One story in one channel; at most one is active per channel."""

    id: int
    guild_id: int
    channel_id: int
    title: str
    mode: str
    active: bool
    created_by: int
    created_at: str


@dataclass(frozen=True)
class Turn:
    """One part of a story: the opening, a member's line, or the model's continuation."""

    id: int
    story_id: int
    position: int
    kind: TurnKind
    author_id: int | None
    text: str
    settings: dict[str, Any] | None
    created_at: str
    deleted: bool = False


@dataclass(frozen=True)
class Mode:
    """A writing mode: how the prompt is framed and how the model samples by default."""

    name: str
    description: str
    preamble: str
    temperature: float | None  # None: the server's (or host's) setting
    top_p: float | None
    by_line: bool = False  # poems, songs and scripts end on whole lines rather than sentences


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("story", "a story told in prose", "", None, None),
        Mode("poem", "a poem, line by line", "A poem.\n\n", 1.0, 0.95, by_line=True),
        Mode(
            "song",
            "song lyrics with verses and a chorus",
            "Song lyrics.\n\n",
            1.0,
            0.95,
            by_line=True,
        ),
        Mode("script", "a screenplay scene", "SCREENPLAY\n\n", 0.85, 0.95, by_line=True),
        Mode("news", "a news article", "NEWS REPORT\n\n", 0.7, 0.9),
        Mode("blog", "a blog post", "Blog post\n\n", 0.8, 0.92),
        Mode("ad", "advertising copy", "Advertisement\n\n", 0.85, 0.92),
        Mode("email", "an email", "Email\n\n", 0.7, 0.9),
    )
}
DEFAULT_MODE = "story"


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class Context:
    """The token ids the model will continue, and what they cover."""

    ids: list[int]
    turns_included: int  # recent turns that are in, whole or cut
    turns_dropped: int  # older turns left out to make room
    truncated: bool  # a turn or the opening was cut on a token boundary


def turn_piece(turn: Turn) -> str:
    """How a turn reads inside the story text."""
    return turn.text if turn.kind == "opening" else TURN_SEPARATOR + turn.text


def build_context(tokenizer: Tokenizer, mode: Mode, turns: Sequence[Turn], budget: int) -> Context:
    """The opening (pinned) plus as many recent turns as fit in ``budget`` tokens.

    ``turns`` are the visible turns in order, the opening first. The context ends with the turn
    separator, so the model writes its part as a new paragraph, as it is stored and shown. A turn
    that fits only in part keeps its newest tokens. An opening too long to fit keeps its first
    tokens when later turns follow it, and its newest tokens when the model continues it directly.
    """
    ending = tokenizer.encode(TURN_SEPARATOR)
    room = budget - len(ending)
    if room < 1:
        raise ValueError(f"context budget must leave room for the story, got {budget}")
    opening, rest = (turns[0], turns[1:]) if turns and turns[0].kind == "opening" else (None, turns)
    preamble = tokenizer.encode(mode.preamble) if mode.preamble else []
    told = tokenizer.encode(opening.text) if opening else []
    limit = room if not rest else max(1, room // 2)
    truncated = len(preamble) + len(told) > limit
    if truncated:
        preamble = preamble[: limit - 1]
        keep = limit - len(preamble)
        told = told[-keep:] if not rest else told[:keep]
    head = preamble + told

    room -= len(head)
    tail: list[list[int]] = []
    for turn in reversed(rest):
        if room <= 0:
            break
        ids = tokenizer.encode(turn_piece(turn))
        if len(ids) > room:
            ids, truncated = ids[-room:], True
        tail.append(ids)
        room -= len(ids)
    tail.reverse()
    ids = head + [t for piece in tail for t in piece] + ending
    return Context(ids, len(tail), len(rest) - len(tail), truncated)


_SENTENCE_END = re.compile(r"""[.!?…]["'”’)\]]*(?=\s|$)""")


def clean_output(text: str, mode: Mode, finished: bool) -> str:
    """Tidy the model's text; when it was cut off by length, drop the unfinished tail."""
    text = text.replace("<|endoftext|>", "")
    text = "\n".join(line.rstrip() for line in text.splitlines())
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    if finished or not text:
        return text
    if mode.by_line:
        cut = text.rfind("\n")
        return text[:cut].rstrip() if cut > 0 else text
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


def story_text(turns: Sequence[Turn]) -> str:
    """The whole visible story as one text."""
    return "".join(turn_piece(t) for t in turns if not t.deleted).strip()
