"""The Discord objects the emulator holds, and their JSON payloads.

Tests build the world with :meth:`DiscordEmulator.add_guild` and the ``add_*``
methods here; members then act through :meth:`Member.slash`,
:meth:`Member.click`, :meth:`Member.autocomplete` and
:meth:`Member.submit_modal`.  Objects added after the bot connected are
announced over the gateway (GUILD_CREATE, CHANNEL_CREATE, GUILD_ROLE_CREATE,
GUILD_MEMBER_ADD).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import discord

from .clock import isoformat
from .limits import walk_components

if TYPE_CHECKING:
    from .interactions import Interaction
    from .server import DiscordEmulator

EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_EMBEDS = 1 << 2
ADMINISTRATOR = discord.Permissions(administrator=True).value
ALL_PERMISSIONS = discord.Permissions.all().value
SEND_PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True).value

DEFAULT_EVERYONE_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    use_application_commands=True,
    change_nickname=True,
    create_instant_invite=True,
    connect=True,
    speak=True,
).value
"""Roughly what a new Discord server grants ``@everyone`` (no moderation powers)."""

DEFAULT_BOT_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    read_message_history=True,
    use_external_emojis=True,
    use_application_commands=True,
).value
"""Permissions of the bot's managed role unless the test passes others."""

CHAT_INPUT = 1


class User:
    """A Discord user account (members wrap one)."""

    def __init__(self, id: int, name: str, *, bot: bool = False) -> None:
        self.id = id
        self.name = name
        self.bot = bot

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": None if self.bot else self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
        }

    def __repr__(self) -> str:
        return f"<User {self.name} id={self.id}>"


class Role:
    """A guild role; ``permissions`` is the raw permission integer."""

    def __init__(
        self,
        guild: Guild,
        id: int,
        name: str,
        permissions: int,
        position: int,
        *,
        bot_id: int | None = None,
    ) -> None:
        self.guild = guild
        self.id = id
        self.name = name
        self.permissions = permissions
        self.position = position
        self.bot_id = bot_id

    @property
    def mention(self) -> str:
        return "@everyone" if self.id == self.guild.id else f"<@&{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.bot_id is not None,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }
        if self.bot_id is not None:
            payload["tags"] = {"bot_id": str(self.bot_id)}
        return payload

    def __repr__(self) -> str:
        return f"<Role {self.name} id={self.id}>"


class Member:
    """A user's membership in a guild; the test drives interactions through it."""

    def __init__(self, guild: Guild, user: User, roles: Iterable[Role], joined_at: float) -> None:
        self.guild = guild
        self.user = user
        self.roles = list(roles)
        self.joined_at = joined_at

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def mention(self) -> str:
        return self.user.mention

    @property
    def permissions(self) -> int:
        """Guild-level permissions: @everyone + roles, everything for owner/administrator."""
        return self.guild.permissions_for(self)

    def to_payload(
        self, *, with_user: bool = True, with_permissions: bool = False
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "roles": [str(role.id) for role in self.roles],
            "joined_at": isoformat(self.joined_at),
            "nick": None,
            "avatar": None,
            "banner": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            payload["user"] = self.user.to_payload()
        if with_permissions:
            payload["permissions"] = str(self.permissions)
        return payload

    async def slash(self, channel: TextChannel, command: str, /, **options: Any) -> Interaction:
        """Invoke ``/command`` (``"group sub"`` for subcommands) with the given option values.

        Raises :class:`MissingPermissions` if the member may not use it, and
        :class:`UnknownCommand` / :class:`InvalidInteraction` for what a Discord
        client would not let the user send.
        """
        return await self.guild.emulator.interactions.slash(self, channel, command, options)

    async def autocomplete(
        self, channel: TextChannel, command: str, /, *, focused: str, value: Any, **options: Any
    ) -> Interaction:
        """Type ``value`` into option ``focused`` of ``command``; ``options`` are filled so far.

        (An already-filled option literally named ``focused`` or ``value`` cannot be passed.)
        """
        return await self.guild.emulator.interactions.autocomplete(
            self, channel, command, focused, value, options
        )

    async def click(
        self, message: Message, custom_id: str, /, *, values: list[str] | None = None
    ) -> Interaction:
        """Press the button (or choose ``values`` in the select) ``custom_id`` on ``message``."""
        return await self.guild.emulator.interactions.click(self, message, custom_id, values)

    async def submit_modal(self, interaction: Interaction, /, **values: str) -> Interaction:
        """Submit the modal the bot answered ``interaction`` with; ``values`` by custom_id."""
        return await self.guild.emulator.interactions.submit_modal(self, interaction, values)

    def __repr__(self) -> str:
        return f"<Member {self.name} id={self.id} guild={self.guild.name!r}>"


class TextChannel:
    """A guild text channel; ``messages`` lists its live messages, ephemeral ones included."""

    def __init__(
        self, guild: Guild, id: int, name: str, position: int, *, topic: str | None, nsfw: bool
    ) -> None:
        self.guild = guild
        self.id = id
        self.name = name
        self.position = position
        self.topic = topic
        self.nsfw = nsfw
        self.messages: list[Message] = []

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    @property
    def public_messages(self) -> list[Message]:
        """Messages everybody in the channel sees (not ephemeral)."""
        return [message for message in self.messages if not message.ephemeral]

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "topic": self.topic,
            "nsfw": self.nsfw,
            "last_message_id": str(self.messages[-1].id) if self.messages else None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def __repr__(self) -> str:
        return f"<TextChannel #{self.name} id={self.id}>"


class Guild:
    """A guild with an owner, an ``@everyone`` role and the bot as a member."""

    def __init__(
        self,
        emulator: DiscordEmulator,
        id: int,
        name: str,
        *,
        owner_name: str,
        everyone_permissions: int,
        bot_user: User,
        bot_permissions: int,
    ) -> None:
        self.emulator = emulator
        self.id = id
        self.name = name
        self.roles: dict[int, Role] = {}
        self.channels: dict[int, TextChannel] = {}
        self.members: dict[int, Member] = {}
        self._command_overrides: dict[str, set[int]] = {}
        self.everyone = self._new_role("@everyone", everyone_permissions, id=id)
        self.owner = self._join(User(emulator.snowflakes.next(), owner_name), [])
        bot_role = self._new_role(bot_user.name, bot_permissions, bot_id=bot_user.id)
        self.bot_member = self._join(bot_user, [bot_role])

    # -- building the guild ------------------------------------------------------------

    def add_text_channel(
        self, name: str, *, topic: str | None = None, nsfw: bool = False
    ) -> TextChannel:
        channel = TextChannel(
            self, self.emulator.snowflakes.next(), name, len(self.channels), topic=topic, nsfw=nsfw
        )
        self.channels[channel.id] = channel
        self.emulator.gateway.dispatch(
            "CHANNEL_CREATE", channel.to_payload(), intent=discord.Intents.guilds.flag
        )
        return channel

    def add_role(self, name: str, *, permissions: int = 0) -> Role:
        """A role with raw ``permissions`` (``discord.Permissions(manage_guild=True).value``)."""
        role = self._new_role(name, permissions)
        self.emulator.gateway.dispatch(
            "GUILD_ROLE_CREATE",
            {"guild_id": str(self.id), "role": role.to_payload()},
            intent=discord.Intents.guilds.flag,
        )
        return role

    def add_member(
        self, name: str, *, roles: Iterable[Role] = (), permissions: int | None = None
    ) -> Member:
        """A human member.  ``permissions`` is a shortcut that gives them a personal role."""
        roles = list(roles)
        if permissions is not None:
            roles.append(self.add_role(f"{name}-permissions", permissions=permissions))
        user = User(self.emulator.snowflakes.next(), name)
        member = self._join(user, roles)
        self.emulator.gateway.dispatch(
            "GUILD_MEMBER_ADD",
            {"guild_id": str(self.id), **member.to_payload()},
            intent=discord.Intents.members.flag,
        )
        return member

    def allow_command(self, command: str, target: Member | Role) -> None:
        """Integration override: ``target`` may use ``command`` despite its default permissions."""
        self._command_overrides.setdefault(command, set()).add(target.id)

    def _new_role(
        self, name: str, permissions: int, *, id: int | None = None, bot_id: int | None = None
    ) -> Role:
        role = Role(
            self,
            id or self.emulator.snowflakes.next(),
            name,
            permissions,
            len(self.roles),
            bot_id=bot_id,
        )
        self.roles[role.id] = role
        return role

    def _join(self, user: User, roles: list[Role]) -> Member:
        unknown = [role for role in roles if self.roles.get(role.id) is not role]
        if unknown:
            raise ValueError(f"roles {unknown} do not belong to guild {self.name!r}")
        member = Member(self, user, roles, self.emulator.clock.time())
        self.members[member.id] = member
        return member

    # -- permissions ---------------------------------------------------------------------

    def permissions_for(self, member: Member) -> int:
        if member.id == self.owner.id:
            return ALL_PERMISSIONS
        value = self.everyone.permissions
        for role in member.roles:
            value |= role.permissions
        return ALL_PERMISSIONS if value & ADMINISTRATOR else value

    def may_use(self, member: Member, command: Command) -> bool:
        """Discord's rule for ``default_member_permissions`` plus integration overrides."""
        required = command.default_member_permissions
        if required is None:
            return True
        overrides = self._command_overrides.get(command.name, set())
        if {member.id, self.everyone.id, *(role.id for role in member.roles)} & overrides:
            return True
        granted = self.permissions_for(member)
        if granted & ADMINISTRATOR:
            return True
        return required != 0 and granted & required == required

    # -- payloads ------------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        """The full GUILD_CREATE payload."""
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner.id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "features": [],
            "roles": [role.to_payload() for role in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [channel.to_payload() for channel in self.channels.values()],
            "threads": [],
            "members": [member.to_payload() for member in self.members.values()],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "joined_at": isoformat(self.bot_member.joined_at),
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }

    def __repr__(self) -> str:
        return f"<Guild {self.name!r} id={self.id}>"


class StoredFile:
    """A file the bot uploaded; ``data`` holds its bytes."""

    def __init__(
        self,
        id: int,
        filename: str,
        data: bytes,
        content_type: str,
        description: str | None,
        url: str,
    ) -> None:
        self.id = id
        self.filename = filename
        self.data = data
        self.content_type = content_type
        self.description = description
        self.url = url

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            payload["description"] = self.description
        return payload

    def __repr__(self) -> str:
        return f"<StoredFile {self.filename} {self.size} bytes>"


class Message:
    """A message as stored: what the bot sent, after every edit.

    ``revisions`` keeps the earlier states (dicts of content/embeds/components/flags).
    """

    def __init__(
        self,
        id: int,
        channel: TextChannel,
        author: User,
        created_at: float,
        *,
        type: int = 0,
        application_id: int | None = None,
        interaction_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.channel = channel
        self.author = author
        self.created_at = created_at
        self.type = type
        self.application_id = application_id
        self.interaction_metadata = interaction_metadata
        self.content = ""
        self.embeds: list[dict[str, Any]] = []
        self.components: list[dict[str, Any]] = []
        self.flags = 0
        self.tts = False
        self.attachments: list[StoredFile] = []
        self.allowed_mentions: dict[str, Any] | None = None
        self.edited_at: float | None = None
        self.deleted = False
        self.revisions: list[dict[str, Any]] = []

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """Still the "Bot is thinking…" placeholder of a deferred response."""
        return bool(self.flags & LOADING)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if c.get("custom_id")]

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        return next(
            (c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None
        )

    def fill(self, payload: dict[str, Any], files: list[StoredFile]) -> None:
        """Set the initial content from a create payload."""
        self.content = payload.get("content") or ""
        self.embeds = [_normalise_embed(embed) for embed in payload.get("embeds") or []]
        self.components = copy.deepcopy(payload.get("components") or [])
        self.flags = payload.get("flags") or 0
        self.tts = bool(payload.get("tts"))
        self.attachments = list(files)
        self.allowed_mentions = payload.get("allowed_mentions")

    def edit(self, payload: dict[str, Any], files: list[StoredFile], at: float) -> None:
        """Apply an edit payload (absent keys stay as they are) and clear the loading state."""
        self.revisions.append(self.snapshot())
        if "content" in payload:
            self.content = payload["content"] or ""
        if "embeds" in payload:
            self.embeds = [_normalise_embed(embed) for embed in payload["embeds"] or []]
        if "components" in payload:
            self.components = copy.deepcopy(payload["components"] or [])
        if "allowed_mentions" in payload:
            self.allowed_mentions = payload["allowed_mentions"]
        if "flags" in payload:
            self.flags = (self.flags & ~SUPPRESS_EMBEDS) | (
                (payload["flags"] or 0) & SUPPRESS_EMBEDS
            )
        if "attachments" in payload:
            kept = {str(entry.get("id")) for entry in payload["attachments"] or []}
            self.attachments = [file for file in self.attachments if str(file.id) in kept]
        self.attachments += files
        if self.loading:
            self.flags &= ~LOADING
        else:
            self.edited_at = at

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "content": self.content,
                "embeds": self.embeds,
                "components": self.components,
                "flags": self.flags,
            }
        )

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel.id),
            "author": self.author.to_payload(),
            "content": self.content,
            "timestamp": isoformat(self.created_at),
            "edited_timestamp": isoformat(self.edited_at) if self.edited_at else None,
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [file.to_payload() for file in self.attachments],
            "embeds": copy.deepcopy(self.embeds),
            "components": copy.deepcopy(self.components),
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
        }
        if self.application_id is not None:
            payload["webhook_id"] = str(self.application_id)
            payload["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            payload["interaction_metadata"] = copy.deepcopy(self.interaction_metadata)
        return payload

    def __repr__(self) -> str:
        flags = " ephemeral" if self.ephemeral else ""
        return f"<Message id={self.id}{flags} content={self.content[:40]!r}>"


def _normalise_embed(embed: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich", **copy.deepcopy(embed)}


class Command:
    """An application command as synced by the bot (``data`` is what it sent)."""

    def __init__(
        self, id: int, application_id: int, guild_id: int | None, data: dict[str, Any]
    ) -> None:
        self.id = id
        self.application_id = application_id
        self.guild_id = guild_id
        self.data = copy.deepcopy(data)

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def type(self) -> int:
        return self.data.get("type", CHAT_INPUT)

    @property
    def options(self) -> list[dict[str, Any]]:
        return self.data.get("options") or []

    @property
    def default_member_permissions(self) -> int | None:
        value = self.data.get("default_member_permissions")
        return None if value is None else int(value)

    def to_payload(self) -> dict[str, Any]:
        payload = {
            "type": CHAT_INPUT,
            "description": "",
            "options": [],
            "default_member_permissions": None,
            "nsfw": False,
            **copy.deepcopy(self.data),
            "id": str(self.id),
            "application_id": str(self.application_id),
            "version": str(self.id),
        }
        if self.guild_id is not None:
            payload["guild_id"] = str(self.guild_id)
        return payload

    def __repr__(self) -> str:
        scope = f"guild={self.guild_id}" if self.guild_id else "global"
        return f"<Command /{self.name} {scope} id={self.id}>"


class CommandStore:
    """The application commands the bot synced, global and per guild."""

    def __init__(self, emulator: DiscordEmulator) -> None:
        self._emulator = emulator
        self._scopes: dict[int | None, dict[tuple[int, str], Command]] = {None: {}}

    def overwrite(self, guild_id: int | None, payloads: list[dict[str, Any]]) -> list[Command]:
        """Bulk overwrite one scope; commands keep their id when their name survives."""
        old = self._scopes.get(guild_id, {})
        new: dict[tuple[int, str], Command] = {}
        for data in payloads:
            key = (data.get("type", CHAT_INPUT), data["name"])
            command_id = old[key].id if key in old else self._emulator.snowflakes.next()
            new[key] = Command(command_id, self._emulator.application_id, guild_id, data)
        self._scopes[guild_id] = new
        return list(new.values())

    def in_scope(self, guild: Guild | int | None = None) -> list[Command]:
        """Commands synced globally (``guild=None``) or to one guild."""
        return list(self._scopes.get(_guild_id(guild), {}).values())

    def get(
        self, name: str, guild: Guild | int | None = None, *, type: int = CHAT_INPUT
    ) -> Command | None:
        """A command of exactly this scope, or ``None``."""
        return self._scopes.get(_guild_id(guild), {}).get((type, name))

    def visible_in(self, guild: Guild, name: str, *, type: int = CHAT_INPUT) -> Command | None:
        """What ``/name`` means in ``guild``: the guild command, else the global one."""
        return self.get(name, guild, type=type) or self.get(name, None, type=type)


def _guild_id(guild: Guild | int | None) -> int | None:
    return guild.id if isinstance(guild, Guild) else guild
