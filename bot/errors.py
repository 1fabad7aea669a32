"""Errors with a message for people: raised by the service, shown by the adapters as one line."""

from __future__ import annotations

import math


class StoryError(Exception):
    """An expected refusal; ``user_message`` says what happened and what to do, and ``reason``
    names the kind of refusal in the server's statistics."""

    user_message = "Something went wrong. Please try again."
    reason = "other"

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.user_message = message
        super().__init__(self.user_message)


class NoStory(StoryError):
    user_message = "There is no story in this channel yet. Start one with `/write`."


class StoryBusy(StoryError):
    reason = "channel busy"
    user_message = "Too many people are waiting to write in this channel. Try again in a moment."


class NotModerator(StoryError):
    reason = "not moderator"
    user_message = "Only moderators (Manage Server, or a moderator role) can change settings."


class GuildOnly(StoryError):
    user_message = "This only works inside a server."


class EmptyText(StoryError):
    user_message = "Give me something to start from: the prompt is empty."


class TextTooLong(StoryError):
    """Member text longer than the server allows, counted in model tokens."""

    reason = "text too long"

    def __init__(self, what: str, tokens: int, limit: int) -> None:
        self.tokens, self.limit = tokens, limit
        super().__init__(
            f"Your {what} is {tokens} tokens long; the limit is {limit} tokens. "
            "Shorten it and try again."
        )


_WHO = {"user": "You have", "server": "This server has", "channel": "This channel has"}


class RateLimited(StoryError):
    """Too many parts in a window; ``retry_after`` is in seconds."""

    def __init__(self, scope: str, limit: int, retry_after: float, window_s: float = 60.0) -> None:
        self.scope, self.limit, self.retry_after = scope, limit, retry_after
        self.reason = f"{scope} rate" if scope != "cooldown" else "cooldown"
        wait = max(1, math.ceil(retry_after))
        again = f"Try again in {wait} second{'s' if wait != 1 else ''}."
        if scope == "cooldown":
            message = f"This channel rests {window_s:g} seconds after each part. {again}"
        else:
            who = _WHO.get(scope, "You have")
            parts = "part" if limit == 1 else "parts"
            message = f"{who} reached the limit of {limit} {parts} a minute. {again}"
        super().__init__(message)


class InvalidSetting(StoryError):
    """A settings change that names an unknown key or a value out of range."""

    reason = "invalid"


class BannedWord(StoryError):
    """Member text that holds one of the server's (or the host's) banned words."""

    reason = "banned word"

    def __init__(self, what: str, word: str) -> None:
        self.word = word
        super().__init__(
            f"Your {what} contains “{word}”, which is not allowed here. Rephrase it and try again."
        )


class ChannelOff(StoryError):
    """The bot is turned off in this channel."""

    reason = "channel off"


class StoryFull(StoryError):
    """The story has as many turns as the server allows."""

    reason = "story full"


class StorageError(StoryError):
    """The database failed while serving a member: nothing was changed by the failed step."""

    user_message = "I couldn't reach my story archive just now. Please try again in a moment."


class DatabaseBusy(StorageError):
    """Another process holds the database's write lock for longer than the wait allows."""

    user_message = "The story archive is busy right now. Please try again in a few seconds."


class DatabaseUnusable(Exception):
    """The database file cannot be opened as storybot's database: for the host, with its path."""

    def __init__(self, path: object, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"the database {path} cannot be used: {reason}")


class LimitsUnavailable(Exception):
    """The shared rate-limit storage (Redis) cannot be reached: for the host."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(
            f"the rate-limit storage {uri} cannot be reached ({reason}). Start it, or set "
            '[moderation] limits_storage = "memory://" to keep the limits in this process.'
        )


class ModelUnavailable(Exception):
    """The model cannot be loaded: for the host, with what to do about it."""


class PartNotShown(StoryError):
    """Discord refused the message that shows a part that is already stored."""

    user_message = (
        "Your part is written and saved, but Discord would not let me show it here. "
        "See it with `/story show`; there is no need to write it again."
    )


class NotExplainable(StoryError):
    """The part asked about cannot be explained: gone, archived, another channel's, or unnoted."""


class NotAllowed(StoryError):
    """A move only its owner or a moderator may make, or a member without a role it needs."""

    reason = "not allowed"


class Locked(NotAllowed):
    """Only moderators may add to or change the story here."""

    reason = "locked"
    user_message = (
        "The story in this channel is locked: only moderators can add to it or change it. "
        "You can still read it with `/story show`."
    )


class StaleMove(StoryError):
    """A button or move that no longer applies: the story moved on. Nothing was changed."""
