"""Steering a story together: retry and versions, undo and redo, edits, memory and author's note,
the channel's stories, and export.

Every move acts on the channel's active story. A move named by a button carries the turn it was
shown under: when that turn is no longer the newest (someone moved on), the move is refused and
nothing changes. Nothing is ever deleted: undo hides a turn with who and when, retries and edits
add versions of a part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.errors import InvalidSetting, NoStory, NotAllowed, StaleMove
from bot.paths import model_label
from bot.service.core import Actor, ServiceCore, Written, scrubbed
from bot.story import EXPORT_FORMATS, Story, Turn, export_story
from bot.writer import Progress

PAGE = 10  # stories per page of /story list


@dataclass(frozen=True)
class StoryPage:
    stories: list[Story]
    page: int  # from 1
    pages: int


@dataclass(frozen=True)
class Exported:
    filename: str
    data: bytes


class Steering(ServiceCore):
    """The moves that steer the channel's story (mixed into StoryService)."""

    # -- versions --------------------------------------------------------------------------------

    async def retry(
        self, actor: Actor, turn_id: int | None = None, on_progress: Progress | None = None
    ) -> Written:
        """Write the newest part again; the earlier versions are kept and can be chosen."""
        return await self._recorded_request(actor, self._retry(actor, turn_id, on_progress))

    async def _retry(
        self, actor: Actor, turn_id: int | None, on_progress: Progress | None
    ) -> Written:
        story = await self._active(actor)
        here = await self._here(actor, self.mode(story.mode))
        await self._allow(here, "continue")

        async def body(deadline: float) -> Written:
            current = await self._active(actor)
            turns = await self.store.turns(current.id)
            newest = self._newest(turns, turn_id)
            if newest.kind != "model":
                raise StaleMove("Retry rewrites my newest part, and the newest turn is a member's.")
            chosen = self.mode(current.mode)
            now = await self._here(actor, chosen)
            part, notes = await self._compose(
                current, chosen, turns[:-1], now, deadline, on_progress
            )
            turn = await self.store.add_version(newest.id, part.text, part.record, notes)
            return Written(current, [turn], waited_s=part.queued_s)

        return await self._in_turn(here, body, on_progress)

    async def choose_version(
        self, actor: Actor, step: int = 0, number: int | None = None, turn_id: int | None = None
    ) -> Turn:
        """Choose which version of the newest part is the story's: ``number``, or ``step`` away
        from the chosen one (‹ is -1, › is +1)."""
        story = await self._active(actor)
        await self._changing(actor)
        newest = self._newest(await self.store.turns(story.id), turn_id)
        wanted = newest.version + step if number is None else number
        if newest.versions == 1:
            raise StaleMove("That part has one version only: Retry writes another.")
        if not 1 <= wanted <= newest.versions:
            raise InvalidSetting(
                f"There is no version {wanted}: that part has versions 1 to {newest.versions}."
            )
        return await self.store.choose_version(newest.id, wanted)

    async def current_part(self, actor: Actor, turn_id: int) -> Turn:
        """The newest turn, if it is ``turn_id`` (a button is still current); else refused."""
        story = await self._active(actor)
        return self._newest(await self.store.turns(story.id), turn_id)

    # -- undo, redo, edit ----------------------------------------------------------------------

    async def undo(self, actor: Actor, turn_id: int | None = None) -> Turn:
        """Take back the newest turn (kept in the record, with who and when)."""
        story = await self._active(actor)
        actor = await self._changing(actor)
        async with self.order.turn(actor.channel_id, wait_s=self.config.model.request_timeout_s):
            newest = self._newest(await self.store.turns(story.id), turn_id)
            if newest.kind == "opening":
                raise NotAllowed("The opening stays: `/write` starts a new story instead.")
            self._require_owner(actor, newest, "undo")
            await self.store.undo_turn(newest.id, actor.user_id)
        return newest

    async def redo(self, actor: Actor, turn_id: int | None = None) -> Turn:
        """Put back the turn undone last, as long as nothing new was written since (the Redo
        button names it: refused if another turn is next to come back)."""
        story = await self._active(actor)
        actor = await self._changing(actor)
        async with self.order.turn(actor.channel_id, wait_s=self.config.model.request_timeout_s):
            every = await self.store.turns(story.id, include_deleted=True)
            shown = max((t.position for t in every if not t.deleted), default=-1)
            undone = [t for t in every if t.deleted and t.position > shown]
            if not undone:
                raise StaleMove("There is nothing to redo: nothing was undone since the last part.")
            turn = min(undone, key=lambda t: t.position)  # the last one taken back
            if turn_id is not None and turn.id != turn_id:
                raise StaleMove("Another turn is next to come back: Redo under that one.")
            self._require_owner(actor, turn, "redo")
            if not actor.is_moderator and turn.deleted_by != actor.user_id:
                raise NotAllowed("A moderator took that back; only a moderator can put it back.")
            await self.store.redo_turn(turn.id)
        return await self.store.turn(turn.id)

    async def edit(self, actor: Actor, text: str, turn_id: int | None = None) -> Turn:
        """Replace a turn's text with a new version: a member's own line, or (a moderator) any
        part; the newest turn unless ``turn_id`` names one of the story's."""
        story = await self._active(actor)
        here = await self._here(actor)
        await self._allow(here, "change")
        actor = here.actor
        text = scrubbed(" ".join(text.split("\r")))
        if not text:
            raise InvalidSetting("An edit cannot be empty: Undo takes a turn back.")
        limit = max(self.config.caps.max_prompt_tokens, self.config.caps.max_new_tokens)
        self._check_text(here, "edit", text, limit)
        turns = await self.store.turns(story.id)
        target = next((t for t in turns if t.id == turn_id), None) if turn_id else turns[-1]
        if target is None:
            raise StaleMove("That turn is no longer in the story.")
        if not actor.is_moderator and not (
            target.kind in ("member", "opening") and target.author_id == actor.user_id
        ):
            raise NotAllowed("You can edit your own lines; a moderator can edit any part.")
        return await self.store.add_version(target.id, text, target.settings, None, actor.user_id)

    async def editable(self, actor: Actor) -> Turn:
        """The turn an edit would change (to prefill a form with), if the actor may edit it."""
        story = await self._active(actor)
        actor = await self._changing(actor)
        newest = (await self.store.turns(story.id))[-1]
        if not actor.is_moderator and newest.author_id != actor.user_id:
            raise NotAllowed(
                "You can edit your own line when it is the newest turn; a moderator can edit any."
            )
        return newest

    # -- memory and author's note --------------------------------------------------------------

    async def memory(self, actor: Actor, text: str | None = None) -> Story:
        """Show (``text`` None), set, or ``clear`` the story's memory."""
        return await self._story_text(actor, "memory", text, self.config.caps.max_memory_tokens)

    async def note(self, actor: Actor, text: str | None = None) -> Story:
        """Show, set, or ``clear`` the story's author's note."""
        return await self._story_text(actor, "note", text, self.config.caps.max_note_tokens)

    async def _story_text(
        self, actor: Actor, what: Literal["memory", "note"], text: str | None, limit: int
    ) -> Story:
        story = await self._active(actor)
        if text is None:
            return story
        here = await self._here(actor)
        await self._allow(here, "change")
        text = "" if text.strip().lower() == "clear" else " ".join(scrubbed(text).split())
        if text:
            self._check_text(here, what, text, limit)
        setter = self.store.set_memory if what == "memory" else self.store.set_note
        await setter(story.id, text)
        return await self.store.story(story.id)

    # -- the channel's stories -------------------------------------------------------------------

    async def stories(self, actor: Actor, page: int = 1) -> StoryPage:
        """The channel's stories, newest first, ``PAGE`` a page."""
        every = await self.store.stories(actor.channel_id)
        pages = max(1, -(-len(every) // PAGE))
        page = min(max(1, page), pages)
        return StoryPage(every[(page - 1) * PAGE : page * PAGE], page, pages)

    async def resume(self, actor: Actor, story_id: int) -> tuple[Story, Story | None]:
        """Make an archived story of this channel the active one (archiving the current one)."""
        story = await self.store.story(story_id)
        if story is None or story.channel_id != actor.channel_id:
            raise NoStory(f"This channel has no story {story_id}: `/story list` shows its stories.")
        if story.active:
            raise StaleMove("That story is already the channel's story.")
        await self._changing(actor)
        async with self.order.turn(actor.channel_id, wait_s=self.config.model.request_timeout_s):
            archived = await self.store.resume_story(story_id)
        return await self.store.story(story_id), archived

    async def end(self, actor: Actor) -> Story:
        """Finish the channel's story (who began it, or a moderator); it stays in the list."""
        story = await self._active(actor)
        actor = await self._changing(actor)
        if not actor.is_moderator and story.created_by != actor.user_id:
            raise NotAllowed("The member who began this story, or a moderator, can end it.")
        async with self.order.turn(actor.channel_id, wait_s=self.config.model.request_timeout_s):
            await self.store.end_story(story.id)
        return await self.store.story(story.id)

    async def export(
        self, actor: Actor, fmt: str = "markdown", story_id: int | None = None
    ) -> Exported:
        """The whole story as a file: Markdown, plain text or JSON."""
        if fmt not in EXPORT_FORMATS:
            raise InvalidSetting(f"Export as one of: {', '.join(EXPORT_FORMATS)}.")
        if story_id is None:
            story = await self._active(actor)
        else:
            story = await self.store.story(story_id)
            if story is None or story.channel_id != actor.channel_id:
                raise NoStory(f"This channel has no story {story_id}.")
        turns = await self.store.turns(story.id)
        name, data = export_story(story, turns, fmt, model_label(self.config.model.name))
        return Exported(name, data)

    # -- the pieces ----------------------------------------------------------------------------

    async def _changing(self, actor: Actor) -> Actor:
        """The actor (a moderator by the server's roles too), if they may change the story here."""
        here = await self._here(actor)
        await self._allow(here, "change")
        return here.actor

    @staticmethod
    def _newest(turns: list[Turn], turn_id: int | None) -> Turn:
        """The newest visible turn; refused when a button names one that is no longer it."""
        if not turns:
            raise NoStory()
        newest = turns[-1]
        if turn_id is not None and newest.id != turn_id:
            raise StaleMove(
                "That part is no longer the newest: the buttons act on the newest part only."
            )
        return newest

    @staticmethod
    def _require_owner(actor: Actor, turn: Turn, move: str) -> None:
        owner = turn.requested_by if turn.kind == "model" else turn.author_id
        if actor.is_moderator or owner == actor.user_id:
            return
        whose = "asked for that part" if turn.kind == "model" else "wrote that line"
        raise NotAllowed(f"Only the member who {whose}, or a moderator, can {move} it.")
