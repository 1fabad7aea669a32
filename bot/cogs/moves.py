"""The buttons under a part: Continue, Retry, Undo, ‹ › between versions, Redo, and Explain.

Each is a ``DynamicItem`` whose custom id carries the move, the story and the turn it was shown
under, so a button pressed after a restart still works, and one pressed under a part that is no
longer the newest is refused by the service with nothing changed. Pressing is an interaction like
a command: the tree's check does not run for it, so the draining check and the error handler are
called here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

import discord

from bot.client import RESTARTING, StoryBot, send_ephemeral
from bot.story import Turn

log = logging.getLogger(__name__)

MOVES = ("continue", "retry", "undo", "redo", "prev", "next")


def part_buttons(turn: Turn) -> discord.ui.View:
    """The buttons under a model part: the moves, ‹ › when it has versions, and Explain."""
    view = discord.ui.View(timeout=None)
    view.add_item(MoveButton("continue", turn.story_id, turn.id))
    view.add_item(MoveButton("retry", turn.story_id, turn.id))
    view.add_item(MoveButton("undo", turn.story_id, turn.id))
    view.add_item(ExplainButton(turn.id))
    if turn.versions > 1:
        view.add_item(MoveButton("prev", turn.story_id, turn.id, disabled=turn.version == 1))
        view.add_item(
            MoveButton("next", turn.story_id, turn.id, disabled=turn.version == turn.versions)
        )
    return view


def redo_buttons(turn: Turn) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(MoveButton("redo", turn.story_id, turn.id))
    return view


LOOKS = {
    "continue": ("Continue", "▶️", discord.ButtonStyle.primary),
    "retry": ("Retry", "🔁", discord.ButtonStyle.secondary),
    "undo": ("Undo", "↩️", discord.ButtonStyle.secondary),
    "redo": ("Redo", "↪️", discord.ButtonStyle.secondary),
    "prev": ("‹", None, discord.ButtonStyle.secondary),
    "next": ("›", None, discord.ButtonStyle.secondary),
}


async def pressed(
    interaction: discord.Interaction, move: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run a button's move as a command runs: refused while stopping, every error answered."""
    bot: StoryBot = interaction.client
    if bot.draining:
        await send_ephemeral(interaction, RESTARTING)
        return
    try:
        await move()
    except Exception as error:
        log.debug("the %s button failed: %r", what, error)
        await bot.on_app_command_error(interaction, error)


class MoveButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"storybot:(?P<move>continue|retry|undo|redo|prev|next):(?P<story>[0-9]+):(?P<turn>[0-9]+)",
):
    """One move on the story, shown under the turn it acts on."""

    def __init__(self, move: str, story_id: int, turn_id: int, disabled: bool = False) -> None:
        label, emoji, style = LOOKS[move]
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=emoji,
                style=style,
                disabled=disabled,
                custom_id=f"storybot:{move}:{story_id}:{turn_id}",
                row=1 if move in ("prev", "next") else 0,
            )
        )
        self.move, self.story_id, self.turn_id = move, story_id, turn_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> MoveButton:
        return cls(match["move"], int(match["story"]), int(match["turn"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("StoryCog")
        moves = {
            "continue": lambda: cog.continue_part(interaction, None, turn_id=self.turn_id),
            "retry": lambda: cog.retry_part(interaction, self.turn_id),
            "undo": lambda: cog.undo_part(interaction, self.turn_id),
            "redo": lambda: cog.redo_part(interaction, self.turn_id),
            "prev": lambda: cog.swipe(interaction, -1, self.turn_id),
            "next": lambda: cog.swipe(interaction, +1, self.turn_id),
        }
        await pressed(interaction, moves[self.move], self.move)


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
        cog = interaction.client.get_cog("StoryCog")
        await pressed(
            interaction, lambda: cog.send_explanation(interaction, turn_id=self.turn_id), "explain"
        )
