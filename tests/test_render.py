"""Discord text: splitting into messages of at most 2000 characters, and mention/markdown safety."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

import pytest

from bot.render import (
    MACHINE_WRITTEN,
    MESSAGE_LIMIT,
    interrupted_answer,
    safe,
    split_message,
    story_part,
)
from bot.store import PendingReply
from bot.story import Turn

# The patterns discord.py itself reads mentions with (Message.raw_mentions / raw_role_mentions),
# plus @everyone and @here, which Discord pings on wherever they appear as plain text.
USER_MENTION = re.compile(r"<@!?([0-9]{15,20})>")
ROLE_MENTION = re.compile(r"<@&([0-9]{15,20})>")
MASS_MENTION = re.compile(r"@(everyone|here)")

USER_ID, ROLE_ID = "123456789012345678", "876543210987654321"


def words(text: str) -> str:
    """The text without its whitespace: what a split may never lose or change."""
    return "".join(text.split())


def live_mentions(text: str) -> list[str]:
    return USER_MENTION.findall(text) + ROLE_MENTION.findall(text) + MASS_MENTION.findall(text)


def prose(paragraphs: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = ["the", "keeper", "lamp", "sea", "storm", "whispered", "gull", "rope", "tide", "old"]
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(3, 12)):
            lines = " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 18)))
            sentences.append(lines.capitalize() + rng.choice([".", "!", "?", "…"]))
        out.append(" ".join(sentences))
    return "\n\n".join(out)


# -- split_message -------------------------------------------------------------------------------


def test_short_text_is_one_message():
    assert split_message("  Hello there.  ") == ["Hello there."]
    assert split_message("") == []
    assert split_message(" \n ") == []


@pytest.mark.parametrize("seed", range(5))
def test_no_message_exceeds_the_limit_and_nothing_is_lost(seed):
    text = prose(40, seed)
    assert len(text) > 3 * MESSAGE_LIMIT

    chunks = split_message(text)

    assert len(chunks) >= 3
    assert all(0 < len(chunk) <= MESSAGE_LIMIT for chunk in chunks)
    assert words("".join(chunks)) == words(text)


def test_paragraph_breaks_are_preferred():
    first = "A" * 1000 + ". " + "b " * 200
    text = first.strip() + "\n\n" + "Second paragraph, line one.\nLine two. " * 30

    chunks = split_message(text)

    assert chunks[0] == first.strip()


def test_line_breaks_come_next():
    first = ("word " * 250).strip() + ". Another sentence here."  # one line, ~1275 chars
    text = first + "\n" + "More words follow. " * 60

    chunks = split_message(text)

    assert chunks[0] == first


def test_sentence_ends_come_before_plain_spaces():
    sentence = "The keeper climbed the stairs. "
    text = sentence * 80  # one line, 2480 characters

    chunks = split_message(text)

    assert all(chunk.endswith(".") for chunk in chunks)
    assert len(chunks[0]) > MESSAGE_LIMIT - len(sentence)


def test_words_are_not_cut_when_a_space_is_near():
    text = "supercalifragilistic " * 200

    chunks = split_message(text)

    assert all(len(c) <= MESSAGE_LIMIT for c in chunks)
    assert all(set(c.split()) == {"supercalifragilistic"} for c in chunks)


def test_a_very_long_word_is_cut_hard():
    word = "x" * 5000

    chunks = split_message(word)

    assert [len(c) for c in chunks] == [2000, 2000, 1000]
    assert "".join(chunks) == word


def test_a_long_word_after_a_short_one_is_cut_at_the_limit_not_after_the_short_word():
    text = "hi " + "y" * 4000

    chunks = split_message(text)

    assert len(chunks[0]) == MESSAGE_LIMIT  # a cut at "hi" would waste a whole message
    assert words("".join(chunks)) == words(text)


@pytest.mark.parametrize("limit", [5, 7, 10, 16, 33])
def test_small_limits_keep_every_character(limit):
    text = prose(3, seed=limit) + "\n" + "z" * 50 + " end"

    chunks = split_message(text, limit)

    assert all(0 < len(c) <= limit for c in chunks)
    assert words("".join(chunks)) == words(text)


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_message("text", 0)


@pytest.mark.parametrize("limit", range(40, 52))
def test_an_escape_is_never_separated_from_what_it_escapes(limit):
    # Member text full of backslashes and stars: after safe() every star and every backslash is
    # escaped. A chunk ending in an odd run of backslashes would leave the next chunk's first
    # character unescaped (live markdown).
    text = safe("\\*" * 300)

    chunks = split_message(text, limit)

    assert "".join(chunks) == text
    for chunk in chunks:
        trailing = len(chunk) - len(chunk.rstrip("\\"))
        assert trailing % 2 == 0, chunk[-6:]


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("word\\  next", 6),  # a backslash before a run of whitespace
        ("ab\\\n\nnext line", 5),
        ("some text \\\n\n\\ more text here", 12),
    ],
)
def test_backslashes_before_whitespace_are_kept(text, limit):
    chunks = split_message(text, limit)

    assert all(0 < len(c) <= limit for c in chunks)  # and never an empty message
    assert words("".join(chunks)) == words(text)


def test_a_backslash_at_a_tiny_limit_does_not_hang():
    # Run where a hang can be stopped: a child process with a deadline.
    cases = [("\\x", 1), ("\\ abc", 3), ("ab \\ cd", 2)]
    script = (
        "import json, sys; from bot.render import split_message; "
        "print(json.dumps([split_message(t, n) for t, n in json.loads(sys.argv[1])]))"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(cases)],
            capture_output=True, text=True, timeout=6, check=True,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("split_message never returned for a backslash at a tiny limit")

    for (text, limit), chunks in zip(cases, json.loads(result.stdout), strict=True):
        assert all(0 < len(c) <= limit for c in chunks)
        assert words("".join(chunks)) == words(text)


# -- safe ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "@everyone wake up",
        "hey @here",
        f"ping <@{USER_ID}>",
        f"ping <@!{USER_ID}>",
        f"ping <@&{ROLE_ID}> now",
        f"all: @everyone @here <@{USER_ID}> <@!{USER_ID}> <@&{ROLE_ID}>",
        "email me at someone@everyone.com",
    ],
)
def test_no_mention_survives(text):
    assert live_mentions(text)  # the input really has them

    escaped = safe(text)

    assert live_mentions(escaped) == []
    assert escaped.replace("\u200b", "") == text  # shown as typed, only made inert


def test_markdown_is_shown_literally():
    text = "**bold** _italic_ `code` ~~strike~~ ||spoiler|| __under__"

    escaped = safe(text)

    assert re.search(r"(?<!\\)[*_`~|]", escaped) is None  # every marker is escaped
    assert escaped.replace("\\", "") == text


@pytest.mark.parametrize(
    ("text", "start"),
    [("# Big heading", "\\#"), ("> a quote", "\\>"), ("- a list item", "\\-")],
)
def test_line_markdown_is_escaped(text, start):
    assert safe(text).startswith(start)


def test_a_members_backslash_cannot_undo_an_escape():
    escaped = safe("\\**bold** and \\@everyone")

    # Every star follows an odd run of backslashes, so it stays a literal star.
    for match in re.finditer(r"(\\*)\*", escaped):
        assert len(match.group(1)) % 2 == 1
    assert live_mentions(escaped) == []


def test_story_part_labels_each_part_and_escapes_labels_too():
    rendered = story_part(
        [("**Ann** @everyone", "I open the <@&876543210987654321> door."), (None, "It creaks.")]
    )

    assert rendered.startswith("**")  # the label's own bold is ours
    assert live_mentions(rendered) == []
    assert "\\*\\*Ann\\*\\*" in rendered
    assert rendered.endswith("\n\nIt creaks.")


# A corpus of what members and models write that Discord would render as markup.
MARKDOWN_CORPUS = [
    "[one](https://a.example) and [two](https://b.example)",
    "**bold** then ~~strike~~ then `code` then ||spoiler|| then __under__ then *it*",
    "```py\nprint('hi')\n```",
    "> a quote\n>>> a block quote",
    "# Heading\n## Smaller\n-# subtext",
    "- item\n* item\n+ item\n1. first\n2) second",
    "She counted: 1. the bells 2. the gulls 3. the tram",
    "\\**not bold** \\[not](a link)",
    "a line ending in a backslash \\",
]


def unescaped_markup(chunk: str) -> list[str]:
    """Inline markup characters that are not preceded by an odd run of backslashes."""
    found = []
    for match in re.finditer(r"(\\*)([*_~`|\[\]])", chunk):
        if len(match.group(1)) % 2 == 0:
            found.append(match.group(2))
    return found


LINE_MARKUP = re.compile(r"^\s*(?:[-+*>#]|\d+[.)])(?:\s|$)", re.MULTILINE)


@pytest.mark.parametrize("text", MARKDOWN_CORPUS)
@pytest.mark.parametrize("limit", [12, 40, MESSAGE_LIMIT])
def test_every_chunk_of_every_markup_is_inert(text, limit):
    for chunk in split_message(safe(text), limit):
        assert unescaped_markup(chunk) == [], chunk
        assert LINE_MARKUP.search(chunk) is None, chunk  # no line, nor chunk, starts as a list
    assert "".join(safe(text).split()).replace("\\", "") == "".join(text.split()).replace("\\", "")


# -- answers to requests a restart left open ---------------------------------------------------------


def left_open(*turns: tuple[str, str]) -> PendingReply:
    saved = tuple(
        Turn(i, 1, i, kind, 5 if kind != "model" else None, text, None, "", False)
        for i, (kind, text) in enumerate(turns)
    )
    return PendingReply(9, 42, "token", 1.8e9, 3, 5, "bob_the_**bold**", saved)


def test_an_interrupted_request_with_nothing_saved_asks_to_try_again():
    assert "nothing was saved. Please try again." in interrupted_answer(left_open())


def test_an_interrupted_request_shows_the_saved_line_safely_and_says_how_to_go_on():
    answer = interrupted_answer(left_open(("member", "Hi @everyone, see **this**")))
    assert answer.startswith("**bob\\_the\\_\\*\\*bold\\*\\*:** Hi @\u200beveryone")
    assert "Your line is saved: `/continue` goes on from it." in answer
    assert "Your opening is saved" in interrupted_answer(left_open(("opening", "Once")))


def test_a_part_saved_but_never_shown_is_shown_within_one_message():
    answer = interrupted_answer(left_open(("member", "Go."), ("model", "word " * 1000)))
    assert len(answer) <= MESSAGE_LIMIT
    assert "(… the rest is in `/story show`.)" in answer and "It is saved in the story." in answer
    short = interrupted_answer(left_open(("model", "The end.")))
    assert short.startswith("The end.") and "the rest" not in short
    assert short.endswith(MACHINE_WRITTEN)  # the model's words say whose they are
