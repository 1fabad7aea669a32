"""/settings and /stats: moderators run storytelling in their server.

Discord shows these commands to members with Manage Server only (``default_permissions``); a
server's admins can show them to its moderator roles too (Server Settings → Integrations). The
service checks again on every call, counting the server's moderator roles.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import StoryBot
from bot.cogs.moves import pressed
from bot.cogs.story import MODE_CHOICES, actor_of
from bot.errors import StoryError
from bot.render import safe
from bot.service import BannedChange, HistoryPage, SettingChange, SettingsView, Stats
from bot.service.moderation import BANNED_KEY
from bot.settings import TOPICS, SettingSpec
from bot.store import SERVER_WIDE
from bot.story import MODES

ORIGIN = {"host": "host default", "mode": "mode default", "server": "server", "channel": "channel"}
REASONS = {
    "user rate": "member limit",
    "server rate": "server limit",
    "channel rate": "channel limit",
    "cooldown": "cooldown",
    "banned word": "banned word",
    "channel off": "bot off in channel",
    "locked": "locked story",
    "not allowed": "role needed",
    "story full": "story full",
    "queue full": "writer busy",
    "channel busy": "channel busy",
    "timeout": "took too long",
}
EMBED_FIELD = 1024


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(
    commands.GroupCog, group_name="settings", group_description="How the bot writes here"
):
    """Moderators only: Discord hides the group from others, and the service checks again."""

    banned = app_commands.Group(name="banned", description="Words the bot must never write")

    def __init__(self, bot: StoryBot) -> None:
        self.bot = bot
        super().__init__()

    # -- show, set, reset ------------------------------------------------------------------------

    @app_commands.command(name="show")
    @app_commands.describe(mode="Show the values for this writing mode (default: the channel's)")
    @app_commands.choices(mode=MODE_CHOICES)
    async def show(self, interaction: discord.Interaction, mode: str | None = None) -> None:
        """Show the settings in force in this channel and where each comes from."""
        view = await self.bot.service.settings(actor_of(self.bot, interaction), mode)
        await interaction.response.send_message(embed=settings_embed(view, mode), ephemeral=True)

    @app_commands.command(name="set")
    @app_commands.describe(
        key="The setting to change",
        value="The new value (suggestions appear as you type)",
        scope="The whole server (default) or one channel",
        channel="The channel, when the scope is a channel (default: this one)",
    )
    async def set_(
        self,
        interaction: discord.Interaction,
        key: str,
        value: app_commands.Range[str, 1, 100],
        scope: Literal["server", "channel"] = "server",
        channel: discord.TextChannel | discord.Thread | None = None,
    ) -> None:
        """Change one setting for this server or one channel."""
        if channel is not None:
            scope = "channel"
        change = await self.bot.service.set_setting(
            actor_of(self.bot, interaction), key, value, scope, channel and channel.id
        )
        old = "unset" if change.old is None else change.spec.show(change.old)
        await interaction.response.send_message(
            f"`{change.key}` for {_where(change)}: {old} → **{change.spec.show(change.new)}**.",
            ephemeral=True,
        )

    @app_commands.command(name="reset")
    @app_commands.describe(
        key="The setting to reset",
        scope="The whole server (default) or one channel",
        channel="The channel, when the scope is a channel (default: this one)",
    )
    async def reset(
        self,
        interaction: discord.Interaction,
        key: str,
        scope: Literal["server", "channel"] = "server",
        channel: discord.TextChannel | discord.Thread | None = None,
    ) -> None:
        """Go back to the default for one setting."""
        if channel is not None:
            scope = "channel"
        change = await self.bot.service.set_setting(
            actor_of(self.bot, interaction), key, None, scope, channel and channel.id
        )
        await interaction.response.send_message(
            f"`{change.key}` reset for {_where(change)}; it is now "
            f"**{change.spec.show(change.effective)}**.",
            ephemeral=True,
        )

    @set_.autocomplete("key")
    @reset.autocomplete("key")
    async def key_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Each setting with its value here and what it takes."""
        try:
            view = await self.bot.service.settings(actor_of(self.bot, interaction))
            values = view.resolved.values
        except StoryError:
            values = {}
        typed = current.strip().lower()
        return [
            app_commands.Choice(name=_key_label(spec, values.get(key)), value=key)
            for key, spec in self.bot.service.specs.items()
            if typed in key
        ][:25]

    @set_.autocomplete("value")
    async def value_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        """Values that fit the chosen setting: on/off, modes, the server's roles, or the range."""
        spec = self.bot.service.specs.get(str(interaction.namespace.key or "").lower())
        if spec is None:
            return []
        if spec.kind == "flag":
            return [app_commands.Choice(name=v, value=v) for v in ("on", "off")]
        if spec.kind == "mode":
            return [
                app_commands.Choice(name=f"{m.name}: {m.description}", value=m.name)
                for m in MODES.values()
                if current.lower() in m.name
            ]
        if spec.kind == "modes":
            return _adding(current, [(m, m) for m in MODES], "all")
        if spec.kind == "roles":
            roles = interaction.guild.roles if interaction.guild else []
            named = [(f"@{r.name}", f"<@&{r.id}>") for r in roles if not r.is_default()]
            return _adding(current, named, "everyone")
        shown = current.strip() or "value"
        return [app_commands.Choice(name=f"{shown} — {spec.range_text()}"[:100], value=current)]

    # -- banned words ----------------------------------------------------------------------------

    @banned.command(name="add")
    @app_commands.describe(words="Words or phrases, separated by commas")
    async def banned_add(
        self, interaction: discord.Interaction, words: app_commands.Range[str, 1, 1000]
    ) -> None:
        """Ban words or phrases: refused in prompts and lines, never written by the bot."""
        change = await self.bot.service.ban(actor_of(self.bot, interaction), words)
        await _answer_banned(interaction, change, "Banned", "Already banned")

    @banned.command(name="remove")
    @app_commands.describe(words="Words or phrases to allow again, separated by commas")
    async def banned_remove(
        self, interaction: discord.Interaction, words: app_commands.Range[str, 1, 1000]
    ) -> None:
        """Allow banned words or phrases again."""
        change = await self.bot.service.unban(actor_of(self.bot, interaction), words)
        await _answer_banned(interaction, change, "Allowed again", "Not banned")

    @banned_remove.autocomplete("words")
    async def banned_choices(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        try:
            view = await self.bot.service.settings(actor_of(self.bot, interaction))
        except StoryError:
            return []
        return _adding(current, [(w, w) for w in view.banned], None)

    @banned.command(name="list")
    async def banned_list(self, interaction: discord.Interaction) -> None:
        """The words and phrases banned here (the server's and the host's)."""
        view = await self.bot.service.settings(actor_of(self.bot, interaction))
        embed = discord.Embed(title="Banned words", colour=discord.Colour.dark_red())
        embed.add_field(name=f"This server ({len(view.banned)})", value=_listed(view.banned))
        if view.host_banned:
            embed.add_field(
                name=f"Everywhere, set by the host ({len(view.host_banned)})",
                value=_listed(view.host_banned),
            )
        embed.set_footer(text="/settings banned add or remove: words or phrases, with commas")
        await interaction.response.send_message(embed=embed, ephemeral=True)

    # -- history ---------------------------------------------------------------------------------

    @app_commands.command(name="history")
    @app_commands.describe(key="Only this setting (or banned_words)")
    async def history(self, interaction: discord.Interaction, key: str | None = None) -> None:
        """Who changed which setting, when, from what to what."""
        await self.send_history(interaction, key, 1, first=True)

    @history.autocomplete("key")
    async def history_keys(
        self, interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        keys = [*self.bot.service.specs, BANNED_KEY]
        return [app_commands.Choice(name=k, value=k) for k in keys if current.lower() in k][:25]

    async def send_history(
        self, interaction: discord.Interaction, key: str | None, page: int, first: bool
    ) -> None:
        listed = await self.bot.service.history(actor_of(self.bot, interaction), key, page)
        embed = history_embed(listed, self.bot.service.specs)
        view = discord.ui.View(timeout=None)
        k = listed.key or ""
        view.add_item(HistoryButton(listed.page - 1, k, disabled=listed.page == 1, label="‹"))
        view.add_item(
            HistoryButton(listed.page + 1, k, disabled=listed.page == listed.pages, label="›")
        )
        if first:
            await interaction.response.send_message(embed=embed, view=view, ephemeral=True)
        else:
            await interaction.response.edit_message(embed=embed, view=view)


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=r"storybot:history:(?P<page>[0-9]+):(?P<key>[a-z_]*)",
):
    """‹ › through `/settings history`."""

    def __init__(self, page: int, key: str, disabled: bool = False, label: str = "›") -> None:
        self.page, self.key = max(page, 1), key
        super().__init__(
            discord.ui.Button(
                label=label, disabled=disabled, custom_id=f"storybot:history:{self.page}:{key}"
            )
        )

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]) -> HistoryButton:
        return cls(int(match["page"]), match["key"])

    async def callback(self, interaction: discord.Interaction) -> None:
        cog = interaction.client.get_cog("SettingsCog")
        await pressed(
            interaction,
            lambda: cog.send_history(interaction, self.key or None, self.page, False),
            "history page",
        )


class StatsCog(commands.Cog):
    """/stats: how busy the bot is in this server."""

    def __init__(self, bot: StoryBot) -> None:
        self.bot = bot

    @app_commands.command(name="stats")
    @app_commands.guild_only()
    @app_commands.default_permissions(manage_guild=True)
    @app_commands.describe(period="Over the last hour (default) or day")
    async def stats(
        self, interaction: discord.Interaction, period: Literal["hour", "day"] = "hour"
    ) -> None:
        """Parts written and refused here, tokens, and how long members waited."""
        stats = await self.bot.service.stats(actor_of(self.bot, interaction), period)
        await interaction.response.send_message(embed=stats_embed(stats), ephemeral=True)


# -- what moderators read -----------------------------------------------------------------------


def settings_embed(view: SettingsView, mode: str | None) -> discord.Embed:
    """Every setting in force here, grouped by topic, with where each value comes from."""
    embed = discord.Embed(
        title="Settings",
        description=f"In force in <#{view.scope_channel}>"
        + (f", {mode} mode" if mode else "")
        + ". `/settings set` changes one; suggestions show each range.",
        colour=discord.Colour.blurple(),
    )
    for topic in TOPICS:
        lines = [
            f"`{key}` **{spec.show(view.resolved.values[key])}** · "
            f"{ORIGIN[view.resolved.origins[key]]}"
            for key, spec in view.specs.items()
            if spec.topic == topic
        ]
        embed.add_field(name=topic, value=_fit("\n".join(lines)), inline=False)
    banned = f"{len(view.banned)} here" + (
        f", {len(view.host_banned)} everywhere (host)" if view.host_banned else ""
    )
    embed.add_field(name="Banned words", value=f"{banned} · `/settings banned list`", inline=False)
    return embed


def history_embed(listed: HistoryPage, specs: dict[str, SettingSpec]) -> discord.Embed:
    lines = []
    for entry in listed.entries:
        when = int(datetime.fromisoformat(entry.changed_at.replace("Z", "+00:00")).timestamp())
        where = "server" if entry.channel_id == SERVER_WIDE else f"<#{entry.channel_id}>"
        if entry.key == BANNED_KEY:
            change = (
                f"banned “{safe(entry.new_value)}”"
                if entry.new_value is not None
                else f"allowed “{safe(str(entry.old_value))}” again"
            )
        else:
            spec = specs.get(entry.key)
            show = spec.show if spec is not None else str
            old = "unset" if entry.old_value is None else show(entry.old_value)
            new = "reset" if entry.new_value is None else show(entry.new_value)
            change = f"`{entry.key}` ({where}): {old} → **{new}**"
        lines.append(f"<t:{when}:R> <@{entry.changed_by}> {change}")
    title = "Settings history" + (f": {listed.key}" if listed.key else "")
    return discord.Embed(
        title=title,
        description=_fit("\n".join(lines) or "*No changes yet.*", 4000),
        colour=discord.Colour.blurple(),
    ).set_footer(text=f"page {listed.page} of {listed.pages} · newest first")


def stats_embed(stats: Stats) -> discord.Embed:
    embed = discord.Embed(title=f"storybot, the last {stats.period}", colour=discord.Colour.green())
    embed.add_field(name="Parts written", value=f"{stats.written} of {stats.requests} requests")
    embed.add_field(name="Tokens written", value=f"{stats.tokens:,}")
    refused = "\n".join(f"{REASONS.get(r, r)}: {n}" for r, n in stats.refusals.items())
    embed.add_field(name="Refused", value=refused or "none", inline=False)
    embed.add_field(name="Wait (median / 95th)", value=_pair(stats.wait_p50, stats.wait_p95))
    embed.add_field(name="Writing (median / 95th)", value=_pair(stats.write_p50, stats.write_p95))
    return embed


def _pair(median: float | None, p95: float | None) -> str:
    return "—" if median is None else f"{median:.1f} s / {p95:.1f} s"


def _key_label(spec: SettingSpec, value: object) -> str:
    now = "" if value is None else f" = {spec.show(value)}"
    return f"{spec.key}{now} · {spec.range_text()}"[:100]


def _where(change: SettingChange) -> str:
    return "this server" if change.channel_id == SERVER_WIDE else f"<#{change.channel_id}>"


def _adding(
    current: str, options: list[tuple[str, str]], everything: str | None
) -> list[app_commands.Choice[str]]:
    """Choices for a comma-separated list: what is typed so far, plus one more option."""
    done, _, typing = current.rpartition(",")
    done = done.strip()
    choices = []
    if everything and not done:
        choices.append(app_commands.Choice(name=everything, value=everything))
    for name, value in options:
        if typing.strip().lower() in name.lower() and value not in done:
            joined = f"{done}, {value}" if done else value
            if len(joined) <= 100:
                choices.append(
                    app_commands.Choice(
                        name=(f"{done}, {name}" if done else name)[:100], value=joined
                    )
                )
    return choices[:25]


async def _answer_banned(
    interaction: discord.Interaction, change: BannedChange, changed: str, unchanged: str
) -> None:
    lines = [
        f"{label}: {_words(words)}."
        for label, words in ((changed, change.changed), (unchanged, change.unchanged))
        if words
    ]
    lines.append(f"This server bans {len(change.banned)} words and phrases.")
    await interaction.response.send_message(" ".join(lines), ephemeral=True)


def _words(words: list[str]) -> str:
    return ", ".join(f"“{safe(w)}”" for w in words)


def _listed(words) -> str:
    return _fit(", ".join(safe(w) for w in words) or "none")


def _fit(text: str, limit: int = EMBED_FIELD) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def setup(bot: StoryBot) -> None:
    bot.add_dynamic_items(HistoryButton)
    await bot.add_cog(SettingsCog(bot))
    await bot.add_cog(StatsCog(bot))
