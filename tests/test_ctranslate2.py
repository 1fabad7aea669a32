"""The CTranslate2 engine on the tiny GPT-2 converted by `storybot model convert`: the same greedy
tokens as the local engine, streaming, stops, lengths, calls grouped by settings, and control."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

from bot.config import ConfigError, CTranslate2Config, parse_config
from bot.engine import (
    EngineBusy,
    EngineStopping,
    EngineUnavailable,
    GenerationFailed,
    GenerationRequest,
    GenerationTimeout,
    LocalEngine,
    SamplingParams,
)
from bot.engine.converted import convert, load_converted
from bot.engine.ct2call import token_choices
from bot.engine.ctranslate2 import PROMPT_SPREAD, CTranslate2Engine
from bot.errors import ModelUnavailable
from bot.service import Actor, StoryService
from tests.conftest import with_model
from tests.tinymodel import build_model

GREEDY = SamplingParams(temperature=0, max_new_tokens=24)
PROMPTS = [
    "Once upon a time",
    "Hi there, friend",
    "The old lighthouse keeper counted the ships that passed.",
    "Dear Sam,\n\n",
]


def ids(engine, text: str) -> tuple[int, ...]:
    return tuple(engine.tokenizer.encode(text))


class Recorder:
    """Stands in for the generator: notes each call's rows and settings, and can slow each step
    down or fail a call, before handing it to the real one."""

    def __init__(self, generator, step_s: float = 0.0, failures: int = 0) -> None:
        self.generator = generator
        self.step_s = step_s
        self.failures = failures
        self.calls: list[tuple[int, dict]] = []

    def generate_batch(self, start_tokens, **options):
        self.calls.append((len(start_tokens), options))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("an injected CTranslate2 fault")
        if self.step_s:
            # Holds nothing of the engine or of this recorder: CTranslate2 may keep it a while.
            callback, pause = options["callback"], self.step_s
            options = options | {"callback": lambda step: time.sleep(pause) or callback(step)}
        return self.generator.generate_batch(start_tokens, **options)


async def started(
    config, folder: Path, compute_type="int8", recorder: dict | None = None, **model_changes
) -> CTranslate2Engine:
    """An engine on ``folder``; with ``recorder`` (Recorder's options), its calls go through one."""
    ct2 = CTranslate2Config(folder=folder, compute_type=compute_type, threads=1)
    loaded = load_converted(folder, "cpu", compute_type, 1)
    if recorder is not None:
        loaded.generator = Recorder(loaded.generator, **recorder)
    engine = CTranslate2Engine(with_model(config, **model_changes).model, ct2, loaded=loaded)
    await engine.start()
    return engine


@pytest.fixture
async def ct2(config, tiny_ct2_dir):
    engine = await started(config, tiny_ct2_dir)
    yield engine
    await engine.close()


@pytest.fixture
async def recorded(config, tiny_ct2_dir):
    engine = await started(config, tiny_ct2_dir, recorder={})
    yield engine
    await engine.close()


async def wait_until_writing(engine) -> None:
    deadline = time.monotonic() + 10
    while engine.stats().active == 0:
        assert time.monotonic() < deadline, "the request never started"
        await asyncio.sleep(0.002)


# -- what it writes ------------------------------------------------------------------------------


async def test_greedy_writes_what_the_local_engine_writes_token_for_token(
    config, tiny_loaded, tiny_ct2_float32_dir
):
    local = LocalEngine(config.model, loaded=tiny_loaded)
    await local.start()
    engine = await started(config, tiny_ct2_float32_dir, compute_type="float32")
    long = " ".join(["The old lighthouse keeper counted the ships that passed."] * 60)
    requests = [GenerationRequest(ids(engine, p), GREEDY) for p in PROMPTS]
    requests.append(GenerationRequest((464,), GREEDY))  # one token: a call of its own
    requests.append(
        GenerationRequest(ids(engine, long), dataclasses.replace(GREEDY, max_new_tokens=5))
    )
    try:
        expected = [await local.generate(r) for r in requests]
        alone = [await engine.generate(r) for r in requests]
        together = await asyncio.gather(*(engine.generate(r) for r in requests))
    finally:
        await local.close()
        await engine.close()

    for want, solo, batched in zip(expected, alone, together, strict=True):
        assert solo.token_ids == want.token_ids and solo.text == want.text
        assert batched.token_ids == want.token_ids
        assert solo.finish_reason == "length"
    assert len(together[-1].token_ids) == 5
    assert together[-1].prompt_tokens == len(requests[-1].prompt_ids) > 500


async def test_a_prompt_longer_than_the_window_keeps_its_newest_tokens(ct2):
    result = await ct2.generate(
        GenerationRequest(tuple(range(100, 1300)), SamplingParams(temperature=0, max_new_tokens=50))
    )
    assert result.prompt_tokens == ct2.n_positions - 50
    assert len(result.token_ids) == 50 and result.finish_reason == "length"


async def test_streamed_deltas_add_up_to_the_text(ct2):
    for params in (GREEDY, SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=30)):
        deltas: list[str] = []
        result = await ct2.generate(
            GenerationRequest(ids(ct2, "Once upon a time"), params), deltas.append
        )
        assert len(deltas) > 1
        assert "".join(deltas) == result.text


async def test_a_stop_string_ends_the_part_before_it_and_is_never_streamed(ct2):
    prompt = ids(ct2, "The lighthouse")
    params = SamplingParams(temperature=0, max_new_tokens=40)
    free = await ct2.generate(GenerationRequest(prompt, params))
    words = free.text.split()
    stop = words[len(words) // 2]  # a word from the middle of what it writes
    deltas: list[str] = []

    stopped = await ct2.generate(GenerationRequest(prompt, params, (stop,)), deltas.append)

    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index(stop)]
    assert "".join(deltas) == stopped.text and stop not in "".join(deltas)


async def test_each_row_writes_its_own_number_of_tokens_in_a_shared_call(recorded):
    lengths = [3, 11, 24]
    requests = [
        GenerationRequest(
            ids(recorded, "Once upon a time"), SamplingParams(temperature=0, max_new_tokens=n)
        )
        for n in lengths
    ]
    results = await asyncio.gather(*(recorded.generate(r) for r in requests))

    assert [len(r.token_ids) for r in results] == lengths
    assert all(r.finish_reason == "length" for r in results)
    assert [rows for rows, _ in recorded.loaded.generator.calls] == [3]


@pytest.fixture(scope="module")
def eager_eos_dir(tmp_path_factory) -> Path:
    """A tiny GPT-2 that writes end-of-text at once whenever it may (its final norm always
    gives the same vector, and the end-of-text embedding points along it), converted."""
    folder = build_model(tmp_path_factory.mktemp("eager-eos") / "hf", seed=1)
    model = GPT2LMHeadModel.from_pretrained(folder)
    eos = model.config.eos_token_id
    with torch.no_grad():
        final = model.transformer.ln_f
        final.weight.zero_()
        final.bias.copy_(torch.linspace(-1, 1, final.bias.shape[0]))
        model.transformer.wte.weight[eos] = final.bias * 50
    model.save_pretrained(folder)
    target = folder.parent / "ct2"
    convert(str(folder), target, "float32")
    return target


async def test_end_of_text_waits_for_the_minimum_and_ends_the_part(config, eager_eos_dir):
    engine = await started(config, eager_eos_dir, compute_type="float32")
    prompt = ids(engine, "Once upon a time")
    try:
        at_once = await engine.generate(GenerationRequest(prompt, GREEDY))
        at_least = await engine.generate(
            GenerationRequest(
                prompt, SamplingParams(temperature=0, max_new_tokens=24, min_new_tokens=5)
            )
        )
    finally:
        await engine.close()

    assert at_once.finish_reason == "eos" and at_once.token_ids == () and at_once.text == ""
    assert at_least.finish_reason == "eos" and len(at_least.token_ids) == 5
    assert engine.loaded.eos_id not in at_least.token_ids


async def test_banned_sequences_are_never_written(ct2):
    prompt = ids(ct2, "Once upon a time")
    params = SamplingParams(temperature=0, max_new_tokens=30)
    free = (await ct2.generate(GenerationRequest(prompt, params))).token_ids
    pair = free[1:3]
    single = (free[0],)

    banned = await ct2.generate(GenerationRequest(prompt, params, banned_ids=(pair, single)))

    written = banned.token_ids
    assert single[0] not in written
    assert all(written[i : i + 2] != pair for i in range(len(written) - 1))
    assert len(written) == 30


# -- calls: who shares one -------------------------------------------------------------------------


async def test_requests_share_a_call_only_with_the_same_settings_and_like_prompts(recorded):
    short = ids(recorded, "Once upon a time")
    long = ids(recorded, " ".join(["The ships came in."] * 30))
    assert len(long) - len(short) > PROMPT_SPREAD
    sampled = SamplingParams(temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=12)
    penalised = dataclasses.replace(GREEDY, repetition_penalty=1.3)
    requests = [
        GenerationRequest(short, GREEDY),
        GenerationRequest(ids(recorded, "Hi there, friend"), GREEDY),  # joins the first
        GenerationRequest(short, sampled),
        GenerationRequest(short, penalised),
        GenerationRequest(long, GREEDY),  # the same settings, too long a prompt to join
        GenerationRequest(short, GREEDY, explain=True),
    ]
    solo = [await recorded.generate(r) for r in requests]
    calls = recorded.loaded.generator.calls
    calls.clear()

    together = await asyncio.gather(*(recorded.generate(r) for r in requests))

    assert sorted(rows for rows, _ in calls) == [1, 1, 1, 1, 2]
    greedy_call = next(options for rows, options in calls if rows == 2)
    assert greedy_call["sampling_topk"] == 1 and greedy_call["repetition_penalty"] == 1.0
    sampled_call = next(options for _, options in calls if options["sampling_topk"] == 40)
    assert (sampled_call["sampling_topp"], sampled_call["sampling_temperature"]) == (0.9, 0.8)
    assert any(options["repetition_penalty"] == 1.3 for _, options in calls)
    for request, alone, batched in zip(requests, solo, together, strict=True):
        if request.params.greedy:
            assert batched.token_ids == alone.token_ids
    assert together[-1].choices and not together[0].choices


async def test_a_failed_call_fails_its_requests_and_the_next_one_works(config, tiny_ct2_dir):
    engine = await started(config, tiny_ct2_dir, recorder={"failures": 1})
    try:
        with pytest.raises(GenerationFailed):
            await engine.generate(GenerationRequest(ids(engine, "One"), GREEDY))
        assert (
            len((await engine.generate(GenerationRequest(ids(engine, "Two"), GREEDY))).token_ids)
            == 24
        )
    finally:
        await engine.close()
    assert engine.stats().restarts == 0


# -- control ---------------------------------------------------------------------------------------


@pytest.fixture
async def slow(config, tiny_ct2_dir):
    """An engine whose steps take at least 2 ms, one request per call."""
    engine = await started(
        config, tiny_ct2_dir, recorder={"step_s": 0.002}, max_batch_size=1, max_queue=2
    )
    yield engine
    await engine.close()


LONG = SamplingParams(temperature=0, max_new_tokens=900, min_new_tokens=900)


async def test_cancelling_the_awaiting_task_ends_its_row(slow):
    task = asyncio.create_task(slow.generate(GenerationRequest(ids(slow, "Endless"), LONG)))
    await wait_until_writing(slow)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while slow.stats().active and time.monotonic() < deadline:
        await asyncio.sleep(0.005)

    assert slow.stats().active == 0
    assert (await slow.generate(GenerationRequest(ids(slow, "Next"), GREEDY))).token_ids


async def test_a_request_past_its_deadline_times_out_and_the_next_works(slow):
    late = GenerationRequest(ids(slow, "Slow"), LONG, deadline=time.monotonic() + 0.1)
    started_at = time.monotonic()
    with pytest.raises(GenerationTimeout):
        await slow.generate(late)
    assert time.monotonic() - started_at < 1.5  # the row ended at its deadline, not at 900 tokens
    assert (await slow.generate(GenerationRequest(ids(slow, "Fast"), GREEDY))).text


async def test_a_full_queue_refuses_with_its_depth_and_an_estimated_wait(slow):
    hog = asyncio.create_task(slow.generate(GenerationRequest((1, 2), LONG)))
    await wait_until_writing(slow)
    waiting = [
        asyncio.create_task(slow.generate(GenerationRequest((3, 4), GREEDY))) for _ in range(2)
    ]
    await asyncio.sleep(0)

    with pytest.raises(EngineBusy) as refused:
        await slow.generate(GenerationRequest((5, 6), GREEDY))

    assert refused.value.depth == 2 and refused.value.estimated_wait_s > 0
    assert "2 requests are waiting" in refused.value.user_message
    hog.cancel()
    assert all(await asyncio.gather(*waiting))


async def test_cut_short_ends_rows_with_what_they_have_and_refuses_what_has_not_started(slow):
    writing = asyncio.ensure_future(slow.generate(GenerationRequest(ids(slow, "A"), LONG)))
    waiting = asyncio.ensure_future(slow.generate(GenerationRequest(ids(slow, "B"), LONG)))
    await wait_until_writing(slow)
    await asyncio.sleep(0.2)

    slow.cut_short()

    done = await asyncio.wait_for(writing, timeout=5)
    assert done.finish_reason == "interrupted"
    assert 0 < len(done.token_ids) < 900
    with pytest.raises(EngineStopping):
        await asyncio.wait_for(waiting, timeout=5)
    with pytest.raises(EngineStopping):
        await slow.generate(GenerationRequest(ids(slow, "C"), GREEDY))


async def test_closing_fails_what_is_written_and_waiting_and_refuses_new_ones(slow):
    hog = asyncio.create_task(slow.generate(GenerationRequest((5, 6), LONG)))
    queued = asyncio.create_task(slow.generate(GenerationRequest((7, 8), GREEDY)))
    await wait_until_writing(slow)

    await slow.close()

    for task in (hog, queued):
        with pytest.raises(EngineUnavailable):
            await task
    with pytest.raises(EngineUnavailable):
        await slow.generate(GenerationRequest((5,), GREEDY))


# -- explanations ------------------------------------------------------------------------------------


async def test_explained_greedy_tokens_carry_what_the_local_engine_notes(
    config, tiny_loaded, tiny_ct2_float32_dir
):
    local = LocalEngine(config.model, loaded=tiny_loaded)
    await local.start()
    engine = await started(config, tiny_ct2_float32_dir, compute_type="float32")
    request = GenerationRequest(ids(engine, "The lighthouse keeper"), GREEDY, explain=True)
    try:
        expected, result = await local.generate(request), await engine.generate(request)
    finally:
        await local.close()
        await engine.close()

    assert [c.token for c in result.choices] == list(result.token_ids)
    for want, got in zip(expected.choices, result.choices, strict=True):
        assert got.token == want.token and got.rank == want.rank == 1 and got.p == 1.0
        assert got.p_model == pytest.approx(want.p_model, abs=1e-5)
        assert [a for a, _ in got.alternatives] == [a for a, _ in want.alternatives]


async def test_sampled_choices_note_the_chance_the_sampler_gave_them(ct2):
    params = SamplingParams(temperature=0.8, top_k=50, top_p=0.9, max_new_tokens=12)
    result = await ct2.generate(GenerationRequest(ids(ct2, "Once"), params, explain=True))

    assert len(result.choices) == len(result.token_ids) == 12
    for choice in result.choices:
        assert 0 < choice.p <= 1 and 0 < choice.p_model <= 1 and 1 <= choice.rank <= 50


def test_the_samplers_chance_is_what_sorting_the_vocabulary_gives():
    torch.manual_seed(0)
    scores = torch.randn(6, 500) * torch.tensor([0.1, 1, 3, 5, 8, 12]).unsqueeze(1)
    tokens = scores.argmax(dim=-1).tolist()
    for params in (
        SamplingParams(temperature=0.7, top_p=0.9),
        SamplingParams(temperature=1.2, top_k=20),
        SamplingParams(temperature=0.9, top_k=100, top_p=0.5),
    ):
        got = [c.p for c in token_choices(scores, tokens, params)]
        assert got == pytest.approx(reference_chance(scores, tokens, params), abs=1e-5)


def reference_chance(scores, tokens, params) -> list[float]:
    """CTranslate2's sampler, step by step: top-k, temperature, top-p over the sorted vocabulary."""
    out = []
    for row, token in zip(scores, tokens, strict=True):
        ordered, order = row.sort(descending=True)
        if params.top_k:
            ordered, order = ordered[: params.top_k], order[: params.top_k]
        probs = (ordered / params.temperature).softmax(dim=-1)
        keep = (probs.cumsum(dim=-1) - probs) < params.top_p
        probs = probs * keep / (probs * keep).sum()
        hits = (order == token).nonzero()
        out.append(float(probs[hits[0, 0]]) if len(hits) else 0.0)
    return out


async def test_the_service_writes_and_explains_a_story(config, store, clock, tiny_ct2_dir):
    engine = await started(config, tiny_ct2_dir)
    service = StoryService(config, store, engine, clock=clock, wall_clock=clock)
    try:
        actor = Actor(1, 2, 3)
        written = await service.write(actor, "The lighthouse keeper woke")
        more = await service.continue_(actor, "A ship was coming.")
        explained = await service.explain(actor)
    finally:
        await engine.close()

    assert [t.kind for t in written.turns + more.turns] == ["opening", "model", "member", "model"]
    assert more.model_turn.settings["prompt_tokens"] > written.model_turn.settings["prompt_tokens"]
    assert explained.explanation.tokens >= 1


# -- set-up ----------------------------------------------------------------------------------------


def test_the_backend_needs_a_converted_folder_read_from_the_config_files_folder(tmp_path):
    config = parse_config(
        {"model": {"backend": "ctranslate2"}, "ctranslate2": {"folder": "models/gpt2-int8"}},
        source=tmp_path / "storybot.toml",
    )
    assert config.ctranslate2 == CTranslate2Config(folder=tmp_path / "models" / "gpt2-int8")

    with pytest.raises(ConfigError) as caught:
        parse_config({"model": {"backend": "ctranslate2"}})
    assert "[ctranslate2] folder" in str(caught.value) and "storybot model convert" in str(
        caught.value
    )
    with pytest.raises(ConfigError) as caught:
        parse_config({"ctranslate2": {"compute_type": "int4"}})
    assert "ctranslate2.compute_type = 'int4'" in str(caught.value) and "int8" in str(caught.value)


@pytest.mark.parametrize(
    ("folder", "says"),
    [
        ("missing", "does not exist; make it with `storybot model convert"),
        ("hf", "is a Hugging Face model folder, not a converted one"),
        ("no-notes", "was converted without storybot's notes"),
    ],
)
def test_a_folder_that_is_not_converted_says_what_to_do(
    tmp_path, tiny_model_dir, tiny_ct2_dir, folder, says
):
    folders = {
        "missing": tmp_path / "nothing-here",
        "hf": tiny_model_dir,
        "no-notes": tmp_path / "bare",
    }
    bare = folders["no-notes"]
    bare.mkdir()
    for name in ("model.bin", "config.json", "vocabulary.json"):
        (bare / name).write_bytes((tiny_ct2_dir / name).read_bytes())

    with pytest.raises(ModelUnavailable) as caught:
        load_converted(folders[folder])
    assert says in str(caught.value)


def test_converting_into_a_folder_that_is_not_empty_is_refused(tmp_path, tiny_model_dir):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ModelUnavailable, match="is not empty"):
        convert(str(tiny_model_dir), tmp_path / "taken")
