"""The storybot command: run the bot, try it in a console, and look after its set-up."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import sys
import time
import traceback
from importlib import metadata, resources
from pathlib import Path

from bot import paths
from bot.config import CONFIG_ENV, QUANTIZATIONS, TOKEN_ENV, Config, ConfigError, load_config
from bot.errors import DatabaseUnusable, LimitsUnavailable, ModelUnavailable
from bot.logsafety import configure_logging

log = logging.getLogger("storybot")

NO_TOKEN = f"""{TOKEN_ENV} is not set.
Create an application and bot at https://discord.com/developers/applications, copy the bot's token,
then start storybot with it in the environment:

    {TOKEN_ENV}=your-bot-token storybot run

(The token is read from the environment only, never from the config file. `storybot init`
writes a config file to start from; docs/self-hosting.md walks through the whole set-up.)"""

SETUP_ERRORS = 2  # the exit status of a set-up problem the host can fix
HEALTH_STALE_S = 90.0  # a running bot writes its health file every HEARTBEAT_S (30 s)


def version() -> str:
    try:
        return metadata.version("storybot")
    except metadata.PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    config_help = (
        f"TOML config file (default: ${CONFIG_ENV}, else config.toml in storybot's home folder "
        f"if there is one, else built-in defaults)"
    )
    parser = argparse.ArgumentParser(
        prog="storybot",
        description="A self-hosted Discord bot for collaborative storytelling with GPT-2.",
        epilog=f"storybot's home folder: ${paths.HOME_ENV}, else {paths.home()}",
    )
    parser.add_argument("--version", action="version", version=f"storybot {version()}")
    parser.add_argument("--config", help=config_help)
    verbose_help = "log debug details (-vv: also Discord payloads, which hold members' text)"
    parser.add_argument("-v", "--verbose", action="count", default=0, help=verbose_help)
    # The same options after the command too; SUPPRESS keeps one given before it.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    shared.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS, help=verbose_help
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, parent=commands) -> argparse.ArgumentParser:
        return parent.add_parser(name, help=text, description=text, parents=[shared])

    init = command("init", "write a commented config.toml to start from, and say what is next")
    init.add_argument(
        "--to",
        help=f"where to write it; - for standard output (default: {paths.CONFIG_NAME} "
        "in the home folder)",
    )
    init.add_argument(
        "--keep", action="store_true", help="leave an existing file as it is (exit 0)"
    )
    command("run", "connect to Discord and serve (needs DISCORD_TOKEN)")
    sync = command("sync", "register the slash commands with Discord")
    sync.add_argument(
        "--guild", type=int, action="append", default=[], help="sync to this server only"
    )
    model_help = "model hub id or local folder (overrides the config)"
    console = command("console", "a local REPL with the same commands, no Discord needed")
    console.add_argument("--model", help=model_help)
    console.add_argument("--db", help="SQLite file (overrides the config)")
    generate = command("generate", "continue one prompt and print the result")
    generate.add_argument("--model", help=model_help)
    generate.add_argument("prompt")
    generate.add_argument("--max-new-tokens", type=int, default=None, help="1 to 1000")
    generate.add_argument("--temperature", type=float, default=None, help="0 (greedy) or more")
    generate.add_argument("--seed", type=int, default=None)
    model = command(
        "model", "save a model into a folder for offline use, convert one, or describe one"
    )
    models = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    download = command("download", "save a hub model (default: the config's) into a folder", models)
    download.add_argument("name", nargs="?", help="hub id (default: model.name of the config)")
    download.add_argument("--to", help="the folder (default: models/NAME in the home folder)")
    convert = command(
        "convert", "convert a model for the ctranslate2 backend (int8 on the CPU) into a folder",
        models,
    )  # fmt: skip
    convert.add_argument(
        "name", nargs="?", help="hub id or model folder (default: model.name of the config)"
    )
    convert.add_argument(
        "--to",
        help="the new folder (default: [ctranslate2] folder of the config, else "
        "models/NAME-QUANTIZATION in the home folder)",
    )
    convert.add_argument(
        "--quantization", default="int8", choices=QUANTIZATIONS,
        help="how the weights are stored (default: int8)",
    )  # fmt: skip
    info = command("info", "what a model folder holds: architecture, size, window", models)
    info.add_argument("folder")
    backup = command("backup", "copy the database to a new file (safe while the bot runs)")
    backup.add_argument("path", help="the new file to write")
    check = command("check", "diagnose the set-up (config, token, database, model); writes nothing")
    check.add_argument("--model", help=model_help)
    command("health", "exit 0 if a running bot here is connected and well (for HEALTHCHECK)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_progress()
    redactor = configure_logging(args.verbose, quiet=args.command in ("console", "generate"))
    if args.command == "init":
        return init(args)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"storybot: configuration error: {error}", file=sys.stderr)
        return SETUP_ERRORS
    redactor.secrets += (config.token.reveal(),) if config.token else ()
    if getattr(args, "model", None):
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, name=args.model)
        )
    if getattr(args, "db", None):
        config = dataclasses.replace(
            config, database=dataclasses.replace(config.database, path=Path(args.db))
        )
    if args.command in ("run", "console", "backup") and (moved := left_behind(config)):
        print(f"storybot: {moved}", file=sys.stderr)
        return SETUP_ERRORS
    handler = {
        "run": run,
        "sync": sync,
        "console": console,
        "generate": generate,
        "model": model,
        "backup": backup,
        "check": check,
        "health": health,
    }
    try:
        return asyncio.run(handler[args.command](config, args))
    except KeyboardInterrupt:
        return 130
    except (ModelUnavailable, DatabaseUnusable, LimitsUnavailable) as error:
        print(f"storybot: {error}", file=sys.stderr)
        return SETUP_ERRORS
    except Exception as error:
        if unreachable(error):
            print(
                f"storybot: cannot reach Discord ({error}). Check this machine's network "
                "connection (and proxy), then start again.",
                file=sys.stderr,
            )
            return SETUP_ERRORS
        if args.verbose:
            traceback.print_exc()
        print(f"storybot: {unexpected(error)}", file=sys.stderr)
        return 1


OLD_DATABASE = Path("data") / "storybot.db"  # where versions before the home folder kept it


def left_behind(config: Config) -> str | None:
    """Stories where an earlier storybot kept them, while this one would start an empty file."""
    default = paths.home() / paths.DATABASE_NAME
    path = config.database.path
    if path != default or path.exists() or not OLD_DATABASE.is_file():
        return None
    return (
        f"stories were found at {OLD_DATABASE.resolve()}, where earlier versions kept them; "
        f"this version keeps them in {default}. Stop the bot, move the file there (with its "
        "-wal and -shm files if any), or set database.path in the config to it."
    )


def unreachable(error: Exception) -> bool:
    """A network failure on the way to Discord (no network, DNS, refused, TLS)."""
    if "discord" not in sys.modules:
        return False
    import aiohttp
    import discord

    return isinstance(error, aiohttp.ClientConnectionError | discord.GatewayNotFound)


def unexpected(error: Exception) -> str:
    """One line for an error no command expected; -v shows the traceback."""
    return f"unexpected error: {type(error).__name__}: {error} (run with -v to see where)"


def quiet_progress() -> None:
    """Progress bars only on a terminal (the hub's and transformers' loading bars)."""
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def init(args) -> int:
    template = resources.files("bot").joinpath("config.example.toml").read_text(encoding="utf-8")
    if args.to == "-":  # to standard output, e.g. to make the file a container mounts
        sys.stdout.write(template)
        return 0
    target = Path(args.to).expanduser() if args.to else paths.home() / paths.CONFIG_NAME
    if target.exists():
        if args.keep:
            return 0
        print(f"storybot init: {target} already exists; edit it, or remove it first",
              file=sys.stderr)  # fmt: skip
        return SETUP_ERRORS
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template, encoding="utf-8")
    except OSError as error:
        print(f"storybot init: cannot write {target}: {error.strerror}", file=sys.stderr)
        return SETUP_ERRORS
    home = "" if args.to else " (storybot finds it there by itself)"
    print(f"""Wrote {target}{home}.

Next:
  1. Create a Discord application and its bot, and copy the bot's token
     (docs/self-hosting.md says where everything is).
  2. {TOKEN_ENV}=your-bot-token storybot sync --guild YOUR_SERVER_ID
  3. {TOKEN_ENV}=your-bot-token storybot run
Try it without Discord first: storybot console. See what is set up: storybot check.""")
    return 0


async def run(config: Config, args) -> int:
    if not config.token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    import discord

    from bot.app import create_bot

    bot = create_bot(config)
    main_task = asyncio.current_task()
    stopping = []

    def stop() -> None:
        """SIGTERM or Ctrl-C: a graceful stop once serving, else give up starting."""
        if stopping:
            return
        if bot.services is None:  # still starting: nobody is waiting for a part yet
            stopping.append(main_task.cancel())
        else:
            stopping.append(asyncio.ensure_future(bot.shutdown()))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        async with bot:  # leaving it closes the bot, and the services if they were opened
            await bot.start(config.token.reveal())
            # start() returns as soon as the connection is closed; leaving `async with` does not
            # close again then, so wait here for the services to be closed (a graceful stop's
            # close, or this one), before asyncio.run cancels whatever is left.
            await bot.close()
    except discord.LoginFailure:
        print(f"Discord refused the token in {TOKEN_ENV}: check it and try again.", file=sys.stderr)
        return 2
    except DatabaseUnusable as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    except asyncio.CancelledError:
        if not stopping:
            raise
        log.info("stopped while starting")
    return 0


async def sync(config: Config, args) -> int:
    if not config.token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    import discord

    from bot.app import create_bot

    async with create_bot(config, serve=False) as bot:
        try:
            await bot.login(config.token.reveal())
        except discord.LoginFailure:
            print(
                f"Discord refused the token in {TOKEN_ENV}: check it and try again.",
                file=sys.stderr,
            )
            return 2
        if args.guild:
            for guild_id in args.guild:
                guild = discord.Object(guild_id)
                bot.tree.copy_global_to(guild=guild)
                synced = await bot.tree.sync(guild=guild)
                print(f"synced {len(synced)} commands to server {guild_id}")
        else:
            synced = await bot.tree.sync()
            print(f"synced {len(synced)} global commands (Discord may take a while to show them)")
    return 0


async def console(config: Config, args) -> int:
    from bot.app import services
    from bot.console import Console, stdin_lines

    print(f"loading {config.model.name} …", file=sys.stderr)
    try:
        async with services(config) as opened:
            await Console(opened.service).run(stdin_lines())
    except DatabaseUnusable as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    return 0


async def generate(config: Config, args) -> int:
    from bot.app import make_engine
    from bot.engine import GenerationRequest, SamplingParams

    if not args.prompt.strip():
        print("storybot generate: the prompt is empty", file=sys.stderr)
        return 2
    g = config.generation
    try:
        params = SamplingParams(
            temperature=g.temperature if args.temperature is None else args.temperature,
            top_p=g.top_p,
            top_k=g.top_k,
            repetition_penalty=g.repetition_penalty,
            repetition_range=g.repetition_range,
            repetition_slope=g.repetition_slope,
            no_repeat_ngram_size=g.no_repeat_ngram_size,
            no_repeat_ngram_range=g.no_repeat_ngram_range,
            max_new_tokens=g.max_new_tokens if args.max_new_tokens is None else args.max_new_tokens,
            seed=args.seed,
        )
    except ValueError as error:
        print(f"storybot generate: {error}", file=sys.stderr)
        return 2
    engine = make_engine(config)
    await engine.start()
    try:
        ids = tuple(engine.tokenizer.encode(args.prompt))
        result = await engine.generate(GenerationRequest(ids, params))
    finally:
        await engine.close()
    print(args.prompt + result.text)
    return 0


async def model(config: Config, args) -> int:
    from bot.engine import loader

    if args.model_command == "info":
        folder = Path(args.folder).expanduser()
        describe = loader.describe
        if (folder / "model.bin").is_file():  # converted for CTranslate2
            from bot.engine.converted import describe
        for line in await asyncio.to_thread(describe, folder):
            print(line)
        return 0
    if args.model_command == "convert":
        return await convert_model(config, args)
    name = args.name or config.model.name
    target = Path(args.to).expanduser() if args.to else paths.home() / "models" / name
    if target.exists() and any(target.iterdir()):
        print(f"storybot model download: {target} is not empty; name a new folder with --to",
              file=sys.stderr)  # fmt: skip
        return SETUP_ERRORS
    print(f"saving {name} into {target} …", file=sys.stderr)
    size = await asyncio.to_thread(loader.download, name, target)
    print(f"""Saved {name} into {target} ({size / 1e6:.0f} MB).
To use it, set in the config:  [model] name = "{target}"
and HF_HUB_OFFLINE=1 in the environment, so that storybot never reaches for the hub.""")
    return 0


async def convert_model(config: Config, args) -> int:
    """``storybot model convert``: a folder the ctranslate2 backend serves from, on its own."""
    from bot.engine.converted import convert

    name = args.name or config.model.name
    default = paths.home() / "models" / f"{paths.model_label(name)}-{args.quantization}"
    target = Path(args.to).expanduser() if args.to else config.ctranslate2.folder or default
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        print(f"storybot model convert: {target} is not empty; name a new folder with --to",
              file=sys.stderr)  # fmt: skip
        return SETUP_ERRORS
    print(f"converting {name} into {target} ({args.quantization}) …", file=sys.stderr)
    size = await asyncio.to_thread(convert, name, target, args.quantization)
    print(f"""Converted {name} into {target} ({args.quantization}, {size / 1e6:.0f} MB).
To use it, set in the config:
  [model]
  backend = "ctranslate2"
  [ctranslate2]
  folder = "{target}"
The folder holds the tokenizer too: the bot reads nothing else, and never reaches for the hub.""")
    return 0


async def health(config: Config, args) -> int:
    """Read the health file a running bot keeps fresh (see StoryBot.heartbeat)."""
    path = paths.home() / paths.HEALTH_NAME
    try:
        beat = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        print(f"unhealthy: no bot is running here (no {path})")
        return 1
    except (OSError, ValueError) as error:
        print(f"unhealthy: {path} cannot be read: {error}")
        return 1
    age = time.time() - beat.get("time", 0)
    if age > HEALTH_STALE_S:
        print(f"unhealthy: the bot's last sign of life was {age:.0f} s ago")
        return 1
    if not beat.get("connected"):
        print("unhealthy: the bot is running but not connected to Discord")
        return 1
    print(
        f"healthy: connected to {beat.get('guilds', '?')} servers, latency "
        f"{beat.get('latency_ms', '?')} ms, {beat.get('parts_in_flight', 0)} parts being written"
    )
    return 0


async def backup(config: Config, args) -> int:
    from bot.store import Store

    target = Path(args.path)
    if target.exists():
        print(f"storybot backup: {target} already exists; name a new file", file=sys.stderr)
        return 2
    try:
        store = await Store.open(config.database.path)
    except DatabaseUnusable as error:
        print(f"storybot: {error}", file=sys.stderr)
        return 2
    try:
        await store.backup(target)
    except Exception as error:
        print(f"storybot backup: could not write {target}: {error}", file=sys.stderr)
        return 1
    finally:
        await store.close()
    print(f"backed up {config.database.path} to {target}")
    return 0


async def check(config: Config, args) -> int:
    """Each check prints one line; the exit status is 1 if any failed."""
    failures = 0

    def report(ok: bool, detail: str, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {what}: {detail}")

    report(True, str(config.source or "built-in defaults"), "config")
    report(
        bool(config.token),
        f"{TOKEN_ENV} is set" if config.token else f"{TOKEN_ENV} is not set",
        "token",
    )

    from bot.store import inspect

    report(*inspect(config.database.path), what="database")  # reads only: creates nothing

    from bot.limits import Admission

    admission = Admission(config.moderation.limits_storage)
    try:
        await admission.ready()
        report(True, admission.shown_uri, "rate limits")
    except LimitsUnavailable as error:
        report(False, str(error), "rate limits")

    if config.model.backend == "openai":
        await _check_remote(config, report)
        return min(failures, 1)
    if config.model.backend == "ctranslate2":
        await _check_converted(config, report)
        return min(failures, 1)

    from bot.engine.loader import load_model

    try:
        started = time.perf_counter()
        m = config.model
        loaded = await asyncio.to_thread(load_model, m.name, m.device, m.dtype, m.attention)
        seconds = time.perf_counter() - started
        report(True, f"{m.name} loaded in {seconds:.1f}s, {loaded.n_positions} positions", "model")
        report(True, f"{loaded.device} ({loaded.dtype})", "device")
    except ModelUnavailable as error:
        report(False, str(error), "model")
    except Exception as error:
        report(False, f"{config.model.name} did not load: {error}", "model")
    return min(failures, 1)


async def _check_converted(config: Config, report) -> None:
    """The ctranslate2 backend: the converted folder loads, and what it computes in."""
    from bot.engine.converted import load_converted

    c, folder = config.ctranslate2, config.ctranslate2.folder
    try:
        started = time.perf_counter()
        loaded = await asyncio.to_thread(
            load_converted, folder, config.model.device, c.compute_type, c.threads
        )
        seconds = time.perf_counter() - started
        report(
            True,
            f"{folder} (converted from {loaded.source}, stored as {loaded.quantization}) loaded "
            f"in {seconds:.1f}s, {loaded.n_positions} positions",
            "model",
        )
        report(True, f"{loaded.device} ({loaded.compute_type}, CTranslate2)", "device")
    except ModelUnavailable as error:
        report(False, str(error), "model")
    except Exception as error:
        report(False, f"{folder} did not load: {error}", "model")


async def _check_remote(config: Config, report) -> None:
    """The remote backend: the tokenizer here, and which models the server says it serves."""
    from bot.engine.remote import RemoteEngine
    from bot.engine.types import EngineError

    engine = RemoteEngine(config.model, config.remote)
    try:
        await engine.start()
    except ModelUnavailable as error:
        report(False, f"the tokenizer of {config.model.name}: {error}", "model")
        return
    except EngineError as error:
        report(False, str(error), "model server")
        return
    try:
        served = await engine.models()
        listed = ", ".join(served) or "no model"
        report(
            engine.served in served,
            f"{config.remote.base_url} ({engine.flavour}) serves {listed}"
            + ("" if engine.served in served else f"; not {engine.served}: set [remote] model"),
            "model server",
        )
        report(True, f"{engine.n_positions} positions, tokenizer of {config.model.name}", "model")
    finally:
        await engine.close()


if __name__ == "__main__":
    sys.exit(main())
