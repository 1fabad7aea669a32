"""Throughput of the batching ``LocalEngine`` against static batching and one request at a time.

Usage::

    HF_HUB_OFFLINE=1 python -m bench.throughput [--json PATH] [--requests 16] [--new-tokens 64]
        [--prompt-tokens 100] [--max-batch-size N] [--threads N]
        [--arrivals burst|staggered] [--stagger 4] [--story-tokens N]
        [--device auto|cpu|cuda] [--dtype auto|float32|float16|bfloat16] [--tiny]
        [--static] [--compile] [--attention sdpa|eager]
        [--backend local|ctranslate2|openai [--ct2-compute-type int8] [--base-url URL]]

A random GPT-2 of the real 124M shape (``--tiny``: 2 layers, 2 heads, 64 wide, for a quick smoke
run) is built once around the real GPT-2 tokenizer into a temporary directory and loaded through
the production loader, ``bot.engine.loader.load_model``. Every side then serves the same requests:
prompts of English-like sentences cut to exactly ``--prompt-tokens`` tokens, different for every
request, each asking for exactly ``--new-tokens`` tokens (min = max, so every row does the same
work) with the same sampling settings, all at once (``--arrivals burst``) or at seeded random
moments spread over ``--stagger`` seconds (``staggered``, the default).

- **baseline** (one at a time): one Hugging Face ``model.generate`` per request, run one after
  another on a single-thread executor; each request's coroutine awaits its own future.
- **static**: one padded ``model.generate`` of every request, started when the last has arrived.
- **ours**: ``LocalEngine.generate`` for each request, as concurrent tasks started at their
  arrival times, decoded together by continuous batching (``--static``: a request that arrives
  while a batch is running waits for the whole batch to finish, for comparison).
- **ctranslate2** (``--backend ctranslate2``): the CTranslate2 engine on the same weights,
  converted for the run (not timed) to ``--ct2-compute-type``, on as many threads as ours.

Each side is warmed up once with a short request before it is timed, so one-time costs (first
kernel calls, allocator growth) are not counted. For each side the benchmark prints wall time,
generated tokens per second, p50/p95 latency from arrival to result, and the event loop's lag (p99
and max), measured by a heartbeat that sleeps 10 ms in a loop and records how late it wakes. It
checks that every side generated the same number of tokens; the last line is ``speedup=X.XX``
(ours over one at a time) and the other ratios: ``vs_static`` and ``ctranslate2/ours``. ``--json
PATH`` writes the same figures with the settings.

``--story-tokens N`` measures, instead, the first token of a ``/continue`` on a story of N tokens
with its context encoded afresh and resumed from the engine's stored context (see
``first_token_on_a_long_story``); its last line is the ratio of the two.

``--backend openai`` compares, instead, ours in this process with the same model behind an
OpenAI-compatible server through the remote engine (``--base-url``, else `transformers serve`
started for the run), and measures the remote engine's own cost per request and per streamed
delta against an in-process stub that answers at once; its last line is remote over local.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from bench.stub import event_stream, serve
from bot.config import ATTENTION, DEVICES, DTYPES, CTranslate2Config, ModelConfig, RemoteConfig
from bot.engine import GenerationRequest, LocalEngine, SamplingParams
from bot.engine.ctranslate2 import CTranslate2Engine, convert
from bot.engine.loader import LoadedModel, load_model
from bot.engine.remote import RemoteEngine
from tests.servers import answers_http, free_port, running
from tests.servers import transformers_serve as transformers_serve_command
from tests.tinymodel import build_model

TINY_SHAPE = {"n_layer": 2, "n_head": 2, "n_embd": 64}
GPT2_SHAPE = {"n_layer": 12, "n_head": 12, "n_embd": 768}  # GPT2Config() defaults: 124M
TEMPERATURE = 0.9
TOP_P = 0.95
HEARTBEAT_S = 0.010
WARMUP_TOKENS = 4
SEED = 1234
STORY_REPEATS = 5  # stories measured with --story-tokens (the median is reported)
PART_TOKENS = 60  # the story's latest part, written before the measured turn
PART_CUT = 10  # tokens the bot's cleanup cuts from it (to a sentence end)
NO_TIMEOUT_S = 24 * 3600.0  # a slow run should report its figures, not time its requests out

# One request in (its prompt and sampling settings), the number of tokens it generated out.
Submit = Callable[[tuple[int, ...], SamplingParams], Awaitable[int]]

_SUBJECTS = (
    "The old lighthouse keeper", "A girl with a paper lantern", "The captain of the night ferry",
    "My grandmother", "A tired knight", "The baker on Elm Street", "Two foxes", "The last dragon",
    "A young wizard", "The mayor's cat", "A stranger in a grey coat", "The village choir",
)  # fmt: skip
_VERBS = (
    "walked slowly towards", "whispered a secret about", "could not stop thinking about",
    "painted a picture of", "argued all night over", "went looking for", "wrote a long letter to",
    "was afraid of", "laughed at", "carefully hid", "dreamed about", "sang a quiet song to",
)  # fmt: skip
_OBJECTS = (
    "the silver key", "the frozen river", "an empty castle", "the smallest star in the sky",
    "a map without names", "the broken clock", "a field of sunflowers", "the king's lost boots",
    "a boat made of glass", "the door at the end of the hall", "an army of snails", "the moon",
)  # fmt: skip
_ENDINGS = (
    "before the sun came up.", "while the rain kept falling.", "and nobody ever found out why.",
    "because the wind told them to.", "as the bells rang out over the town.", "in the middle of winter.",
    "without saying a single word.", "until the candles burned down.", "just as the storm began.",
    "and then everything changed.", "long after midnight.", "for the very last time.",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Workload:
    """The requests both sides serve: prompts, arrival offsets in seconds, sampling settings."""

    prompts: tuple[tuple[int, ...], ...]
    arrivals: tuple[float, ...]
    params: SamplingParams

    async def warm_up(self, submit: Submit) -> None:
        """Send one short request, so that one-time costs are not timed."""
        params = dataclasses.replace(
            self.params, min_new_tokens=WARMUP_TOKENS, max_new_tokens=WARMUP_TOKENS
        )
        await submit(self.prompts[0][:8], params)


@dataclasses.dataclass(frozen=True)
class SideResult:
    """What one side achieved on the workload."""

    wall_s: float
    tokens: int
    tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    loop_lag_p99_ms: float
    loop_lag_max_ms: float

    @classmethod
    def of(
        cls, wall: float, tokens: int, latencies: Sequence[float], lags: Sequence[float]
    ) -> SideResult:
        """The figures of a run that took ``wall`` seconds."""
        return cls(
            wall_s=wall,
            tokens=tokens,
            tokens_per_s=tokens / wall,
            latency_p50_s=percentile(latencies, 50),
            latency_p95_s=percentile(latencies, 95),
            loop_lag_p99_ms=percentile(lags or [0.0], 99) * 1000,
            loop_lag_max_ms=max(lags or [0.0]) * 1000,
        )

    def line(self, name: str) -> str:
        """The figures on one line, labelled ``name``."""
        return (
            f"{name:<13} wall {self.wall_s:7.2f} s | {self.tokens_per_s:7.1f} tokens/s | "
            f"latency p50 {self.latency_p50_s:6.2f} s p95 {self.latency_p95_s:6.2f} s | "
            f"loop lag p99 {self.loop_lag_p99_ms:6.1f} ms max {self.loop_lag_max_ms:6.1f} ms"
        )


# -- the workload -----------------------------------------------------------------------------


def story_text(rng: random.Random, sentences: int) -> str:
    """Some English-like sentences, picked at random from small phrase lists."""
    return " ".join(
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDINGS)}"
        for _ in range(sentences)
    )


def make_prompts(tokenizer, count: int, length: int, rng: random.Random) -> list[tuple[int, ...]]:
    """``count`` different prompts of exactly ``length`` tokens each."""
    sentences = length // 9 + 1  # every sentence has at least nine words, so as many tokens
    return [tuple(tokenizer.encode(story_text(rng, sentences))[:length]) for _ in range(count)]


def make_workload(tokenizer, args: argparse.Namespace) -> Workload:
    """The seeded request set for this run."""
    rng = random.Random(SEED)
    prompts = make_prompts(tokenizer, args.requests, args.prompt_tokens, rng)
    spread = args.stagger if args.arrivals == "staggered" else 0.0
    arrivals = sorted(rng.uniform(0, spread) for _ in range(args.requests))
    params = SamplingParams(
        temperature=TEMPERATURE,
        top_p=TOP_P,
        min_new_tokens=args.new_tokens,
        max_new_tokens=args.new_tokens,
    )
    return Workload(tuple(prompts), tuple(arrivals), params)


# -- measuring --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def _heartbeat(lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(HEARTBEAT_S)
        lags.append(loop.time() - before - HEARTBEAT_S)


@contextlib.asynccontextmanager
async def loop_lag() -> AsyncIterator[list[float]]:
    """Record, in seconds, how late a 10 ms sleep wakes up, for as long as the block runs."""
    lags: list[float] = []
    task = asyncio.create_task(_heartbeat(lags))
    try:
        yield lags
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_side(submit: Submit, workload: Workload) -> SideResult:
    """Send every request at its arrival time through ``submit`` and measure the whole run."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(prompt: tuple[int, ...], offset: float) -> tuple[float, int]:
        await asyncio.sleep(offset)
        tokens = await submit(prompt, workload.params)
        return loop.time() - (start + offset), tokens

    async with loop_lag() as lags:
        done = await asyncio.gather(
            *(one(p, t) for p, t in zip(workload.prompts, workload.arrivals, strict=True))
        )
    wall = loop.time() - start
    return SideResult.of(wall, sum(count for _, count in done), [t for t, _ in done], lags)


# -- the two sides ----------------------------------------------------------------------------


def hf_generate(
    loaded: LoadedModel, prompts: Sequence[tuple[int, ...]], params: SamplingParams
) -> int:
    """One Hugging Face ``generate`` call with ``params`` for all ``prompts`` at once, padded on
    the left to the longest (static batching); returns how many tokens it added in all."""
    longest = max(len(p) for p in prompts)
    pad = loaded.eos_id or 0
    input_ids = torch.tensor([[pad] * (longest - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids=input_ids.to(loaded.device),
            attention_mask=mask.to(loaded.device),
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_new_tokens=params.min_new_tokens,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=pad,
        )
    return (output.shape[1] - longest) * len(prompts)


def generating_in(executor: ThreadPoolExecutor, loaded: LoadedModel) -> Submit:
    """A submit that runs one ``generate`` per request on ``executor``."""
    loop = asyncio.get_running_loop()

    def submit(prompt: tuple[int, ...], params: SamplingParams) -> asyncio.Future[int]:
        return loop.run_in_executor(executor, hf_generate, loaded, [prompt], params)

    return submit


async def run_static(loaded: LoadedModel, workload: Workload) -> SideResult:
    """All requests in one padded ``generate``, started when the last one has arrived."""
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1, thread_name_prefix="bench-static") as executor:
        await workload.warm_up(generating_in(executor, loaded))
        start = loop.time()
        async with loop_lag() as lags:
            await asyncio.sleep(max(workload.arrivals))
            tokens = await loop.run_in_executor(
                executor, hf_generate, loaded, workload.prompts, workload.params
            )
        end = loop.time()
    latencies = [end - (start + offset) for offset in workload.arrivals]
    return SideResult.of(end - start, tokens, latencies, lags)


async def run_baseline(loaded: LoadedModel, workload: Workload) -> SideResult:
    """One ``generate`` per request, in arrival order, on a single-thread executor."""
    with ThreadPoolExecutor(1, thread_name_prefix="bench-baseline") as executor:
        submit = generating_in(executor, loaded)
        await workload.warm_up(submit)
        return await run_side(submit, workload)


async def run_engine(
    loaded: LoadedModel, config: ModelConfig, workload: Workload, explain: bool = False
) -> SideResult:
    """Every request through ``LocalEngine.generate``, batched by the engine (``explain``: each
    noting how sure the model was of every token)."""
    engine = LocalEngine(config, loaded=loaded)
    await engine.start()
    try:

        async def submit(prompt: tuple[int, ...], params: SamplingParams) -> int:
            result = await engine.generate(GenerationRequest(prompt, params, explain=explain))
            return len(result.token_ids)

        await workload.warm_up(submit)
        return await run_side(submit, workload)
    finally:
        await engine.close()


# -- the remote backend -----------------------------------------------------------------------


@contextlib.contextmanager
def transformers_serve(model_dir: Path, continuous: bool = False):
    """`transformers serve` on a free local port with ``model_dir``, for this run
    (``continuous``: with its continuous batching)."""
    port = free_port()
    command = transformers_serve_command(
        model_dir, port, *(["--continuous-batching"] if continuous else [])
    )
    url = f"http://127.0.0.1:{port}/v1"
    # as many threads as ours, for a fair comparison
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    with running(command, answers_http(f"{url}/models"), timeout_s=120, env=env):
        yield url


async def run_remote(
    model_dir: Path, config: ModelConfig, workload: Workload, base_url: str
) -> SideResult:
    """Every request through ``RemoteEngine.generate``: the server batches them its own way."""
    engine = RemoteEngine(config, RemoteConfig(base_url=base_url, model=str(model_dir)))
    await engine.start()
    try:

        async def submit(prompt: tuple[int, ...], params: SamplingParams) -> int:
            result = await engine.generate(GenerationRequest(prompt, params))
            return len(result.token_ids)

        await workload.warm_up(submit)
        return await run_side(submit, workload)
    finally:
        await engine.close()


async def bot_side_overhead(config: ModelConfig, tokenizer_dir: Path, requests: int, deltas: int):
    """What the remote engine itself costs: requests to a stub in this process that answers at
    once, streaming one event, then ``deltas`` events (200: enough for a steady slope). The cost of a request is the first's time;
    of a delta, the difference over the extra events. Both include the stub's own work and the
    local HTTP round trip, so they bound the bot's share from above."""

    bodies = {count: event_stream([" word"] * count, "length") for count in (1, deltas)}
    runner, url = await serve(lambda asked: bodies[asked["max_tokens"]])
    model = dataclasses.replace(config, name=str(tokenizer_dir))
    engine = RemoteEngine(model, RemoteConfig(base_url=url, model="stub"))
    await engine.start()
    try:
        prompt = tuple(engine.tokenizer.encode("Once upon a time"))
        seconds = {}
        for count in (1, deltas):
            request = GenerationRequest(prompt, SamplingParams(max_new_tokens=count))
            for _ in range(20):  # warm the connection pool
                await engine.generate(request, lambda _: None)
            started = time.perf_counter()
            for _ in range(requests):
                await engine.generate(request, lambda _: None)
            seconds[count] = (time.perf_counter() - started) / requests
    finally:
        await engine.close()
        await runner.cleanup()
    return seconds[1], (seconds[deltas] - seconds[1]) / max(1, deltas - 1)


# -- the command ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput",
        description="Compare LocalEngine's batching with one model.generate at a time.",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="default: %(default)s")
    parser.add_argument("--dtype", choices=DTYPES, default="auto", help="default: %(default)s")
    parser.add_argument("--requests", type=int, default=16, help="default: %(default)s")
    parser.add_argument("--new-tokens", type=int, default=64, help="per request; default: 64")
    parser.add_argument("--prompt-tokens", type=int, default=100, help="per request; default: 100")
    parser.add_argument("--max-batch-size", type=int, help="the engine's; default: --requests")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads; default: torch's")
    parser.add_argument(
        "--arrivals",
        choices=("burst", "staggered"),
        default="staggered",
        help="burst: every request at once; staggered: at random moments over --stagger seconds "
        "(default)",
    )
    parser.add_argument(
        "--stagger", type=float, default=4.0, help="staggered arrivals' spread, s; default: 4"
    )
    parser.add_argument(
        "--story-tokens",
        type=int,
        help="instead: time to the first token of a /continue on a story this long, with the "
        "story's context encoded afresh and reused",
    )
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, for a smoke run")
    parser.add_argument(
        "--static", action="store_true", help="ours without continuous batching, for comparison"
    )
    parser.add_argument("--compile", action="store_true", help="ours with torch.compile")
    parser.add_argument("--attention", choices=ATTENTION, default="sdpa", help="default: sdpa")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--backend",
        choices=("local", "ctranslate2", "openai"),
        default="local",
        help="ctranslate2: the CTranslate2 engine on the same model too (converted for the run); "
        "openai: ours in this process against the same model behind an OpenAI-compatible "
        "server (--base-url, else `transformers serve` started for the run), and the remote "
        "engine's own cost per request and per delta",
    )
    parser.add_argument(
        "--ct2-compute-type",
        choices=("int8", "int8_float32", "int16", "float32"),
        default="int8",
        help="what the CTranslate2 side computes in; default: int8",
    )
    parser.add_argument("--base-url", help="the server, serving the benchmark's model folder")
    parser.add_argument(
        "--serve-continuous-batching",
        action="store_true",
        help="without --base-url: start `transformers serve` with its continuous batching",
    )
    parser.add_argument(
        "--explain",
        action="store_true",
        help="instead of the baseline: ours with and without token notes, twice each, and the "
        "notes' overhead",
    )
    args = parser.parse_args(argv)
    for name in (
        "requests",
        "new_tokens",
        "prompt_tokens",
        "max_batch_size",
        "threads",
        "story_tokens",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.stagger < 0:
        parser.error(f"--stagger must not be negative, got {args.stagger}")
    if args.max_batch_size is None:
        args.max_batch_size = args.requests
    return args


def settings(args: argparse.Namespace, loaded: LoadedModel) -> dict[str, object]:
    """What this run measured, for the report and the JSON file."""
    return {
        "model": "tiny" if args.tiny else "gpt2-124M",
        "requests": args.requests,
        "prompt_tokens": args.prompt_tokens,
        "new_tokens": args.new_tokens,
        "max_batch_size": args.max_batch_size,
        "batching": "static" if args.static else "continuous",
        "compile": args.compile,
        "attention": args.attention,
        "arrivals": args.arrivals,
        "stagger_s": args.stagger if args.arrivals == "staggered" else 0.0,
        "story_tokens": args.story_tokens,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "seed": SEED,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


async def benchmark(args: argparse.Namespace, model_dir: Path) -> dict[str, object]:
    """Load the model once, run both sides on the same workload and print the figures."""
    loaded = load_model(str(model_dir), args.device, args.dtype, args.attention)
    workload = make_workload(loaded.tokenizer, args)
    config = ModelConfig(
        name=str(model_dir),
        device=args.device,
        dtype=args.dtype,
        attention=args.attention,
        compile=args.compile,
        continuous_batching=not args.static,
        max_batch_size=args.max_batch_size,
        max_queue=max(ModelConfig.max_queue, args.requests),
        request_timeout_s=NO_TIMEOUT_S,
    )
    report = settings(args, loaded)
    print(" ".join(f"{key}={value}" for key, value in report.items()), flush=True)
    if args.explain:
        return report | await explain_overhead(loaded, config, workload)
    if args.backend == "openai":
        return report | await remote_against_local(args, model_dir, loaded, config, workload)

    if args.story_tokens:
        return report | await first_token_on_a_long_story(args, loaded, config)

    sides = {"baseline": await run_baseline(loaded, workload)}
    print(sides["baseline"].line("one-at-a-time"), flush=True)
    sides["static"] = await run_static(loaded, workload)
    print(sides["static"].line("static"), flush=True)
    sides["ours"] = await run_engine(loaded, config, workload)
    print(sides["ours"].line("ours"), flush=True)
    ours = sides["ours"].tokens_per_s
    ratios = {"vs_static": ours / sides["static"].tokens_per_s}
    if args.backend == "ctranslate2":
        sides["ctranslate2"] = await run_ctranslate2(args, model_dir, config, workload)
        print(sides["ctranslate2"].line("ctranslate2"), flush=True)
        ratios["ctranslate2/ours"] = sides["ctranslate2"].tokens_per_s / ours
    tokens = {side.tokens for side in sides.values()}
    assert len(tokens) == 1, f"the sides generated different numbers of tokens: {sides}"
    print(f"generated tokens: {sides['ours'].tokens} on each side")
    figures = {name: dataclasses.asdict(side) for name, side in sides.items()}
    speedup = ours / sides["baseline"].tokens_per_s
    return (
        report | figures | {"generated_tokens": tokens.pop(), "speedup": speedup, "ratios": ratios}
    )


async def run_ctranslate2(
    args: argparse.Namespace, model_dir: Path, config: ModelConfig, workload: Workload
) -> SideResult:
    """Every request through the CTranslate2 engine, the model converted for it first (not
    timed), computing in ``--ct2-compute-type`` on as many threads as ours."""
    folder = model_dir.parent / f"{model_dir.name}-ct2-{args.ct2_compute_type}"
    if not folder.exists():
        convert(str(model_dir), folder, args.ct2_compute_type)
    ct2 = CTranslate2Config(
        folder=folder, compute_type=args.ct2_compute_type, threads=torch.get_num_threads()
    )
    engine = CTranslate2Engine(config, ct2)
    await engine.start()
    try:

        async def submit(prompt: tuple[int, ...], params: SamplingParams) -> int:
            return len((await engine.generate(GenerationRequest(prompt, params))).token_ids)

        await workload.warm_up(submit)
        return await run_side(submit, workload)
    finally:
        await engine.close()


async def first_token_on_a_long_story(
    args: argparse.Namespace, loaded: LoadedModel, config: ModelConfig
) -> dict[str, object]:
    """Time to the first token of a ``/continue`` on a story of ``--story-tokens`` tokens, with
    the story's context encoded afresh and with the engine reusing what its last part encoded.

    As in the bot: the engine first writes the story's latest part (``PART_TOKENS``) after the
    rest of it; the next turn's context is the same story, that part cut to a sentence end (10
    tokens fewer) and a member's line, ``--story-tokens`` in all; the figures are how long the
    engine takes to write that turn's first token, and its whole part of ``--new-tokens``.
    """
    rng = random.Random(SEED)
    stories = make_prompts(loaded.tokenizer, STORY_REPEATS, args.story_tokens, rng)
    figures: dict[str, dict[str, list[float]]] = {}
    for side, budget in (("re-encode", 0), ("reuse", config.prefix_cache_mb)):
        engine = LocalEngine(dataclasses.replace(config, prefix_cache_mb=budget), loaded=loaded)
        await engine.start()
        try:
            first, whole = [], []
            for story in stories:
                turn = await next_turn(engine, story, args.story_tokens)
                part = SamplingParams(
                    temperature=TEMPERATURE, top_p=TOP_P, min_new_tokens=args.new_tokens,
                    max_new_tokens=args.new_tokens,
                )  # fmt: skip
                result = await engine.generate(GenerationRequest(turn, part))
                first.append(result.first_token_s)
                whole.append(result.elapsed_s)
            figures[side] = {"first_token_s": first, "part_s": whole}
            hits = engine.stats().prefix_hits
        finally:
            await engine.close()
        print(f"{side:<10} first token {statistics.median(first):6.3f} s | whole part of "
              f"{args.new_tokens} tokens {statistics.median(whole):6.2f} s | median of "
              f"{len(first)} stories of {args.story_tokens} tokens | stored-context hits {hits}",
              flush=True)  # fmt: skip
    ratio = statistics.median(figures["reuse"]["first_token_s"]) / statistics.median(
        figures["re-encode"]["first_token_s"]
    )
    return {"stories": figures, "speedup": 1 / ratio, "ratios": {"first_token_reuse/full": ratio}}


async def next_turn(engine: LocalEngine, story: tuple[int, ...], length: int) -> tuple[int, ...]:
    """Write the story's latest part with ``engine``; the next turn's context of ``length``."""
    member_line = tuple(engine.tokenizer.encode(" Then the door opened and Mara stepped inside."))
    before = story[: length - PART_TOKENS - len(member_line) + PART_CUT]
    params = SamplingParams(
        temperature=TEMPERATURE, top_p=TOP_P, min_new_tokens=PART_TOKENS, max_new_tokens=PART_TOKENS
    )
    part = (await engine.generate(GenerationRequest(before, params))).token_ids
    return before + part[: PART_TOKENS - PART_CUT] + member_line


async def remote_against_local(args, model_dir, loaded, config, workload) -> dict[str, object]:
    """Ours in this process, then the same workload through the remote engine."""
    ours = await run_engine(loaded, config, workload)
    print(ours.line("local"), flush=True)
    with contextlib.ExitStack() as stack:
        url = args.base_url or stack.enter_context(
            transformers_serve(model_dir, args.serve_continuous_batching)
        )
        remote = await run_remote(model_dir, config, workload, url)
    print(remote.line("remote"), flush=True)
    per_request, per_delta = await bot_side_overhead(config, model_dir, 200, 200)
    print(f"remote engine's own cost (an upper bound): {per_request * 1000:.2f} ms per request, "
          f"{per_delta * 1000:.3f} ms per streamed delta")  # fmt: skip
    return {
        "local": dataclasses.asdict(ours),
        "remote": dataclasses.asdict(remote),
        "remote_ms_per_request": per_request * 1000,
        "remote_ms_per_delta": per_delta * 1000,
        "speedup": remote.tokens_per_s / ours.tokens_per_s,
    }


async def explain_overhead(
    loaded: LoadedModel, config: ModelConfig, workload: Workload
) -> dict[str, object]:
    """Ours with and without token notes, alternating, twice each; the best of each compared."""
    plain, explained = [], []
    for _ in range(2):
        plain.append(await run_engine(loaded, config, workload))
        print(plain[-1].line("ours"), flush=True)
        explained.append(await run_engine(loaded, config, workload, explain=True))
        print(explained[-1].line("ours+notes"), flush=True)
    best_plain = max(r.tokens_per_s for r in plain)
    best_explained = max(r.tokens_per_s for r in explained)
    overhead = 1 - best_explained / best_plain
    print(f"token notes overhead={overhead:.1%} (best of 2: {best_explained:.1f} vs "
          f"{best_plain:.1f} tokens/s)")  # fmt: skip
    return {
        "ours": [dataclasses.asdict(r) for r in plain],
        "ours_with_notes": [dataclasses.asdict(r) for r in explained],
        "notes_overhead": overhead,
        "speedup": best_explained / best_plain,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Build the model into a temporary directory, run the benchmark, report."""
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="storybot-bench-") as tmp:
        model_dir = build_model(Path(tmp), seed=SEED, **(TINY_SHAPE if args.tiny else GPT2_SHAPE))
        report = asyncio.run(benchmark(args, model_dir))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    ratios = "".join(f" {name}={value:.2f}" for name, value in report.get("ratios", {}).items())
    print(f"speedup={report['speedup']:.2f}{ratios}")


if __name__ == "__main__":
    main()
