"""On real pretrained weights (SmolLM2-135M, prepared offline by ``bench.real_model``).

Random weights cannot show whether the bot writes prose or junk; these tests read what a real
model expects after the contexts the bot builds, and drive the quality guard end to end.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from bot.config import CapsConfig, Config, DatabaseConfig, GenerationConfig, ModelConfig
from bot.engine import LocalEngine
from bot.engine.loader import load_model
from bot.quality import assess
from bot.service import Actor, StoryService
from bot.store import Store
from bot.story import MODES, TURN_SEPARATOR, Turn, build_context

STARTED = "2026-11-29T10:00:00Z"
OPENINGS = {
    "story": "The lighthouse keeper found a bottle on the shore.",
    "poem": "The moon rose over the quiet harbour",
    "song": "We drove all night with the windows down",
    "script": "INT. KITCHEN - MORNING\n\nANNA burns the toast for the third time.",
    "news": "The city council voted on Tuesday to close the old bridge for repairs.",
    "blog": "My first week learning to bake sourdough bread",
    "ad": "Introducing the CloudStep running shoe",
    "email": "A reminder about Friday's team lunch at noon.",
}
NEXT = "It was a long day, and nobody had expected what came next."
JUNK = "1. 2017-08-31 6:45:39 ## 3) 44 -- 5. 12:00 ** 6) 7/8 9.10"


@pytest.fixture(scope="module")
def real(real_model_dir):
    return load_model(str(real_model_dir), device="cpu")


def next_token_mass(real, ids: list[int]) -> tuple[float, float]:
    """Probability of the next token starting a number or list marker, and of it starting a word."""
    with torch.inference_mode():
        probs = real.model(torch.tensor([ids])).logits[0, -1].float().softmax(-1)
    pieces = real.tokenizer.convert_ids_to_tokens(list(range(probs.shape[0])))
    text = [real.tokenizer.convert_tokens_to_string([p]) if p else "" for p in pieces]
    numbers = torch.tensor([bool(re.match(r"\s*[\d#*•-]", t)) for t in text])
    words = torch.tensor([bool(re.match(r"""\s*[^\W\d_]|\s*["'“‘(]""", t)) for t in text])
    return float(probs[numbers].sum()), float(probs[words].sum())


@pytest.mark.parametrize("mode", list(MODES))
def test_after_a_story_context_the_model_expects_words_not_numbers(real, mode):
    turns = [
        Turn(1, 1, 0, "opening", 7, OPENINGS[mode], None, STARTED),
        Turn(2, 1, 1, "model", None, NEXT, None, STARTED),
    ]
    context = build_context(real.tokenizer, MODES[mode].framing(STARTED), turns, budget=900)

    numbers, words = next_token_mass(real, context.ids)

    assert numbers < 0.05 and words > 0.9, (numbers, words)
    # The same story with the separator encoded on its own, as the bot once did: a list is next.
    encode = real.tokenizer.encode
    seamed = encode(OPENINGS[mode]) + encode(TURN_SEPARATOR + NEXT) + encode(TURN_SEPARATOR)
    assert next_token_mass(real, seamed)[0] > 4 * numbers


class JunkFirst:
    """The real engine, except that the first part it is asked for comes back as junk."""

    def __init__(self, engine: LocalEngine) -> None:
        self.engine = engine
        self.calls = 0

    tokenizer = property(lambda self: self.engine.tokenizer)
    n_positions = property(lambda self: self.engine.n_positions)

    async def generate(self, request, on_delta=None):
        self.calls += 1
        params = dataclasses.replace(request.params, seed=7)  # the same words on every run
        result = await self.engine.generate(dataclasses.replace(request, params=params), on_delta)
        if self.calls == 1:
            ids = tuple(self.engine.tokenizer.encode(JUNK))
            return dataclasses.replace(result, text=JUNK, token_ids=ids, finish_reason="eos")
        return result


async def test_the_guard_rewrites_a_degenerate_part_on_real_weights(real, real_model_dir, tmp_path):
    config = Config(
        model=ModelConfig(name=str(real_model_dir), device="cpu"),
        database=DatabaseConfig(path=tmp_path / "real.db"),
        generation=GenerationConfig(max_new_tokens=40),
        caps=CapsConfig(),
    )
    engine = LocalEngine(config.model, loaded=real)
    await engine.start()
    store = await Store.open(config.database.path)
    try:
        service = StoryService(config, store, JunkFirst(engine))
        written = await service.write(Actor(1, 2, 3), OPENINGS["story"])
    finally:
        await engine.close()
        await store.close()

    part = written.model_turn
    assert service.engine.calls == 2
    assert part.text != JUNK
    assert part.settings["guard"]["kept"] == "retry"
    assert "list" in part.settings["guard"]["problems"]
    assert assess(part.text, OPENINGS["story"]) == ()
    assert re.match(r"""["'“‘]?[^\W\d_]""", part.text), part.text  # it starts with a word
