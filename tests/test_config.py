"""Config: defaults, where the file comes from, every kind of bad value, and the secret token."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import textwrap
from pathlib import Path

import platformdirs
import pytest

from bot.config import CONFIG_ENV, TOKEN_ENV, Config, ConfigError, Secret, load_config, parse_config

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.very-secret-token-value"


def write_toml(tmp_path: Path, text: str, name: str = "storybot.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_no_file_and_no_environment_gives_the_documented_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("STORYBOT_HOME")  # no environment at all: the per-user data folder
    config = load_config(environ={})

    assert config == Config()
    assert config.source is None
    assert not config.token
    assert config.model.name == "gpt2"
    assert config.generation.temperature == 0.9
    assert config.generation.max_new_tokens == 120
    assert config.caps.max_prompt_tokens == 300
    assert config.database.path == platformdirs.user_data_path("storybot") / "storybot.db"


def test_the_database_and_a_model_folder_are_read_from_the_config_files_folder(tmp_path):
    (tmp_path / "models" / "gpt2-local").mkdir(parents=True)
    path = write_toml(
        tmp_path,
        """
        [database]
        path = "stories/bot.db"
        [model]
        name = "models/gpt2-local"
        """,
    )
    elsewhere = load_config(path, environ={"STORYBOT_HOME": str(tmp_path / "home")})

    assert elsewhere.database.path == tmp_path / "stories" / "bot.db"
    assert elsewhere.model.name == str(tmp_path / "models" / "gpt2-local")
    hub = load_config(write_toml(tmp_path, '[model]\nname = "openai-community/gpt2"\n'), environ={})
    assert hub.model.name == "openai-community/gpt2"  # a hub id stays a hub id


def test_the_home_folder_holds_the_database_and_the_config_init_writes(tmp_path):
    home = tmp_path / "home"
    assert load_config(environ={"STORYBOT_HOME": str(home)}).database.path == home / "storybot.db"
    home.mkdir()
    (home / "config.toml").write_text("[generation]\ntemperature = 0.5\n", encoding="utf-8")

    config = load_config(environ={"STORYBOT_HOME": str(home)})
    assert config.source == home / "config.toml" and config.generation.temperature == 0.5


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.write_bytes(b"\xff\xfe[model]\x00"), "is not UTF-8 text"),
        (lambda p: None, "does not exist (`storybot init` writes one"),
    ],
)
def test_a_bad_config_path_is_one_clear_line(tmp_path, make, says):
    path = tmp_path / "config.toml"
    make(path)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(path, environ={})


def test_file_named_by_storybot_config_is_read(tmp_path):
    path = write_toml(
        tmp_path,
        """
        [generation]
        temperature = 0.7
        [discord]
        dev_guild_ids = [123456789012345678]
        """,
    )

    config = load_config(environ={CONFIG_ENV: str(path)})

    assert config.source == path
    assert config.generation.temperature == 0.7
    assert config.discord.dev_guild_ids == (123456789012345678,)
    assert config.generation.top_p == Config().generation.top_p  # untouched keys keep defaults


def test_explicit_path_wins_over_the_environment(tmp_path):
    chosen = write_toml(tmp_path, "[model]\nname = 'chosen'\n", "chosen.toml")
    other = write_toml(tmp_path, "[model]\nname = 'other'\n", "other.toml")

    config = load_config(chosen, environ={CONFIG_ENV: str(other)})

    assert config.model.name == "chosen"
    assert config.source == chosen


def test_missing_file_is_an_error_naming_the_file(tmp_path):
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(environ={CONFIG_ENV: str(missing)})

    assert str(missing) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_invalid_toml_is_an_error_naming_the_file(tmp_path):
    path = write_toml(tmp_path, "[generation\ntemperature = = 1\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert str(path) in str(caught.value)
    assert "not valid TOML" in str(caught.value)


@pytest.mark.parametrize(
    ("toml", "names", "allowed"),
    [
        ("[generation]\ntemperature = 9", "generation.temperature = 9", "from 0.0 to 1.5"),
        ("[generation]\ntemperature = -0.1", "generation.temperature = -0.1", "from 0.0 to 1.5"),
        ("[generation]\ntemperature = nan", "generation.temperature = nan", "from 0.0 to 1.5"),
        ("[generation]\ntemperature = true", "generation.temperature = True", "a number"),
        ("[generation]\ntemperature = 'hot'", "generation.temperature = 'hot'", "a number"),
        ("[generation]\ntop_k = 1.5", "generation.top_k = 1.5", "an integer from 0 to 1000"),
        ("[generation]\nmax_new_tokens = 401", "generation.max_new_tokens = 401", "from 1 to 400"),
        ("[generation]\nuser_rate = 31", "generation.user_rate = 31", "from 1 to 30"),
        ("[generation]\nrepetition_penalty = 0.5", "repetition_penalty = 0.5", "from 1.0 to 2.0"),
        ("[model]\nmax_batch_size = 0", "model.max_batch_size = 0", "from 1 to 256"),
        ("[model]\nrequest_timeout_s = 900", "model.request_timeout_s = 900", "from 1 to 840"),
        ("[model]\ndevice = 'tpu'", "model.device = 'tpu'", "one of auto, cpu, cuda"),
        ("[model]\ndtype = 'int8'", "model.dtype = 'int8'", "one of auto, float32"),
        ("[model]\ncompile = 'yes'", "model.compile = 'yes'", "true or false"),
        ("[model]\nname = ' '", "model.name = ' '", "a non-empty string"),
        ("[database]\npath = 5", "database.path = 5", "a non-empty string"),
        ("[caps]\nmax_new_tokens = 0", "caps.max_new_tokens = 0", "from 1 to 1000"),
        ("[caps]\nmax_prompt_tokens = 901", "caps.max_prompt_tokens = 901", "from 1 to 900"),
        ("[discord]\ndev_guild_ids = [-1]", "discord.dev_guild_ids = [-1]", "Discord ids"),
        ("[discord]\nmoderator_role_ids = 5", "discord.moderator_role_ids = 5", "Discord ids"),
        ("[model]\nbackend = 'onnx'", "model.backend = 'onnx'", "local, openai, ctranslate2"),
        (
            "[ctranslate2]\ncompute_type = 'int4'",
            "ctranslate2.compute_type = 'int4'",
            "one of int8",
        ),
        ("[ctranslate2]\nthreads = -1", "ctranslate2.threads = -1", "from 0 to 256"),
        ("[ctranslate2]\nfolder = 5", "ctranslate2.folder = 5", "a folder"),
    ],
)
def test_bad_value_names_the_key_the_value_and_what_is_allowed(tmp_path, toml, names, allowed):
    path = write_toml(tmp_path, toml)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    message = str(caught.value)
    assert names in message
    assert allowed in message


def test_generation_limits_follow_the_caps_in_the_same_file():
    raised = parse_config({"caps": {"max_temperature": 2.0}, "generation": {"temperature": 1.8}})
    assert raised.generation.temperature == 1.8

    with pytest.raises(ConfigError, match=r"generation\.temperature = 1\.2 .* from 0\.0 to 1\.0"):
        parse_config({"caps": {"max_temperature": 1.0}, "generation": {"temperature": 1.2}})


@pytest.mark.parametrize(
    ("cap", "value", "key"),
    [
        ("max_new_tokens", 50, "max_new_tokens"),
        ("max_user_rate", 2, "user_rate"),
        ("max_temperature", 0.5, "temperature"),
        ("max_repetition_penalty", 1.1, "repetition_penalty"),
    ],
)
def test_lowering_a_cap_alone_brings_the_unset_default_down_to_it(cap, value, key):
    # The host wrote only the cap; a default they never wrote must not stop the bot from starting.
    config = parse_config({"caps": {cap: value}})

    assert getattr(config.generation, key) == value


def test_unknown_key_is_rejected_by_name():
    with pytest.raises(ConfigError, match=r"\[generation\] has unknown key\(s\): temprature"):
        parse_config({"generation": {"temprature": 0.5}})


def test_unknown_section_is_rejected_by_name():
    with pytest.raises(ConfigError, match="unknown section"):
        parse_config({"genaration": {"temperature": 0.5}})


def test_section_that_is_not_a_table_is_rejected():
    with pytest.raises(ConfigError, match=r"\[generation\] must be a table"):
        parse_config({"generation": 5})


def test_token_in_the_file_is_refused_without_echoing_it(tmp_path):
    path = write_toml(tmp_path, f"[discord]\ntoken = '{TOKEN}'\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    assert "token" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_token_comes_from_discord_token_only(tmp_path):
    path = write_toml(tmp_path, "[model]\nname = 'gpt2'\n")

    config = load_config(path, environ={TOKEN_ENV: f"  {TOKEN}\n"})

    assert config.token
    assert config.token.reveal() == TOKEN
    assert not load_config(path, environ={}).token


def test_the_token_never_shows_itself(caplog):
    config = load_config(environ={TOKEN_ENV: TOKEN})
    secret = config.token

    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        "%s" % secret,  # noqa: UP031 - the way logging formats arguments
        format(secret),
        repr(config),
        str(config),
    ]
    with caplog.at_level(logging.INFO):
        logging.getLogger("storybot.test").info("config %s token %r", config, secret)
    shown.append(caplog.text)

    for text in shown:
        assert TOKEN not in text
        assert "very-secret" not in text
    assert "*" in repr(secret)


def test_secrets_compare_by_value_without_revealing():
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert not Secret("")
    assert repr(Secret("")) != repr(Secret("x"))  # an empty token is distinguishable in logs


def test_config_example_matches_the_defaults():
    example = REPO_ROOT / "config.example.toml"

    assert example.is_file(), "config.example.toml should be at the repository root"
    config = load_config(example, environ={"STORYBOT_HOME": os.environ["STORYBOT_HOME"]})

    assert dataclasses.replace(config, source=None) == Config()


def test_shards_and_their_group_name_the_database_file(tmp_path):
    config = parse_config(
        {
            "discord": {"shard_count": 8, "shard_ids": [3, 2]},
            "database": {"path": "stories-{shard_group}.db"},
        },
        home=tmp_path,
    )

    assert (config.discord.shard_count, config.discord.shard_ids) == (8, (2, 3))
    assert config.database.path == tmp_path / "stories-2-3.db"
    assert parse_config({}, home=tmp_path).discord.shard_group == "single"
    assert parse_config({"discord": {"shard_count": 2}}).discord.shard_group == "all"


@pytest.mark.parametrize(
    ("discord", "says"),
    [
        ({"shard_ids": [0]}, "needs discord.shard_count"),
        ({"shard_count": 2, "shard_ids": [2]}, "run from 0 to 1"),
        ({"shard_count": 2, "shard_ids": [1, 1]}, "names a shard twice"),
        ({"shard_count": 2, "shard_ids": [-1]}, "must be a list of shard ids"),
    ],
)
def test_impossible_shards_are_refused_at_start(discord, says):
    with pytest.raises(ConfigError) as caught:
        parse_config({"discord": discord})

    assert says in str(caught.value)


def test_a_database_path_takes_no_other_field():
    with pytest.raises(ConfigError) as caught:
        parse_config({"database": {"path": "db-{guild}.db"}})

    assert "{shard_group}" in str(caught.value)
