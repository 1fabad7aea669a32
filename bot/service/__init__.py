"""StoryService: the rules of storybot, with no discord import.

The adapters (the Discord cogs and the console) turn a command into an :class:`Actor` and a call
here, and turn the plain result or :class:`~bot.errors.StoryError` back into something to show.
The rules are split by capability: :mod:`~bot.service.core` (writing, showing, explaining,
settings) and :mod:`~bot.service.steering` (retry, versions, undo and redo, edits, memory and
author's note, the channel's stories, export).
"""

from bot.service.core import (
    Actor,
    Explained,
    SettingChange,
    SettingsView,
    StoryView,
    Written,
)
from bot.service.steering import Exported, Steering, StoryPage


class StoryService(Steering):
    """Every rule of storybot, for any adapter."""


__all__ = [
    "Actor",
    "Explained",
    "Exported",
    "SettingChange",
    "SettingsView",
    "StoryPage",
    "StoryService",
    "StoryView",
    "Written",
]
