"""Moderator settings: parsing typed-in values, ranges under the caps, and how layers resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import CapsConfig, GenerationConfig
from bot.errors import InvalidSetting
from bot.settings import resolve, setting_specs, settings_table
from bot.story import MODES

SPECS = setting_specs(CapsConfig())
HOST = GenerationConfig()


def test_every_moderator_setting_is_bounded_by_the_caps():
    caps = CapsConfig(max_new_tokens=50, max_temperature=1.2, max_user_rate=9)
    specs = setting_specs(caps)

    assert list(specs) == [
        "temperature", "top_p", "top_k", "repetition_penalty", "no_repeat_ngram_size",
        "max_new_tokens", "mode", "modes",
        "user_rate", "channel_rate", "cooldown_s", "max_turns",
        "enabled", "write_roles", "locked", "moderator_roles",
    ]  # fmt: skip
    assert {s.topic for s in specs.values()} == {"Writing", "Pace", "Access"}
    assert specs["channel_rate"].maximum == caps.max_guild_rate
    assert specs["temperature"].maximum == 1.2
    assert specs["max_new_tokens"].maximum == 50
    assert specs["user_rate"].maximum == 9
    assert specs["repetition_penalty"].maximum == caps.max_repetition_penalty
    assert all(spec.description for spec in specs.values())


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("temperature", "0.5", 0.5),
        ("temperature", " 1.5 ", 1.5),
        ("temperature", "0", 0.0),
        ("top_p", "1", 1.0),
        ("max_new_tokens", "400", 400),
        ("max_new_tokens", "20.0", 20),
        ("user_rate", 3, 3),
    ],
)
def test_values_in_range_are_accepted(key, raw, value):
    parsed = SPECS[key].parse(raw)

    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize(
    ("key", "raw", "allowed"),
    [
        ("temperature", "9", "`temperature` takes 0, or a number from 0.05 to 1.5"),
        ("temperature", "-0.1", "`temperature` takes 0, or a number from 0.05 to 1.5"),
        ("top_p", "0", "`top_p` takes a number from 0.01 to 1"),
        ("max_new_tokens", "401", "`max_new_tokens` takes a whole number from 1 to 400"),
        ("max_new_tokens", "0", "`max_new_tokens` takes a whole number from 1 to 400"),
        ("repetition_penalty", "2.5", "`repetition_penalty` takes a number from 1 to 2"),
        ("user_rate", "31", "`user_rate` takes a whole number from 1 to 30"),
    ],
)
def test_out_of_range_names_the_key_and_the_range(key, raw, allowed):
    with pytest.raises(InvalidSetting) as caught:
        SPECS[key].parse(raw)

    assert f"`{raw}` is out of range" in caught.value.user_message
    assert allowed in caught.value.user_message


@pytest.mark.parametrize("raw", ["hot", "", "0x10", "nan", "inf", "-inf", "1e999"])
def test_text_that_is_not_a_number_is_refused(raw):
    with pytest.raises(InvalidSetting) as caught:
        SPECS["temperature"].parse(raw)

    assert "is not a number" in caught.value.user_message
    assert "`temperature` takes 0, or a number from 0.05 to 1.5" in caught.value.user_message


@pytest.mark.parametrize("key", ["max_new_tokens", "user_rate"])
def test_integer_settings_refuse_fractions(key):
    with pytest.raises(InvalidSetting) as caught:
        SPECS[key].parse("1.5")

    assert "`1.5` is not a whole number" in caught.value.user_message
    assert f"`{key}` takes a whole number" in caught.value.user_message


def test_resolve_layers_channel_over_server_over_mode_over_host():
    poem = MODES["poem"]

    resolved = resolve(
        SPECS,
        HOST,
        poem,
        server={"temperature": 0.4, "max_new_tokens": 80},
        channel={"temperature": 0.2},
    )

    picked = ("temperature", "top_p", "max_new_tokens", "repetition_penalty", "user_rate")
    assert {k: resolved.values[k] for k in picked} == {
        "temperature": 0.2,
        "top_p": poem.top_p,
        "max_new_tokens": 80,
        "repetition_penalty": HOST.repetition_penalty,
        "user_rate": HOST.user_rate,
    }
    assert {k: resolved.origins[k] for k in picked} == {
        "temperature": "channel",
        "top_p": "mode",
        "max_new_tokens": "server",
        "repetition_penalty": "host",
        "user_rate": "host",
    }
    assert resolved["temperature"] == 0.2


def test_mode_defaults_apply_only_where_no_server_value_is_set():
    news = MODES["news"]

    plain = resolve(SPECS, HOST, news, server={}, channel={})
    server_set = resolve(SPECS, HOST, news, server={"temperature": 1.1}, channel={})

    assert (plain["temperature"], plain.origins["temperature"]) == (news.temperature, "mode")
    assert (server_set["temperature"], server_set.origins["temperature"]) == (1.1, "server")
    assert server_set["top_p"] == news.top_p


def test_stored_values_are_clamped_when_the_host_lowers_a_cap():
    # A moderator stored these under the old, higher caps.
    stored = {"temperature": 1.4, "max_new_tokens": 350, "user_rate": 25}
    lowered = setting_specs(CapsConfig(max_temperature=1.0, max_new_tokens=200, max_user_rate=10))

    resolved = resolve(lowered, HOST, MODES["story"], server=stored, channel={})

    assert resolved["temperature"] == 1.0
    assert resolved["max_new_tokens"] == 200 and isinstance(resolved["max_new_tokens"], int)
    assert resolved["user_rate"] == 10
    assert resolved.origins["temperature"] == "server"


def test_range_text_reads_naturally():
    assert SPECS["temperature"].range_text() == "0, or a number from 0.05 to 1.5"
    assert SPECS["top_p"].range_text() == "a number from 0.01 to 1"
    assert SPECS["max_new_tokens"].range_text() == "a whole number from 1 to 400"


def test_a_huge_whole_number_is_refused_not_crashed_on():
    with pytest.raises(InvalidSetting) as caught:
        SPECS["max_new_tokens"].parse(10**400)

    assert "is not a number" in caught.value.user_message


@pytest.mark.parametrize("raw", ["5e-324", "0.001", "0.049"])
def test_a_temperature_too_small_to_mean_anything_is_refused(raw):
    with pytest.raises(InvalidSetting) as caught:
        SPECS["temperature"].parse(raw)

    assert "too small" in caught.value.user_message
    assert "0, or a number from 0.05" in caught.value.user_message


def test_minus_zero_is_stored_as_zero():
    value = SPECS["temperature"].parse("-0")

    assert value == 0 and str(value) == "0.0"


# -- kinds beyond numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"), [("on", True), ("OFF", False), ("yes", True), ("0", False)]
)
def test_flags_take_on_and_off(raw, value):
    assert SPECS["enabled"].parse(raw) is value


def test_a_flag_refuses_anything_else():
    with pytest.raises(InvalidSetting) as caught:
        SPECS["locked"].parse("maybe")

    assert caught.value.user_message == "`maybe` is not on or off; `locked` takes on or off."


def test_modes_are_named_once_in_their_usual_order():
    assert SPECS["mode"].parse(" Poem ") == "poem"
    assert SPECS["modes"].parse("poem, story poem") == ["story", "poem"]
    assert SPECS["modes"].parse("all") == list(MODES)
    with pytest.raises(InvalidSetting) as caught:
        SPECS["modes"].parse("story, limerick")
    assert "`limerick` is not a writing mode" in caught.value.user_message
    with pytest.raises(InvalidSetting):
        SPECS["mode"].parse("story, poem")


def test_roles_are_read_from_mentions_and_ids_and_everyone_clears_them():
    roles = SPECS["write_roles"]

    assert roles.parse("<@&444444444444444444>, 555555555555555555") == [
        444444444444444444, 555555555555555555,
    ]  # fmt: skip
    assert roles.parse("everyone") == []
    with pytest.raises(InvalidSetting) as caught:
        roles.parse("@Writers")
    assert "`@Writers` is not a role" in caught.value.user_message
    assert roles.show([444444444444444444]) == "<@&444444444444444444>"
    assert roles.show([]) == "everyone"


def test_server_only_settings_ignore_a_channel_value():
    resolved = resolve(
        SPECS, HOST, MODES["story"], server={"write_roles": [1]}, channel={"write_roles": [2]}
    )

    assert resolved["write_roles"] == [1] and resolved.origins["write_roles"] == "server"


def test_defaults_without_a_host_key_come_from_the_spec():
    resolved = resolve(SPECS, HOST, MODES["story"], server={}, channel={})

    assert resolved["enabled"] is True and resolved["locked"] is False
    assert resolved["modes"] == list(MODES) and resolved["mode"] == "story"
    assert resolved["max_turns"] == 0 and resolved["cooldown_s"] == 0
    assert SPECS["max_turns"].show(0) == "0 (no limit)"


def test_stored_modes_that_no_longer_exist_are_dropped():
    resolved = resolve(
        SPECS, HOST, MODES["story"], server={"modes": ["gone"], "mode": "gone"}, channel={}
    )

    assert resolved["modes"] == list(MODES) and resolved["mode"] == "story"


def test_the_readme_documents_every_setting_as_the_specs_say():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")

    assert settings_table(setting_specs(CapsConfig()), GenerationConfig()) in readme
