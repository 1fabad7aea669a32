"""/settings show|set|reset: moderators tune how the bot writes in their server."""

from __future__ import annotations

from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import StoryBot
from bot.cogs.story import MODE_CHOICES, actor_of
from bot.config import CapsConfig
from bot.settings import setting_specs

KEY_CHOICES = [
    app_commands.Choice(name=f"{s.key}: {s.description}"[:100], value=s.key)
    for s in setting_specs(CapsConfig()).values()
]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(
    commands.GroupCog, group_name="settings", group_description="How the bot writes here"
):
    """Moderators only: Discord hides the group from others, and the service checks again."""

    def __init__(self, bot: StoryBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name="show")
    @app_commands.describe(mode="Show the values for this writing mode (default: story)")
    @app_commands.choices(mode=MODE_CHOICES)
    async def show(self, interaction: discord.Interaction, mode: str | None = None) -> None:
        """Show the settings in force in this channel and where each comes from."""
        view = await self.bot.service.settings(actor_of(self.bot, interaction), mode)
        lines = [f"**Settings in <#{view.scope_channel}>** ({mode or 'story'} mode)"]
        for key, spec in view.specs.items():
            value, origin = view.resolved.values[key], view.resolved.origins[key]
            lines.append(
                f"`{key}` = **{value:g}** ({origin}) — {spec.description}; {spec.range_text()}"
            )
        await interaction.response.send_message("\n".join(lines), ephemeral=True)

    @app_commands.command(name="set")
    @app_commands.describe(
        key="The setting to change",
        value="The new value",
        scope="The whole server (default) or only this channel",
    )
    @app_commands.choices(key=KEY_CHOICES)
    async def set_(
        self,
        interaction: discord.Interaction,
        key: str,
        value: app_commands.Range[str, 1, 20],
        scope: Literal["server", "channel"] = "server",
    ) -> None:
        """Change one setting for this server or this channel."""
        change = await self.bot.service.set_setting(
            actor_of(self.bot, interaction), key, value, scope
        )
        where = "this server" if scope == "server" else f"<#{interaction.channel_id}>"
        old = "unset" if change.old is None else f"{change.old:g}"
        await interaction.response.send_message(
            f"`{change.key}` for {where}: {old} → **{change.new:g}**.", ephemeral=True
        )

    @app_commands.command(name="reset")
    @app_commands.describe(
        key="The setting to reset", scope="The whole server (default) or only this channel"
    )
    @app_commands.choices(key=KEY_CHOICES)
    async def reset(
        self,
        interaction: discord.Interaction,
        key: str,
        scope: Literal["server", "channel"] = "server",
    ) -> None:
        """Go back to the default for one setting."""
        change = await self.bot.service.set_setting(
            actor_of(self.bot, interaction), key, None, scope
        )
        await interaction.response.send_message(
            f"`{change.key}` reset; it is now **{change.effective:g}**.", ephemeral=True
        )


async def setup(bot: StoryBot) -> None:
    await bot.add_cog(SettingsCog(bot))
