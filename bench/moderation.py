"""Banned words on real weights, and what admission costs per request.

Usage::

    HF_HUB_OFFLINE=1 python -m bench.moderation [--model DIR] [--seeds N] [--threads N]
        [--examples N] [--redis URI] [--common] [--skip-words]

**Banned words.** Eight prompts, a few seeds each, are written by the real ``StoryService`` on the
real SmolLM2-135M-Instruct (``bench.real_model``), one part at a time with fixed seeds: first with
nothing banned (the baseline); then, with the same seeds, with each prompt's server banning the
content word the baseline wrote in most of that prompt's parts (so the ban has something to do;
``--common`` bans the most written word of any kind, "with" or "that", a harder test). It
prints, per side: how many parts hold the word, how many the final check had written again or
masked, and the writing figures of ``bench.quality`` (clean ends, distinct-2, invented words,
log-probability per token), then parts of both sides to read.

**Admission.** Many members asking at once through ``Admission`` (admit, then spend), in this
process's memory and, with ``--redis`` (or a ``redis-server`` on the PATH, started for the run), in
Redis: microseconds per request, against building the same limits without admitting (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from wordfreq import zipf_frequency

from bench.quality import Part, SeededEngine, judge
from bench.real_model import prepare
from bot.banned import BannedWords
from bot.config import CapsConfig, Config, DatabaseConfig, GenerationConfig, ModelConfig
from bot.engine import LocalEngine
from bot.engine.loader import LoadedModel, load_model
from bot.limits import Admission, Limit
from bot.service import Actor, StoryService
from bot.store import Store
from bot.story import MODES
from tests.servers import redis_server

PROMPTS = [
    "The scaly beast breathed fire over the village, and everyone feared the",
    "Long ago, the castle was ruled by a wise old",
    "The pirates rowed out to board their",
    "Dark clouds gathered over the valley, and soon it began to",
    "The old man in the tall pointed hat was a powerful",
    "She poured milk into a saucer for her little",
    "The lighthouse keeper climbed the stairs one last time",
    "The fisherman pushed his boat into the water and rowed down the",
]
SEED = 2026


class VariedEngine(SeededEngine):
    """The engine, with seeds set by the benchmark: each part's ``seed`` and its attempt, so the
    same part gets the same draws on both sides and a part written again gets new ones."""

    def __init__(self, engine: LocalEngine) -> None:
        super().__init__(engine)
        self.seed = SEED
        self.attempt = 0

    async def generate(self, request, on_delta=None):
        self.attempt += 1
        params = dataclasses.replace(request.params, seed=self.seed * 10 + self.attempt)
        return await self.engine.generate(dataclasses.replace(request, params=params), on_delta)


async def write_parts(
    loaded: LoadedModel, model_dir: Path, seeds: int, bans: dict[str, str] | None
) -> list[tuple[str, str, Part, dict]]:
    """Every prompt ``seeds`` times through the service, one part at a time, the prompt's word
    banned when ``bans`` names one: (word, prompt, part, guard record)."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            model=ModelConfig(name=str(model_dir), device="cpu", request_timeout_s=3600),
            database=DatabaseConfig(path=Path(scratch) / "moderation.db"),
            generation=GenerationConfig(),
            caps=CapsConfig(max_user_rate=600, max_guild_rate=6000),
        )
        engine = LocalEngine(config.model, loaded=loaded)
        await engine.start()
        store = await Store.open(config.database.path)
        varied = VariedEngine(engine)
        service = StoryService(config, store, varied)
        try:
            out = []
            for n, prompt in enumerate(PROMPTS):
                guild = n + 1  # one server per prompt: each bans its own word
                word = (bans or {}).get(prompt, "")
                if bans:
                    await service.ban(Actor(guild, 0, 9, is_moderator=True), word)
                for seed in range(seeds):
                    varied.seed, varied.attempt = SEED + n * 100 + seed, 0
                    written = await service.write(Actor(guild, guild * 100 + seed, 7), prompt)
                    turn = written.model_turn
                    framing = MODES["story"].framing(written.story.created_at)
                    part = Part("story", turn.text, prompt, prompt, framing)
                    out.append((word, prompt, part, turn.settings["guard"]))
        finally:
            await engine.close()
            await store.close()
    return out


def most_written(parts: list[tuple[str, str, Part, dict]], prompt: str, common: bool) -> str:
    """The word (4 letters or more, not the prompt's) in most of the prompt's parts: a content
    word (rarer than Zipf 5, i.e. not "with" or "that"), or with ``common`` any word."""
    seen: collections.Counter[str] = collections.Counter()
    for _, asked, part, _ in parts:
        if asked == prompt:
            seen.update({w.lower() for w in re.findall(r"[A-Za-z]{4,}", part.text)})
    for word in prompt.lower().split():
        seen.pop(word, None)
    ranked = [w for w, _ in seen.most_common() if common or zipf_frequency(w, "en") < 5.0]
    return ranked[0]


def report_words(loaded: LoadedModel, sides: dict[str, list], examples: int) -> None:
    print(f"{'':10} {'parts':>6} {'hold it':>8} {'again':>6} {'masked':>7} "
          f"{'clean end':>10} {'distinct-2':>11} {'invented':>9} {'logprob':>8}")  # fmt: skip
    for side, parts in sides.items():
        hold = sum(BannedWords([w]).find(p.text) is not None for w, _, p, _ in parts)
        again = sum(g.get("banned") == "written again" for *_, g in parts)
        masked = sum(g.get("banned") == "masked" for *_, g in parts)
        figures = judge(loaded, [p for _, _, p, _ in parts])
        print(
            f"{side:10} {len(parts):6d} {hold:8d} {again:6d} {masked:7d} "
            f"{figures['clean end']:10.1%} {figures['distinct-2']:11.3f} "
            f"{figures['invented words']:9.1%} {figures['logprob/token']:8.2f}"
        )
    step = max(1, len(sides["baseline"]) // max(1, examples))
    for n in range(0, len(sides["baseline"]), step)[:examples]:
        word, prompt, base, _ = sides["baseline"][n]
        _, _, ours, guard = sides["banned"][n]
        print(f"\n[{word}] {prompt}\n  nothing banned → {base.text}\n  banned        → {ours.text}"
              f"{'  (' + guard['banned'] + ')' if guard.get('banned') else ''}")  # fmt: skip


async def admission_cost(uri: str, requests: int, members: int) -> tuple[float, float]:
    """Microseconds per request: admit and spend, and building the limits alone."""
    admission = Admission(uri)
    await admission.ready()
    run = f"bench-{time.time_ns()}"

    def limits_for(n: int) -> list[Limit]:
        return [
            Limit.per_minute("user", ("user", run, n % members), 10**6),
            Limit.per_minute("channel", ("channel", run, n % 50), 10**6),
            Limit.per_minute("server", ("server", run), 10**6),
        ]

    started = time.perf_counter()
    for n in range(requests):
        limits_for(n)
    floor = time.perf_counter() - started
    started = time.perf_counter()
    for n in range(requests):
        await (await admission.admit(limits_for(n))).spend()
    spent = time.perf_counter() - started
    return spent / requests * 1e6, floor / requests * 1e6


@contextlib.contextmanager
def local_redis():
    """A throwaway redis-server on a free port, if one is installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with redis_server(binary) as uri:
        yield uri


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.moderation", description=__doc__)
    parser.add_argument("--model", type=Path, help="a model folder (default: SmolLM2-135M)")
    parser.add_argument("--seeds", type=int, default=4, help="parts per prompt and side")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--examples", type=int, default=8, help="parts of both sides to print")
    parser.add_argument("--redis", help="a Redis URI (default: a local redis-server, if any)")
    parser.add_argument("--requests", type=int, default=5000, help="requests for admission")
    parser.add_argument("--skip-words", action="store_true", help="only the admission figures")
    parser.add_argument(
        "--common", action="store_true", help='ban the most written word even if common ("with")'
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_words:
        model_dir = args.model or prepare()
        loaded = load_model(str(model_dir), device="cpu")
        print(f"model: {model_dir.name}, {len(PROMPTS)} prompts × {args.seeds} seeds per side")
        started = time.monotonic()
        baseline = asyncio.run(write_parts(loaded, model_dir, args.seeds, None))
        bans = {prompt: most_written(baseline, prompt, args.common) for prompt in PROMPTS}
        baseline = [(bans[prompt], prompt, part, guard) for _, prompt, part, guard in baseline]
        print(f"baseline: {time.monotonic() - started:.0f} s; banned: {', '.join(bans.values())}")
        started = time.monotonic()
        banned = asyncio.run(write_parts(loaded, model_dir, args.seeds, bans))
        print(f"banned: {time.monotonic() - started:.0f} s")
        report_words(loaded, {"baseline": baseline, "banned": banned}, args.examples)

    print("\nadmission, µs per request (admit + spend; floor: building the limits alone)")
    with contextlib.ExitStack() as stack:
        uris = {"memory": "memory://"}
        redis = args.redis or stack.enter_context(local_redis())
        if redis:
            uris["redis"] = redis
        for name, uri in uris.items():
            cost, floor = asyncio.run(admission_cost(uri, args.requests, members=1000))
            print(f"{name:8} {cost:8.1f} µs  (floor {floor:.1f} µs, {args.requests} requests, "
                  f"1000 members)")  # fmt: skip


if __name__ == "__main__":
    main()
