"""How many parts a second one bot process can handle when the model is elsewhere.

Usage::

    python -m bench.capacity [--channels 64] [--parts 10] [--deltas 120] [--limits memory|redis]

The real ``StoryService`` (rules, context assembly, cleanup, SQLite commits on a temporary file,
admission) writes through the real ``RemoteEngine`` to a stub OpenAI-compatible server in this
process that answers every request at once with ``--deltas`` streamed events. So the model costs
nothing and the bot's own path is what is measured: ``--channels`` channels at once, each asking
for ``--parts`` parts one after another (a line, then the model's part). It prints parts a second
and the median and 95th percentile time per part; Discord's own round trips are not included
(``bench.discord_runs`` measures those against the local Discord).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.stub import event_stream, serve
from bot.config import (
    CapsConfig,
    Config,
    DatabaseConfig,
    GenerationConfig,
    ModelConfig,
    ModerationConfig,
    RemoteConfig,
)
from bot.engine.remote import RemoteEngine
from bot.limits import Admission
from bot.service import Actor, StoryService
from bot.store import Store
from tests.tinymodel import TOKENIZER_DIR, build_model

WORDS = [
    "the",
    "old",
    "keeper",
    "climbed",
    "to",
    "the",
    "lamp",
    "and",
    "looked",
    "out",
    "over",
    "the",
    "dark",
    "water",
]


def part_events(deltas: int) -> bytes:
    """``deltas`` streamed events: words, then a sentence's end."""
    words = [" " + WORDS[n % len(WORDS)] for n in range(deltas - 1)]
    return event_stream([*words, "."], "stop")


async def run(args: argparse.Namespace, model_dir: Path, redis: str | None) -> dict[str, float]:
    body = part_events(args.deltas)
    runner, url = await serve(lambda _: body)
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            model=ModelConfig(name=str(model_dir), backend="openai", max_queue=10_000),
            remote=RemoteConfig(base_url=url, model="stub"),
            database=DatabaseConfig(path=Path(scratch) / "capacity.db"),
            generation=GenerationConfig(
                max_new_tokens=args.deltas, explanations=False, user_rate=600, channel_rate=6000
            ),
            caps=CapsConfig(max_user_rate=600, max_guild_rate=6000),
            moderation=ModerationConfig(limits_storage=redis or "memory://"),
        )
        engine = RemoteEngine(config.model, config.remote)
        await engine.start()
        store = await Store.open(config.database.path)
        admission = Admission(config.moderation.limits_storage)
        service = StoryService(config, store, engine, admission)
        times: list[float] = []

        async def channel(n: int) -> None:
            actor = Actor(1 + n % 8, 1000 + n, 50 + n)
            await service.write(actor, "The lighthouse keeper woke before dawn.")
            for k in range(args.parts - 1):
                started = time.perf_counter()
                await service.continue_(actor, f"Line {k}: the wind rose." if k % 2 else None)
                times.append(time.perf_counter() - started)

        try:
            started = time.perf_counter()
            await asyncio.gather(*(channel(n) for n in range(args.channels)))
            wall = time.perf_counter() - started
        finally:
            await engine.close()
            await store.close()
            await runner.cleanup()
    parts = args.channels * args.parts
    ordered = sorted(times)
    return {
        "parts": parts,
        "wall_s": wall,
        "parts_per_s": parts / wall,
        "p50_ms": statistics.median(ordered) * 1000,
        "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--parts", type=int, default=10, help="per channel, one after another")
    parser.add_argument("--deltas", type=int, default=120, help="streamed events per part")
    parser.add_argument("--redis", help="keep the rate-limit windows in this Redis")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp))  # the tokenizer (GPT-2's) and a config
        assert TOKENIZER_DIR.is_dir()
        figures = asyncio.run(run(args, model_dir, args.redis))
    print(
        f"{figures['parts']} parts from {args.channels} channels at once, {args.deltas} streamed "
        f"events each, limits in {'redis' if args.redis else 'memory'}: "
        f"{figures['parts_per_s']:.1f} parts/s, p50 {figures['p50_ms']:.0f} ms, "
        f"p95 {figures['p95_ms']:.0f} ms, wall {figures['wall_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
