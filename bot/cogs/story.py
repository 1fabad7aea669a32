"""/write, /continue and /story: the commands members tell stories with, and the Explain button
under every part the model writes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import PUBLIC_DEFERRAL, StoryBot, defer_public
from bot.cogs.moves import ExplainButton, MoveButton, part_buttons, pressed, redo_buttons
from bot.errors import PartNotShown, StoryError
from bot.explain import sections
from bot.picture import confidence_png
from bot.render import (
    EXPLAIN_IMAGE,
    MACHINE_WRITTEN,
    MESSAGE_LIMIT,
    explanation_embed,
    first_message,
    safe,
    split_message,
    story_part,
    story_with_authors,
)
from bot.service import Actor, Written
from bot.story import MODES, Turn

log = logging.getLogger(__name__)
MISSING = discord.utils.MISSING

MODE_CHOICES = [
    app_commands.Choice(name=f"{m.name}: {m.description}", value=m.name) for m in MODES.values()
]
SHOW_CHUNKS = 5
PROGRESS_EVERY_S = 1.5
WRITING = " ✍️"  # ends a preview of a part still being written
WAITING = "⏳"  # begins the line shown while a request waits for its turn
CUT_SHORT = "*(cut short: I'm restarting. It is saved; `/continue` in a minute goes on from here.)*"


def actor_of(bot: StoryBot, interaction: discord.Interaction, reply_id: int | None = None) -> Actor:
    """Who is asking, where, whether they moderate this server, and their roles (the service
    counts the server's moderator roles too)."""
    roles = getattr(interaction.user, "roles", ())
    return Actor(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        is_moderator=bot.is_moderator(interaction.user),
        reply_id=reply_id,
        name=interaction.user.display_name,
        role_ids=tuple(role.id for role in roles),
    )


class StoryCog(commands.Cog):
    """Start and continue the channel's story."""

    def __init__(self, bot: StoryBot) -> None:
        self.bot = bot
        # channel: the newest part (its story and position), and the message showing it
        self._with_buttons: dict[int, tuple[tuple[int, int], discord.Message]] = {}

    @app_commands.command(name="write")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt="How the story begins; the bot writes what comes next",
        mode="The kind of writing (default: story)",
    )
    @app_commands.choices(mode=MODE_CHOICES)
    async def write(
        self,
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, 1500],
        mode: str | None = None,
    ) -> None:
        """Start a new story in this channel (the previous one is archived)."""
        actor = await self._acknowledge(interaction)
        with self.bot.part_in_flight():
            progress = LiveProgress(interaction, prefix=f"{prompt}\n\n")
            try:
                written = await self.bot.service.write(actor, prompt, mode, on_progress=progress)
            finally:
                await progress.stop()
            header = (
                f"📖 **A new {written.story.mode}** begun by {safe(interaction.user.display_name)}"
            )
            if written.archived:
                title = safe(written.archived.title[:60])
                header += f" (the previous story, “{title}”, is archived)"
            await self._send(interaction, header, [(None, t.text) for t in written.turns], written)

    @app_commands.command(name="continue")
    @app_commands.guild_only()
    @app_commands.describe(text="Your own line to add first (optional); the bot then writes on")
    async def continue_(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 1500] | None = None
    ) -> None:
        """Add to this channel's story and let the bot write the next part."""
        await self.continue_part(interaction, text)

    async def continue_part(
        self, interaction: discord.Interaction, text: str | None, turn_id: int | None = None
    ) -> None:
        """/continue, or the Continue button under ``turn_id`` (refused once it is not the
        newest part: the member would be continuing a story they have not seen)."""
        actor = await self._acknowledge(interaction)
        if turn_id is not None:
            await self.bot.service.current_part(actor, turn_id)
        with self.bot.part_in_flight():
            progress = LiveProgress(interaction, prefix=f"{text}\n\n" if text else "")
            try:
                written = await self.bot.service.continue_(actor, text, on_progress=progress)
            finally:
                await progress.stop()
            await self._send(interaction, None, self._parts(interaction, written), written)

    async def retry_part(self, interaction: discord.Interaction, turn_id: int) -> None:
        """The Retry button: the part is written again, in place; ‹ › switch versions."""
        await interaction.response.defer()  # the answer edits the message the button is on
        actor = actor_of(self.bot, interaction)
        with self.bot.part_in_flight():
            progress = LiveProgress(interaction)
            try:
                written = await self.bot.service.retry(actor, turn_id, on_progress=progress)
            except BaseException:
                await progress.stop()
                with contextlib.suppress(Exception):  # not the preview of a part never stored
                    await self._show_version(
                        interaction, await self.bot.service.current_part(actor, turn_id)
                    )
                raise
            await progress.stop()
        await self._show_version(interaction, written.model_turn)

    async def swipe(self, interaction: discord.Interaction, step: int, turn_id: int) -> None:
        """‹ and ›: another version of the part becomes the story's, in place."""
        await interaction.response.defer()
        turn = await self.bot.service.choose_version(
            actor_of(self.bot, interaction), step=step, turn_id=turn_id
        )
        await self._show_version(interaction, turn)

    async def undo_part(self, interaction: discord.Interaction, turn_id: int) -> None:
        await interaction.response.defer()
        turn = await self.bot.service.undo(actor_of(self.bot, interaction), turn_id)
        who = safe(interaction.user.display_name)
        note = f"↩️ *{who} took this part back; it is kept, and Redo puts it back.*"
        lead_in = await self._lead_in(interaction, turn)
        content = f"{first_message(story_part(lead_in), len(note) + 2)}\n\n{note}"
        await interaction.edit_original_response(
            content=content if lead_in else note, view=redo_buttons(turn)
        )

    async def redo_part(self, interaction: discord.Interaction, turn_id: int) -> None:
        await interaction.response.defer()
        turn = await self.bot.service.redo(actor_of(self.bot, interaction), turn_id)
        await self._show_version(interaction, turn)

    async def _show_version(self, interaction: discord.Interaction, turn: Turn) -> None:
        """A part in the message its button is on (its first message's worth)."""
        label = None if turn.kind == "model" else (turn.author_name or "a member")
        body = story_part([*await self._lead_in(interaction, turn), (label, turn.text)])
        header = f"-# version {turn.version} of {turn.versions}\n" if turn.versions > 1 else ""
        footer = f"\n{MACHINE_WRITTEN}" if turn.kind == "model" else ""
        text = first_message(body, len(header) + len(footer))
        view = part_buttons(turn) if turn.kind == "model" else None
        await interaction.edit_original_response(content=f"{header}{text}{footer}", view=view)

    async def _lead_in(
        self, interaction: discord.Interaction, turn: Turn
    ) -> list[tuple[str | None, str]]:
        """What a part's message showed above it: the opening (a /write), or the line the
        member who asked for it added (a /continue with text)."""
        if turn.kind != "model":
            return []
        try:
            view = await self.bot.service.show(actor_of(self.bot, interaction))
        except StoryError:
            return []
        before = [t for t in view.turns if t.position < turn.position]
        if not before:
            return []
        previous = before[-1]
        if previous.kind == "opening":
            return [(None, previous.text)]
        if previous.kind == "member" and previous.author_id == turn.requested_by:
            return [(previous.author_name or "a member", previous.text)]
        return []

    story = app_commands.Group(name="story", description="This channel's story", guild_only=True)

    @story.command(name="show")
    async def show(self, interaction: discord.Interaction) -> None:
        """Show this channel's story so far (only to you)."""
        view = await self.bot.service.show(actor_of(self.bot, interaction))
        chunks = split_message(story_with_authors(view.turns))
        if len(chunks) > SHOW_CHUNKS:
            chunks = [
                f"*(the first {len(chunks) - SHOW_CHUNKS + 1} parts are not shown)*",
                *chunks[-(SHOW_CHUNKS - 1) :],
            ]
        await interaction.response.send_message(chunks[0], ephemeral=True)
        for chunk in chunks[1:]:
            await interaction.followup.send(chunk, ephemeral=True)

    @story.command(name="explain")
    @app_commands.describe(part="Which of my parts, counting from 1 (default: the newest)")
    async def explain(
        self,
        interaction: discord.Interaction,
        part: app_commands.Range[int, 1, 100000] | None = None,
    ) -> None:
        """Why I wrote a part: how sure I was of each word, and what I almost wrote (only to you)."""
        await self.send_explanation(interaction, part=part)

    @story.command(name="edit")
    async def edit(self, interaction: discord.Interaction) -> None:
        """Change the newest turn: your own line, or any part if you moderate (a new version)."""
        actor = actor_of(self.bot, interaction)
        turn = await self.bot.service.editable(actor)
        await interaction.response.send_modal(EditForm(self, turn))

    @story.command(name="memory")
    @app_commands.describe(text="What must stay true (empty: show it; clear: remove it)")
    async def memory(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 1500] | None = None
    ) -> None:
        """What the bot must keep in mind, pinned before the story in every part it writes."""
        story = await self.bot.service.memory(actor_of(self.bot, interaction), text)
        shown = (
            safe(story.memory)[:1900] if story.memory else "*(none: `/story memory TEXT` sets it)*"
        )
        await interaction.response.send_message(f"🧠 **Memory:** {shown}", ephemeral=text is None)

    @story.command(name="note")
    @app_commands.describe(text="The author's note (empty: show it; clear: remove it)")
    async def note(
        self, interaction: discord.Interaction, text: app_commands.Range[str, 1, 1000] | None = None
    ) -> None:
        """A nudge for where the story goes next, placed a few turns before the end."""
        story = await self.bot.service.note(actor_of(self.bot, interaction), text)
        shown = safe(story.note)[:1900] if story.note else "*(none: `/story note TEXT` sets it)*"
        await interaction.response.send_message(
            f"📝 **Author's note:** {shown}", ephemeral=text is None
        )

    @story.command(name="list")
    async def list_(self, interaction: discord.Interaction) -> None:
        """This channel's stories, newest first (only to you)."""
        await self.send_stories(interaction, 1, first=True)

    async def send_stories(self, interaction: discord.Interaction, page: int, first: bool) -> None:
        listed = await self.bot.service.stories(actor_of(self.bot, interaction), page)
        lines = [
            f"`{s.id}` **{safe(s.title[:60])}** ({s.mode}, "
            f"{'active' if s.active else 'ended' if s.ended_at else 'archived'}, {s.created_at[:10]})"
            for s in listed.stories
        ] or ["*(no stories yet: `/write` begins one)*"]
        content = (
            "\n".join(lines) + f"\n-# page {listed.page} of {listed.pages} · `/story resume ID`"
        )
        view = discord.ui.View(timeout=None)
        view.add_item(PageButton(listed.page - 1, disabled=listed.page == 1, label="‹"))
        view.add_item(PageButton(listed.page + 1, disabled=listed.page == listed.pages, label="›"))
        if first:
            await interaction.response.send_message(content, view=view, ephemeral=True)
        else:
            await interaction.response.edit_message(content=content, view=view)

    @story.command(name="resume")
    @app_commands.describe(story="The story's number, as `/story list` shows it")
    async def resume(
        self, interaction: discord.Interaction, story: app_commands.Range[int, 1]
    ) -> None:
        """Take up an earlier story of this channel again (the current one is archived)."""
        resumed, archived = await self.bot.service.resume(actor_of(self.bot, interaction), story)
        text = (
            f"📖 {safe(interaction.user.display_name)} took up “{safe(resumed.title[:80])}” again"
        )
        if archived:
            text += f" (“{safe(archived.title[:60])}” is archived)"
        await interaction.response.send_message(text + ". `/continue` goes on from its end.")

    @story.command(name="end")
    async def end(self, interaction: discord.Interaction) -> None:
        """Finish this channel's story; it stays in `/story list`."""
        story = await self.bot.service.end(actor_of(self.bot, interaction))
        await interaction.response.send_message(
            f"🏁 “{safe(story.title[:80])}” is finished. `/story export` keeps it; "
            f"`/story resume {story.id}` takes it up again."
        )

    @story.command(name="export")
    @app_commands.describe(format="markdown (default), text or json")
    @app_commands.choices(
        format=[app_commands.Choice(name=f, value=f) for f in ("markdown", "text", "json")]
    )
    async def export(self, interaction: discord.Interaction, format: str = "markdown") -> None:
        """The whole story as a file (only to you)."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        exported = await self.bot.service.export(actor_of(self.bot, interaction), format)
        await interaction.followup.send(
            f"The whole story, {len(exported.data):,} bytes.",
            file=discord.File(io.BytesIO(exported.data), exported.filename),
            ephemeral=True,
        )

    async def send_explanation(
        self, interaction: discord.Interaction, part: int | None = None, turn_id: int | None = None
    ) -> None:
        """The explanation of a part, with its picture, only to the member who asked."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        explained = await self.bot.service.explain(
            actor_of(self.bot, interaction), part=part, turn_id=turn_id
        )
        png = await asyncio.to_thread(confidence_png, explained.notes, explained.title)
        embed = explanation_embed(
            explained.title, sections(explained.explanation, explained.record)
        )
        await interaction.followup.send(
            embed=embed, file=discord.File(io.BytesIO(png), EXPLAIN_IMAGE), ephemeral=True
        )

    async def _acknowledge(self, interaction: discord.Interaction) -> Actor:
        """Defer at once, then remember the interaction until it is answered."""
        await defer_public(interaction)
        return actor_of(self.bot, interaction, await self.bot.remember(interaction))

    @staticmethod
    def _parts(interaction: discord.Interaction, written: Written) -> list[tuple[str | None, str]]:
        return [
            (interaction.user.display_name if turn.kind == "member" else None, turn.text)
            for turn in written.turns
        ]

    async def _send(
        self, interaction: discord.Interaction, header: str | None, parts, written: Written
    ) -> None:
        """The answer to a deferral: the first chunk replaces it, the rest follow."""
        body = story_part(parts)
        if written.model_turn.settings.get("finish_reason") == "interrupted":
            body += f"\n\n{CUT_SHORT}"
        body += f"\n{MACHINE_WRITTEN}"
        first, *rest = split_message(f"{header}\n\n{body}" if header else body)
        buttons = part_buttons(written.model_turn)
        try:  # the buttons go under the last message of the answer
            shown = await interaction.edit_original_response(
                content=first, view=None if rest else buttons
            )
        except discord.HTTPException as error:  # the part is stored: a retry would write another
            raise PartNotShown() from error
        # The part is shown: an error from here on must not delete it.
        interaction.extras[PUBLIC_DEFERRAL] = False
        for n, chunk in enumerate(rest, 1):
            last = n == len(rest)
            message = await interaction.followup.send(
                chunk, view=buttons if last else MISSING, wait=last
            )
            shown = message if last else shown
        await self.bot.settle(interaction)
        part = written.model_turn
        await self._move_buttons(interaction.channel_id, (part.story_id, part.position), shown)

    async def _move_buttons(self, channel_id: int, place: tuple[int, int], message) -> None:
        """Only the newest part keeps live buttons: take them off the other (while Discord still
        lets us edit it; later, its buttons are refused as stale). Answers may be shown out of
        order, so the newer part is the one further on in the story."""
        previous = self._with_buttons.get(channel_id)
        # A part of another story (a /write, a resume) is the newest; in one story, the later.
        if previous is None or previous[0][0] != place[0] or previous[0][1] <= place[1]:
            self._with_buttons[channel_id] = (place, message)
            stale = None if previous is None else previous[1]
        else:  # an older part shown after a newer one
            stale = message
        newest = self._with_buttons[channel_id][1]
        if stale is not None and stale.id != newest.id and not self.bot.is_closed():
            with contextlib.suppress(discord.HTTPException, RuntimeError):  # closing
                await stale.edit(view=None)


def waiting_line(ahead: int, eta_s: float) -> str:
    """ "2 parts ahead of yours, about 20 s"."""
    eta = max(1, round(eta_s))
    wait = f"about {eta} s" if eta < 90 else f"about {round(eta / 60)} min"
    return f"{WAITING} {ahead} part{'s' if ahead != 1 else ''} ahead of yours, {wait}."


class LiveProgress:
    """Shows the part being written by editing the deferred reply, at most every few seconds."""

    def __init__(
        self, interaction: discord.Interaction, prefix: str = "", interval: float = PROGRESS_EVERY_S
    ):
        self.interaction = interaction
        self.prefix = prefix
        self.interval = interval
        self.text = ""
        self._shown_at = asyncio.get_running_loop().time()
        self._edit: asyncio.Task | None = None
        self._stopped = False

    def __call__(self, delta: str) -> None:
        """Take a new piece of text (called on the event loop by the engine)."""
        self.text += delta
        now = asyncio.get_running_loop().time()
        idle = self._edit is None or self._edit.done()
        if idle and not self._stopped and now - self._shown_at >= self.interval:
            self._shown_at = now
            self._edit = asyncio.create_task(self._show())

    def restart(self) -> None:
        """The part is being written again: the next preview starts from nothing."""
        self.text = ""

    def waiting(self, ahead: int, eta_s: float) -> None:
        """Tell the member how many parts are ahead of theirs in this channel's line."""
        if self._stopped or not ahead:
            return
        line = waiting_line(ahead, eta_s)
        before = self._edit

        async def show() -> None:
            if before is not None:
                with contextlib.suppress(Exception):
                    await before
            if not self._stopped:
                with contextlib.suppress(discord.HTTPException):
                    await self.interaction.edit_original_response(content=line)

        self._edit = asyncio.create_task(show())

    async def _show(self) -> None:
        preview = safe(self.prefix + self.text)[-(MESSAGE_LIMIT - len(WRITING)) :]
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.edit_original_response(content=preview + WRITING)

    async def stop(self) -> None:
        """Stop editing, and wait for an edit in flight so it cannot land after the answer."""
        self._stopped = True
        if self._edit is not None:
            await self._edit


class EditForm(discord.ui.Modal, title="Edit the newest turn"):
    """The newest turn's text, to change; stored as a new version with its editor."""

    def __init__(self, cog: StoryCog, turn: Turn) -> None:
        super().__init__(timeout=600)
        self.cog, self.turn = cog, turn
        self.text = discord.ui.TextInput(
            label="Text", style=discord.TextStyle.paragraph, default=turn.text[:4000],
            custom_id="text",
            max_length=4000,
        )  # fmt: skip
        self.add_item(self.text)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        bot: StoryBot = interaction.client
        try:
            turn = await bot.service.edit(
                actor_of(bot, interaction), self.text.value, turn_id=self.turn.id
            )
        except Exception as error:  # a form's errors do not reach the tree's handler
            await bot.on_app_command_error(interaction, error)
            return
        who = safe(interaction.user.display_name)
        await interaction.response.send_message(
            f"✏️ *{who} edited the newest turn (version {turn.version}):*\n{safe(turn.text)}"[
                :MESSAGE_LIMIT
            ]
        )


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"storybot:stories:(?P<page>[0-9]+)"
):
    """‹ › through `/story list`."""

    def __init__(self, page: int, disabled: bool = False, label: str = "›") -> None:
        super().__init__(
            discord.ui.Button(
                label=label, disabled=disabled, custom_id=f"storybot:stories:{max(page, 1)}"
            )
        )
        self.page = max(page, 1)

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> PageButton:
        return cls(int(match["page"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("StoryCog")
        await pressed(interaction, lambda: cog.send_stories(interaction, self.page, False), "page")


async def setup(bot: StoryBot) -> None:
    bot.add_dynamic_items(ExplainButton, MoveButton, PageButton)
    await bot.add_cog(StoryCog(bot))
