"""The settings moderators may change, their ranges under the host's caps, and how they resolve.

A value resolves from the most specific place that sets it: this channel, then the server, then the
writing mode's default (for the sampling keys), then the host's ``[generation]`` defaults (or the
setting's own default where the host has none). Stored values are clamped to the current caps, so a
host who lowers a cap lowers every server at once.

Kinds of value: a number (``number``, ``integer``), on/off (``flag``), one writing mode (``mode``),
a set of writing modes (``modes``) and a set of Discord roles (``roles``, stored as ids).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import CapsConfig, GenerationConfig
from bot.errors import InvalidSetting
from bot.story import DEFAULT_MODE, MODES, Mode

Origin = Literal["host", "mode", "server", "channel"]
Scope = Literal["server", "channel"]
Kind = Literal["number", "integer", "flag", "mode", "modes", "roles"]

TOPICS = ("Writing", "Pace", "Access")
ON = ("on", "true", "yes", "1", "enabled", "enable")
OFF = ("off", "false", "no", "0", "disabled", "disable")
EVERYONE = ("everyone", "none", "all", "-", "")
ROLE = re.compile(r"<@&(\d{15,21})>|(\d{15,21})")


@dataclass(frozen=True)
class SettingSpec:
    """One setting: what it means, its kind of value and what is allowed."""

    key: str
    topic: str
    description: str
    kind: Kind
    default: Any = None  # used where the host's [generation] has no such key
    minimum: float = 0.0
    maximum: float = 0.0
    smallest: float = 0.0  # the least value above zero that still makes sense
    scopes: tuple[Scope, ...] = ("server", "channel")
    zero: str = ""  # what 0 means, when it means something special ("no limit")
    empty: str = "everyone"  # what an empty set of roles means

    @property
    def integer(self) -> bool:
        return self.kind == "integer"

    def parse(self, raw: str | float) -> Any:
        """Turn a typed-in value into a stored one, or explain what is allowed."""
        if self.kind in ("number", "integer"):
            return self._number(raw)
        text = str(raw).strip()
        if self.kind == "flag":
            if text.lower() in ON:
                return True
            if text.lower() in OFF:
                return False
            raise InvalidSetting(f"{_quoted(raw)} is not on or off; {self._allowed()}.")
        if self.kind == "mode":
            return self._modes(text, single=True)[0]
        if self.kind == "modes":
            return self._modes(text, single=False)
        return self._roles(text)

    def clamp(self, value: Any) -> Any:
        """A stored value made valid under today's caps and modes."""
        if self.kind in ("number", "integer"):
            value = min(max(value, self.minimum), self.maximum)
            return int(value) if self.integer else float(value)
        if self.kind == "flag":
            return bool(value)
        if self.kind == "mode":
            return value if value in MODES else DEFAULT_MODE
        if self.kind == "modes":
            kept = [m for m in MODES if m in value]
            return kept or list(MODES)
        return sorted({int(v) for v in value})

    def range_text(self) -> str:
        """What values are allowed, in words."""
        if self.kind == "flag":
            return "on or off"
        if self.kind == "mode":
            return f"one of {', '.join(MODES)}"
        if self.kind == "modes":
            return f"one or more of {', '.join(MODES)}, separated by commas"
        if self.kind == "roles":
            return f"roles (mentions or ids, separated by commas), or `{self.empty}`"
        kind = "a whole number" if self.integer else "a number"
        if self.smallest and self.minimum == 0:
            return f"0, or {kind} from {_num(self.smallest)} to {_num(self.maximum)}"
        text = f"{kind} from {_num(self.minimum)} to {_num(self.maximum)}"
        return f"{text} (0: {self.zero})" if self.zero and self.minimum == 0 else text

    def show(self, value: Any) -> str:
        """A value as moderators read it (roles as mentions; they never ping in the replies)."""
        if self.kind in ("number", "integer"):
            shown = _num(value)
            return f"{shown} ({self.zero})" if value == 0 and self.zero else shown
        if self.kind == "flag":
            return "on" if value else "off"
        if self.kind == "mode":
            return str(value)
        if self.kind == "modes":
            return "all" if set(value) >= set(MODES) else ", ".join(value)
        return ", ".join(f"<@&{v}>" for v in value) if value else self.empty

    def _allowed(self) -> str:
        return f"`{self.key}` takes {self.range_text()}"

    def _number(self, raw: str | float) -> float | int:
        shown = _quoted(raw)
        try:
            value = float(raw) + 0.0  # + 0.0 turns -0 into 0
        except (TypeError, ValueError, OverflowError):
            raise InvalidSetting(f"{shown} is not a number; {self._allowed()}.") from None
        if not math.isfinite(value):
            raise InvalidSetting(f"{shown} is not a number; {self._allowed()}.")
        if self.integer:
            if not value.is_integer():
                raise InvalidSetting(f"{shown} is not a whole number; {self._allowed()}.")
            value = int(value)
        if not self.minimum <= value <= self.maximum:
            raise InvalidSetting(f"{shown} is out of range; {self._allowed()}.")
        if 0 < value < self.smallest:
            raise InvalidSetting(f"{shown} is too small to mean anything; {self._allowed()}.")
        return value

    def _modes(self, text: str, single: bool) -> list[str]:
        names = [n.strip().lower() for n in re.split(r"[,\s]+", text) if n.strip()]
        if text.strip().lower() == "all" and not single:
            return list(MODES)
        unknown = [n for n in names if n not in MODES]
        if unknown or not names:
            what = _quoted(unknown[0]) if unknown else "Nothing"
            raise InvalidSetting(f"{what} is not a writing mode; {self._allowed()}.")
        if single and len(names) > 1:
            raise InvalidSetting(f"Choose one mode; {self._allowed()}.")
        return [m for m in MODES if m in names]

    def _roles(self, text: str) -> list[int]:
        if text.lower() in EVERYONE:
            return []
        leftover = ROLE.sub("", text).replace(",", " ").strip()
        if leftover:
            raise InvalidSetting(
                f"{_quoted(leftover)} is not a role; {self._allowed()}. "
                "Pick roles from the list as you type."
            )
        return sorted({int(a or b) for a, b in ROLE.findall(text)})


def setting_specs(caps: CapsConfig) -> dict[str, SettingSpec]:
    """Every setting a moderator may change, bounded by the host's caps."""
    server_only: tuple[Scope, ...] = ("server",)
    specs = (
        # Writing: how the model writes.
        SettingSpec("temperature", "Writing", "randomness of the writing; 0 always picks the likeliest word",
                    "number", minimum=0.0, maximum=caps.max_temperature, smallest=0.05),
        SettingSpec("top_p", "Writing", "nucleus sampling: keep the likeliest words up to this share",
                    "number", minimum=0.01, maximum=1.0),
        SettingSpec("top_k", "Writing", "keep only this many of the likeliest words",
                    "integer", minimum=0, maximum=1000, zero="no limit"),
        SettingSpec("repetition_penalty", "Writing", "how strongly words already used are avoided",
                    "number", minimum=1.0, maximum=caps.max_repetition_penalty),
        SettingSpec("no_repeat_ngram_size", "Writing",
                    "no phrase of this many tokens is written twice",
                    "integer", minimum=0, maximum=10, zero="off"),
        SettingSpec("max_new_tokens", "Writing", "how many tokens the bot writes per part",
                    "integer", minimum=1, maximum=caps.max_new_tokens),
        SettingSpec("mode", "Writing", "the writing mode `/write` uses when none is chosen",
                    "mode", default=DEFAULT_MODE),
        SettingSpec("modes", "Writing", "the writing modes members may choose",
                    "modes", default=list(MODES)),
        # Pace: how often.
        SettingSpec("user_rate", "Pace", "parts each member may ask for per minute",
                    "integer", minimum=1, maximum=caps.max_user_rate),
        SettingSpec("channel_rate", "Pace", "parts one channel may have written per minute",
                    "integer", minimum=1, maximum=caps.max_guild_rate),
        SettingSpec("cooldown_s", "Pace", "seconds a channel rests after each part",
                    "integer", minimum=0, maximum=3600, zero="none"),
        SettingSpec("max_turns", "Pace", "the most turns a story may have before `/write` starts anew",
                    "integer", minimum=0, maximum=10_000, zero="no limit"),
        # Access: where and who.
        SettingSpec("enabled", "Access", "whether the bot writes here (off for the server and on "
                    "for some channels makes an allow list)", "flag", default=True),
        SettingSpec("write_roles", "Access", "who may start stories with `/write`",
                    "roles", default=[], scopes=server_only),
        SettingSpec("locked", "Access", "only moderators may add to or change the story",
                    "flag", default=False),
        SettingSpec("moderator_roles", "Access", "roles that moderate storybot here, besides "
                    "Manage Server", "roles", default=[], scopes=server_only, empty="none"),
    )  # fmt: skip
    return {s.key: s for s in specs}


@dataclass(frozen=True)
class Resolved:
    """The settings in force in one channel, and where each value came from."""

    values: dict[str, Any]
    origins: dict[str, Origin]

    def __getitem__(self, key: str) -> Any:
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
    values: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for key, spec in specs.items():
        layers = (("channel", channel), ("server", server), ("mode", mode_defaults))
        for origin, layer in layers:
            if key in layer and (origin != "channel" or "channel" in spec.scopes):
                values[key], origins[key] = spec.clamp(layer[key]), origin
                break
        else:
            values[key], origins[key] = spec.clamp(getattr(host, key, spec.default)), "host"
    return Resolved(values, origins)


def settings_table(specs: Mapping[str, SettingSpec], host: GenerationConfig) -> str:
    """The Markdown table of every setting, for the README (a test keeps the two in step)."""
    rows = [
        "| Setting | Topic | What it does | Values | Default | Scope |",
        "|---|---|---|---|---|---|",
    ]
    for spec in specs.values():
        default = spec.show(spec.clamp(getattr(host, spec.key, spec.default)))
        scope = " or ".join(spec.scopes)
        rows.append(
            f"| `{spec.key}` | {spec.topic} | {spec.description} | {spec.range_text()} "
            f"| {default} | {scope} |"
        )
    return "\n".join(rows)


def _quoted(raw: object, limit: int = 20) -> str:
    """A typed-in value, short and inert, to quote back in a message."""
    try:
        text = str(raw).replace("`", "'")
    except ValueError:  # an int with more digits than Python will print
        return "That number"
    return f"`{text[:limit]}…`" if len(text) > limit else f"`{text}`"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
