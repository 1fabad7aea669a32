"""The ``storybot`` command: run | sync | console | generate | backup | check."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
import time
from pathlib import Path

from bot.config import CONFIG_ENV, TOKEN_ENV, Config, ConfigError, load_config
from bot.errors import DatabaseUnusable
from bot.logsafety import configure_logging

log = logging.getLogger("storybot")

NO_TOKEN = f"""{TOKEN_ENV} is not set.
Create an application and bot at https://discord.com/developers/applications, copy the bot's token,
then start storybot with it in the environment:

    {TOKEN_ENV}=your-bot-token storybot --config config.toml run

(The token is read from the environment only, never from the config file.)"""


def build_parser() -> argparse.ArgumentParser:
    config_help = f"TOML config file (default: ${CONFIG_ENV}, else built-in defaults)"
    parser = argparse.ArgumentParser(prog="storybot", description=__doc__)
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

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, parents=[shared])

    command("run", "connect to Discord and serve (needs DISCORD_TOKEN)")
    sync = command("sync", "register the slash commands with Discord")
    sync.add_argument(
        "--guild", type=int, action="append", default=[], help="sync to this server only"
    )
    model_help = "model hub id or local directory (overrides the config)"
    console = command("console", "a local REPL with the same commands, no Discord needed")
    console.add_argument("--model", help=model_help)
    console.add_argument("--db", help="SQLite file (overrides the config)")
    generate = command("generate", "continue one prompt and print the result")
    generate.add_argument("--model", help=model_help)
    generate.add_argument("prompt")
    generate.add_argument("--max-new-tokens", type=int, default=None, help="1 to 1000")
    generate.add_argument("--temperature", type=float, default=None, help="0 (greedy) or more")
    generate.add_argument("--seed", type=int, default=None)
    backup = command("backup", "copy the database to a new file (safe while the bot runs)")
    backup.add_argument("path", help="the new file to write")
    check = command("check", "diagnose the set-up: config, token, database, model, device")
    check.add_argument("--model", help=model_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    redactor = configure_logging(args.verbose)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"storybot: configuration error: {error}", file=sys.stderr)
        return 2
    redactor.secrets += (config.token.reveal(),) if config.token else ()
    if getattr(args, "model", None):
        config = dataclasses.replace(
            config, model=dataclasses.replace(config.model, name=args.model)
        )
    if getattr(args, "db", None):
        config = dataclasses.replace(
            config, database=dataclasses.replace(config.database, path=Path(args.db))
        )
    handler = {
        "run": run,
        "sync": sync,
        "console": console,
        "generate": generate,
        "backup": backup,
        "check": check,
    }
    try:
        return asyncio.run(handler[args.command](config, args))
    except KeyboardInterrupt:
        return 130


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
    from bot.engine import GenerationRequest, LocalEngine, SamplingParams

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
    engine = LocalEngine(config.model)
    await engine.start()
    try:
        ids = tuple(engine.tokenizer.encode(args.prompt))
        result = await engine.generate(GenerationRequest(ids, params))
    finally:
        await engine.close()
    print(args.prompt + result.text)
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

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {what}: {detail}")

    report(True, "config", str(config.source or "built-in defaults"))
    report(
        bool(config.token),
        "token",
        f"{TOKEN_ENV} is set" if config.token else f"{TOKEN_ENV} is not set",
    )

    from bot.store import Store

    store = None
    try:
        store = await Store.open(config.database.path)
        version = await store.schema_version()
        await store.check_writable()
        health = await store.quick_check()
        if health == "ok":
            path = config.database.path
            report(True, "database", f"{path} is writable and sound (schema version {version})")
        else:
            report(False, "database", f"{config.database.path} is damaged: {health}")
    except DatabaseUnusable as error:
        report(False, "database", str(error))
    except Exception as error:
        report(False, "database", f"{config.database.path}: {error}")
    finally:
        if store is not None:
            await store.close()

    from bot.engine.loader import load_model

    try:
        started = time.perf_counter()
        m = config.model
        loaded = await asyncio.to_thread(load_model, m.name, m.device, m.dtype, m.attention)
        seconds = time.perf_counter() - started
        report(True, "model", f"{m.name} loaded in {seconds:.1f}s, {loaded.n_positions} positions")
        report(True, "device", f"{loaded.device} ({loaded.dtype})")
    except Exception as error:
        report(False, "model", f"{config.model.name} did not load: {error}")
    return min(failures, 1)


if __name__ == "__main__":
    sys.exit(main())
