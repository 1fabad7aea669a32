"""StoryService: the rules of storybot, with no discord import.

The adapters (the Discord cogs and the console) turn a command into an :class:`Actor` and a call
here, and turn the plain result or :class:`~bot.errors.StoryError` back into something to show.
The rules are split by capability: :mod:`~bot.service.core` (writing, showing, explaining),
:mod:`~bot.service.steering` (retry, versions, undo and redo, edits, memory and
author's note, the channel's stories, export) and :mod:`~bot.service.moderation` (settings, banned
words, their history, statistics).
"""

from bot.service.core import Actor, Explained, StoryView, Written
from bot.service.moderation import (
    BannedChange,
    HistoryPage,
    Moderation,
    SettingChange,
    SettingsView,
    Stats,
)
from bot.service.steering import Exported, Steering, StoryPage


class StoryService(Steering, Moderation):
    """Every rule of storybot, for any adapter."""


__all__ = [
    "Actor",
    "BannedChange",
    "Explained",
    "Exported",
    "HistoryPage",
    "SettingChange",
    "SettingsView",
    "Stats",
    "StoryPage",
    "StoryService",
    "StoryView",
    "Written",
]
