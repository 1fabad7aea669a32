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

from bot.client import APOLOGY, PUBLIC_DEFERRAL, RESTARTING, StoryBot, defer_public, send_ephemeral
from bot.errors import PartNotShown, StoryError
from bot.explain import sections
from bot.picture import confidence_png
from bot.render import (
    EXPLAIN_IMAGE,
    MACHINE_WRITTEN,
    MESSAGE_LIMIT,
    explanation_embed,
    safe,
    split_message,
    story_part,
    story_with_authors,
)
from bot.service import Actor, Written
from bot.story import MODES

log = logging.getLogger(__name__)
MISSING = discord.utils.MISSING

MODE_CHOICES = [
    app_commands.Choice(name=f"{m.name}: {m.description}", value=m.name) for m in MODES.values()
]
SHOW_CHUNKS = 5
PROGRESS_EVERY_S = 1.5
WRITING = " ✍️"  # ends a preview of a part still being written
CUT_SHORT = "*(cut short: I'm restarting. It is saved; `/continue` in a minute goes on from here.)*"


def actor_of(bot: StoryBot, interaction: discord.Interaction, reply_id: int | None = None) -> Actor:
    """Who is asking, where, and whether they moderate this server."""
    return Actor(
        guild_id=interaction.guild_id,
        channel_id=interaction.channel_id,
        user_id=interaction.user.id,
        is_moderator=bot.is_moderator(interaction.user),
        reply_id=reply_id,
    )


class StoryCog(commands.Cog):
    """Start and continue the channel's story."""

    def __init__(self, bot: StoryBot) -> None:
        self.bot = bot

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
        actor = await self._acknowledge(interaction)
        with self.bot.part_in_flight():
            progress = LiveProgress(interaction, prefix=f"{text}\n\n" if text else "")
            try:
                written = await self.bot.service.continue_(actor, text, on_progress=progress)
            finally:
                await progress.stop()
            await self._send(interaction, None, self._parts(interaction, written), written)

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
        buttons = discord.ui.View(timeout=None)
        buttons.add_item(ExplainButton(written.model_turn.id))
        try:  # the button goes under the last message of the answer
            await interaction.edit_original_response(content=first, view=None if rest else buttons)
        except discord.HTTPException as error:  # the part is stored: a retry would write another
            raise PartNotShown() from error
        # The part is shown: an error from here on must not delete it.
        interaction.extras[PUBLIC_DEFERRAL] = False
        for n, chunk in enumerate(rest, 1):
            await interaction.followup.send(chunk, view=buttons if n == len(rest) else MISSING)
        await self.bot.settle(interaction)


class ExplainButton(
    discord.ui.DynamicItem[discord.ui.Button], template=r"storybot:explain:(?P<turn>[0-9]+)"
):
    """The Explain button under a part: its custom id names the turn, so it works after a
    restart and for any part still in the channel's story."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Explain",
                emoji="🔍",
                style=discord.ButtonStyle.secondary,
                custom_id=f"storybot:explain:{turn_id}",
            )
        )
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> ExplainButton:
        return cls(int(match["turn"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        bot: StoryBot = interaction.client
        if bot.draining:  # a button does not pass the command tree's check
            await send_ephemeral(interaction, RESTARTING)
            return
        cog: StoryCog = bot.get_cog("StoryCog")
        try:
            await cog.send_explanation(interaction, turn_id=self.turn_id)
        except StoryError as error:  # a button's errors do not reach the tree's handler
            await send_ephemeral(interaction, error.user_message)
        except Exception:
            log.exception("the Explain button failed for turn %s", self.turn_id)
            await send_ephemeral(interaction, APOLOGY)


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

    async def _show(self) -> None:
        preview = safe(self.prefix + self.text)[-(MESSAGE_LIMIT - len(WRITING)) :]
        with contextlib.suppress(discord.HTTPException):
            await self.interaction.edit_original_response(content=preview + WRITING)

    async def stop(self) -> None:
        """Stop editing, and wait for an edit in flight so it cannot land after the answer."""
        self._stopped = True
        if self._edit is not None:
            await self._edit


async def setup(bot: StoryBot) -> None:
    bot.add_dynamic_items(ExplainButton)
    await bot.add_cog(StoryCog(bot))
