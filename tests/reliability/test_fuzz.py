"""Property-based fuzz of every command and setting: hostile text in, only polite refusals out.

Random Unicode from every plane, control characters, bidi overrides, zero-width characters, lone
surrogates and strings of 10,000-100,000 characters go into each ``StoryService`` command
(``write`` and its mode, ``continue_``, ``show``, ``settings``, ``set_setting`` for every key,
with strings and with floats and ints such as nan, inf, -0.0, 5e-324 and 10**400) and into the
console line by line. For every input:

1. anything raised is a :class:`~bot.errors.StoryError` with a message for people, never a bare
   Python or SQLite error (which a member would meet as the generic apology);
2. a refused input stores nothing: every table of the database is as it was;
3. an accepted input is stored faithfully: the member's text as given, with lone surrogates made
   U+FFFD (a high-low pair becomes the character it encodes) and the ends stripped; a setting as
   the number typed, finite and in its range, and read back so;
4. what is accepted renders safely: messages of at most 2000 characters, no live mention.

The engine is a stand-in with the real tokenizer that "writes" by echoing the context's last
tokens: no model runs, and the fuzzed text comes back as the model's part too, so that it goes
through output cleanup, the quality guard and rendering as well.

``STORYBOT_FUZZ_EXAMPLES`` sets the examples per test (default 40, a deterministic subset for
CI); a benchmark can run thousands and report :func:`figures` (or :func:`summary`).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import io
import math
import os
import re
import sqlite3
import types
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import limits.aio.storage.memory
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.config import CapsConfig, Config, DatabaseConfig, GenerationConfig, ModelConfig
from bot.console import Console
from bot.engine.types import GenerationResult
from bot.errors import GuildOnly, NotModerator, StoryError
from bot.limits import Admission, ChannelOrder
from bot.render import MESSAGE_LIMIT, safe, split_message, story_part
from bot.service import Actor, StoryService
from bot.settings import setting_specs
from bot.store import Store
from bot.story import MODES
from tests.conftest import FakeClock

EXAMPLES = int(os.environ.get("STORYBOT_FUZZ_EXAMPLES", "40"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,  # derandomized: nothing to replay, and no .hypothesis folder in the checkout
    # One service (and database) serves every example of a test; each example uses fresh ids.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

GUILD = 10
MODERATOR, MEMBER, DIRECT = "moderator", "member", "direct message"
SPECS = setting_specs(CapsConfig())
KEYS = tuple(SPECS)
NUMERIC_KEYS = tuple(k for k, spec in SPECS.items() if spec.kind in ("number", "integer"))
OTHER_KEYS = tuple(k for k in KEYS if k not in NUMERIC_KEYS)
# What Discord would turn into a ping: @everyone/@here, or a user/role id (17-20 digits).
LIVE_MENTION = re.compile(r"@(everyone|here)(?!\u200b)|<@[!&]?[0-9]{17,}>")
APOLOGY = StoryError.user_message
SETTLE_S = 61.0  # past the rate limiter's one-minute window

# -- the figures a benchmark reports -------------------------------------------------------------

_FIGURES: dict[str, dict[str, int]] = defaultdict(
    lambda: {"tried": 0, "accepted": 0, "refused": 0, "unexpected": 0, "stored_refusals": 0}
)


def figures() -> dict[str, dict[str, int]]:
    """Per command (and per setting): inputs tried, accepted, refused, unexpected errors, and
    refusals that stored something anyway. Counts every run, hypothesis' shrinking included."""
    return copy.deepcopy(dict(_FIGURES))


def summary() -> str:
    """One line for a benchmark's report."""
    counts = figures()
    total = {k: sum(c[k] for c in counts.values()) for k in ("tried", "unexpected")}
    stored = sum(c["stored_refusals"] for c in counts.values())
    return (
        f"fuzz: {total['tried']} inputs into {len(counts)} commands and settings, "
        f"{total['unexpected']} unexpected errors, {stored} stored refusals"
    )


# -- inputs ----------------------------------------------------------------------------------------

CONTROL = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029"]
BIDI = ["\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]  # fmt: skip
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00", "\ud83d\ude00"]
ODD = ["\ufffd", "\ufffe", "\uffff", "\U0010ffff", "\U000e0001", "\U0001f600", "\u0301",
       "\u0130", "ß", "\u3000", "\xa0", "\U00020000", "Ⅻ", "٣", "５"]  # fmt: skip
DISCORD = ["@everyone", "@here", "<@123456789012345678>", "<@!123456789012345678>",
           "<@&123456789012345678>", "<#123456789012345678>", "@\u200beveryone", "**", "__",
           "~~", "||", "`", "```", "> ", "# ", "- ", "1. ", "\\", "[x](https://a.example)",
           "<|endoftext|>", "\n\n", "Chapter One", "/write ", "/quit", '"', "'", "mode="]  # fmt: skip
ANY_CHAR = st.characters(exclude_categories=())  # every plane, surrogates included

piece = st.one_of(
    st.sampled_from(CONTROL + BIDI + ZERO_WIDTH + SURROGATES + ODD + DISCORD),
    st.text(ANY_CHAR, max_size=8),
    st.text(st.characters(max_codepoint=0x7F), max_size=12),
)
short_text = st.lists(piece, max_size=12).map("".join)
# Around the prompt limit (300 tokens): " a" is one token.
near_limit = st.integers(280, 320).map(lambda n: "a" + " a" * (n - 1))
huge_text = st.builds(
    lambda seed, n: (seed * (n // len(seed) + 1))[:n],
    st.lists(piece, min_size=1, max_size=4).map("".join).filter(bool),
    st.integers(10_000, 100_000),
)
# Mostly short text; one draw in eight huge, one in eight near the limit.
member_text = st.integers(0, 7).flatmap(
    lambda i: huge_text if i == 0 else near_limit if i == 1 else short_text
)
mode_name = st.one_of(
    st.none(),
    st.sampled_from(list(MODES)),
    st.sampled_from(list(MODES)).map(lambda m: f" \t{m.upper()}\n"),
    member_text,
)
key_name = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map(lambda k: f"  {k.upper()} "),
    st.sampled_from(KEYS).map(lambda k: k + "\u200b"),
    member_text,
)
SPECIAL_NUMBERS = [math.nan, -math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -1e308, 5e-324,
                   -5e-324, 2.2250738585072014e-308, 10**400, -(10**400), 2**63, 2**64, -1, 1]  # fmt: skip
# An int too long to print (over 4300 digits) has a test of its own: in the pool, its failure
# would stop the fuzz of every setting at its first example and hide anything else.
TOO_LONG_TO_PRINT = 10**5000
NUMBER_TEXT = ["nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e308", "1e309", "5e-324",
               "1e-400", "-0", "-0.0", "0", "1_0", "٣", "５", "１e1", " 1 ", "\t0.5\n", "0.5\x00",
               "0x10", "", "   ", "½", "Ⅴ", "1" * 5000, "0." + "0" * 5000 + "1"]  # fmt: skip
any_value = st.one_of(
    st.none(),
    st.floats(),
    st.integers(),
    st.sampled_from(SPECIAL_NUMBERS + NUMBER_TEXT),
    st.floats().map(repr),
    st.integers().map(str),
    member_text,
)


def in_range_value(key: str) -> st.SearchStrategy[Any]:
    """Values near and inside ``key``'s range, as numbers and as typed text, so many are taken."""
    spec = setting_specs(CapsConfig())[key]
    numbers = st.one_of(
        st.floats(spec.minimum, spec.maximum),
        st.integers(int(spec.minimum), int(spec.maximum)),
        st.sampled_from(
            [
                spec.minimum,
                spec.maximum,
                spec.smallest,
                spec.smallest / 2,
                -spec.maximum,
                math.nextafter(spec.maximum, math.inf),
                math.nextafter(spec.minimum, -math.inf),
                spec.maximum + 1,
                spec.minimum - 1,
            ]
        ),
    )
    return st.one_of(numbers, numbers.map(str), numbers.map(lambda n: f"  {n!r}\n"), any_value)


# -- the world the fuzz runs in --------------------------------------------------------------------


class EchoEngine:
    """The real tokenizer, and a "model" that writes the context's last tokens back, at once."""

    def __init__(self, tokenizer, n_positions: int) -> None:
        self.tokenizer = tokenizer
        self.n_positions = n_positions

    async def generate(self, request, on_delta=None) -> GenerationResult:
        count = request.params.max_new_tokens
        ids = tuple(request.prompt_ids[-count - 2 : -2] or request.prompt_ids[-count:])
        text = self.tokenizer.decode(ids)
        if on_delta is not None:
            on_delta(text)
        return GenerationResult(text, ids, "length", len(request.prompt_ids), 0.0, 0.0)


T = TypeVar("T")


class World:
    """One service over a fresh database, the echo engine and a fake clock, on one event loop."""

    def __init__(self, directory, tokenizer) -> None:
        self.runner = asyncio.Runner()
        path = directory / "fuzz.db"
        self.config = Config(
            model=ModelConfig(name="echo", device="cpu"),
            database=DatabaseConfig(path=path),
            generation=GenerationConfig(max_new_tokens=16),  # the guard stays on, as by default
        )
        self.clock = FakeClock()
        # The rate-limit windows read wall-clock time: they read the fake clock too.
        self._limits_time = limits.aio.storage.memory.time
        limits.aio.storage.memory.time = types.SimpleNamespace(time=self.clock)
        self.store = self.run(Store.open(path))
        self.service = StoryService(
            self.config,
            self.store,
            EchoEngine(tokenizer, 1024),
            Admission(clock=self.clock),
            ChannelOrder(),
            clock=self.clock,
            wall_clock=self.clock,
        )
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self._ids = 1000

    def run(self, coroutine: Awaitable[T]) -> T:
        return self.runner.run(coroutine)

    def fresh(self) -> int:
        """An id no earlier example used (for a channel or a member)."""
        self._ids += 1
        return self._ids

    def actor(self, who: str = MODERATOR, channel: int | None = None) -> Actor:
        """A fresh member in a fresh channel; the rate limits' window has passed."""
        self.clock.advance(SETTLE_S)
        return Actor(
            guild_id=None if who == DIRECT else GUILD,
            channel_id=channel or self.fresh(),
            user_id=self.fresh(),
            is_moderator=who != MEMBER,
        )

    def fingerprint(self) -> dict[str, Any]:
        """Every table's row count and a digest of its contents, and SQLite's data_version (which
        moves whenever another connection commits a change)."""
        found: dict[str, Any] = {
            "data_version": self.db.execute("PRAGMA data_version").fetchone()[0]
        }
        tables = self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        for (table,) in tables.fetchall():
            digest, rows = hashlib.blake2b(digest_size=16), 0
            for row in self.db.execute(f'SELECT * FROM "{table}"'):
                digest.update(repr(row).encode("utf-8", "surrogatepass"))
                rows += 1
            found[table] = (rows, digest.hexdigest())
        return found

    def attempt(self, command: str, call: Callable[[], Awaitable[T]]) -> T | StoryError:
        """Run one command; return its result, or the StoryError it was refused with.

        Checks the refusal (a message for people, and nothing stored) and counts it all.
        """
        tally = _FIGURES[command]
        tally["tried"] += 1
        before = self.fingerprint()
        try:
            result = self.run(call())
        except StoryError as error:
            tally["refused"] += 1
            assert isinstance(error.user_message, str) and error.user_message.strip()
            after = self.fingerprint()
            if after != before and not self.only_noted(before, after, error.reason):
                tally["stored_refusals"] += 1
                changed = sorted(k for k in after if after[k] != before.get(k))
                raise AssertionError(
                    f"{command} refused ({error!r}) but changed {changed}"
                ) from error
            return error
        except Exception:
            tally["unexpected"] += 1
            raise
        tally["accepted"] += 1
        return result

    def only_noted(self, before: dict, after: dict, reason: str | None = None) -> bool:
        """Whether the one change is the refusal noted for /stats: one new row of ``requests``
        with the refusal's reason (any refusal's, if None), and the data_version that moves with
        any commit."""
        changed = {k for k in after if after[k] != before.get(k)}
        if changed != {"requests", "data_version"}:
            return False
        if after["requests"][0] != before["requests"][0] + 1:
            return False
        (outcome,) = self.db.execute(
            "SELECT outcome FROM requests ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return outcome == reason if reason is not None else outcome != "written"

    def close(self) -> None:
        limits.aio.storage.memory.time = self._limits_time
        self.db.close()
        self.run(self.store.close())
        self.runner.close()


@pytest.fixture
def world(tmp_path, tiny_loaded):
    world = World(tmp_path, tiny_loaded.tokenizer)
    yield world
    world.close()


# -- what every accepted text must satisfy ---------------------------------------------------------


def scrubbed(text: str) -> str:
    """The service's documented scrubbing, written out: a surrogate pair is the character it
    encodes (as in UTF-16), any other surrogate becomes U+FFFD; then the ends are stripped."""
    out, i = [], 0
    while i < len(text):
        code = ord(text[i])
        low = ord(text[i + 1]) if i + 1 < len(text) else 0
        if 0xD800 <= code <= 0xDBFF and 0xDC00 <= low <= 0xDFFF:
            out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
            i += 2
            continue
        out.append("\ufffd" if 0xD800 <= code <= 0xDFFF else text[i])
        i += 1
    return "".join(out).strip()


def assert_renders_safely(text: str, label: str | None = None) -> None:
    """As the cogs show it: inert, in messages of ≤ 2000 characters, with nothing lost."""
    for rendered in (safe(text), story_part([(label, text)])):
        chunks = split_message(rendered)
        assert all(0 < len(chunk) <= MESSAGE_LIMIT for chunk in chunks)
        assert not any(LIVE_MENTION.search(chunk) for chunk in chunks), chunks
        # Cuts fall on whitespace (or inside a word too long for one message): no text is lost.
        assert "".join("".join(c.split()) for c in chunks) == "".join(rendered.split())


def assert_encodable(text: str) -> None:
    text.encode("utf-8")  # stored, shown and sent to Discord: no lone surrogate survives


# -- the service -----------------------------------------------------------------------------------


@FUZZ
@given(prompt=member_text, mode=mode_name, again=st.booleans())
@example(prompt="\ud800", mode=None, again=False)
@example(prompt=" \x00\u202e@everyone <@123456789012345678>\u2028\udfff ", mode="POEM", again=True)
@example(prompt="x" * 100_000, mode=None, again=False)
@example(prompt="Once", mode="\ud800" * 50_000, again=False)
def test_write_stores_the_prompt_faithfully_or_refuses_it_cleanly(world, prompt, mode, again):
    actor = world.actor(MEMBER)
    previous = None
    if again:  # a story to archive
        previous, _, _ = world.run(
            world.store.start_story(GUILD, actor.channel_id, "story", "Before.", actor.user_id)
        )

    written = world.attempt("write", lambda: world.service.write(actor, prompt, mode))

    if isinstance(written, StoryError):
        return
    expected = scrubbed(prompt)
    opening, model = written.turns
    assert (opening.kind, opening.text, opening.author_id) == ("opening", expected, actor.user_id)
    assert written.story.mode == ("story" if mode is None else mode.strip().lower())
    assert written.story.mode in MODES
    assert (written.archived and written.archived.id) == (previous and previous.id)
    view = world.attempt("show", lambda: world.service.show(actor))  # read back as stored
    assert view.turns == written.turns and view.story == written.story
    for turn in written.turns:
        assert_encodable(turn.text)
        assert_renders_safely(turn.text, "opening" if turn is opening else None)
    assert model.kind == "model" and model.text


@FUZZ
@given(text=st.one_of(st.none(), member_text), with_story=st.booleans())
@example(text="\udc00", with_story=True)
@example(text="  \u2029\x1f ", with_story=True)
@example(text="a\ud83d\ude00\ud83d", with_story=True)
@example(text="<@!12345678901234567890> @here " * 400, with_story=True)
def test_continue_stores_the_line_faithfully_or_refuses_it_cleanly(world, text, with_story):
    actor = world.actor(MEMBER)
    if with_story:
        world.run(
            world.store.start_story(GUILD, actor.channel_id, "story", "It began.", actor.user_id)
        )

    written = world.attempt("continue", lambda: world.service.continue_(actor, text))

    if isinstance(written, StoryError):
        return
    assert with_story
    expected = scrubbed(text or "")
    if expected:
        line, _ = written.turns
        assert (line.kind, line.text, line.author_id) == ("member", expected, actor.user_id)
    else:
        assert [t.kind for t in written.turns] == ["model"]
    view = world.attempt("show", lambda: world.service.show(actor))
    assert view.turns[-len(written.turns) :] == written.turns
    for turn in written.turns:
        assert_encodable(turn.text)
        assert_renders_safely(turn.text, str(actor.user_id) if turn.kind == "member" else None)


@FUZZ
@given(channel=st.integers(1, 2**63 - 1))
def test_show_of_any_channel_is_a_story_or_a_refusal_and_writes_nothing(world, channel):
    actor = Actor(GUILD, channel, world.fresh())
    before = world.fingerprint()

    view = world.attempt("show", lambda: world.service.show(actor))

    assert world.fingerprint() == before
    if not isinstance(view, StoryError):
        assert view.story.channel_id == channel


@FUZZ
@given(mode=mode_name, who=st.sampled_from([MODERATOR, MEMBER, DIRECT]))
@example(mode="\ud800", who=MODERATOR)
def test_settings_shows_finite_values_in_range_or_refuses_and_writes_nothing(world, mode, who):
    actor = world.actor(who)
    before = world.fingerprint()

    view = world.attempt("settings", lambda: world.service.settings(actor, mode))

    assert world.fingerprint() == before  # only reads, taken or refused
    if who != MODERATOR:
        assert isinstance(view, GuildOnly if who == DIRECT else NotModerator)
    if isinstance(view, StoryError):
        return
    for key, spec in view.specs.items():
        if key in NUMERIC_KEYS:
            assert math.isfinite(view.resolved[key])
            assert spec.minimum <= view.resolved[key] <= spec.maximum
        else:
            assert view.resolved[key] == spec.clamp(view.resolved[key])  # valid as it stands


def check_set_setting(world: World, key: str, value: Any, scope: str, who: str) -> None:
    actor = world.actor(who)  # a fresh channel: no channel value hides a server one
    spec = world.service.specs.get(key.strip().lower())
    command = f"set_setting {spec.key if spec else '(unknown key)'}"

    change = world.attempt(command, lambda: world.service.set_setting(actor, key, value, scope))

    if who != MODERATOR:
        assert isinstance(change, GuildOnly if who == DIRECT else NotModerator)
    if isinstance(change, StoryError):
        return
    assert spec is not None and change.key == spec.key
    view = world.attempt("settings", lambda: world.service.settings(actor))
    resolved, origin = view.resolved[spec.key], view.resolved.origins[spec.key]
    if value is None:  # a reset: the value comes from somewhere wider again
        assert change.new is None
        assert origin in (("server", "mode", "host") if scope == "channel" else ("mode", "host"))
        return
    new = change.new
    if spec.key in NUMERIC_KEYS:
        assert type(new) is (int if spec.integer else float)
        assert math.isfinite(new) and math.copysign(1.0, new) == 1.0  # never nan, inf or -0.0
        assert spec.minimum <= new <= spec.maximum and not 0 < new < spec.smallest
        assert new == float(value)  # the number typed (or passed), not a rounded or clamped one
    else:
        assert new == spec.clamp(new)  # stored as it will be read
    assert (resolved, origin) == (new, scope)  # read back as set


@pytest.mark.parametrize("key", NUMERIC_KEYS)
def test_every_setting_takes_only_finite_values_in_range(world, key):
    @FUZZ
    @given(
        value=in_range_value(key),
        scope=st.sampled_from(["server", "channel"]),
        who=st.sampled_from([MODERATOR, MODERATOR, MODERATOR, MEMBER, DIRECT]),
    )
    @example(value=math.nan, scope="server", who=MODERATOR)
    @example(value=math.inf, scope="channel", who=MODERATOR)
    @example(value=-0.0, scope="server", who=MODERATOR)
    @example(value=5e-324, scope="server", who=MODERATOR)
    @example(value=1e308, scope="server", who=MODERATOR)
    @example(value=10**400, scope="server", who=MODERATOR)
    @example(value="1" * 5000, scope="server", who=MODERATOR)
    @example(value="\ud800", scope="server", who=MODERATOR)
    @example(value=None, scope="channel", who=MODERATOR)
    def check(value, scope, who):
        check_set_setting(world, key, value, scope, who)

    check()


def typed_value(key: str) -> st.SearchStrategy[Any]:
    """What a moderator might type for an on/off, mode or role setting: right and wrong."""
    spec = SPECS[key]
    right = {
        "flag": st.sampled_from(["on", "off", "ON", " yes ", "no", "true", "0", "1"]),
        "mode": st.sampled_from(list(MODES)).map(lambda m: f" {m.title()} "),
        "modes": st.lists(st.sampled_from(list(MODES)), min_size=1).map(", ".join),
        "roles": st.lists(st.integers(10**17, 10**19 - 1), max_size=4).map(
            lambda ids: ", ".join(f"<@&{i}>" if i % 2 else str(i) for i in ids) or "everyone"
        ),
    }[spec.kind]
    return st.one_of(right, right, any_value)


@pytest.mark.parametrize("key", OTHER_KEYS)
def test_every_other_setting_takes_only_what_it_can_read_back(world, key):
    @FUZZ
    @given(
        value=typed_value(key),
        scope=st.sampled_from(["server", "channel"]),
        who=st.sampled_from([MODERATOR, MODERATOR, MEMBER]),
    )
    @example(value="\ud800", scope="server", who=MODERATOR)
    @example(value="on\u200b", scope="server", who=MODERATOR)
    @example(value=None, scope="channel", who=MODERATOR)
    def check(value, scope, who):
        check_set_setting(world, key, value, scope, who)

    check()


def test_a_number_too_long_to_print_is_refused_cleanly(world):
    for key in NUMERIC_KEYS:
        check_set_setting(world, key, TOO_LONG_TO_PRINT, "server", MODERATOR)
        check_set_setting(world, key, -TOO_LONG_TO_PRINT, "channel", MODERATOR)


@FUZZ
@given(key=key_name, value=any_value, scope=st.sampled_from(["server", "channel"]))
@example(key="\ud800", value="1", scope="server")
@example(key=" Temperature ", value="0.5", scope="channel")
@example(key="k" * 100_000, value=None, scope="server")
def test_any_key_is_a_setting_or_a_clean_refusal(world, key, value, scope):
    check_set_setting(world, key, value, scope, MODERATOR)


# -- the console -----------------------------------------------------------------------------------

console_line = st.one_of(
    member_text.map(lambda t: f"/write {t}"),
    st.tuples(mode_name.map(lambda m: (m or "").replace(" ", "")), member_text).map(
        lambda p: f"/write mode={p[0]} {p[1]}"
    ),
    st.one_of(st.just(""), member_text).map(lambda t: f"/continue {t}"),
    st.sampled_from(["/story", "/help", "/settings", "/settings show", "/continue"]),
    st.tuples(key_name, any_value.map(str), st.booleans()).map(
        lambda p: f"/settings set {p[0]} {p[1]}{' channel' if p[2] else ''}"
    ),
    st.tuples(key_name, st.booleans()).map(
        lambda p: f"/settings reset {p[0]}{' channel' if p[1] else ''}"
    ),
    member_text.map(lambda t: f"/settings {t}"),
    member_text,  # not a command at all
)
COMMANDS = ("/write", "/continue", "/story", "/settings", "/help")
REFUSED = ("! ", "Usage:", "Unknown command")
READ_ONLY = ("/story", "/help")


@FUZZ
@given(lines=st.lists(console_line, min_size=1, max_size=4))
@example(lines=["/write \ud800", "/continue \x00", '/settings set temperature "0.5', "/story"])
@example(lines=["/settings set user_rate 1", "/write a", "/write b", "/settings reset user_rate"])
@example(lines=["/settings set temperature " + "9" * 5000, "/write mode=\ud800 x"])
def test_console_answers_every_line_without_a_traceback(world, lines):
    out = io.StringIO()
    actor = world.actor(MODERATOR)  # the host, in a channel of its own
    console = Console(world.service, out=out, actor=actor)

    command = "console"

    async def feed():
        nonlocal command
        for line in lines:
            if line.strip() in ("", "/quit", "/exit"):
                continue  # skipped by the console (or the end of the session)
            name = line.strip().partition(" ")[0]
            command = f"console {name if name in COMMANDS else '(unknown)'}"
            _FIGURES[command]["tried"] += 1
            before, start = world.fingerprint(), len(out.getvalue())
            world.clock.advance(SETTLE_S)
            yield line + "\n"
            # The console has handled the line by the time it asks for the next one.
            printed = out.getvalue()[start:]
            for marker in (APOLOGY, "Traceback (most recent call last)"):
                assert marker not in printed or marker in line, printed
            refused = printed.startswith(REFUSED)
            _FIGURES[command]["refused" if refused else "accepted"] += 1
            reads = name in READ_ONLY or line.strip() in ("/settings", "/settings show")
            after = world.fingerprint()
            noted = refused and not reads and world.only_noted(before, after)
            if (refused or reads) and after != before and not noted:
                _FIGURES[command]["stored_refusals"] += 1
                raise AssertionError(f"{line!r} was answered {printed!r} but stored something")

    try:
        world.run(console.run(feed()))
    except AssertionError:
        raise
    except Exception:
        _FIGURES[command]["unexpected"] += 1
        raise
    story = world.run(world.store.active_story(actor.channel_id))
    if story is not None:  # whatever the console stored is sound and renders safely
        for turn in world.run(world.store.turns(story.id)):
            assert_encodable(turn.text)
            assert_renders_safely(turn.text)
