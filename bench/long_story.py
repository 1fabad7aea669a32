"""A long story answers /continue within the same budget as a short one.

Usage::

    python -m bench.long_story [--turns 200] [--model DIR] [--runs 2]

Two stories are stored directly (no generation): a short one (an opening and one part) and one
of ``--turns`` turns of member lines and parts. Each then gets ``--runs`` /continue through the
real service and engine, with a memory and an author's note set, as members would. The lines
print how many tokens the model read (the context is capped at ``model.context_tokens`` less the
part's length), how many turns were left out, and the time per /continue; the last line the
ratio of the long story's time to the short one's. The model is the real offline one
(``bench.real_model``) unless ``--model`` names another folder.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bot.config import Config, DatabaseConfig, ModelConfig
from bot.engine import LocalEngine
from bot.service import Actor, StoryService
from bot.store import NewTurn, Store

LINES = [
    "The lighthouse keeper climbed the stairs again, counting them as she always did.",
    "Far out on the water a lantern blinked twice, then went dark.",
    "She wrote the time in the log and underlined it.",
    "Nobody answered the radio, though she called until her voice went hoarse.",
]


async def fill(store: Store, channel: int, turns: int) -> None:
    story, _, _ = await store.start_story(1, channel, "story", "The lighthouse keeper woke.", 1)
    for n in range(1, turns):
        kind = "member" if n % 2 else "model"
        text = f"{LINES[n % len(LINES)]} ({n})"
        await store.append_turns(story.id, [NewTurn(kind, 1 if kind == "member" else None, text)])
    await store.set_memory(
        story.id, "The keeper is called Mira. The lighthouse is on Skerry Island."
    )
    await store.set_note(story.id, "Something is coming across the water.")


async def measure(service: StoryService, channel: int, runs: int) -> tuple[list[float], dict]:
    actor = Actor(guild_id=1, channel_id=channel, user_id=2)
    seconds, record = [], {}
    for _ in range(runs):
        started = time.perf_counter()
        written = await service.continue_(actor)
        seconds.append(time.perf_counter() - started)
        record = written.model_turn.settings
    return seconds, record


async def main_async(args) -> None:
    if args.model:
        model = Path(args.model)
    else:
        from bench.real_model import prepare

        model = prepare()
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            model=ModelConfig(name=str(model), device="cpu"),
            database=DatabaseConfig(path=Path(scratch) / "long.db"),
        )
        store = await Store.open(config.database.path)
        engine = LocalEngine(config.model)
        await engine.start()
        try:
            service = StoryService(config, store, engine)
            await fill(store, 1, 2)
            await fill(store, 2, args.turns)
            figures = {}
            for channel, label in ((1, "short"), (2, f"{args.turns} turns")):
                seconds, record = await measure(service, channel, args.runs)
                figures[label] = statistics.median(seconds)
                print(
                    f"{label}: read {record['prompt_tokens']} tokens "
                    f"(turns left out {record['turns_dropped']}), wrote {record['new_tokens']}, "
                    f"median {figures[label]:.1f} s a /continue over {args.runs} runs",
                    flush=True,
                )
        finally:
            await engine.close()
            await store.close()
    short, long = figures.values()
    print(f"long/short time ratio={long / short:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--model", help="a model folder (default: the real offline model)")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
