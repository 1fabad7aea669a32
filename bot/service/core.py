"""The core of the service: who asks (Actor), what comes back, and writing, showing,
explaining and configuring stories. :mod:`bot.service.steering` adds the moves that steer a story.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from bot.config import Config
from bot.engine.types import (
    EngineError,
)
from bot.errors import (
    EmptyText,
    GuildOnly,
    InvalidSetting,
    NoStory,
    NotExplainable,
    NotModerator,
    StorageError,
    TextTooLong,
)
from bot.explain import Explanation, TokenNote, clip, explain, pack, unpack
from bot.limits import ChannelOrder, RateLimiter
from bot.settings import Resolved, SettingSpec, resolve, setting_specs
from bot.store import SERVER_WIDE, NewTurn, PendingReply, Store, StoryGone
from bot.story import (
    DEFAULT_MODE,
    MODES,
    Mode,
    Story,
    Turn,
)
from bot.writer import Engine, Part, Progress, write_part

log = logging.getLogger(__name__)

# A reply left open by a crash is answered only while this much of its token's life is left.
REPLY_MARGIN_S = 10.0

Scope = Literal["server", "channel"]


@dataclass(frozen=True)
class Actor:
    """Who is asking, and where. ``guild_id`` is None in direct messages.

    ``reply_id`` names the adapter's pending reply (``Store.open_reply``), if it keeps one: the
    turns saved for the request are linked to it, so that after a crash the member can be told.
    """

    guild_id: int | None
    channel_id: int
    user_id: int
    is_moderator: bool = False
    reply_id: int | None = None
    name: str | None = None  # the member's display name, kept with their lines for exports


@dataclass(frozen=True)
class Written:
    """The outcome of ``write`` or ``continue_``: the turns added, the model's one last."""

    story: Story
    turns: list[Turn]
    archived: Story | None = None

    @property
    def model_turn(self) -> Turn:
        return self.turns[-1]


@dataclass(frozen=True)
class StoryView:
    story: Story
    turns: list[Turn]


@dataclass(frozen=True)
class Explained:
    """One of the model's parts, and why it reads as it does."""

    story: Story
    turn: Turn
    number: int  # which of the model's parts of the story, from 1
    notes: list[TokenNote]
    explanation: Explanation

    @property
    def record(self) -> dict:
        return self.turn.settings or {}

    @property
    def title(self) -> str:
        return f"Part {self.number} of “{clip(self.story.title, 60)}”"


@dataclass(frozen=True)
class SettingsView:
    resolved: Resolved
    specs: dict[str, SettingSpec]
    scope_channel: int


@dataclass(frozen=True)
class SettingChange:
    key: str
    scope: Scope
    old: float | int | None
    new: float | int | None
    effective: float | int


class ServiceCore:
    """Write, continue, show, explain and configure stories."""

    def __init__(
        self,
        config: Config,
        store: Store,
        engine: Engine,
        limiter: RateLimiter | None = None,
        order: ChannelOrder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.limiter = limiter or RateLimiter(clock=clock)
        self.order = order or ChannelOrder()
        self.clock = clock
        self.specs = setting_specs(config.caps)

    # -- stories -------------------------------------------------------------------------------

    async def write(
        self,
        actor: Actor,
        prompt: str,
        mode: str | None = None,
        on_progress: Progress | None = None,
    ) -> Written:
        """Start a new story in the channel (archiving its previous one) and write its first part."""
        prompt = scrubbed(prompt)
        chosen = self.mode(mode)
        self._check_text("prompt", prompt)
        settings = await self._settings(actor, chosen)

        async def body(deadline: float) -> Written:
            story, opening, archived = await self.store.start_story(
                actor.guild_id or 0,
                actor.channel_id,
                chosen.name,
                prompt,
                actor.user_id,
                actor.reply_id,
                actor.name,
            )
            with _saved_note("opening"):
                model_turn = await self._generate(
                    story, chosen, [opening], settings, deadline, on_progress, actor
                )
            return Written(story, [opening, model_turn], archived)

        return await self._in_turn(actor, settings, body)

    async def continue_(
        self, actor: Actor, text: str | None = None, on_progress: Progress | None = None
    ) -> Written:
        """Add the member's line (if any) to the channel's story, then the model's next part."""
        text = scrubbed(text or "")
        if text:
            self._check_text("text", text)
        story = await self._active(actor)
        settings = await self._settings(actor, self.mode(story.mode))

        async def body(deadline: float) -> Written:
            # A /write may have replaced the story, or a moderator the settings, meanwhile.
            current = await self._active(actor)
            chosen = self.mode(current.mode)
            settings = await self._settings(actor, chosen)
            added = []
            if text:
                added = await self.store.append_turns(
                    current.id,
                    [NewTurn("member", actor.user_id, text, author_name=actor.name)],
                    actor.reply_id,
                )
            with _saved_note("line" if text else None):
                turns = await self.store.turns(current.id)
                added.append(
                    await self._generate(
                        current, chosen, turns, settings, deadline, on_progress, actor
                    )
                )
            return Written(current, added)

        return await self._in_turn(actor, settings, body)

    async def _in_turn(self, actor: Actor, settings: Resolved, body) -> Written:
        """Charge the rate limits, wait for the channel's turn, run ``body``; refund on failure."""
        ticket = self._admit(actor, settings)
        timeout = self.config.model.request_timeout_s
        deadline = self.clock() + timeout
        try:
            async with self.order.turn(actor.channel_id, wait_s=timeout):
                return await body(deadline)
        except BaseException:
            ticket.refund()
            raise

    async def show(self, actor: Actor) -> StoryView:
        """The channel's active story and its visible turns."""
        story = await self._active(actor)
        return StoryView(story, await self.store.turns(story.id))

    async def explain(
        self, actor: Actor, part: int | None = None, turn_id: int | None = None
    ) -> Explained:
        """Why the model wrote one of its parts of the channel's story: the ``part``-th (from 1;
        default the newest), or the turn ``turn_id`` (as a button under the part names it)."""
        if turn_id is not None:
            turn = await self.store.turn(turn_id)
            story = None if turn is None else await self.store.story(turn.story_id)
            if turn is None or story is None or turn.kind != "model" or turn.deleted:
                raise NotExplainable("That part is no longer in the story.")
            if story.channel_id != actor.channel_id:
                raise NotExplainable("That part belongs to another channel's story.")
            if not story.active:
                raise NotExplainable(
                    "That part belongs to an archived story: I explain the parts of the "
                    "channel's current story."
                )
        else:
            story = await self._active(actor)
            turn = None
        parts = [t for t in await self.store.turns(story.id) if t.kind == "model"]
        if turn is None:
            if not parts:
                raise NotExplainable("I have not written a part of this story yet.")
            if part is not None and not 1 <= part <= len(parts):
                raise NotExplainable(
                    f"There is no part {part}: I have written {len(parts)} "
                    f"part{'s' if len(parts) != 1 else ''} of this story (1 to {len(parts)})."
                )
            turn = parts[-1 if part is None else part - 1]
        packed = await self.store.turn_notes(turn.id)
        if packed is None:
            raise NotExplainable(
                "I kept no notes on that part: it was written before explanations were kept, "
                "or while they were turned off."
            )
        notes = unpack(packed)
        number = next(n for n, t in enumerate(parts, 1) if t.id == turn.id)
        return Explained(story, turn, number, notes, explain(notes))

    def mode(self, name: str | None) -> Mode:
        """The writing mode called ``name`` (the default when None)."""
        if name is None:
            return MODES[DEFAULT_MODE]
        try:
            return MODES[name.strip().lower()]
        except KeyError:
            raise InvalidSetting(
                f"There is no mode `{name}`. Choose one of: {', '.join(MODES)}."
            ) from None

    # -- settings ------------------------------------------------------------------------------

    async def settings(self, actor: Actor, mode: str | None = None) -> SettingsView:
        """The settings in force in the actor's channel; moderators only."""
        self._require_moderator(actor)
        resolved = await self._settings(actor, await self._mode_here(actor, mode))
        return SettingsView(resolved, self.specs, actor.channel_id)

    async def set_setting(
        self, actor: Actor, key: str, value: str | float | None, scope: Scope = "server"
    ) -> SettingChange:
        """Set one setting for the server or this channel; ``value=None`` resets it."""
        self._require_moderator(actor)
        spec = self.specs.get(key.strip().lower())
        if spec is None:
            raise InvalidSetting(f"There is no setting `{key}`. Settings: {', '.join(self.specs)}.")
        new = None if value is None else spec.parse(value)
        channel = SERVER_WIDE if scope == "server" else actor.channel_id
        old = await self.store.set_setting(actor.guild_id, channel, spec.key, new, actor.user_id)
        resolved = await self._settings(actor, await self._mode_here(actor))
        log.info(
            "guild %s: %s set %s (%s) from %r to %r",
            actor.guild_id, actor.user_id, spec.key, scope, old, new,
        )  # fmt: skip
        return SettingChange(spec.key, scope, old, new, resolved[spec.key])

    # -- replies members are waiting for -----------------------------------------------------

    async def open_reply(self, reply: PendingReply) -> None:
        """Remember an acknowledged request until it is answered (``close_reply``)."""
        await self.store.open_reply(reply)

    async def close_reply(self, reply_id: int) -> None:
        await self.store.close_reply(reply_id)

    async def unanswered(self, now: float) -> list[PendingReply]:
        """Replies a crash left open that can still be answered; the expired ones are forgotten."""
        live = []
        for reply in await self.store.pending_replies():
            if reply.expires_at - now > REPLY_MARGIN_S:
                live.append(reply)
            else:
                await self.store.close_reply(reply.id)
        return live

    # -- the pieces ----------------------------------------------------------------------------

    def _check_text(self, what: str, text: str) -> None:
        if not text:
            raise EmptyText()
        tokens = len(self.engine.tokenizer.encode(text))
        limit = self.config.caps.max_prompt_tokens
        if tokens > limit:
            raise TextTooLong(what, tokens, limit)

    async def _mode_here(self, actor: Actor, name: str | None = None) -> Mode:
        """The named mode, else the mode of the channel's story, else the default."""
        if name is None:
            story = await self.store.active_story(actor.channel_id)
            name = story.mode if story else None
        return self.mode(name)

    async def _active(self, actor: Actor) -> Story:
        story = await self.store.active_story(actor.channel_id)
        if story is None:
            raise NoStory()
        return story

    async def _settings(self, actor: Actor, mode: Mode) -> Resolved:
        server, channel = ({}, {})
        if actor.guild_id is not None:
            server, channel = await self.store.settings(actor.guild_id, actor.channel_id)
        return resolve(self.specs, self.config.generation, mode, server, channel)

    def _admit(self, actor: Actor, settings: Resolved):
        guild = actor.guild_id or 0
        return self.limiter.admit(
            {
                "user": (("user", guild, actor.user_id), int(settings["user_rate"])),
                "server": (("guild", guild), self.config.caps.max_guild_rate),
            }
        )

    def _require_moderator(self, actor: Actor) -> None:
        if actor.guild_id is None:
            raise GuildOnly()
        if not actor.is_moderator:
            raise NotModerator()

    async def _compose(
        self,
        story: Story,
        mode: Mode,
        turns: list[Turn],
        settings: Resolved,
        deadline: float,
        on_progress: Progress | None,
    ) -> tuple[Part, bytes | None]:
        """The model's next part after ``turns``, and its token notes packed for the store."""
        part = await write_part(
            self.engine, self.config, self.clock, story, mode, turns, settings, deadline,
            on_progress,
        )  # fmt: skip
        return part, pack(part.notes) if part.notes else None

    async def _generate(
        self,
        story: Story,
        mode: Mode,
        turns: list[Turn],
        settings: Resolved,
        deadline: float,
        on_progress: Progress | None = None,
        actor: Actor | None = None,
    ) -> Turn:
        """Ask the engine for the next part and commit it as the model's turn."""
        part, notes = await self._compose(story, mode, turns, settings, deadline, on_progress)
        asked = NewTurn("model", None, part.text, part.record, notes, actor and actor.user_id)
        try:
            [turn] = await self.store.append_turns(story.id, [asked], actor and actor.reply_id)
        except StoryGone:
            raise NoStory(
                "This story was replaced by a new `/write` while I was writing."
            ) from None
        return turn


@contextlib.contextmanager
def _saved_note(saved: str | None) -> Iterator[None]:
    """Tell a member whose ``saved`` text is committed that a failure after it lost nothing."""
    try:
        yield
    except (EngineError, StorageError) as error:
        if not saved:
            raise
        noted = copy.copy(error)  # the raised error is not ours to change
        noted.user_message = (
            f"{error.user_message} Your {saved} is saved: use `/continue` to have me try again."
        )
        raise noted from error


def scrubbed(text: str) -> str:
    """Member text made safe to encode: a lone surrogate (no character at all) becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").strip()
