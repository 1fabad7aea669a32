"""Every GPU check in one run, printed as one table: for a GPU machine that is lent for minutes.

Usage (``bench/gpu.sh`` runs it with the settings below)::

    HF_HUB_OFFLINE=1 python -m bench.gpu [--device cuda] [--tiny] [--json PATH]

On the real 124M GPT-2 shape (random weights, the real tokenizer), for each way of running the
model (dtype × attention kernel × ``torch.compile``):

- **tokens/s** of the local engine with 1, 64 and 128 requests arriving at once (100-token
  prompts, exactly 64 new tokens each), and of one padded static ``model.generate`` of the 64;
- **latency** of a single request writing 100 tokens after a 100-token prompt;
- **first token** of a ``/continue`` on a 900-token story, with the story encoded afresh and with
  the engine's stored context (see ``bench.throughput --story-tokens``).

``--tiny`` (a 2-layer model, fewer requests) and ``--device cpu`` make a smoke run anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.throughput import (
    GPT2_SHAPE,
    NO_TIMEOUT_S,
    SEED,
    TINY_SHAPE,
    first_token_on_a_long_story,
    make_workload,
    run_engine,
    run_static,
)
from bot.config import ModelConfig
from bot.engine import GenerationRequest, LocalEngine, SamplingParams
from bot.engine.loader import load_model
from tests.tinymodel import build_model

# (dtype, attention, compile): the ways of running the model that are compared.
WAYS = (
    ("bfloat16", "sdpa", False),
    ("bfloat16", "eager", False),
    ("float16", "sdpa", False),
    ("float32", "sdpa", False),
    ("bfloat16", "sdpa", True),  # last: compiling for every new shape takes the longest
)
BATCHES = (1, 64, 128)
STATIC_BATCH = 64
PROMPT_TOKENS = 100
NEW_TOKENS = 64
LATENCY_TOKENS = 100
STORY_TOKENS = 900


@dataclasses.dataclass
class Row:
    """The figures of one way of running the model."""

    way: str
    tokens_per_s: dict[int, float]
    static_tokens_per_s: float
    latency_s: float
    first_token_s: float
    first_token_reused_s: float

    def line(self) -> str:
        batches = " | ".join(f"{self.tokens_per_s[b]:8.1f}" for b in sorted(self.tokens_per_s))
        return (
            f"| {self.way:<24} | {batches} | {self.static_tokens_per_s:8.1f} | "
            f"{self.latency_s:6.2f} s ({self.latency_s / LATENCY_TOKENS * 1000:5.1f} ms/token) | "
            f"{self.first_token_s * 1000:7.1f} ms | {self.first_token_reused_s * 1000:7.1f} ms |"
        )


def header(batches: Sequence[int]) -> list[str]:
    columns = " | ".join(f"{b:>4} req." for b in batches)
    return [
        f"| way (dtype, attention, compile) | tokens/s: {columns} | static {STATIC_BATCH} | "
        f"one request, {LATENCY_TOKENS} tokens | first token, {STORY_TOKENS}-token story | "
        "same, stored context |",
        "| --- | " + " | ".join("---" for _ in batches) + " | --- | --- | --- | --- |",
    ]


def workload_args(requests: int, tiny: bool) -> argparse.Namespace:
    """The options ``bench.throughput`` builds its workload and long-story run from."""
    return argparse.Namespace(
        requests=requests,
        prompt_tokens=PROMPT_TOKENS,
        new_tokens=NEW_TOKENS if not tiny else 8,
        arrivals="burst",
        stagger=0.0,
        story_tokens=STORY_TOKENS,
    )


async def single_request(engine: LocalEngine, prompt: tuple[int, ...]) -> float:
    """Seconds for one request alone to write ``LATENCY_TOKENS`` tokens (the best of three)."""
    params = SamplingParams(
        temperature=0.9, top_p=0.95, min_new_tokens=LATENCY_TOKENS, max_new_tokens=LATENCY_TOKENS
    )
    times = []
    for _ in range(3):
        started = time.perf_counter()
        await engine.generate(GenerationRequest(prompt, params))
        times.append(time.perf_counter() - started)
    return min(times)


async def measure(way: tuple[str, str, bool], model_dir: Path, device: str, tiny: bool) -> Row:
    """Every figure for one way of running the model."""
    dtype, attention, compiled = way
    loaded = load_model(str(model_dir), device, dtype, attention)
    batches = (1, 4, 8) if tiny else BATCHES
    config = ModelConfig(
        name=str(model_dir), device=device, dtype=dtype, attention=attention, compile=compiled,
        max_batch_size=max(batches), max_queue=max(batches) * 2, request_timeout_s=NO_TIMEOUT_S,
    )  # fmt: skip
    tokens_per_s = {}
    for requests in batches:
        workload = make_workload(loaded.tokenizer, workload_args(requests, tiny))
        tokens_per_s[requests] = (await run_engine(loaded, config, workload)).tokens_per_s
    static = make_workload(loaded.tokenizer, workload_args(batches[1], tiny))
    static_tokens_per_s = (await run_static(loaded, static)).tokens_per_s
    engine = LocalEngine(config, loaded=loaded)
    await engine.start()
    try:
        latency = await single_request(engine, static.prompts[0])
    finally:
        await engine.close()
    story = await first_token_on_a_long_story(workload_args(1, tiny), loaded, config)
    firsts = {side: statistics.median(f["first_token_s"]) for side, f in story["stories"].items()}
    way_name = f"{dtype}, {attention}{', compiled' if compiled else ''}"
    del loaded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return Row(
        way_name, tokens_per_s, static_tokens_per_s, latency, firsts["re-encode"], firsts["reuse"]
    )


async def run(args: argparse.Namespace, model_dir: Path) -> list[Row]:
    """Measure every way, printing the table as it fills."""
    if args.device == "cuda":
        print(f"device: {torch.cuda.get_device_name()} | torch {torch.__version__} | "
              f"CUDA {torch.version.cuda}", flush=True)  # fmt: skip
    rows = []
    for n, way in enumerate(WAYS):
        if args.tiny and way[2]:
            continue  # compiling takes minutes on a CPU; the smoke run skips it
        row = await measure(way, model_dir, args.device, args.tiny)
        if n == 0:
            print("\n".join(header(sorted(row.tokens_per_s))), flush=True)
        print(row.line(), flush=True)
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, for a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here (--device cpu runs the same checks on the CPU)")
    with tempfile.TemporaryDirectory(prefix="storybot-gpu-") as tmp:
        shape = TINY_SHAPE if args.tiny else GPT2_SHAPE
        model_dir = build_model(Path(tmp) / "model", seed=SEED, **shape)
        rows = asyncio.run(run(args, model_dir))
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
