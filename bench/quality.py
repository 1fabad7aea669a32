"""Writing quality on real weights: storybot's service against a plain ``model.generate``.

Usage::

    HF_HUB_OFFLINE=1 python -m bench.quality [--model DIR] [--quick] [--examples N]
        [--threads N] [--json PATH] [--set KEY=VALUE ...] [--stories-only] [--skip-baseline]
        [--backend local|ctranslate2] [--dtype float32|bfloat16]

The model is the real SmolLM2-135M-Instruct prepared offline by ``bench.real_model`` (or any
model folder given with ``--model``). Both sides write the same parts with the same seeds:

- **ours**: the real ``StoryService`` (store on a temporary SQLite file, the batching engine),
  so framing, context assembly, sampling windows, cleanup and the quality guard all take part;
- **baseline**: the way the bot first did it: the mode's bare label and the plain story text
  (paragraphs joined by "\\n\\n", encoded as one text), ``model.generate`` with the same
  temperature and top-p, repetition penalty 1.15 and ``no_repeat_ngram_size=3`` over the whole
  context, output only stripped.

The workload: five prompts for each of the eight modes (one part each), and three stories of ten
model parts where members add their own line before every other part; each side's story grows
from its own parts. Per mode and overall it prints the share of parts that start with a list
marker or number, the share that end cleanly, distinct-2 and distinct-3, the repeated-4-gram
rate, the share of invented words (``wordfreq``; words of the context count as known), the mean
log-probability per token of the part under the model given the plain story so far (the same
context for both sides), the share of the member's line (or the opening) whose content words
come back, and framing leaks. The last line is one score per side (the mean of the six shares
where higher is better, in percent) and their difference. ``--examples N`` prints N parts per
mode from each side; ``--set`` changes a ``[generation]`` value of ours (to choose defaults);
``--backend ctranslate2`` has ours written by the CTranslate2 engine on the model converted to int8
(once, next to the prepared model), judged by the same float32 model as the local engine's parts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench import quality_metrics as qm
from bench.real_model import prepare
from bot.config import (
    CapsConfig,
    Config,
    CTranslate2Config,
    DatabaseConfig,
    GenerationConfig,
    ModelConfig,
)
from bot.engine import LocalEngine
from bot.engine.ctranslate2 import CTranslate2Engine, convert
from bot.engine.loader import LoadedModel, load_model
from bot.service import Actor, StoryService
from bot.store import Store
from bot.story import MODES, TURN_SEPARATOR, encode_open

# The labels the bot framed modes with before framing became the start of a real document.
OLD_LABELS = {
    "story": "",
    "poem": "A poem.\n\n",
    "song": "Song lyrics.\n\n",
    "script": "SCREENPLAY\n\n",
    "news": "NEWS REPORT\n\n",
    "blog": "Blog post\n\n",
    "ad": "Advertisement\n\n",
    "email": "Email\n\n",
}

PROMPTS: dict[str, list[str]] = {
    "story": [
        "The lighthouse keeper found a bottle on the shore. Inside was a letter addressed to her.",
        "Mira was a blind cartographer who could map a city by its sounds.",
        "The last train out of the valley left at midnight, and Tom was not on it.",
        "Nobody in the village had opened the old bakery's door for twenty years.",
        "The dragon had been asleep under the library for three centuries.",
    ],
    "poem": [
        "The moon rose over the quiet harbour",
        "I kept your letters in a box of tin",
        "Autumn walks slowly through the orchard",
        "The city hums a song at night",
        "Snow on the mountain, silence in the pines",
    ],
    "song": [
        "We drove all night with the windows down",
        "Hey there, sailor, where you going",
        "Dancing in the kitchen at two in the morning",
        "I've been waiting by the river for you",
        "The radio played our song again",
    ],
    "script": [
        "INT. SPACESHIP BRIDGE - NIGHT\n\nCaptain Reyes stares at the blinking red console.",
        "EXT. DESERT HIGHWAY - DAY\n\nA rusted pickup truck sputters to a stop.",
        "INT. KITCHEN - MORNING\n\nANNA burns the toast for the third time.",
        "INT. POLICE STATION - NIGHT\n\nDetective Moore slams a file onto the desk.",
        "EXT. SCHOOLYARD - AFTERNOON\n\nTwo kids argue over a lost football.",
    ],
    "news": [
        "The city council voted on Tuesday to close the old bridge for repairs.",
        "A local bakery has won the national bread-making championship.",
        "Heavy rain caused flooding in several neighbourhoods overnight.",
        "The town library will open on Sundays starting next month.",
        "Scientists at the university have discovered a new species of frog.",
    ],
    "blog": [
        "Ten things I learned from growing tomatoes on my balcony",
        "Why I stopped using my phone before bed",
        "My first week learning to bake sourdough bread",
        "A weekend in the mountains on a small budget",
        "How I organise my week as a freelance designer",
    ],
    "ad": [
        "Introducing the CloudStep running shoe",
        "Fresh coffee delivered to your door every morning",
        "The new Harbor Bistro is now open for lunch and dinner",
        "Learn to play the guitar in just thirty days",
        "Keep your garden green all summer with AquaDrip",
    ],
    "email": [
        "A reminder about Friday's team lunch at noon.",
        "Thank you for coming to the workshop last week.",
        "I wanted to update you on the project timeline.",
        "The office will be closed on Monday for the holiday.",
        "Could we move our meeting to Thursday afternoon?",
    ],
}

# Multi-turn stories: the opening, then a member's line before every other model part.
STORIES: list[tuple[str, str, list[str]]] = [
    (
        "story",
        "Mira was a blind cartographer who could map a city by its sounds. One morning, the "
        "city went silent.",
        [
            "Mira walked to the market, listening for anything at all.",
            "A child tugged at her sleeve and whispered a warning.",
            "She followed the faint sound of water under the streets.",
            "At the bottom of the stairs, someone was waiting for her.",
            "Mira unrolled her newest map and began to draw.",
        ],
    ),
    (
        "story",
        "The spaceship Meridian had drifted for eleven years when its engines woke up on their "
        "own.",
        [
            "Captain Oyelaran gathered the crew in the galley.",
            "The navigator found a course that no one had entered.",
            "Outside the window, a planet none of them knew came into view.",
            "They decided to land.",
            "The door opened onto a field of tall blue grass.",
        ],
    ),
    (
        "script",
        "INT. OLD THEATRE - NIGHT\n\nA janitor, SAM, sweeps the empty stage. A spotlight "
        "switches on by itself.",
        [
            "SAM: Hello? Is somebody up there?",
            "A VOICE (O.S.): You're late for rehearsal, Sam.",
            "Sam drops the broom and backs towards the exit.",
            "The curtain rises on a painted forest.",
            "SAM: All right. What play is this?",
        ],
    ),
]
STORY_PARTS = 10
QUICK_PROMPTS = 2
QUICK_PARTS = 4
SEED = 2026


@dataclasses.dataclass
class Part:
    """One part one side wrote, with what it is judged against."""

    mode: str
    text: str
    story_so_far: str  # the plain story before this part (opening and turns, no framing)
    source: str  # the member's line, or the opening: what the part should stay on
    framing: str  # what came before the story in the context: ours, or the old label
    in_story: bool = False  # one of the multi-turn stories' parts


# -- ours: the real service ----------------------------------------------------------------------


class SeededEngine:
    """The engine, with a seed for each request fixed by its context."""

    def __init__(self, engine: LocalEngine | CTranslate2Engine) -> None:
        self.engine = engine

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def n_positions(self) -> int:
        return self.engine.n_positions

    async def generate(self, request, on_delta=None):
        params = dataclasses.replace(request.params, seed=request.params.seed or _seed(request))
        return await self.engine.generate(dataclasses.replace(request, params=params), on_delta)


def _seed(request) -> int:
    """A seed that depends only on the context, so both sides' parts get comparable draws."""
    return SEED + sum(request.prompt_ids[-64:]) % 100_003


async def run_ours(
    loaded: LoadedModel,
    model_dir: Path,
    generation: GenerationConfig,
    quick: bool,
    stories_only: bool = False,
    backend: str = "local",
):
    """Every prompt and story through the real ``StoryService``, written by the local engine or
    (``backend="ctranslate2"``) by the CTranslate2 engine on the model converted to int8."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Config(
            model=ModelConfig(name=str(model_dir), device="cpu", request_timeout_s=3600),
            database=DatabaseConfig(path=Path(scratch) / "quality.db"),
            generation=generation,
            caps=CapsConfig(max_user_rate=600, max_guild_rate=6000, max_prompt_tokens=900),
        )
        if backend == "ctranslate2":
            folder = model_dir.parent / f"{model_dir.name}-ct2-int8"
            if not folder.exists():
                convert(str(model_dir), folder, "int8")
            threads = torch.get_num_threads()
            ct2 = CTranslate2Config(folder=folder, compute_type="int8", threads=threads)
            engine = CTranslate2Engine(config.model, ct2)
        else:
            engine = LocalEngine(config.model, loaded=loaded)
        await engine.start()
        store = await Store.open(config.database.path)
        service = StoryService(config, store, SeededEngine(engine))
        try:
            parts = await _workload(service, quick, stories_only)
        finally:
            await engine.close()
            await store.close()
    return parts


async def _workload(service: StoryService, quick: bool, only: bool) -> list[Part]:
    channel = iter(range(1, 10_000))

    async def one_prompt(mode: str, prompt: str) -> list[Part]:
        actor = Actor(1, next(channel), 7)
        written = await service.write(actor, prompt, mode)
        return [_part(mode, [prompt], written.model_turn.text, prompt, written.story)]

    async def one_story(mode: str, opening: str, lines: list[str]) -> list[Part]:
        actor = Actor(1, next(channel), 7)
        written = await service.write(actor, opening, mode)
        parts = [_part(mode, [opening], written.model_turn.text, opening, written.story, True)]
        told = [opening, written.model_turn.text]
        for n in range(1, QUICK_PARTS if quick else STORY_PARTS):
            line = lines[(n - 1) // 2] if n % 2 == 1 else None
            written = await service.continue_(actor, line)
            so_far = told + ([line] if line else [])
            text = written.model_turn.text
            parts.append(_part(mode, so_far, text, line or opening, written.story, True))
            told = [*so_far, text]
        return parts

    jobs = [one_prompt(m, p) for m, ps in PROMPTS.items() for p in _some(ps, quick) if not only]
    jobs += [one_story(*story) for story in STORIES[: 1 if quick else None]]
    return [part for parts in await asyncio.gather(*jobs) for part in parts]


def _part(mode: str, told: list[str], text: str, source: str, story, in_story=False) -> Part:
    framing = MODES[mode].framing(story.created_at)
    return Part(mode, text, TURN_SEPARATOR.join(told), source, framing, in_story)


# -- the baseline: the plain text through model.generate -----------------------------------------


def run_baseline(
    loaded: LoadedModel, generation: GenerationConfig, quick: bool, stories_only: bool = False
) -> list[Part]:
    """The same workload the seed's way, one ``model.generate`` per part."""
    parts = []
    for mode, prompts in {} if stories_only else PROMPTS.items():
        for prompt in _some(prompts, quick):
            text = _old_generate(loaded, mode, [prompt], generation)
            parts.append(Part(mode, text, prompt, prompt, OLD_LABELS[mode]))
    for mode, opening, lines in STORIES[: 1 if quick else None]:
        told = [opening]
        for n in range(QUICK_PARTS if quick else STORY_PARTS):
            line = lines[(n - 1) // 2] if n % 2 == 1 else None
            told += [line] if line else []
            text = _old_generate(loaded, mode, told, generation)
            so_far = TURN_SEPARATOR.join(told)
            parts.append(Part(mode, text, so_far, line or opening, OLD_LABELS[mode], True))
            told.append(text)
    return parts


def _old_generate(
    loaded: LoadedModel, mode: str, told: list[str], generation: GenerationConfig
) -> str:
    settings = MODES[mode]
    text = OLD_LABELS[mode] + TURN_SEPARATOR.join(told) + TURN_SEPARATOR
    ids = loaded.tokenizer.encode(text, return_tensors="pt")[:, -(1024 - 120) :]
    torch.manual_seed(SEED + int(ids[0, -64:].sum()) % 100_003)
    with torch.inference_mode():
        out = loaded.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=settings.temperature or generation.temperature,
            top_p=settings.top_p or generation.top_p,
            repetition_penalty=1.15,
            no_repeat_ngram_size=3,
            max_new_tokens=generation.max_new_tokens,
            min_new_tokens=8,
            pad_token_id=loaded.eos_id,
        )
    return loaded.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


# -- judging -------------------------------------------------------------------------------------


def mean_logprob(loaded: LoadedModel, part: Part) -> float:
    """Mean log-probability per token of the part after the text its side asked to continue."""
    asked = part.framing + part.story_so_far + TURN_SEPARATOR
    context = encode_open(loaded.tokenizer, asked)
    written = loaded.tokenizer.encode(asked + part.text)[len(context) :][:200]
    if not written:
        return float("nan")
    full = torch.tensor([context[-800:] + written])
    with torch.inference_mode():
        logits = loaded.model(full).logits[0, -len(written) - 1 : -1].float()
    picked = logits.log_softmax(-1).gather(1, torch.tensor(written).unsqueeze(1))
    return float(picked.mean())


def judge(loaded: LoadedModel, parts: Sequence[Part]) -> dict[str, float]:
    """The table's figures for a group of parts."""
    n = len(parts)
    texts = [p.text for p in parts]
    logprobs = [lp for p in parts if not math.isnan(lp := mean_logprob(loaded, p))]
    figures = {
        "parts": n,
        "list start": sum(qm.starts_with_list_marker(t) for t in texts) / n,
        "clean end": sum(qm.ends_cleanly(p.text, MODES[p.mode].by_line) for p in parts) / n,
        "distinct-2": qm.distinct_n(texts, 2),
        "distinct-3": qm.distinct_n(texts, 3),
        "repeated 4-grams": statistics.fmean(qm.repeated_ngram_rate(t) for t in texts),
        "invented words": statistics.fmean(
            qm.invented_word_share(p.text, [p.story_so_far]) for p in parts
        ),
        "logprob/token": statistics.fmean(logprobs) if logprobs else float("nan"),
        "on topic": statistics.fmean(qm.topic_overlap(p.text, p.source) for p in parts),
        "framing leaks": sum(
            qm.framing_leak(p.text, p.framing) or qm.has_framing_label(p.text) for p in parts
        )
        / n,
        "words/part": statistics.fmean(len(qm.words(t)) for t in texts),
    }
    return figures


def score(figures: dict[str, float]) -> float:
    """One number per side: the mean of the shares where higher is better, in percent."""
    shares = (
        1 - figures["list start"],
        figures["clean end"],
        figures["distinct-2"],
        1 - figures["repeated 4-grams"],
        1 - figures["invented words"],
        1 - figures["framing leaks"],
    )
    return 100 * statistics.fmean(shares)


HIGHER_IS_BETTER = {"clean end", "distinct-2", "distinct-3", "logprob/token", "on topic"}
LOWER_IS_BETTER = {"list start", "repeated 4-grams", "invented words", "framing leaks"}


def table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
    """Per group, baseline and ours side by side."""
    keys = [k for k in next(iter(rows.values()))["ours"] if k != "parts"]
    out = ["| group | side | parts | " + " | ".join(keys) + " |"]
    out.append("|" + " --- |" * (len(keys) + 3))
    for group, sides in rows.items():
        for side in ("baseline", "ours"):
            f = sides[side]
            cells = [_fmt(k, f[k]) for k in keys]
            out.append(f"| {group} | {side} | {f['parts']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _fmt(key: str, value: float) -> str:
    if key in ("logprob/token", "words/part"):
        return f"{value:.2f}" if key == "logprob/token" else f"{value:.0f}"
    if key.startswith("distinct"):
        return f"{value:.3f}"
    return f"{100 * value:.1f}%"


def worse(ours: dict[str, float], baseline: dict[str, float]) -> list[str]:
    """The figures where ours is worse than the baseline."""
    bad = [k for k in HIGHER_IS_BETTER if ours[k] < baseline[k]]
    return bad + [k for k in LOWER_IS_BETTER if ours[k] > baseline[k]]


def _some(prompts: list[str], quick: bool) -> list[str]:
    return prompts[:QUICK_PROMPTS] if quick else prompts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model folder (default: the prepared SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="2 prompts a mode and one story")
    parser.add_argument("--examples", type=int, default=0, help="parts to print per mode and side")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads; default: torch's")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [generation] value for ours, e.g. repetition_range=256",
    )
    parser.add_argument("--skip-baseline", action="store_true", help="ours only (tuning runs)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="what the local engine writes ours in (the judge stays float32); default: float32",
    )
    parser.add_argument(
        "--backend",
        choices=("local", "ctranslate2"),
        default="local",
        help="which engine writes ours: the local one, or CTranslate2 on the model in int8",
    )
    parser.add_argument("--stories-only", action="store_true", help="only the multi-turn stories")
    return parser.parse_args(argv)


def generation_config(overrides: list[str]) -> GenerationConfig:
    values: dict[str, object] = {"user_rate": 600}  # the benchmark is one busy member
    for item in overrides:
        key, _, raw = item.partition("=")
        kind = type(getattr(GenerationConfig(), key))
        values[key] = raw.lower() == "true" if kind is bool else kind(raw)
    return GenerationConfig(**values)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model or prepare()
    loaded = load_model(str(model_dir), device="cpu")  # the judge, in float32 for every side
    writer = loaded if args.dtype == "float32" else load_model(str(model_dir), "cpu", args.dtype)
    generation = generation_config(args.set)
    print(f"model: {model_dir.name}  backend: {args.backend}  dtype: {args.dtype}  "
          f"settings: {generation}")  # fmt: skip

    started = time.monotonic()
    ours = asyncio.run(
        run_ours(writer, model_dir, generation, args.quick, args.stories_only, args.backend)
    )
    ours_s = time.monotonic() - started
    started = time.monotonic()
    baseline = (
        []
        if args.skip_baseline
        else run_baseline(loaded, generation, args.quick, args.stories_only)
    )
    baseline_s = time.monotonic() - started
    print(f"wrote {len(ours)} parts per side: ours {ours_s:.0f} s, baseline {baseline_s:.0f} s")

    sides = {"ours": ours, "baseline": baseline or ours}
    groups = {mode: lambda p, m=mode: p.mode == m and not p.in_story for mode in MODES}
    groups |= {"stories": lambda p: p.in_story, "all": lambda p: True}
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for group, belongs in groups.items():
        judged = {
            side: judge(loaded, chosen)
            for side, parts in sides.items()
            if (chosen := [p for p in parts if belongs(p)])
        }
        if judged:
            rows[group] = judged
    print(table(rows))

    for mode in MODES if args.examples else ():
        for side, parts in sides.items():
            for part in [p for p in parts if p.mode == mode][: args.examples]:
                print(f"\n[{mode}, {side}] {part.story_so_far[-160:]!r}\n→ {part.text}")

    ours_all, base_all = rows["all"]["ours"], rows["all"]["baseline"]
    problems = worse(ours_all, base_all)
    print(f"worse than the baseline: {', '.join(problems) or 'nothing'}")
    print(
        f"score: ours {score(ours_all):.1f} baseline {score(base_all):.1f} "
        f"({score(ours_all) - score(base_all):+.1f})"
    )
    if args.json:
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(generation), "rows": rows,
                                         "examples": [dataclasses.asdict(p) for p in ours]},
                                        indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
