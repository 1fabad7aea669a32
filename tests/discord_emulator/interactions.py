"""Interactions: building INTERACTION_CREATE payloads and tracking how the bot answers them.

:class:`Interactions` turns test calls (``member.slash(...)`` etc.) into the
payloads a Discord client would cause, after the checks the client and
Discord make (command exists, member may use it, option values valid).

:class:`Interaction` is both the handle the test awaits and the server-side
state the REST routes update: initial response (with the acknowledgement
window), ``@original``, follow-ups, and the token lifetime.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import (
    ApiError,
    BotNotConnected,
    EmulatorError,
    EmulatorTimeout,
    InteractionFailed,
    InvalidInteraction,
    MissingPermissions,
    UnknownCommand,
)
from .limits import (
    ACTION_ROW,
    BUTTON,
    SELECT_TYPES,
    STRING_SELECT,
    check_choices,
    check_message,
    check_modal,
    form_error,
)
from .models import (
    EPHEMERAL,
    LOADING,
    Command,
    Member,
    Message,
    Role,
    StoredFile,
    TextChannel,
    User,
)

if TYPE_CHECKING:
    from .server import DiscordEmulator

# Interaction types.
APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
# Interaction callback (response) types.
CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE = 4, 5, 6, 7
AUTOCOMPLETE_RESULT, MODAL = 8, 9
VALID_CALLBACKS = {
    APPLICATION_COMMAND: {CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, MODAL},
    MESSAGE_COMPONENT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
        MODAL,
    },
    AUTOCOMPLETE: {AUTOCOMPLETE_RESULT},
    MODAL_SUBMIT: {
        CHANNEL_MESSAGE,
        DEFERRED_CHANNEL_MESSAGE,
        DEFERRED_UPDATE_MESSAGE,
        UPDATE_MESSAGE,
    },
}
# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER = 6, 7, 8, 9, 10
# Modal component types (the others come from limits).
TEXT_INPUT, LABEL = 4, 18
# Message types.
DEFAULT_MESSAGE, CHAT_INPUT_COMMAND_MESSAGE = 0, 20

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True)
class InitialResponse:
    """The bot's accepted initial response (the interaction callback)."""

    type: int
    data: dict[str, Any]
    time: float
    files: list[StoredFile] = field(default_factory=list)

    @property
    def choices(self) -> list[dict[str, Any]]:
        """Autocomplete choices (type 8)."""
        return self.data.get("choices") or []


class Interaction:
    """One interaction the emulator dispatched.

    Attributes a test reads: ``id``, ``token``, ``type``, ``label`` (e.g.
    ``"/settings set"``), ``command_name``, ``member``, ``channel``, ``payload`` (the
    INTERACTION_CREATE data), ``initial`` (:class:`InitialResponse` or
    ``None``), ``original`` and ``followups`` (:class:`Message`), ``messages``
    and ``failure`` (why the emulator refused the initial response).
    """

    def __init__(
        self,
        emulator: DiscordEmulator,
        payload: dict[str, Any],
        *,
        label: str,
        member: Member,
        channel: TextChannel,
        command_name: str | None = None,
        source_message: Message | None = None,
    ) -> None:
        self._emu = emulator
        self.payload = payload
        self.id = int(payload["id"])
        self.token: str = payload["token"]
        self.type: int = payload["type"]
        self.label = label
        self.member = member
        self.channel = channel
        self.command_name = command_name
        self.source_message = source_message
        self.dispatched_at = emulator.clock.time()
        self.initial: InitialResponse | None = None
        self.original: Message | None = None
        self.followups: list[Message] = []
        self.failure: str | None = None
        self.answered = False
        """True once the user sees an answer: immediate, or the edit/follow-up after a deferral."""

    # -- what the test reads ---------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        """The ``@original`` message (if any) then the follow-ups, in order."""
        return ([self.original] if self.original else []) + self.followups

    async def response(self, timeout: float = 5.0) -> InitialResponse:
        """Wait for the accepted initial response."""
        await self._wait(lambda: self.initial is not None, "an initial response", timeout)
        assert self.initial is not None
        return self.initial

    async def wait_done(self, timeout: float = 5.0) -> Interaction:
        """Wait until the bot answered: an immediate reply/update/choices/modal, or, after a
        deferral (type 5 or 6), the first ``@original`` edit, follow-up or deletion."""
        await self._wait(lambda: self.answered, "a final answer", timeout)
        return self

    async def final(self, timeout: float = 5.0) -> Message:
        """Wait until answered and return the last message that belongs to the interaction."""
        await self.wait_done(timeout)
        if not self.messages:
            raise EmulatorError(
                f"{self.label} was answered without a message (response type {self.initial.type})"
            )
        return self.messages[-1]

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[Message]:
        """Wait until ``count`` of the messages (``@original`` included) are past "thinking…"."""
        await self._wait(
            lambda: len([m for m in self.messages if not m.loading]) >= count,
            f"{count} message(s)",
            timeout,
        )
        return self.messages

    async def choices(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The autocomplete choices the bot returned."""
        initial = await self.response(timeout)
        if initial.type != AUTOCOMPLETE_RESULT:
            raise EmulatorError(
                f"{self.label} was answered with type {initial.type}, not autocomplete choices"
            )
        return initial.choices

    async def _wait(self, predicate: Any, what: str, timeout: float) -> None:
        finished = await self._emu.signal.wait_for(
            lambda: predicate() or self.failure is not None, timeout
        )
        if self.failure is not None:
            raise InteractionFailed(f"{self.label}: {self.failure}")
        if not finished:
            raise EmulatorTimeout(self._diagnose(f"no {what} within {timeout}s"))

    def _diagnose(self, problem: str) -> str:
        state = (
            f"initial response type {self.initial.type}" if self.initial else "no initial response"
        )
        requests = (
            "\n".join(f"    {r.method} {r.path} -> {r.status}" for r in self._emu.transcript[-5:])
            or "    (none)"
        )
        violations = "\n".join(f"    {v}" for v in self._emu.violations) or "    (none)"
        return (
            f"{self.label} by {self.member.name}: {problem} ({state}).\n"
            f"  last bot requests:\n{requests}\n  violations:\n{violations}\n"
            "  (an exception in the bot's handler is logged by discord.py, see captured logs)"
        )

    # -- REST-side state changes -----------------------------------------------------------

    def acknowledge(
        self, kind: int, data: dict[str, Any], files: list[StoredFile], now: float
    ) -> dict[str, Any]:
        """Accept (or refuse with :class:`ApiError`) the initial response; return the reply body."""
        if self.initial is not None:
            raise ApiError.violation(
                400,
                40060,
                "Interaction has already been acknowledged.",
                "already_acknowledged",
                f"second initial response (type {kind}) to {self.label}",
            )
        if self.failure is not None:
            raise ApiError(404, 10062, "Unknown interaction")
        delay = now - self.dispatched_at
        if delay > self._emu.ack_window:
            self.failure = (
                f"initial response came {delay:.2f}s after dispatch (limit {self._emu.ack_window}s)"
            )
            self._emu.signal.changed()
            raise ApiError.violation(
                404,
                10062,
                "Unknown interaction",
                "interaction_timeout",
                f"{self.label}: {self.failure}",
            )
        if kind not in VALID_CALLBACKS[self.type] or (
            kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE) and self.source_message is None
        ):
            raise ApiError.violation(
                400,
                50035,
                "Invalid Form Body",
                "invalid_response_type",
                f"response type {kind} is not valid for {self.label} "
                f"(interaction type {self.type})",
            )
        problems = []
        if kind in (CHANNEL_MESSAGE, UPDATE_MESSAGE):
            problems = check_message(data, has_files=bool(files), creating=kind == CHANNEL_MESSAGE)
        elif kind == AUTOCOMPLETE_RESULT:
            problems = check_choices(data.get("choices") or [])
        elif kind == MODAL:
            problems = check_modal(data)
        if problems:
            raise form_error(problems)

        self.initial = InitialResponse(kind, data, now, files)
        if kind == CHANNEL_MESSAGE:
            self.original = self._new_message(data, files)
        elif kind == DEFERRED_CHANNEL_MESSAGE:
            self.original = self._new_message(
                {"flags": (data.get("flags") or 0) & EPHEMERAL | LOADING}, []
            )
        elif kind in (DEFERRED_UPDATE_MESSAGE, UPDATE_MESSAGE):
            self.original = self.source_message
            if kind == UPDATE_MESSAGE:
                self.source_message.edit(data, files, now)
        self.answered = kind not in (DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE_MESSAGE)

        body: dict[str, Any] = {"interaction": {"id": str(self.id), "type": self.type}}
        if self.original is not None and kind != DEFERRED_UPDATE_MESSAGE:
            body["interaction"].update(
                response_message_id=str(self.original.id),
                response_message_loading=self.original.loading,
                response_message_ephemeral=self.original.ephemeral,
            )
            body["resource"] = {"type": kind, "message": self.original.to_payload()}
        return body

    def follow_up(self, payload: dict[str, Any], files: list[StoredFile], now: float) -> Message:
        """A follow-up.  The first one after a deferral replaces the "thinking…" placeholder."""
        self._check_webhook_access(now)
        problems = check_message(payload, has_files=bool(files), creating=True)
        if problems:
            raise form_error(problems)
        original = self.original
        if original is not None and original.loading and not original.deleted:
            original.edit(payload, files, now)
            message = original
        else:
            message = self._new_message(payload, files, followup=True)
            self.followups.append(message)
        self.answered = True
        return message

    def get_message(self, target: str, now: float) -> Message:
        self._check_webhook_access(now)
        return self._resolve(target)

    def edit_message(
        self, target: str, payload: dict[str, Any], files: list[StoredFile], now: float
    ) -> Message:
        self._check_webhook_access(now)
        message = self._resolve(target)
        problems = check_message(payload, has_files=bool(files), creating=False)
        if problems:
            raise form_error(problems)
        message.edit(payload, files, now)
        self.answered = True
        return message

    def delete_message(self, target: str, now: float) -> None:
        self._check_webhook_access(now)
        self._emu.delete_message(self._resolve(target))
        self.answered = True

    def _check_webhook_access(self, now: float) -> None:
        age = now - self.dispatched_at
        if age > self._emu.token_lifetime:
            raise ApiError.violation(
                401,
                50027,
                "Invalid Webhook Token",
                "token_expired",
                f"{self.label}: token used {age / 60:.1f} min after the interaction "
                f"(limit {self._emu.token_lifetime / 60:.0f} min)",
            )
        if self.initial is None:
            raise ApiError.violation(
                404,
                10015,
                "Unknown Webhook",
                "not_acknowledged",
                f"{self.label}: follow-up/edit before the initial response",
            )

    def _resolve(self, target: str) -> Message:
        if target == "@original":
            message = self.original
        else:
            message = next((m for m in self.messages if str(m.id) == target), None)
        if message is None or message.deleted:
            raise ApiError.violation(
                404,
                10008,
                "Unknown Message",
                "unknown_message",
                f"{self.label} has no message {target}",
            )
        return message

    def _new_message(
        self, payload: dict[str, Any], files: list[StoredFile], *, followup: bool = False
    ) -> Message:
        metadata: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "user": self.member.user.to_payload(),
            "authorizing_integration_owners": {"0": str(self.member.guild.id)},
        }
        if self.command_name is not None:
            metadata.update(name=self.command_name, command_type=1)
        if self.source_message is not None:
            metadata["interacted_message_id"] = str(self.source_message.id)
        if followup and self.original is not None:
            metadata["original_response_message_id"] = str(self.original.id)
        kind = (
            CHAT_INPUT_COMMAND_MESSAGE
            if self.type == APPLICATION_COMMAND and not followup
            else DEFAULT_MESSAGE
        )
        return self._emu.store_message(
            self.channel, payload, files, type=kind, interaction_metadata=metadata
        )

    def __repr__(self) -> str:
        state = f"initial={self.initial.type}" if self.initial else "unanswered"
        return f"<Interaction {self.label} id={self.id} {state} messages={len(self.messages)}>"


class Interactions:
    """Creates and dispatches interactions; looks them up for the REST routes."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self._emu = emulator
        self.all: list[Interaction] = []
        self._by_id: dict[int, Interaction] = {}
        self._by_token: dict[str, Interaction] = {}

    def get(self, interaction_id: int) -> Interaction | None:
        return self._by_id.get(interaction_id)

    def by_token(self, token: str) -> Interaction | None:
        return self._by_token.get(token)

    # -- what members do -------------------------------------------------------------------

    async def slash(
        self, member: Member, channel: TextChannel, name: str, options: dict[str, Any]
    ) -> Interaction:
        command, path, definitions = self._resolve_command(member, channel, name)
        missing = [d["name"] for d in definitions if d.get("required") and d["name"] not in options]
        if missing:
            raise InvalidInteraction(f"/{name}: required option(s) {missing} not given")
        resolved: dict[str, dict[str, Any]] = {}
        values = self._option_values(name, definitions, options, member, resolved)
        data = self._command_data(command, path, values, resolved)
        return self._dispatch(
            APPLICATION_COMMAND, member, channel, data, label=f"/{name}", command_name=name
        )

    async def autocomplete(
        self,
        member: Member,
        channel: TextChannel,
        name: str,
        focused: str,
        value: Any,
        options: dict[str, Any],
    ) -> Interaction:
        command, path, definitions = self._resolve_command(member, channel, name)
        definition = next((d for d in definitions if d["name"] == focused), None)
        if definition is None or not definition.get("autocomplete") or focused in options:
            raise InvalidInteraction(
                f"/{name}: option {focused!r} is not an autocomplete option to type into"
            )
        resolved: dict[str, dict[str, Any]] = {}
        values = self._option_values(name, definitions, options, member, resolved)
        values.append(
            {"type": definition["type"], "name": focused, "value": str(value), "focused": True}
        )
        data = self._command_data(command, path, values, resolved)
        return self._dispatch(
            AUTOCOMPLETE, member, channel, data, label=f"/{name} (autocomplete)", command_name=name
        )

    async def click(
        self, member: Member, message: Message, custom_id: str, values: list[str] | None
    ) -> Interaction:
        self._check_visible(member, message)
        component = message.find_component(custom_id)
        if component is None:
            raise InvalidInteraction(
                f"{message!r} has no component {custom_id!r}; it has {message.custom_ids}"
            )
        if component.get("disabled"):
            raise InvalidInteraction(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] == STRING_SELECT:
            data["values"] = self._select_values(component, values)
        elif component["type"] != BUTTON:
            raise InvalidInteraction(
                f"component type {component['type']} is not modelled "
                "(buttons and string selects are)"
            )
        elif values is not None:
            raise InvalidInteraction(f"{custom_id!r} is a button; it takes no values")
        return self._dispatch(
            MESSAGE_COMPONENT,
            member,
            message.channel,
            data,
            label=f"click {custom_id}",
            source_message=message,
        )

    async def submit_modal(
        self, member: Member, interaction: Interaction, values: dict[str, str]
    ) -> Interaction:
        initial = interaction.initial
        if initial is None or initial.type != MODAL:
            raise InvalidInteraction(f"{interaction.label} was not answered with a modal")
        remaining = dict(values)
        components = self._modal_components(initial.data.get("components") or [], remaining)
        if remaining:
            raise InvalidInteraction(f"the modal has no inputs {sorted(remaining)}")
        data = {"custom_id": initial.data["custom_id"], "components": components}
        return self._dispatch(
            MODAL_SUBMIT,
            member,
            interaction.channel,
            data,
            label=f"modal {initial.data['custom_id']}",
            source_message=interaction.source_message,
        )

    def unanswered_report(self) -> list[tuple[str, str]]:
        """Violations for interactions left unacknowledged or stuck "thinking…"."""
        report = []
        for interaction in self.all:
            if interaction.initial is None and interaction.failure is None:
                report.append(
                    ("never_acknowledged", f"{interaction.label} never got an initial response")
                )
            elif (
                interaction.original is not None
                and interaction.original.loading
                and not interaction.original.deleted
            ):
                report.append(
                    ("never_answered", f"{interaction.label} was deferred but never completed")
                )
        return report

    # -- building payloads ----------------------------------------------------------------

    def _resolve_command(
        self, member: Member, channel: TextChannel, name: str
    ) -> tuple[Command, list[dict[str, Any]], list[dict[str, Any]]]:
        """The command, the subcommand chain, and the leaf's option definitions."""
        if channel.guild is not member.guild:
            raise InvalidInteraction(f"{channel!r} is not in {member.guild!r}")
        top, *subcommands = name.split()
        command = self._emu.commands.visible_in(member.guild, top)
        if command is None:
            raise UnknownCommand(f"/{top} is not synced for {member.guild!r} (nor globally)")
        if not member.guild.may_use(member, command):
            raise MissingPermissions(
                f"{member.name} may not use /{top}: needs permissions "
                f"{command.default_member_permissions} (has {member.permissions}); "
                "use guild.allow_command() to model an integration override"
            )
        path: list[dict[str, Any]] = []
        definitions = command.options
        for part in subcommands:
            option = next(
                (
                    o
                    for o in definitions
                    if o["name"] == part and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)
                ),
                None,
            )
            if option is None:
                raise UnknownCommand(f"/{name}: no subcommand {part!r}")
            path.append(option)
            definitions = option.get("options") or []
        if any(d["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for d in definitions):
            choices = [d["name"] for d in definitions]
            raise InvalidInteraction(f"/{name} is a group; invoke one of its subcommands {choices}")
        return command, path, definitions

    def _option_values(
        self,
        name: str,
        definitions: list[dict[str, Any]],
        options: dict[str, Any],
        member: Member,
        resolved: dict[str, dict[str, Any]],
    ) -> list[dict[str, Any]]:
        by_name = {d["name"]: d for d in definitions}
        unknown = sorted(set(options) - set(by_name))
        if unknown:
            raise InvalidInteraction(
                f"/{name} has no option(s) {unknown}; it has {sorted(by_name)}"
            )
        return [
            {
                "type": by_name[key]["type"],
                "name": key,
                "value": self._convert(name, by_name[key], value, member, resolved),
            }
            for key, value in options.items()
        ]

    def _convert(
        self,
        name: str,
        definition: dict[str, Any],
        value: Any,
        member: Member,
        resolved: dict[str, dict[str, Any]],
    ) -> Any:
        kind, option = definition["type"], f"/{name} {definition['name']}"
        if kind == STRING:
            _expect(isinstance(value, str), option, "a str", value)
            _expect(
                definition.get("min_length", 0) <= len(value) <= definition.get("max_length", 6000),
                option,
                "a str of the allowed length",
                value,
            )
        elif kind in (INTEGER, NUMBER):
            wanted = int if kind == INTEGER else (int, float)
            _expect(
                isinstance(value, wanted) and not isinstance(value, bool), option, "a number", value
            )
            low, high = definition.get("min_value"), definition.get("max_value")
            _expect(
                (low is None or value >= low) and (high is None or value <= high),
                option,
                "in range",
                value,
            )
        elif kind == BOOLEAN:
            _expect(isinstance(value, bool), option, "a bool", value)
        elif kind in (USER, MENTIONABLE) and isinstance(value, Member | User):
            user = value.user if isinstance(value, Member) else value
            resolved.setdefault("users", {})[str(user.id)] = user.to_payload()
            if isinstance(value, Member):
                member_payload = value.to_payload(with_user=False, with_permissions=True)
                resolved.setdefault("members", {})[str(user.id)] = member_payload
            return str(user.id)
        elif kind in (ROLE, MENTIONABLE) and isinstance(value, Role):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_payload()
            return str(value.id)
        elif kind == CHANNEL and isinstance(value, TextChannel):
            _expect(
                0 in definition.get("channel_types", [0]),
                option,
                "a channel of the allowed types",
                value,
            )
            channel_payload = {**value.to_payload(), "permissions": str(member.permissions)}
            resolved.setdefault("channels", {})[str(value.id)] = channel_payload
            return str(value.id)
        else:
            raise InvalidInteraction(
                f"{option}: option type {kind} does not take {value!r} (or is not modelled)"
            )
        choices = definition.get("choices")
        if choices:
            _expect(value in [c["value"] for c in choices], option, "one of the choices", value)
        return value

    @staticmethod
    def _command_data(
        command: Command,
        path: list[dict[str, Any]],
        values: list[dict[str, Any]],
        resolved: dict[str, Any],
    ) -> dict[str, Any]:
        options = values
        for level in reversed(path):
            options = [{"type": level["type"], "name": level["name"], "options": options}]
        data: dict[str, Any] = {
            "id": str(command.id),
            "name": command.name,
            "type": command.type,
            "options": options,
        }
        if resolved:
            data["resolved"] = resolved
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        return data

    @staticmethod
    def _check_visible(member: Member, message: Message) -> None:
        if message.deleted:
            raise InvalidInteraction(f"{message!r} was deleted")
        invoker = (message.interaction_metadata or {}).get("user", {}).get("id")
        if message.ephemeral and invoker != str(member.id):
            raise InvalidInteraction(f"{message!r} is ephemeral; only its invoker can see it")

    @staticmethod
    def _select_values(component: dict[str, Any], values: list[str] | None) -> list[str]:
        if values is None:
            raise InvalidInteraction(f"select {component['custom_id']!r} needs values=[...]")
        allowed = [option["value"] for option in component.get("options") or []]
        low, high = component.get("min_values", 1), component.get("max_values", 1)
        if not low <= len(values) <= high or any(value not in allowed for value in values):
            raise InvalidInteraction(
                f"select {component['custom_id']!r} takes {low}-{high} of {allowed}, not {values}"
            )
        return list(values)

    def _modal_components(
        self, components: list[dict[str, Any]], values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Mirror the modal's layout with the submitted values (action rows and labels kept)."""
        submitted = []
        for component in components:
            kind, custom_id = component["type"], component.get("custom_id")
            if kind == ACTION_ROW:
                submitted.append(
                    {
                        "type": kind,
                        "components": self._modal_components(component["components"], values),
                    }
                )
            elif kind == LABEL:
                submitted.append(
                    {
                        "type": kind,
                        "component": self._modal_components([component["component"]], values)[0],
                    }
                )
            elif kind == TEXT_INPUT:
                value = values.pop(custom_id, component.get("value") or "")
                low, high = component.get("min_length", 0), component.get("max_length", 4000)
                wrong_length = bool(value) and not low <= len(value) <= high
                if wrong_length or (component.get("required", True) and not value):
                    raise InvalidInteraction(
                        f"modal input {custom_id!r} needs {low}-{high} characters, got {value!r}"
                    )
                submitted.append({"type": kind, "custom_id": custom_id, "value": value})
            elif kind in SELECT_TYPES:
                submitted.append(
                    {
                        "type": kind,
                        "custom_id": custom_id,
                        "values": list(values.pop(custom_id, [])),
                    }
                )
            else:
                submitted.append({"type": kind, "id": component.get("id")})
        return submitted

    def _dispatch(
        self,
        kind: int,
        member: Member,
        channel: TextChannel,
        data: dict[str, Any],
        *,
        label: str,
        command_name: str | None = None,
        source_message: Message | None = None,
    ) -> Interaction:
        emu = self._emu
        if emu.gateway.session is None:
            raise BotNotConnected(
                f"cannot send {label}: the bot has no gateway session (await emu.wait_ready())"
            )
        guild = member.guild
        payload: dict[str, Any] = {
            "id": str(emu.snowflakes.next()),
            "application_id": str(emu.application_id),
            "type": kind,
            "data": data,
            "token": secrets.token_urlsafe(48),
            "version": 1,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(channel.id),
            "channel": {**channel.to_payload(), "permissions": str(member.permissions)},
            "member": member.to_payload(with_permissions=True),
            "app_permissions": str(guild.bot_member.permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        }
        if source_message is not None:
            payload["message"] = source_message.to_payload()
        interaction = Interaction(
            emu,
            payload,
            label=label,
            member=member,
            channel=channel,
            command_name=command_name,
            source_message=source_message,
        )
        self.all.append(interaction)
        self._by_id[interaction.id] = interaction
        self._by_token[interaction.token] = interaction
        emu.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction


def _expect(ok: bool, option: str, wanted: str, value: Any) -> None:
    if not ok:
        raise InvalidInteraction(f"{option}: expected {wanted}, got {value!r}")
