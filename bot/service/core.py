"""The core of the service: who asks (Actor), what comes back, and writing, showing,
explaining and configuring stories. :mod:`bot.service.steering` adds the moves that steer a story.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from bot.banned import BannedWords
from bot.config import Config
from bot.engine.types import (
    EngineError,
)
from bot.errors import (
    BannedWord,
    ChannelOff,
    EmptyText,
    GuildOnly,
    InvalidSetting,
    Locked,
    NoStory,
    NotAllowed,
    NotExplainable,
    NotModerator,
    StorageError,
    StoryError,
    StoryFull,
    TextTooLong,
)
from bot.explain import Explanation, TokenNote, clip, explain, pack, unpack
from bot.limits import Admission, ChannelOrder, Limit
from bot.settings import Resolved, resolve, setting_specs
from bot.store import NewTurn, PendingReply, RequestRecord, Store, StoryGone
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
# Request records (for /stats) are kept this long, and old ones dropped every so many records.
KEEP_REQUESTS_S = 8 * 24 * 3600
PRUNE_EVERY = 500


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
    role_ids: tuple[int, ...] = ()  # the member's roles in the server


@dataclass(frozen=True)
class Here:
    """What holds for one request in one channel: who asks (a moderator also when one of the
    server's moderator roles says so), the settings in force and the words not allowed."""

    actor: Actor
    settings: Resolved
    banned: BannedWords
    mode: Mode  # the writing mode the settings were resolved for


@dataclass(frozen=True)
class Written:
    """The outcome of ``write`` or ``continue_``: the turns added, the model's one last."""

    story: Story
    turns: list[Turn]
    archived: Story | None = None
    waited_s: float = 0.0  # from the request to the model starting on the part
    wrote_s: float = 0.0  # the model writing it

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


class ServiceCore:
    """Write, continue, show, explain and configure stories."""

    def __init__(
        self,
        config: Config,
        store: Store,
        engine: Engine,
        limiter: Admission | None = None,
        order: ChannelOrder | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.engine = engine
        self.limiter = limiter or Admission(config.moderation.limits_storage)
        self.order = order or ChannelOrder()
        self.clock = clock  # for deadlines
        self.wall_clock = wall_clock  # for the request records
        self.specs = setting_specs(config.caps)
        self.part_s = 10.0  # how long a channel's turn takes lately (for "about 20 s" estimates)
        self._recorded = 0

    # -- stories -------------------------------------------------------------------------------

    async def write(
        self,
        actor: Actor,
        prompt: str,
        mode: str | None = None,
        on_progress: Progress | None = None,
    ) -> Written:
        """Start a new story in the channel (archiving its previous one) and write its first part."""
        return await self._recorded_request(actor, self._write(actor, prompt, mode, on_progress))

    async def _write(
        self, actor: Actor, prompt: str, mode: str | None, on_progress: Progress | None
    ) -> Written:
        prompt = scrubbed(prompt)
        here = await self._here(actor, None if mode is None else self.mode(mode), writing=True)
        actor, chosen = here.actor, here.mode
        await self._allow(here, "write", mode=chosen)
        self._check_text(here, "prompt", prompt)

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
                model_turn, queued = await self._generate(
                    story, chosen, [opening], here, deadline, on_progress, actor
                )
            return Written(story, [opening, model_turn], archived, waited_s=queued)

        return await self._in_turn(here, body, on_progress)

    async def continue_(
        self, actor: Actor, text: str | None = None, on_progress: Progress | None = None
    ) -> Written:
        """Add the member's line (if any) to the channel's story, then the model's next part."""
        return await self._recorded_request(actor, self._continue(actor, text, on_progress))

    async def _continue(
        self, actor: Actor, text: str | None, on_progress: Progress | None
    ) -> Written:
        text = scrubbed(text or "")
        story = await self._active(actor)
        here = await self._here(actor, self.mode(story.mode))
        await self._allow(here, "continue")
        if text:
            self._check_text(here, "text", text)
        self._check_length(here, await self.store.turns(story.id))

        async def body(deadline: float) -> Written:
            # A /write may have replaced the story, or a moderator the settings, meanwhile.
            current = await self._active(actor)
            chosen = self.mode(current.mode)
            now = await self._here(actor, chosen)
            await self._allow(now, "continue")
            self._check_length(now, await self.store.turns(current.id))
            added = []
            if text:
                added = await self.store.append_turns(
                    current.id,
                    [NewTurn("member", actor.user_id, text, author_name=actor.name)],
                    actor.reply_id,
                )
            with _saved_note("line" if text else None):
                turns = await self.store.turns(current.id)
                model_turn, queued = await self._generate(
                    current, chosen, turns, now, deadline, on_progress, here.actor
                )
            return Written(current, [*added, model_turn], waited_s=queued)

        return await self._in_turn(here, body, on_progress)

    async def _in_turn(
        self,
        here: Here,
        body: Callable[[float], Awaitable[Written]],
        on_progress: Progress | None = None,
    ) -> Written:
        """Hold a place in the rate limits, wait for the channel's turn (telling the member how
        many are ahead), run ``body``; the place is given back when nothing was written."""
        actor = here.actor
        ticket = await self.limiter.admit(self._limits(here))
        timeout = self.config.model.request_timeout_s
        asked = self.clock()
        deadline = asked + timeout

        def waiting(ahead: int) -> None:
            if on_progress is not None:
                on_progress.waiting(ahead, ahead * self.part_s)

        try:
            async with self.order.turn(actor.channel_id, wait_s=timeout, on_wait=waiting):
                begun = self.clock()
                written = await body(deadline)
        except BaseException:
            ticket.refund()
            raise
        ended = self.clock()
        self.part_s = 0.7 * self.part_s + 0.3 * (ended - begun)
        await ticket.spend()
        queued = written.waited_s  # the engine's queue, inside the channel's turn
        return dataclasses.replace(
            written, waited_s=begun - asked + queued, wrote_s=max(0.0, ended - begun - queued)
        )

    async def _recorded_request(self, actor: Actor, request: Awaitable[Written]) -> Written:
        """Run a request for a part, and note it (written, or refused and why) for /stats."""
        try:
            written = await request
        except StoryError as error:
            await self._record(actor, error.reason)
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                await self._record(actor, "error")
            raise
        new_tokens = (written.model_turn.settings or {}).get("new_tokens", 0)
        await self._record(actor, "written", new_tokens, written.waited_s, written.wrote_s)
        return written

    async def _record(
        self,
        actor: Actor,
        outcome: str,
        tokens: int = 0,
        waited_s: float | None = None,
        wrote_s: float | None = None,
    ) -> None:
        if actor.guild_id is None:
            return
        now = self.wall_clock()
        record = RequestRecord(
            actor.guild_id, actor.channel_id, actor.user_id, now, outcome, tokens,
            None if waited_s is None else round(waited_s * 1000),
            None if wrote_s is None else round(wrote_s * 1000),
        )  # fmt: skip
        try:
            await self.store.record_request(record)
            self._recorded += 1
            if self._recorded % PRUNE_EVERY == 0:
                await self.store.forget_requests(now - KEEP_REQUESTS_S)
        except StorageError:  # statistics are never worth failing a member's request for
            log.warning("could not record a request for /stats", exc_info=True)

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
                "while they were turned off, by a model server (which does not report them), "
                "or its notes held a banned word."
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

    def _check_text(self, here: Here, what: str, text: str, limit: int | None = None) -> None:
        """Member text that is there, short enough, and free of banned words."""
        if not text:
            raise EmptyText()
        tokens = len(self.engine.tokenizer.encode(text))
        limit = self.config.caps.max_prompt_tokens if limit is None else limit
        if tokens > limit:
            raise TextTooLong(what, tokens, limit)
        word = here.banned.find(text)
        if word is not None:
            raise BannedWord(what, word)

    def _check_length(self, here: Here, turns: list[Turn]) -> None:
        longest = here.settings["max_turns"]
        if longest and len(turns) >= longest:
            raise StoryFull(
                f"This story has reached {len(turns)} turns, the most this server allows in one "
                "story. Start a new one with `/write` (`/story export` keeps this one)."
            )

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

    async def _layers(self, actor: Actor) -> tuple[dict, dict]:
        """The server's settings and the actor's channel's own, as stored."""
        if actor.guild_id is None:
            return {}, {}
        return await self.store.settings(actor.guild_id, actor.channel_id)

    async def _settings(self, actor: Actor, mode: Mode) -> Resolved:
        return resolve(self.specs, self.config.generation, mode, *await self._layers(actor))

    async def _here(self, actor: Actor, mode: Mode | None = None, *, writing: bool = False) -> Here:
        """The settings in force for ``actor`` here in ``mode``, whether they moderate, and the
        banned words. Without a mode: the channel's story's, or (``writing`` a new story) the
        mode the channel's settings choose for ``/write``."""
        layers = await self._layers(actor)
        if mode is None and writing:
            default = resolve(self.specs, self.config.generation, MODES[DEFAULT_MODE], *layers)
            mode = self.mode(default["mode"])
        elif mode is None:
            mode = await self._mode_here(actor)
        settings = resolve(self.specs, self.config.generation, mode, *layers)
        if not actor.is_moderator and set(actor.role_ids) & set(settings["moderator_roles"]):
            actor = dataclasses.replace(actor, is_moderator=True)
        words = self.config.moderation.banned_words
        if actor.guild_id is not None:
            words = (*words, *await self.store.banned_words(actor.guild_id))
        return Here(actor, settings, _banned_words(tuple(words)), mode)

    async def _allow(self, here: Here, action: str, mode: Mode | None = None) -> None:
        """Refuse a member what the server's access settings forbid here: writing in a channel
        the bot is off in, changing a locked story, starting one without a role it needs, or
        in a mode the server does not use."""
        settings, actor = here.settings, here.actor
        if not settings["enabled"]:
            raise ChannelOff(await self._where_on(actor))
        if settings["locked"] and not actor.is_moderator:
            raise Locked()
        if action == "write":
            roles = settings["write_roles"]
            if roles and not actor.is_moderator and not set(roles) & set(actor.role_ids):
                listed = ", ".join(f"<@&{r}>" for r in roles)
                raise NotAllowed(
                    f"Only members with one of these roles can start stories here: {listed}. "
                    "You can still `/continue` the channel's story."
                )
            if mode is not None and mode.name not in settings["modes"]:
                raise InvalidSetting(
                    f"The `{mode.name}` mode is not used in this server. "
                    f"Choose one of: {', '.join(settings['modes'])}."
                )

    async def _where_on(self, actor: Actor) -> str:
        """Why the bot is off here, and the channels where it writes."""
        assert actor.guild_id is not None
        server, _ = await self.store.settings(actor.guild_id, actor.channel_id)
        channels = await self.store.channel_overrides(actor.guild_id, "enabled")
        if server.get("enabled", True):
            off = [c for c, on in channels.items() if not on and c != actor.channel_id]
            return (
                "I'm turned off in this channel. I write in every other channel of this server"
                + (f" except {_channels(off)}." if off else ".")
            )
        on = [c for c, value in channels.items() if value]
        if not on:
            return (
                "I'm turned off in this server. A moderator can turn me on with "
                "`/settings set enabled on`."
            )
        return f"I'm turned off in this channel. I write in {_channels(on)}."

    def _limits(self, here: Here) -> list[Limit]:
        """Every limit one part counts against."""
        actor, settings = here.actor, here.settings
        guild = actor.guild_id or 0
        limits = [
            Limit.per_minute("user", ("user", guild, actor.user_id), settings["user_rate"]),
            Limit.per_minute("channel", ("channel", actor.channel_id), settings["channel_rate"]),
            Limit.per_minute("server", ("server", guild), self.config.caps.max_guild_rate),
        ]
        if settings["cooldown_s"]:
            limits.append(Limit.cooldown(("cooldown", actor.channel_id), settings["cooldown_s"]))
        return limits

    async def _require_moderator(self, actor: Actor) -> Here:
        if actor.guild_id is None:
            raise GuildOnly()
        here = await self._here(actor)
        if not here.actor.is_moderator:
            raise NotModerator()
        return here

    async def _compose(
        self,
        story: Story,
        mode: Mode,
        turns: list[Turn],
        here: Here,
        deadline: float,
        on_progress: Progress | None,
    ) -> tuple[Part, bytes | None]:
        """The model's next part after ``turns``, and its token notes packed for the store."""
        part = await write_part(
            self.engine, self.config, self.clock, story, mode, turns, here.settings, deadline,
            on_progress, here.banned,
        )  # fmt: skip
        return part, pack(part.notes) if part.notes else None

    async def _generate(
        self,
        story: Story,
        mode: Mode,
        turns: list[Turn],
        here: Here,
        deadline: float,
        on_progress: Progress | None = None,
        actor: Actor | None = None,
    ) -> tuple[Turn, float]:
        """Ask the engine for the next part and commit it as the model's turn; the turn, and
        how long the part waited in the engine's queue."""
        part, notes = await self._compose(story, mode, turns, here, deadline, on_progress)
        asked = NewTurn("model", None, part.text, part.record, notes, actor and actor.user_id)
        try:
            [turn] = await self.store.append_turns(story.id, [asked], actor and actor.reply_id)
        except StoryGone:
            raise NoStory(
                "This story was replaced by a new `/write` while I was writing."
            ) from None
        return turn, part.queued_s


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


@functools.lru_cache(maxsize=256)
def _banned_words(words: tuple[str, ...]) -> BannedWords:
    """Banned words compiled once per distinct list (servers share the host's)."""
    return BannedWords(words)


def _channels(ids: list[int]) -> str:
    shown = ", ".join(f"<#{c}>" for c in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")


def scrubbed(text: str) -> str:
    """Member text made safe to encode: a lone surrogate (no character at all) becomes U+FFFD."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").strip()
