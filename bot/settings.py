"""The settings moderators may change, their ranges under the host's caps, and how they resolve.

A value resolves from the most specific place that sets it: this channel, then the server, then the
writing mode's default (for the sampling keys), then the host's ``[generation]`` defaults. Stored
values are clamped to the current caps, so a host who lowers a cap lowers every server at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import CapsConfig, GenerationConfig
from bot.errors import InvalidSetting
from bot.story import Mode

Origin = Literal["host", "mode", "server", "channel"]


@dataclass(frozen=True)
class SettingSpec:
    """One setting: its type, allowed range and what it does."""

    key: str
    description: str
    integer: bool
    minimum: float
    maximum: float
    smallest: float = 0.0  # the least value above zero that still makes sense

    def parse(self, raw: str | float) -> float | int:
        """Turn a typed-in value into a number in range, or explain what is allowed."""
        allowed = f"`{self.key}` takes {self.range_text()}"
        shown = _quoted(raw)
        try:
            value = float(raw) + 0.0  # + 0.0 turns -0 into 0
        except (TypeError, ValueError, OverflowError):
            raise InvalidSetting(f"{shown} is not a number; {allowed}.") from None
        if not math.isfinite(value):
            raise InvalidSetting(f"{shown} is not a number; {allowed}.")
        if self.integer:
            if not value.is_integer():
                raise InvalidSetting(f"{shown} is not a whole number; {allowed}.")
            value = int(value)
        if not self.minimum <= value <= self.maximum:
            raise InvalidSetting(f"{shown} is out of range; {allowed}.")
        if 0 < value < self.smallest:
            raise InvalidSetting(f"{shown} is too small to mean anything; {allowed}.")
        return value

    def clamp(self, value: Any) -> float | int:
        value = min(max(value, self.minimum), self.maximum)
        return int(value) if self.integer else float(value)

    def range_text(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.smallest and self.minimum == 0:
            return f"0, or {kind} from {_num(self.smallest)} to {_num(self.maximum)}"
        return f"{kind} from {_num(self.minimum)} to {_num(self.maximum)}"


def setting_specs(caps: CapsConfig) -> dict[str, SettingSpec]:
    """Every setting a moderator may change, bounded by the host's caps."""
    specs = (
        SettingSpec("temperature", "randomness of the writing; 0 always picks the likeliest word",
                    False, 0.0, caps.max_temperature, smallest=0.05),
        SettingSpec("top_p", "nucleus sampling: keep the likeliest words up to this share",
                    False, 0.01, 1.0),
        SettingSpec("max_new_tokens", "how many tokens the bot writes per turn",
                    True, 1, caps.max_new_tokens),
        SettingSpec("repetition_penalty", "how strongly words already used are avoided",
                    False, 1.0, caps.max_repetition_penalty),
        SettingSpec("user_rate", "generations each member may start per minute",
                    True, 1, caps.max_user_rate),
    )  # fmt: skip
    return {s.key: s for s in specs}


@dataclass(frozen=True)
class Resolved:
    """The settings in force in one channel, and where each value came from."""

    values: dict[str, float | int]
    origins: dict[str, Origin]

    def __getitem__(self, key: str) -> float | int:
        return self.values[key]


def resolve(
    specs: Mapping[str, SettingSpec],
    host: GenerationConfig,
    mode: Mode,
    server: Mapping[str, Any],
    channel: Mapping[str, Any],
) -> Resolved:
    """Layer channel over server over mode over host defaults."""
    mode_defaults = {
        key: value
        for key, value in (("temperature", mode.temperature), ("top_p", mode.top_p))
        if value is not None
    }
    values: dict[str, float | int] = {}
    origins: dict[str, Origin] = {}
    for key, spec in specs.items():
        for origin, layer in (("channel", channel), ("server", server), ("mode", mode_defaults)):
            if key in layer:
                values[key], origins[key] = spec.clamp(layer[key]), origin
                break
        else:
            values[key], origins[key] = spec.clamp(getattr(host, key)), "host"
    return Resolved(values, origins)


def _quoted(raw: object, limit: int = 20) -> str:
    """A typed-in value, short and inert, to quote back in a message."""
    try:
        text = str(raw).replace("`", "'")
    except ValueError:  # an int with more digits than Python will print
        return "That number"
    return f"`{text[:limit]}…`" if len(text) > limit else f"`{text}`"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
