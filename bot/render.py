"""Discord-facing text: mention and markdown safety, and splitting into messages of ≤ 2000 chars."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import discord

if TYPE_CHECKING:
    from bot.store import PendingReply

MESSAGE_LIMIT = 2000

# Where a long text may break, best first: a paragraph, a line, a sentence, a word.
_BREAKS = (re.compile(r"\n\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?…])\s"), re.compile(r"\s"))


# Every character Discord's markdown gives a meaning to (emphasis, strikethrough, spoilers, code,
# quotes, headings, masked links), and a backslash itself, is escaped wherever it stands: escaping
# by spans ("**…**") misses a second link or a marker between two spans.
_MARKUP = re.compile(r"([\\*_~`|\[\]])")
# Quote, heading and list markers count only at a line's start, but a split can start a message
# after any space: escaped wherever a space (or nothing) comes before them, and list numbers too.
_LIST_MARKERS = re.compile(r"(?:(?<=\s)|^)([-+>#])|(\d)([.)])(?=\s|$)")


def safe(text: str) -> str:
    """Text from members or the model, made inert: no live mention, no markdown of any kind."""
    text = _MARKUP.sub(r"\\\1", text)
    text = _LIST_MARKERS.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", text)
    return discord.utils.escape_mentions(text)


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` characters at the gentlest boundary.

    Paragraphs, then lines, then sentences, then words; a hard cut only when a single word is
    longer than the limit. Joining the chunks with the whitespace they were cut at gives the text.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit)
        chunk = rest[:cut].rstrip()
        escapes = len(chunk) - len(chunk.rstrip("\\"))
        if escapes % 2 and len(chunk) > escapes and not rest[cut].isspace():
            chunk = chunk[:-1]  # never separate an escape from what it escapes
        chunks.append(chunk)
        rest = rest[len(chunk) :].lstrip()
    if rest:
        chunks.append(rest)
    return chunks


def _cut_point(text: str, limit: int) -> int:
    window = text[: limit + 1]
    for pattern in _BREAKS:
        positions = [m.start() for m in pattern.finditer(window) if 0 < m.start() <= limit]
        if positions and positions[-1] > limit // 4:
            return positions[-1]
    return limit


def story_part(parts: list[tuple[str | None, str]]) -> str:
    """Render turns for a message: ``(label, text)`` pairs, each label in bold before its text."""
    rendered = []
    for label, text in parts:
        body = safe(text)
        rendered.append(f"**{safe(label)}:** {body}" if label else body)
    return "\n\n".join(rendered)


MACHINE_WRITTEN = "-# 🤖 written by a language model: **Explain** shows how sure it was"


def interrupted_answer(reply: PendingReply) -> str:
    """The answer to a request a crash or restart left open: what was saved, and what to do."""
    parts = [(reply.user_name if t.kind == "member" else None, t.text) for t in reply.saved]
    if not parts:
        return "*(I restarted before I could write this, and nothing was saved. Please try again.)*"
    if reply.saved[-1].kind == "model":
        note = (
            "*(I restarted before I could show this here. It is saved in the story.)*\n"
            + MACHINE_WRITTEN
        )
    else:
        saved = "opening" if reply.saved[-1].kind == "opening" else "line"
        note = (
            f"*(I restarted while writing what comes next. Your {saved} is saved: "
            "`/continue` goes on from it.)*"
        )
    return f"{first_message(story_part(parts), len(note) + 2)}\n\n{note}"


TRUNCATED = "*(… the rest is in `/story show`.)*"


def first_message(text: str, reserve: int = 0) -> str:
    """As much of ``text`` as one message holds with ``reserve`` characters to spare, ending
    with a pointer to `/story show` when the rest does not fit."""
    chunks = split_message(text, MESSAGE_LIMIT - reserve - len(TRUNCATED) - 2)
    return chunks[0] + (f"\n\n{TRUNCATED}" if len(chunks) > 1 else "")


EXPLAIN_IMAGE = "part.png"


def explanation_embed(title: str, sections: list[tuple[str, str]]) -> discord.Embed:
    """An explanation as an embed, its picture attached as ``EXPLAIN_IMAGE``."""
    how_sure, *rest = sections
    embed = discord.Embed(
        title=safe(title),
        description=safe(how_sure[1])[:4000],
        colour=0x5865F2,
    )
    for heading, text in rest:
        embed.add_field(name=heading, value=safe(text)[:1024], inline=False)
    embed.set_image(url=f"attachment://{EXPLAIN_IMAGE}")
    embed.set_footer(
        text="Written by a language model. The picture shades each token by how likely the "
        "model thought it was."
    )
    return embed


def story_with_authors(turns) -> str:
    """The story for reading back: each member's words under their name, the model's marked 🤖."""
    pieces = []
    for turn in turns:
        if turn.deleted:
            continue
        edited = f" *(edited by <@{turn.edited_by}>)*" if turn.edited_by else ""
        if turn.kind == "model":
            pieces.append(f"🤖 {safe(turn.text)}{edited}")
        else:  # a mention shows the member's name; the client is built to ping nobody
            pieces.append(f"**<@{turn.author_id}>:** {safe(turn.text)}{edited}")
    return "\n\n".join(pieces)
