"""Typed, validated configuration: one TOML file plus ``DISCORD_TOKEN`` from the environment.

Everything is parsed once at start-up into frozen dataclasses and passed in; a bad value fails with
its key, the value and what is allowed. The token is read from the environment only and is wrapped
in :class:`Secret`, whose repr and str are masked so it cannot reach a log by accident.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import paths

CONFIG_ENV = "STORYBOT_CONFIG"
TOKEN_ENV = "DISCORD_TOKEN"

BACKENDS = ("local", "openai", "ctranslate2")
# What CTranslate2 computes in (weights are converted to it at load) and stores a folder as.
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16",
                 "bfloat16", "float32")  # fmt: skip
COMPUTE_TYPES = (*QUANTIZATIONS, "default", "auto")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "float16", "bfloat16")
ATTENTION = ("sdpa", "eager")


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class Secret:
    """A string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is handed to the library that needs it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class DiscordConfig:
    """How the bot meets Discord."""

    dev_guild_ids: tuple[int, ...] = ()
    moderator_role_ids: tuple[int, ...] = ()
    drain_s: float = 20.0
    # Sharding: how many shards the bot's guilds are split into (0: not sharded), and which of
    # them this process runs (empty: all of them).
    shard_count: int = 0
    shard_ids: tuple[int, ...] = ()

    @property
    def shard_group(self) -> str:
        """This process's shards, as a name for its files: "0-3", "all" (all shards), or
        "single" (not sharded)."""
        if not self.shard_count:
            return "single"
        return "-".join(map(str, self.shard_ids)) if self.shard_ids else "all"


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how the worker serves it."""

    name: str = "gpt2"
    # "openai": a remote OpenAI-compatible server writes (see [remote]); "ctranslate2": a
    # converted model in this process (see [ctranslate2])
    backend: str = "local"
    device: str = "auto"
    dtype: str = "auto"
    attention: str = "sdpa"
    compile: bool = False
    continuous_batching: bool = True
    max_batch_size: int = 16
    batch_wait_ms: int = 10
    max_queue: int = 64
    request_timeout_s: float = 120.0
    context_tokens: int = 1024
    # The encoded contexts of recent stories, kept so a turn encodes only its new tokens (0: off).
    prefix_cache_mb: int = 1024


@dataclass(frozen=True)
class RemoteConfig:
    """An OpenAI-compatible completion server (vLLM, `transformers serve`, TGI) that writes the
    parts when ``model.backend = "openai"``; the tokenizer still comes from ``model.name``."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""  # the name the server serves the model under (default: model.name)
    api_key_env: str = "STORYBOT_REMOTE_API_KEY"  # the variable the API key is read from
    connect_timeout_s: float = 5.0
    concurrency: int = 64  # requests in flight to the server at once
    # Which server, for the fields beyond OpenAI's it reads: "auto" (told by its /v1/models),
    # "vllm", "transformers" (transformers serve) or "openai" (the standard fields only).
    server: str = "auto"


@dataclass(frozen=True)
class CTranslate2Config:
    """A model converted for CTranslate2 (``storybot model convert``) that writes the parts in
    this process when ``model.backend = "ctranslate2"``: int8 on the CPU by default. The folder
    holds the weights, the tokenizer and the window, so ``model.name`` only labels the parts."""

    folder: Path | None = None  # required with the ctranslate2 backend
    # What it computes in: "int8" (default), "int8_float32", "int16", "float32", … or "default"
    # (as the folder was converted); weights are converted to it when the model loads.
    compute_type: str = "int8"
    threads: int = 0  # CPU threads for one batch (0: CTranslate2's default)


@dataclass(frozen=True)
class DatabaseConfig:
    """Where the stories live: by default in storybot's home folder (see bot.paths)."""

    path: Path = field(default_factory=lambda: paths.home() / paths.DATABASE_NAME)


@dataclass(frozen=True)
class GenerationConfig:
    """Server defaults for how the model writes; moderators may change them within the caps."""

    temperature: float = 0.9
    top_p: float = 0.95
    top_k: int = 0
    repetition_penalty: float = 1.15
    repetition_range: int = 320
    repetition_slope: float = 0.7
    no_repeat_ngram_size: int = 3
    no_repeat_ngram_range: int = 512
    max_new_tokens: int = 120
    user_rate: int = 5
    channel_rate: int = 20  # parts per channel per minute
    cooldown_s: int = 0  # seconds a channel rests after each part
    max_turns: int = 0  # turns a story may have (0: no limit)
    quality_guard: bool = True
    explanations: bool = True  # note how sure the model was of each token, for /story explain


@dataclass(frozen=True)
class CapsConfig:
    """Host limits that no moderator setting can exceed."""

    max_new_tokens: int = 400
    max_temperature: float = 1.5
    max_repetition_penalty: float = 2.0
    max_user_rate: int = 30
    max_prompt_tokens: int = 300
    max_guild_rate: int = 60
    max_memory_tokens: int = 200  # a story's memory, pinned at the start of every context
    max_note_tokens: int = 100  # its author's note


@dataclass(frozen=True)
class ModerationConfig:
    """What the host forbids everywhere, and where admission counts are kept."""

    banned_words: tuple[str, ...] = ()  # words and phrases no server may have written
    # Where rate-limit windows live: "memory://" (this process), or a Redis URI
    # ("redis://host:6379/0") shared by several bot processes.
    limits_storage: str = "memory://"


@dataclass(frozen=True)
class Config:
    """The whole configuration of one bot process."""

    discord: DiscordConfig = field(default_factory=DiscordConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    remote: RemoteConfig = field(default_factory=RemoteConfig)
    ctranslate2: CTranslate2Config = field(default_factory=CTranslate2Config)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    caps: CapsConfig = field(default_factory=CapsConfig)
    moderation: ModerationConfig = field(default_factory=ModerationConfig)
    token: Secret = field(default_factory=lambda: Secret(""))
    source: Path | None = None


class _Section:
    """Reads one TOML table, checking every key it hands out and rejecting unknown ones."""

    def __init__(self, name: str, table: Any) -> None:
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}] must be a table, got {table!r}")
        self.name = name
        self._table = dict(table)
        self._seen: set[str] = set()

    def _raw(self, key: str, default: Any) -> Any:
        self._seen.add(key)
        return self._table.get(key, default)

    def _fail(self, key: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self.name}.{key} = {value!r} is invalid: {allowed}")

    def number(self, key: str, default: float, lo: float, hi: float, *, integer: bool = False):
        value = self._raw(key, default)
        kind = "an integer" if integer else "a number"
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            raise self._fail(key, value, f"must be {kind} from {lo} to {hi}")
        if not lo <= value <= hi:
            raise self._fail(key, value, f"must be from {lo} to {hi}")
        return int(value) if integer else float(value)

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        return self.number(key, default, lo, hi, integer=True)

    def choice(self, key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self._raw(key, default)
        if value not in allowed:
            raise self._fail(key, value, f"must be one of {', '.join(allowed)}")
        return value

    def text(self, key: str, default: str) -> str:
        value = self._raw(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, value, "must be a non-empty string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._raw(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, value, "must be true or false")
        return value

    def ids(self, key: str) -> tuple[int, ...]:
        value = self._raw(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
        ):
            raise self._fail(key, value, "must be a list of Discord ids (positive integers)")
        return tuple(value)

    def words(self, key: str) -> tuple[str, ...]:
        value = self._raw(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v.strip() and len(v) <= 100 for v in value
        ):
            raise self._fail(key, value, "must be a list of words or phrases (1–100 characters)")
        return tuple(v.strip() for v in value)

    def done(self) -> None:
        unknown = sorted(set(self._table) - self._seen)
        if unknown:
            raise ConfigError(f"[{self.name}] has unknown key(s): {', '.join(unknown)}")


def parse_config(
    data: Mapping[str, Any],
    token: str = "",
    source: Path | None = None,
    home: Path | None = None,
) -> Config:
    """Build a validated :class:`Config` from parsed TOML data.

    Relative paths (the database, a model folder) are read from the config file's folder, or
    from storybot's ``home`` when there is no file.
    """
    home = paths.home() if home is None else home
    base = source.resolve().parent if source is not None else home
    known = {
        "discord", "model", "remote", "ctranslate2", "database", "generation", "caps", "moderation"
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown section(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )

    s = _Section("discord", data.get("discord", {}))
    discord = DiscordConfig(
        dev_guild_ids=s.ids("dev_guild_ids"),
        moderator_role_ids=s.ids("moderator_role_ids"),
        drain_s=s.number("drain_s", DiscordConfig.drain_s, 0, 600),
        shard_count=s.integer("shard_count", 0, 0, 100_000),
        shard_ids=_shard_ids(s),
    )
    if discord.shard_ids and not discord.shard_count:
        raise ConfigError("discord.shard_ids needs discord.shard_count (how many shards in all)")
    wrong = [i for i in discord.shard_ids if i >= discord.shard_count]
    if discord.shard_count and wrong:
        raise ConfigError(
            f"discord.shard_ids = {list(discord.shard_ids)} is invalid: shard ids run from 0 to "
            f"{discord.shard_count - 1} (discord.shard_count - 1)"
        )
    s.done()

    s = _Section("model", data.get("model", {}))
    d = ModelConfig()
    model = ModelConfig(
        name=_model_name(s.text("name", d.name), base),
        backend=s.choice("backend", d.backend, BACKENDS),
        device=s.choice("device", d.device, DEVICES),
        dtype=s.choice("dtype", d.dtype, DTYPES),
        attention=s.choice("attention", d.attention, ATTENTION),
        compile=s.flag("compile", d.compile),
        continuous_batching=s.flag("continuous_batching", d.continuous_batching),
        max_batch_size=s.integer("max_batch_size", d.max_batch_size, 1, 256),
        batch_wait_ms=s.integer("batch_wait_ms", d.batch_wait_ms, 0, 1000),
        max_queue=s.integer("max_queue", d.max_queue, 1, 10_000),
        request_timeout_s=s.number("request_timeout_s", d.request_timeout_s, 1, 840),
        context_tokens=s.integer("context_tokens", d.context_tokens, 64, 131_072),
        prefix_cache_mb=s.integer("prefix_cache_mb", d.prefix_cache_mb, 0, 1_048_576),
    )
    s.done()

    s = _Section("remote", data.get("remote", {}))
    r = RemoteConfig()
    remote = RemoteConfig(
        base_url=_base_url(s, "base_url", r.base_url),
        model=s._raw("model", r.model) or "",
        api_key_env=s.text("api_key_env", r.api_key_env),
        connect_timeout_s=s.number("connect_timeout_s", r.connect_timeout_s, 0.1, 120),
        concurrency=s.integer("concurrency", r.concurrency, 1, 10_000),
        server=s.choice("server", r.server, ("auto", "vllm", "transformers", "openai")),
    )
    if not isinstance(remote.model, str):
        raise s._fail("model", remote.model, "must be the served model's name (a string)")
    s.done()

    s = _Section("ctranslate2", data.get("ctranslate2", {}))
    c2 = CTranslate2Config()
    ctranslate2 = CTranslate2Config(
        folder=_folder(s, "folder", base),
        compute_type=s.choice("compute_type", c2.compute_type, COMPUTE_TYPES),
        threads=s.integer("threads", c2.threads, 0, 256),
    )
    s.done()
    if model.backend == "ctranslate2" and ctranslate2.folder is None:
        raise ConfigError(
            'model.backend = "ctranslate2" needs [ctranslate2] folder: a model converted with '
            "`storybot model convert NAME --to FOLDER`"
        )

    s = _Section("database", data.get("database", {}))
    raw_path = s.text("path", str(home / paths.DATABASE_NAME))
    if "{" in raw_path.replace("{shard_group}", ""):
        raise s._fail("path", raw_path, "may hold {shard_group} and no other {…} field")
    database = DatabaseConfig(
        # Each group of shards may keep its own file: Discord sends a guild to one shard only.
        path=paths.resolve(raw_path.replace("{shard_group}", discord.shard_group), base)
    )
    s.done()

    s = _Section("caps", data.get("caps", {}))
    c = CapsConfig()
    caps = CapsConfig(
        max_new_tokens=s.integer("max_new_tokens", c.max_new_tokens, 1, 1000),
        max_temperature=s.number("max_temperature", c.max_temperature, 0.1, 5.0),
        max_repetition_penalty=s.number(
            "max_repetition_penalty", c.max_repetition_penalty, 1.0, 5.0
        ),
        max_user_rate=s.integer("max_user_rate", c.max_user_rate, 1, 600),
        max_memory_tokens=s.integer("max_memory_tokens", c.max_memory_tokens, 1, 1000),
        max_note_tokens=s.integer("max_note_tokens", c.max_note_tokens, 1, 500),
        max_prompt_tokens=s.integer("max_prompt_tokens", c.max_prompt_tokens, 1, 900),
        max_guild_rate=s.integer("max_guild_rate", c.max_guild_rate, 1, 6000),
    )
    s.done()

    s = _Section("generation", data.get("generation", {}))
    g = GenerationConfig()
    generation = GenerationConfig(
        temperature=s.number(
            "temperature", min(g.temperature, caps.max_temperature), 0.0, caps.max_temperature
        ),
        top_p=s.number("top_p", g.top_p, 0.01, 1.0),
        top_k=s.integer("top_k", g.top_k, 0, 1000),
        repetition_penalty=s.number(
            "repetition_penalty",
            min(g.repetition_penalty, caps.max_repetition_penalty),
            1.0,
            caps.max_repetition_penalty,
        ),
        repetition_range=s.integer("repetition_range", g.repetition_range, 0, 131_072),
        repetition_slope=s.number("repetition_slope", g.repetition_slope, 0.0, 10.0),
        no_repeat_ngram_size=s.integer("no_repeat_ngram_size", g.no_repeat_ngram_size, 0, 10),
        no_repeat_ngram_range=s.integer(
            "no_repeat_ngram_range", g.no_repeat_ngram_range, 0, 131_072
        ),
        max_new_tokens=s.integer(
            "max_new_tokens", min(g.max_new_tokens, caps.max_new_tokens), 1, caps.max_new_tokens
        ),
        user_rate=s.integer(
            "user_rate", min(g.user_rate, caps.max_user_rate), 1, caps.max_user_rate
        ),
        channel_rate=s.integer(
            "channel_rate", min(g.channel_rate, caps.max_guild_rate), 1, caps.max_guild_rate
        ),
        cooldown_s=s.integer("cooldown_s", g.cooldown_s, 0, 3600),
        max_turns=s.integer("max_turns", g.max_turns, 0, 10_000),
        quality_guard=s.flag("quality_guard", g.quality_guard),
        explanations=s.flag("explanations", g.explanations),
    )
    s.done()

    s = _Section("moderation", data.get("moderation", {}))
    moderation = ModerationConfig(
        banned_words=s.words("banned_words"),
        limits_storage=_limits_storage(s, "limits_storage"),
    )
    s.done()

    return Config(
        discord=discord,
        model=model,
        remote=remote,
        ctranslate2=ctranslate2,
        database=database,
        generation=generation,
        caps=caps,
        moderation=moderation,
        token=Secret(token.strip()),
        source=source,
    )


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the TOML file at ``path``, else ``$STORYBOT_CONFIG``, else the home folder's
    ``config.toml`` (written by ``storybot init``) if there is one; else the defaults."""
    environ = os.environ if environ is None else environ
    home = paths.home(environ)
    chosen = path or environ.get(CONFIG_ENV) or None
    if not chosen and (home / paths.CONFIG_NAME).is_file():
        chosen = home / paths.CONFIG_NAME
    data: dict[str, Any] = {}
    source = None
    if chosen:
        source = Path(chosen).expanduser()
        try:
            data = tomllib.loads(_read_config(source))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {source} is not valid TOML: {exc}") from None
    return parse_config(data, token=environ.get(TOKEN_ENV, ""), source=source, home=home)


def _read_config(source: Path) -> str:
    """The config file's text, or a ConfigError that says what is wrong with the path."""
    try:
        return source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file {source} does not exist (`storybot init` writes one to start from)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"config path {source} is a folder, not a file. (Docker makes a folder when a "
            "mounted file is missing: create the file first, for example with `storybot init`.)"
        ) from None
    except PermissionError:
        raise ConfigError(f"config file {source} cannot be read: permission denied") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file {source} is not UTF-8 text (byte {error.start}): is it the right file?"
        ) from None
    except OSError as error:
        raise ConfigError(f"config file {source} cannot be read: {error.strerror}") from None


def _shard_ids(section: _Section) -> tuple[int, ...]:
    value = section._raw("shard_ids", [])
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise section._fail("shard_ids", value, "must be a list of shard ids (0, 1, …)")
    if len(set(value)) != len(value):
        raise section._fail("shard_ids", value, "names a shard twice")
    return tuple(sorted(value))


def _base_url(section: _Section, key: str, default: str) -> str:
    """An http(s) URL, checked before the bot starts."""
    value = section.text(key, default)
    if not re.match(r"^https?://[^/\s]+", value):
        raise section._fail(key, value, 'must be an http(s) URL such as "http://vllm:8000/v1"')
    return value.rstrip("/")


def _folder(section: _Section, key: str, base: Path) -> Path | None:
    """An optional folder, read from ``base`` when relative; None when not set."""
    value = section._raw(key, "")
    if not isinstance(value, str):
        raise section._fail(key, value, "must be a folder (a string)")
    return paths.resolve(value, base) if value.strip() else None


def _limits_storage(section: _Section, key: str) -> str:
    """``memory://`` or a Redis URI, checked before the bot starts."""
    value = section.text(key, ModerationConfig.limits_storage)
    if value != "memory://" and not re.match(r"^(redis|rediss|redis\+unix)://", value):
        raise section._fail(
            key,
            "<redacted>" if "@" in value else value,
            'must be "memory://" or a Redis URI such as "redis://localhost:6379/0"',
        )
    return value


def _model_name(name: str, base: Path) -> str:
    """A hub id as it is; a model folder (``./…``, ``~/…``, absolute, or an existing folder
    next to the config) as a path read from ``base``."""
    if paths.looks_like_path(name) or (base / name).is_dir():
        return str(paths.resolve(name, base))
    return name
