"""Exceptions raised to tests, violation records, and Discord-style API errors.

Violation codes (``Violation.code``):

=========================  ==========================================================
``unknown_route``          the bot called a REST route the emulator does not model
``unauthorized``           missing/wrong ``Authorization: Bot <token>`` header
``unknown_application``    application id in the path is not the bot's
``unknown_guild``          guild id unknown (or bot not a member)
``unknown_channel``        channel id unknown
``unknown_message``        message id unknown, deleted, or not reachable this way
``unknown_interaction``    interaction id/token unknown
``interaction_timeout``    initial response arrived after the acknowledgement window
``already_acknowledged``   a second initial response to the same interaction
``not_acknowledged``       follow-up/edit through the token before the initial response
``invalid_response_type``  callback type not valid for this interaction type
``token_expired``          interaction token used after its lifetime (15 min)
``never_acknowledged``     an interaction got no initial response before ``close()``
``never_answered``         a deferred ("thinking…") response was never completed
``content_too_long``       message content over 2000 characters
``embed_limits``           embed count/size limits exceeded
``empty_message``          message without content, embeds, components or files
``component_limits``       component structure or size limits exceeded
``choice_limits``          autocomplete choices over the limits
``modal_limits``           modal over the limits
``invalid_command``        a synced command definition Discord would reject
``missing_permissions``    the bot lacks a permission the REST call needs
``gateway_protocol``       the bot broke the gateway protocol (bad op, intents, …)
``emulator_bug``           a REST handler crashed (traceback in the message)
=========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Violation:
    """Something the bot did that real Discord would reject."""

    code: str
    message: str
    time: float
    request: Any = None
    """The :class:`~.rest.RecordedRequest` that caused it, if it came over REST."""

    def __str__(self) -> str:
        where = f" [{self.request.method} {self.request.path}]" if self.request else ""
        return f"{self.code}: {self.message}{where}"


class EmulatorError(Exception):
    """Base class for errors the emulator raises into test code."""


class MissingPermissions(EmulatorError):
    """The member may not use the command (Discord would not even show it)."""


class UnknownCommand(EmulatorError):
    """No synced command (or subcommand) with that name exists for the guild."""


class InvalidInteraction(EmulatorError, ValueError):
    """The test asked for an interaction a Discord client could not produce."""


class BotNotConnected(EmulatorError):
    """An interaction was requested while no gateway session exists."""


class InteractionFailed(EmulatorError):
    """The emulator refused the bot's initial response (e.g. it came too late)."""


class EmulatorTimeout(AssertionError):
    """The bot did not do what the test waited for in time."""


class EmulatorViolations(AssertionError):
    """Raised at teardown when violations were recorded and not consumed by the test."""

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = list(violations)
        lines = "\n".join(f"  - {violation}" for violation in self.violations)
        super().__init__(f"the bot did {len(self.violations)} thing(s) Discord rejects:\n{lines}")


class ApiError(Exception):
    """A Discord-style error response; raised inside REST handlers.

    ``violations`` are ``(code, text)`` pairs the dispatcher records alongside
    the request that caused them.
    """

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        violations: Iterable[tuple[str, str]] = (),
        errors: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.violations = list(violations)
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body

    @classmethod
    def violation(cls, status: int, code: int, message: str, violation: str, text: str) -> ApiError:
        """An error response that also records one violation."""
        return cls(status, code, message, violations=[(violation, text)])
