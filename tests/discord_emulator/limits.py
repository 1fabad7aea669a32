"""The payload limits Discord enforces, as checks that return :class:`Problem` lists.

Only limits a bot can plausibly hit are modelled; see the package docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
EMBED_TEXT_LIMITS = {"title": 256, "description": 4096}
MAX_EMBED_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048
MAX_AUTHOR_NAME = 256

MAX_ACTION_ROWS = 5
MAX_ROW_WIDTH = 5
MAX_V2_COMPONENTS = 40
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_SELECT_OPTIONS = 25
MAX_OPTION_TEXT = 100

MAX_CHOICES = 25
MAX_CHOICE_TEXT = 100
MAX_MODAL_TITLE = 45
MAX_MODAL_COMPONENTS = 5
MAX_TEXT_INPUT = 4000

MAX_COMMANDS = 100
MAX_OPTIONS = 25
MAX_DESCRIPTION = 100
COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")

COMPONENTS_V2_FLAG = 1 << 15
ACTION_ROW, BUTTON, STRING_SELECT = 1, 2, 3
SELECT_TYPES = {3, 5, 6, 7, 8}
LINK_STYLE, PREMIUM_STYLE = 5, 6
SUBCOMMAND, SUBCOMMAND_GROUP = 1, 2


@dataclass(frozen=True)
class Problem:
    """One rejected part of a payload: violation code, dotted field path, text."""

    code: str
    field: str
    text: str


def check_message(payload: dict[str, Any], *, has_files: bool, creating: bool) -> list[Problem]:
    """Content, embed and component limits; ``creating`` adds the empty-message rule."""
    problems: list[Problem] = []
    content = payload.get("content") or ""
    if len(content) > MAX_CONTENT:
        problems.append(
            Problem(
                "content_too_long",
                "content",
                f"Must be {MAX_CONTENT} or fewer in length (got {len(content)}).",
            )
        )
    embeds = payload.get("embeds") or []
    problems += _check_embeds(embeds)
    components = payload.get("components") or []
    problems += check_components(components, payload.get("flags") or 0)
    if creating and not (
        content
        or embeds
        or components
        or has_files
        or payload.get("poll")
        or payload.get("sticker_ids")
    ):
        problems.append(Problem("empty_message", "content", "Cannot send an empty message"))
    return problems


def _check_embeds(embeds: list[dict[str, Any]]) -> list[Problem]:
    problems: list[Problem] = []
    if len(embeds) > MAX_EMBEDS:
        problems.append(
            Problem("embed_limits", "embeds", f"Must be {MAX_EMBEDS} or fewer in length.")
        )
    total = 0
    for index, embed in enumerate(embeds):
        here = f"embeds.{index}"
        sized: list[tuple[str, str, int]] = [
            (f"{here}.{key}", embed.get(key) or "", limit)
            for key, limit in EMBED_TEXT_LIMITS.items()
        ]
        sized.append(
            (f"{here}.footer.text", (embed.get("footer") or {}).get("text") or "", MAX_FOOTER)
        )
        sized.append(
            (f"{here}.author.name", (embed.get("author") or {}).get("name") or "", MAX_AUTHOR_NAME)
        )
        fields = embed.get("fields") or []
        if len(fields) > MAX_EMBED_FIELDS:
            problems.append(
                Problem(
                    "embed_limits",
                    f"{here}.fields",
                    f"Must be {MAX_EMBED_FIELDS} or fewer in length.",
                )
            )
        for number, field in enumerate(fields):
            for key, limit in (("name", MAX_FIELD_NAME), ("value", MAX_FIELD_VALUE)):
                text = field.get(key) or ""
                if not text:
                    problems.append(
                        Problem(
                            "embed_limits",
                            f"{here}.fields.{number}.{key}",
                            "This field is required",
                        )
                    )
                sized.append((f"{here}.fields.{number}.{key}", text, limit))
        for path, text, limit in sized:
            total += len(text)
            if len(text) > limit:
                problems.append(
                    Problem(
                        "embed_limits",
                        path,
                        f"Must be {limit} or fewer in length (got {len(text)}).",
                    )
                )
    if total > MAX_EMBED_TOTAL:
        problems.append(
            Problem(
                "embed_limits",
                "embeds",
                f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL} (got {total}).",
            )
        )
    return problems


def check_components(components: list[dict[str, Any]], flags: int) -> list[Problem]:
    """Action-row layout and component sizes (components v2 only gets a count check)."""
    if flags & COMPONENTS_V2_FLAG:
        count = sum(1 for _ in walk_components(components))
        if count > MAX_V2_COMPONENTS:
            return [
                Problem(
                    "component_limits",
                    "components",
                    f"Must be {MAX_V2_COMPONENTS} or fewer in total.",
                )
            ]
        return []
    problems: list[Problem] = []
    if len(components) > MAX_ACTION_ROWS:
        problems.append(
            Problem(
                "component_limits", "components", f"Must be {MAX_ACTION_ROWS} or fewer in length."
            )
        )
    seen: set[str] = set()
    for index, row in enumerate(components):
        here = f"components.{index}"
        if row.get("type") != ACTION_ROW:
            problems.append(
                Problem("component_limits", here, "Top-level components must be action rows.")
            )
            continue
        children = row.get("components") or []
        has_select = any(child.get("type") in SELECT_TYPES for child in children)
        if not children or len(children) > MAX_ROW_WIDTH or (has_select and len(children) > 1):
            problems.append(
                Problem(
                    "component_limits",
                    here,
                    "An action row holds 1-5 buttons or exactly one select.",
                )
            )
        for number, child in enumerate(children):
            problems += _check_component(child, f"{here}.components.{number}", seen)
    return problems


def _check_component(component: dict[str, Any], here: str, seen: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    custom_id = component.get("custom_id")
    needs_custom_id = component.get("type") in SELECT_TYPES or (
        component.get("type") == BUTTON
        and component.get("style") not in (LINK_STYLE, PREMIUM_STYLE)
    )
    if needs_custom_id and not custom_id:
        problems.append(Problem("component_limits", f"{here}.custom_id", "This field is required"))
    if custom_id:
        if len(custom_id) > MAX_CUSTOM_ID:
            problems.append(
                Problem(
                    "component_limits",
                    f"{here}.custom_id",
                    f"Must be {MAX_CUSTOM_ID} or fewer in length.",
                )
            )
        if custom_id in seen:
            problems.append(
                Problem(
                    "component_limits", f"{here}.custom_id", f"Duplicate custom_id {custom_id!r}."
                )
            )
        seen.add(custom_id)
    if len(component.get("label") or "") > MAX_BUTTON_LABEL:
        problems.append(
            Problem(
                "component_limits",
                f"{here}.label",
                f"Must be {MAX_BUTTON_LABEL} or fewer in length.",
            )
        )
    if component.get("type") == STRING_SELECT:
        options = component.get("options") or []
        if not 1 <= len(options) <= MAX_SELECT_OPTIONS:
            problems.append(
                Problem(
                    "component_limits",
                    f"{here}.options",
                    f"Must have 1-{MAX_SELECT_OPTIONS} options.",
                )
            )
        for number, option in enumerate(options):
            for key in ("label", "value", "description"):
                if len(option.get(key) or "") > MAX_OPTION_TEXT:
                    problems.append(
                        Problem(
                            "component_limits",
                            f"{here}.options.{number}.{key}",
                            f"Must be {MAX_OPTION_TEXT} or fewer in length.",
                        )
                    )
    return problems


def walk_components(components: list[dict[str, Any]]):
    """Yield every component in a (possibly nested, components v2) component tree."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("component", "accessory"):
            if component.get(key):
                yield from walk_components([component[key]])


def check_choices(choices: list[dict[str, Any]]) -> list[Problem]:
    problems: list[Problem] = []
    if len(choices) > MAX_CHOICES:
        problems.append(
            Problem("choice_limits", "data.choices", f"Must be {MAX_CHOICES} or fewer in length.")
        )
    for index, choice in enumerate(choices):
        name, value = choice.get("name") or "", choice.get("value")
        if not 1 <= len(name) <= MAX_CHOICE_TEXT:
            problems.append(
                Problem(
                    "choice_limits",
                    f"data.choices.{index}.name",
                    f"Must be 1-{MAX_CHOICE_TEXT} long.",
                )
            )
        if isinstance(value, str) and len(value) > MAX_CHOICE_TEXT:
            problems.append(
                Problem(
                    "choice_limits",
                    f"data.choices.{index}.value",
                    f"Must be {MAX_CHOICE_TEXT} or fewer in length.",
                )
            )
    return problems


def check_modal(data: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if not 1 <= len(data.get("title") or "") <= MAX_MODAL_TITLE:
        problems.append(Problem("modal_limits", "data.title", f"Must be 1-{MAX_MODAL_TITLE} long."))
    if not 1 <= len(data.get("custom_id") or "") <= MAX_CUSTOM_ID:
        problems.append(
            Problem("modal_limits", "data.custom_id", f"Must be 1-{MAX_CUSTOM_ID} long.")
        )
    if not 1 <= len(data.get("components") or []) <= MAX_MODAL_COMPONENTS:
        problems.append(
            Problem(
                "modal_limits", "data.components", f"Must have 1-{MAX_MODAL_COMPONENTS} components."
            )
        )
    for n, row in enumerate(data.get("components") or []):
        inputs = row.get("components") or ([row["component"]] if "component" in row else [])
        for m, field in enumerate(inputs):
            if field.get("type") == 4:  # a text input
                problems += _check_text_input(field, f"data.components.{n}.components.{m}")
    return problems


def _check_text_input(field: dict[str, Any], where: str) -> list[Problem]:
    """Discord's limits on a modal's text input: label 45, placeholder 100, lengths 0-4000, and
    a prefilled value within them."""
    problems = []
    high = field.get("max_length", MAX_TEXT_INPUT)
    checks = (
        ("label", len(field.get("label") or "") <= MAX_MODAL_TITLE, f"at most {MAX_MODAL_TITLE}"),
        ("placeholder", len(field.get("placeholder") or "") <= 100, "at most 100"),
        ("custom_id", 1 <= len(field.get("custom_id") or "") <= MAX_CUSTOM_ID, "1-100"),
        ("max_length", 1 <= high <= MAX_TEXT_INPUT, f"1-{MAX_TEXT_INPUT}"),
        ("min_length", 0 <= field.get("min_length", 0) <= MAX_TEXT_INPUT, f"0-{MAX_TEXT_INPUT}"),
        ("value", len(field.get("value") or "") <= min(high, MAX_TEXT_INPUT), "within max_length"),
    )
    for key, ok, allowed in checks:
        if not ok:
            problems.append(Problem("modal_limits", f"{where}.{key}", f"Must be {allowed}."))
    return problems


def check_commands(commands: list[dict[str, Any]]) -> list[Problem]:
    """What Discord checks on a bulk overwrite of application commands."""
    problems: list[Problem] = []
    seen: set[tuple[int, str]] = set()
    chat_input = 0
    for index, command in enumerate(commands):
        kind = command.get("type", 1)
        name = command.get("name") or ""
        here = str(index)
        if kind == 1:
            chat_input += 1
            problems += _check_name(name, f"{here}.name")
            problems += _check_description(command.get("description"), f"{here}.description")
            problems += _check_options(command.get("options") or [], f"{here}.options")
        elif not 1 <= len(name) <= 32:
            problems.append(Problem("invalid_command", f"{here}.name", "Must be 1-32 long."))
        if (kind, name) in seen:
            problems.append(
                Problem("invalid_command", f"{here}.name", f"Duplicate command name {name!r}.")
            )
        seen.add((kind, name))
    if chat_input > MAX_COMMANDS:
        problems.append(
            Problem(
                "invalid_command",
                "commands",
                f"Must be {MAX_COMMANDS} or fewer chat input commands.",
            )
        )
    return problems


def _check_name(name: str, here: str) -> list[Problem]:
    if COMMAND_NAME.match(name) and name == name.lower():
        return []
    return [Problem("invalid_command", here, f"Invalid command/option name {name!r}.")]


def _check_description(description: str | None, here: str) -> list[Problem]:
    if 1 <= len(description or "") <= MAX_DESCRIPTION:
        return []
    return [Problem("invalid_command", here, f"Must be 1-{MAX_DESCRIPTION} long.")]


def _check_options(options: list[dict[str, Any]], here: str) -> list[Problem]:
    problems: list[Problem] = []
    if len(options) > MAX_OPTIONS:
        problems.append(
            Problem("invalid_command", here, f"Must be {MAX_OPTIONS} or fewer in length.")
        )
    optional_seen = False
    for index, option in enumerate(options):
        path = f"{here}.{index}"
        problems += _check_name(option.get("name") or "", f"{path}.name")
        problems += _check_description(option.get("description"), f"{path}.description")
        if option.get("type") in (SUBCOMMAND, SUBCOMMAND_GROUP):
            problems += _check_options(option.get("options") or [], f"{path}.options")
            continue
        if option.get("required"):
            if optional_seen:
                problems.append(
                    Problem(
                        "invalid_command",
                        path,
                        "Required options must be placed before optional options.",
                    )
                )
        else:
            optional_seen = True
        choices = option.get("choices") or []
        if len(choices) > MAX_CHOICES:
            problems.append(
                Problem(
                    "invalid_command",
                    f"{path}.choices",
                    f"Must be {MAX_CHOICES} or fewer in length.",
                )
            )
        if choices and option.get("autocomplete"):
            problems.append(
                Problem("invalid_command", path, "Autocomplete and choices cannot both be set.")
            )
    return problems


def form_error(problems: list[Problem]) -> ApiError:
    """The 400 response Discord sends for these problems (and the violations to record)."""
    violations = [(problem.code, f"{problem.field}: {problem.text}") for problem in problems]
    if all(problem.code == "empty_message" for problem in problems):
        return ApiError(400, 50006, "Cannot send an empty message", violations=violations)
    errors: dict[str, Any] = {}
    for problem in problems:
        node = errors
        for part in problem.field.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append(
            {"code": "BASE_TYPE_INVALID", "message": problem.text}
        )
    return ApiError(400, 50035, "Invalid Form Body", violations=violations, errors=errors)
