"""The story domain: stories and turns, writing modes, token-budgeted context, output cleanup.

Pure code: no discord, no SQL, no model. The tokenizer is passed in, so the context is counted in
the model's real tokens, never characters.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
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
    memory: str = ""  # pinned at the start of every context
    note: str = ""  # the author's note, placed a few turns before the end
    ended_at: str | None = None


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
    version: int = 1  # which of the part's versions is chosen
    versions: int = 1  # how many there are (retry, edits)
    edited_by: int | None = None
    requested_by: int | None = None  # who asked the model for this part
    deleted_by: int | None = None
    author_name: str | None = None  # the member's display name when they wrote it


@dataclass(frozen=True)
class Mode:
    """A writing mode: how its document begins, and how the model samples by default.

    ``frame`` is the start of a real document of this kind (a chapter heading, a dated article, an
    email's header), which a base model continues far better than a bare label. It opens the
    context and is never shown to members; ``{date}`` becomes the story's start date.
    """

    name: str
    description: str
    frame: str
    temperature: float | None  # None: the server's (or host's) setting
    top_p: float | None
    by_line: bool = False  # poems, songs and scripts end on whole lines rather than sentences

    def framing(self, started: str | None = None) -> str:
        """The frame with the date filled in from an ISO timestamp (today when None)."""
        if "{date}" not in self.frame:
            return self.frame
        day = datetime.fromisoformat(started).date() if started else date.today()
        return self.frame.replace("{date}", f"{day:%B} {day.day}, {day.year}")


MODES: dict[str, Mode] = {
    m.name: m
    for m in (
        Mode("story", "a story told in prose", "Chapter One\n\n", None, None),
        Mode(
            "poem",
            "a poem, line by line",
            "Selected Poems\n\nUntitled\n\n",
            0.9,
            0.95,
            by_line=True,
        ),
        Mode(
            "song",
            "song lyrics with verses and a chorus",
            "Lyrics\n\n[Verse 1]\n",
            0.9,
            0.95,
            by_line=True,
        ),
        Mode("script", "a screenplay scene", "FADE IN:\n\n", 0.85, 0.95, by_line=True),
        Mode("news", "a news article", "LOCAL NEWS\n\nUpdated {date}\n\n", 0.7, 0.9),
        Mode("blog", "a blog post", "Posted on {date}\n\n", 0.8, 0.92),
        Mode("ad", "advertising copy", "Special Offer\n\n", 0.85, 0.92),
        Mode("email", "an email", "Date: {date}\n\nHi everyone,\n\n", 0.7, 0.9),
    )
}
DEFAULT_MODE = "story"


class Tokenizer(Protocol):
    """A Hugging Face fast tokenizer: ``encode`` and the call that returns character offsets."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...

    def __call__(self, text: str, **options: Any) -> Any: ...


@dataclass(frozen=True)
class Context:
    """The token ids the model will continue, the text they encode, and what they cover."""

    ids: list[int]
    text: str
    turns_included: int  # recent turns that are in, whole or cut
    turns_dropped: int  # older turns left out to make room
    truncated: bool  # a turn or the opening was cut on a token boundary


def turn_piece(turn: Turn) -> str:
    """How a turn reads inside the story text."""
    return turn.text if turn.kind == "opening" else TURN_SEPARATOR + turn.text


# A word that follows a paragraph break in running text. Encoding it after the context and then
# leaving it out gives the separator the ids it has before a word (GPT-2: 198 198), not the ids
# it has at the very end of a text (628), after which a model expects a list or a heading.
_NEXT_WORD = "The"


def encode_open(tokenizer: Tokenizer, text: str) -> list[int]:
    """``text``'s ids as they are when more words follow it, as in running text."""
    spans = _spans(tokenizer, text + _NEXT_WORD)
    ids = [token for token, (_, end) in spans if end <= len(text)]
    covered = max((end for _, (_, end) in spans[: len(ids)]), default=0)
    if covered < len(text):  # a token joined the end of the text to the next word
        ids += tokenizer.encode(text[covered:], add_special_tokens=False)
    return ids


def _spans(tokenizer: Tokenizer, text: str) -> list[tuple[int, tuple[int, int]]]:
    """Each token of ``text`` with the characters it covers."""
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(encoded["input_ids"], encoded["offset_mapping"], strict=True))


def build_context(
    tokenizer: Tokenizer,
    framing: str,
    turns: Sequence[Turn],
    budget: int,
    memory: str = "",
    note: str = "",
    step: int = 0,
) -> Context:
    """The framing, the story's memory and its opening (pinned) plus as many recent turns as fit
    in ``budget`` tokens, with the author's note ``NOTE_DEPTH`` turns before the end.

    ``step``: when older turns must be left out, they are left out ``step`` tokens at a time
    (counted from the start of the turns after the opening), so the context keeps the same start
    for several turns and an engine that stored it encodes only what is new; the context is then
    between ``budget - step`` and ``budget`` tokens. 0 fills the budget every time.

    Memory and note have caps of their own (``caps.max_memory_tokens``, ``max_note_tokens``):
    the memory is part of the pinned head, the note a paragraph among the newest turns, so that
    it steers what comes next (KoboldAI's author's note at depth 3).

    The text is assembled first and encoded once, so the model sees the ids of running text with
    no seam between pieces; it ends with the turn separator as it reads before a new paragraph.
    When the story is too long, cuts fall on token boundaries of the whole text: the newest turns
    are kept, the oldest of them perhaps only its newest tokens (as a paragraph of its own), and an
    opening too long for half the budget keeps its first tokens (its newest when the model
    continues it directly).
    """
    if memory:
        framing = f"{framing}{memory.strip()}{TURN_SEPARATOR}"
    opening, rest = (turns[0], turns[1:]) if turns and turns[0].kind == "opening" else (None, turns)
    if note:
        context = _with_note(tokenizer, framing, opening, list(rest), budget, note, step)
        if context is not None:
            return context
    texts = ([opening.text] if opening else []) + [turn.text for turn in rest]
    whole = framing + _paragraphs(texts)
    ids = encode_open(tokenizer, whole)
    if len(ids) <= budget:
        return Context(ids, whole, len(rest), 0, False)
    separator = len(encode_open(tokenizer, TURN_SEPARATOR))
    if budget <= separator:
        raise ValueError(f"context budget must leave room for the story, got {budget}")

    # One encoding of the whole text tells where every token starts: the places we may cut.
    starts = [start for _, (start, _) in _spans(tokenizer, whole)]
    head_end = len(framing) + (len(opening.text) if opening else 0)
    piece_starts = list(itertools.accumulate(
        (len(text) + len(TURN_SEPARATOR) for text in texts), initial=len(framing)
    ))[len(texts) - len(rest) : -1]  # fmt: skip
    room = budget - separator
    # Without an opening the head is the framing, whose own paragraph break _paragraphs adds.
    head, head_tokens = whole[:head_end].rstrip(), bisect.bisect_left(starts, head_end)
    limit = max(1, room // 2) if rest else room
    truncated = head_tokens > limit
    if truncated and rest:
        head = whole[: starts[limit]].rstrip()
    elif truncated:  # the model continues the opening itself: keep its newest tokens
        framed = bisect.bisect_left(starts, len(framing))
        keep = max(0, limit - framed)
        # With the framing if it leaves room, else without. A word that loses its leading space
        # may take more tokens than it did in the whole text: then give up one more token.
        firsts = [(framing, start) for start in starts[head_tokens - keep : head_tokens]]
        firsts += [("", start) for start in starts[head_tokens - limit : head_tokens]]
        for frame, start in firsts:
            head = frame + whole[start:head_end].lstrip()
            if len(encode_open(tokenizer, head + TURN_SEPARATOR)) <= budget:
                break

    # The newest tokens that fit after the head, from a token boundary of the whole text.
    body_end = len(whole) - len(TURN_SEPARATOR)
    body_tokens = bisect.bisect_left(starts, body_end)
    first = body_tokens if not rest else bisect.bisect_left(starts, piece_starts[0])
    first = max(first, body_tokens - (room - len(encode_open(tokenizer, head + TURN_SEPARATOR))))
    if step and rest:
        # Round the cut up to the grid, but never into the newest turn.
        start = bisect.bisect_left(starts, piece_starts[0])
        gridded = start + -(-(first - start) // step) * step
        first = min(gridded, max(first, bisect.bisect_left(starts, piece_starts[-1])))
    while True:
        tail_start = starts[first] if first < body_tokens else body_end
        tail = whole[tail_start:body_end].strip()
        text = _paragraphs([head, tail])
        ids = encode_open(tokenizer, text)
        if len(ids) <= budget or not tail:
            break
        first += 1  # the seam encodes a token longer than the pieces did: give up one more
    if len(ids) > budget:  # only a budget of a few tokens gets here
        ids, truncated = ids[-budget:], True
    ends = [start + len(turn.text) for start, turn in zip(piece_starts, rest, strict=True)]
    included = sum(1 for end in ends if tail and end > tail_start)
    cut = any(start < tail_start < end for start, end in zip(piece_starts, ends, strict=True))
    return Context(ids, text, included, len(rest) - included, truncated or (bool(tail) and cut))


NOTE_DEPTH = 3  # the author's note goes this many turns before the end


def author_note(note: str) -> str:
    return f"[Author's note: {note.strip()}]"


def _with_note(tokenizer, framing, opening, rest, budget, note, step) -> Context | None:
    """The context with the note among the newest turns; None when the note does not fit."""
    at = max(0, len(rest) - NOTE_DEPTH)
    marker = Turn(-1, -1, -1, "member", None, author_note(note), None, "")
    turns = ([opening] if opening else []) + rest[:at] + [marker] + rest[at:]
    context = build_context(tokenizer, framing, turns, budget, step=step)
    if author_note(note) not in context.text:
        return None  # a tiny budget: better the newest turns than the note
    return dataclasses.replace(context, turns_included=context.turns_included - 1)


def _paragraphs(texts: Sequence[str]) -> str:
    """Texts as paragraphs, ending with the separator that opens the next one."""
    body = TURN_SEPARATOR.join(text for text in texts if text)
    return body + TURN_SEPARATOR if body else ""


_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "cf", "vol", "fig",
     "inc", "ltd", "co", "mt", "ft", "gen", "col", "lt", "sgt", "capt", "rev"}
)  # fmt: skip
# A run of sentence punctuation and its closing quotes or brackets, before a space or the end.
_SENTENCE_END = re.compile(r"""[.!?…]+["'”’)\]*]*(?=\s|$)""")
_UNFINISHED = ",;:-–—(\"'“‘"
_CLOSERS = "\"'”’)]*"


@dataclass(frozen=True)
class Cleaned:
    """The model's text made ready to show, and what cleanup did to it."""

    text: str
    cut: bool = False  # no clean end was found: shortened to a whole word and marked with "…"
    dropped: int = 0  # characters of the model's text left out


# A part never shrinks below this share of what the model wrote without being marked as cut:
# a third of 120 tokens is still a part worth reading.
MIN_KEPT_SHARE = 1 / 3


def clean_output(text: str, mode: Mode, finished: bool, framing: str = "") -> Cleaned:
    """Tidy the model's text and end it cleanly without losing much.

    A part cut off by length ends on its last whole line (line modes) or sentence; list numbers
    ("3."), initials and abbreviations are not sentence ends, and an ellipsis counts only when no
    firmer end is late enough. When that would keep less than a third of the text, the part ends
    on its last whole word instead, marked with "…". Prose the model ended itself but not on a
    sentence end is trimmed the same way, though never marked. Lines that repeat the mode's
    framing (which members never see) are removed.
    """
    text = text.replace("<|endoftext|>", "")
    hidden = {line.strip().casefold() for line in framing.splitlines() if line.strip()}
    lines = [line.rstrip() for line in text.splitlines() if line.strip().casefold() not in hidden]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if not text or (finished and mode.by_line):
        return Cleaned(text)
    ends = sentence_ends(text)
    # A full stop, "!" or "?" reads as an ending; an ellipsis only as the model trailing off.
    firm = [end for end in ends if not text[:end].rstrip(_CLOSERS).endswith(("…", ".."))]
    if finished and firm and firm[-1] == len(text):
        return Cleaned(text)
    enough = MIN_KEPT_SHARE * len(text)
    if mode.by_line and (line_end := text.rfind("\n")) >= enough:
        kept = text[:line_end].rstrip()
        return Cleaned(kept, dropped=len(text) - len(kept))
    for end in (firm[-1] if firm else 0, 0 if finished else ends[-1] if ends else 0):
        if end and end >= enough:
            return Cleaned(text[:end], dropped=len(text) - end)
    if finished:  # the model's own ending, with nothing firmer late enough: leave it be
        return Cleaned(text)
    # No clean end late enough: keep whole words (the last may be unfinished) and say so.
    last_space = re.search(r"\s\S*$", text)
    kept = (text[: last_space.start()] if last_space else text).rstrip(_UNFINISHED + " \n")
    return Cleaned(kept + "…", cut=True, dropped=len(text) - len(kept))


def sentence_ends(text: str) -> list[int]:
    """Where sentences end in ``text`` (just after their punctuation and closing quotes)."""
    ends = []
    for match in _SENTENCE_END.finditer(text):
        if match.group().startswith(".") and not match.group().startswith(".."):
            word = re.search(r"(\S+)$", text[: match.start()])
            word = word.group(1) if word else ""
            name = word.lower().lstrip("\"'“‘([")  # as in '"Mr. Holmes," he said'
            line_start = text.rfind("\n", 0, match.start()) + 1
            if (
                name in _ABBREVIATIONS
                or (name == "no" and text[match.end() :].lstrip()[:1].isdigit())  # "No. 5"
                or (len(name) == 1 and name.isalpha() and name not in "ai")  # as in "J. R. R."
                or (word.isdigit() and not text[line_start : match.start() - len(word)].strip())
            ):  # a list number at the start of its line
                continue
        ends.append(match.end())
    return ends


def story_text(turns: Sequence[Turn]) -> str:
    """The whole visible story as one text."""
    return "".join(turn_piece(t) for t in turns if not t.deleted).strip()


# -- export ------------------------------------------------------------------------------------------

EXPORT_FORMATS = ("markdown", "text", "json")
EXPORT_SCHEMA = "storybot.story/1"
_SUFFIX = {"markdown": "md", "text": "txt", "json": "json"}
_HEADER = re.compile(
    r"^### (?P<who>.+) · (?P<kind>opening|line|part) (?P<position>\d+) · [0-9: -]*$"
)


def export_story(story: Story, turns: Sequence[Turn], fmt: str, model: str) -> tuple[str, bytes]:
    """The story as a file: its name and bytes. Every turn says who wrote it (a member's name,
    or the model with the settings it used) and when; edits are marked."""
    slug = re.sub(r"[^a-z0-9]+", "-", story.title.lower()).strip("-")[:40] or "story"
    name = f"{slug}-{story.id}.{_SUFFIX[fmt]}"
    if fmt == "json":
        return name, json.dumps(_export_json(story, turns, model), indent=2).encode()
    # Each line of a turn is quoted, so no text can pass for a header; an empty line keeps a mark.
    quote, empty = ("> ", ">") if fmt == "markdown" else ("    ", "    ")
    lines = [
        f"# {story.title}" if fmt == "markdown" else f"Title: {story.title}",
        "",
        f"A {story.mode} begun {story.created_at[:10]}. Parts marked 🤖 were written by a "
        f"language model ({model}); every other line is a member's.",
        "",
    ]
    for turn in turns:
        lines.append(f"### {_who(turn, model)} · {_kind(turn)} {turn.position} · {_when(turn)}")
        lines += [quote + line if line else empty for line in turn.text.split("\n")]
        lines.append("")
    return name, "\n".join(lines).encode()


def read_export(data: bytes, fmt: str) -> list[tuple[str, int, str]]:
    """The turns in an export, as (kind, position, text): what a program gets back from it."""
    if fmt == "json":
        return [(t["kind"], t["position"], t["text"]) for t in json.loads(data)["turns"]]
    kinds = {"opening": "opening", "line": "member", "part": "model"}
    quote = "> " if fmt == "markdown" else "    "
    turns: list[tuple[str, int, list[str]]] = []
    for line in data.decode().split("\n"):
        header = _HEADER.match(line)
        if header:
            turns.append((kinds[header["kind"]], int(header["position"]), []))
        elif turns and (line.startswith(quote) or (fmt == "markdown" and line == ">")):
            turns[-1][2].append(line[len(quote) :])
    return [(kind, position, "\n".join(text)) for kind, position, text in turns]


def _export_json(story: Story, turns: Sequence[Turn], model: str) -> dict:
    return {
        "schema": EXPORT_SCHEMA,
        "story": {
            "id": story.id, "title": story.title, "mode": story.mode,
            "created_at": story.created_at, "memory": story.memory, "note": story.note,
        },
        "machine_written": [t.position for t in turns if t.kind == "model"],
        "turns": [
            {
                "position": t.position, "kind": t.kind, "text": t.text,
                "author": None if t.kind == "model" else {"id": t.author_id, "name": t.author_name},
                "model": model if t.kind == "model" else None,
                "settings": t.settings if t.kind == "model" else None,
                "created_at": t.created_at, "version": t.version, "versions": t.versions,
                "edited_by": t.edited_by,
            }
            for t in turns
        ],
    }  # fmt: skip


def _who(turn: Turn, model: str) -> str:
    if turn.kind == "model":
        who = f"🤖 storybot ({model})"
        s = turn.settings or {}
        if "temperature" in s:
            who += f", temperature {s['temperature']}, top-p {s.get('top_p')}"
    else:
        who = turn.author_name or f"member {turn.author_id}"
    return who + (f", edited by member {turn.edited_by}" if turn.edited_by else "")


def _kind(turn: Turn) -> str:
    return {"opening": "opening", "member": "line", "model": "part"}[turn.kind]


def _when(turn: Turn) -> str:
    return turn.created_at[:16].replace("T", " ")
