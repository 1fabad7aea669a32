"""Why the model wrote what it wrote: how sure it was of each token, and what it almost wrote.

The engine notes, for every token it writes, the model's own probability of it (before any
sampling setting), the probability the sampler gave it (after the repetition penalty, the n-gram
ban, temperature, top-k and top-p), its rank among the model's choices and the model's five
likeliest tokens. The writer keeps the notes of the tokens that made it into the part (cleanup
may drop a trailing fragment or a framing line), packed with the turn; :func:`explain` turns them
into what a member reads: perplexity, the share of unsure tokens, the least confident spans with
their alternatives, and the longest span copied from the story so far. Pure: no torch, no discord.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

LOW = 0.1  # a token the model gave less than this probability is an unsure one
SPANS = 3  # how many least confident spans an explanation shows
ALTERNATIVES = 5
FORMAT = 1


@dataclass(frozen=True)
class TokenNote:
    """One written token and how the model came to it."""

    text: str  # the token's piece of the part's text
    p: float  # the probability the sampler gave it, after every sampling setting
    p_model: float  # the model's own probability of it, before any sampling setting
    rank: int  # 1: the model's likeliest token
    alternatives: tuple[tuple[str, float], ...]  # the model's likeliest tokens: (text, p_model)


@dataclass(frozen=True)
class Span:
    """A run of unsure tokens, and what the model almost wrote at its least sure one."""

    text: str
    confidence: float  # the model's probability of its least sure token
    alternatives: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Explanation:
    tokens: int
    perplexity: float  # exp of the mean surprise: 1 when the model was sure of every token
    unsure_share: float  # share of tokens the model gave less than LOW
    spans: tuple[Span, ...]  # the least confident first


def pack(notes: Sequence[TokenNote]) -> bytes:
    """The notes of one part, compact for the database (about 30 bytes a token)."""
    rows = [
        [n.text, round(n.p, 4), round(n.p_model, 4), n.rank,
         [[text, round(p, 4)] for text, p in n.alternatives]]
        for n in notes
    ]  # fmt: skip
    return zlib.compress(json.dumps([FORMAT, rows], separators=(",", ":")).encode(), 9)


def unpack(data: bytes) -> list[TokenNote]:
    version, rows = json.loads(zlib.decompress(data))
    if version != FORMAT:
        raise ValueError(f"token notes of format {version}; this version reads {FORMAT}")
    return [
        TokenNote(text, p, p_model, rank, tuple((a, q) for a, q in alternatives))
        for text, p, p_model, rank, alternatives in rows
    ]


def kept_notes(notes: Sequence[TokenNote], raw: str, kept: str) -> list[TokenNote]:
    """The notes of the tokens that ``kept`` (the cleaned part) still shows of ``raw``.

    Cleanup trims the ends, drops lines and folds blank lines, so the two are compared without
    whitespace: the tokens from where the kept text begins in the raw one to where it ends.
    """
    kept_core = _squeezed(kept.removesuffix("…"))
    owners: list[int] = []  # for each non-space character of the raw text, its token
    for i, note in enumerate(notes):
        owners += [i] * len(_squeezed(note.text))
    raw_core = _squeezed("".join(n.text for n in notes))
    if not kept_core or not raw_core:
        return []
    start = raw_core.find(kept_core[:40])
    if start < 0:
        return list(notes)
    end = min(start + len(kept_core), len(owners))
    return list(notes[owners[start] : owners[end - 1] + 1])


def explain(notes: Sequence[TokenNote]) -> Explanation:
    """Perplexity, the share of unsure tokens and the least confident spans of one part."""
    if not notes:
        return Explanation(0, 1.0, 0.0, ())
    surprise = [-math.log(max(n.p_model, 1e-9)) for n in notes]
    unsure = [n.p_model < LOW for n in notes]
    return Explanation(
        tokens=len(notes),
        perplexity=math.exp(sum(surprise) / len(notes)),
        unsure_share=sum(unsure) / len(notes),
        spans=_least_confident(notes, unsure),
    )


def _least_confident(notes: Sequence[TokenNote], unsure: list[bool]) -> tuple[Span, ...]:
    runs: list[range] = []
    start = None
    for i, flag in enumerate([*unsure, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append(range(start, i))
            start = None
    if len(runs) < SPANS:  # a sure part: its least sure single tokens instead
        taken = {i for run in runs for i in run}
        rest = sorted(
            (i for i in range(len(notes)) if i not in taken), key=lambda i: notes[i].p_model
        )
        runs += [range(i, i + 1) for i in rest[: SPANS - len(runs)]]
    spans = []
    for run in runs:
        weakest = min(run, key=lambda i: notes[i].p_model)
        chosen = notes[weakest]
        spans.append(
            Span(
                text="".join(notes[i].text for i in run),
                confidence=chosen.p_model,
                alternatives=tuple(a for a in chosen.alternatives if a[0] != chosen.text),
            )
        )
    spans.sort(key=lambda s: s.confidence)
    return tuple(spans[:SPANS])


def longest_copy(part: Sequence[int], source: Sequence[int]) -> tuple[int, int]:
    """The longest run of ``part``'s tokens that also appears in ``source``: (start, length)."""
    best = (0, 0)
    low, high = 1, min(len(part), len(source))
    while low <= high:  # a run of n shared tokens holds runs of every shorter length
        n = (low + high) // 2
        grams = {tuple(source[i : i + n]) for i in range(len(source) - n + 1)}
        found = next((i for i in range(len(part) - n + 1) if tuple(part[i : i + n]) in grams), None)
        if found is None:
            high = n - 1
        else:
            best, low = (found, n), n + 1
    return best


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def sections(explanation: Explanation, record: dict) -> list[tuple[str, str]]:
    """The explanation in words, as (heading, text) pairs for any adapter to show.

    The text quotes the part (member or model words): an adapter escapes it as it escapes any.
    """
    e = explanation
    out = [
        (
            "How sure",
            f"Perplexity {e.perplexity:.1f} (1 would be sure of every token); "
            f"{percent(e.unsure_share, floor=False)} of its {e.tokens} tokens were unsure "
            f"(the model gave them under {percent(LOW)}).",
        )
    ]
    if e.spans:
        out.append(("Least sure", "\n".join(_span_line(s) for s in e.spans)))
    model = record.get("model", "?")  # as the writer labelled it: never a host's path
    out.append(
        (
            "Written with",
            f"temperature {record.get('temperature', '?')}, top-p {record.get('top_p', '?')}, "
            f"repetition penalty {record.get('repetition_penalty', '?')}, "
            f"up to {record.get('max_new_tokens', '?')} tokens; model {model}",
        )
    )
    read = f"{record.get('prompt_tokens', '?')} tokens of the story"
    if record.get("turns_dropped"):
        read += f"; the {record['turns_dropped']} oldest turns did not fit and were left out"
    if record.get("context_truncated"):
        read += "; one turn was only partly read"
    ended = {
        "length": "it ran to its length limit",
        "interrupted": "it was cut short by a restart",
    }.get(record.get("finish_reason", ""), "it ended by itself")
    out.append(("What it read", f"{read}. {ended.capitalize()}."))
    copied = record.get("copied_tokens")
    if copied is not None:
        line = f"Its longest run copied from the story so far: {copied} token{'s' * (copied != 1)}"
        if copied >= 4 and record.get("copied_text", "").strip():
            line += f", “{clip(record['copied_text'].strip(), 120)}”"
        out.append(("Originality", line + "."))
    return out


def marked(notes: Sequence[TokenNote], mark: tuple[str, str] = ("⟦", "⟧")) -> str:
    """The part's text with every run of unsure tokens between ``mark``."""
    out, inside = [], False
    for note in notes:
        unsure = note.p_model < LOW
        if unsure and not inside:
            lead = len(note.text) - len(note.text.lstrip())
            out.append(note.text[:lead] + mark[0] + note.text[lead:])
        elif inside and not unsure:
            out.append(mark[1] + note.text)
        else:
            out.append(note.text)
        inside = unsure
    return "".join(out) + (mark[1] if inside else "")


def percent(p: float, floor: bool = True) -> str:
    """``p`` as a whole percentage; a small non-zero probability reads "under 1 %"."""
    # A written token's probability is never 0; stored to four places, it may read 0.
    return "under 1 %" if floor and p < 0.005 else f"{p * 100:.0f} %"


def _span_line(span: Span) -> str:
    almost = ", ".join(f"“{_visible(text)}” ({percent(p)})" for text, p in span.alternatives[:3])
    line = f"“{clip(span.text.strip(), 60)}” ({percent(span.confidence)})"
    return f"{line}: it almost wrote {almost}" if almost else line


def _visible(token: str) -> str:
    """A token to quote: a line break as ↵, a bare space as ␣."""
    if not token.strip():
        return "↵" * token.count("\n") or "␣"
    return clip(token.strip(), 30)


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word with "…" if longer."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut[limit // 2 :] else cut) + "…"
