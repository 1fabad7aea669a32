"""The batching engine on the tiny GPT-2: equality with solo runs, streaming, and control."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest
import torch

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
from bot.engine.batch import Batch
from bot.engine.loader import load_model
from tests.conftest import with_model

GREEDY = SamplingParams(temperature=0, max_new_tokens=24)


def ids(engine: LocalEngine, text: str) -> tuple[int, ...]:
    return tuple(engine.tokenizer.encode(text))


async def started(config, loaded, **model_changes) -> LocalEngine:
    engine = LocalEngine(with_model(config, **model_changes).model, loaded=loaded)
    await engine.start()
    return engine


class ScriptedChooser:
    """Picks tokens from a script instead of from the model's logits."""

    def __init__(self, script: list[int]) -> None:
        self.script = list(script)

    def choose(self, logits, rows):
        return [self.script.pop(0) for _ in rows]


def scripted(engine: LocalEngine, script: list[int]) -> None:
    engine._chooser = ScriptedChooser(script)


async def test_greedy_rows_in_a_batch_equal_their_solo_runs(engine):
    short = "Hi"
    long = " ".join(["The old lighthouse keeper counted the ships that passed."] * 60)
    requests = [
        GenerationRequest(ids(engine, short), SamplingParams(temperature=0, max_new_tokens=30)),
        GenerationRequest(ids(engine, long), SamplingParams(temperature=0, max_new_tokens=5)),
        GenerationRequest(
            ids(engine, "Once upon a time"), SamplingParams(temperature=0, max_new_tokens=17)
        ),
        GenerationRequest(
            ids(engine, "Dear Sam,\n\n"), SamplingParams(temperature=0, max_new_tokens=40)
        ),
    ]
    assert len(requests[1].prompt_ids) > 500 > len(requests[0].prompt_ids)

    solo = [await engine.generate(r) for r in requests]
    together = await asyncio.gather(*(engine.generate(r) for r in requests))

    for alone, batched, request in zip(solo, together, requests, strict=True):
        assert batched.token_ids == alone.token_ids
        assert batched.text == alone.text
        assert len(alone.token_ids) == request.params.max_new_tokens
        assert alone.finish_reason == "length"


async def test_rows_that_join_a_running_batch_match_their_solo_runs(engine):
    first = GenerationRequest(ids(engine, "A"), SamplingParams(temperature=0, max_new_tokens=60))
    later = GenerationRequest(
        ids(engine, "Far away, beyond the hills and the river, there lived"),
        SamplingParams(temperature=0, max_new_tokens=20),
    )
    solo_first, solo_later = await engine.generate(first), await engine.generate(later)

    running = asyncio.create_task(engine.generate(first))
    while engine.stats().active == 0:
        await asyncio.sleep(0.001)
    joined = await engine.generate(later)  # joins while the first row is mid-decode

    assert joined.token_ids == solo_later.token_ids
    assert (await running).token_ids == solo_first.token_ids


async def test_seeded_sampling_is_reproducible_alone_and_in_a_batch(engine):
    params = SamplingParams(
        temperature=0.9, top_p=0.9, top_k=40, repetition_penalty=1.3, no_repeat_ngram_size=2,
        max_new_tokens=25, seed=1234,
    )  # fmt: skip
    prompts = ["It was a dark and stormy night", "Roses are red", "BREAKING:"]
    requests = [GenerationRequest(ids(engine, p), params) for p in prompts]
    first = [await engine.generate(r) for r in requests]
    again = [await engine.generate(r) for r in requests]
    batched = await asyncio.gather(*(engine.generate(r) for r in requests))
    assert [r.token_ids for r in first] == [r.token_ids for r in again]
    assert [r.token_ids for r in first] == [r.token_ids for r in batched]
    other_seed = await engine.generate(
        GenerationRequest(
            requests[0].prompt_ids, SamplingParams(temperature=0.9, max_new_tokens=25, seed=99)
        )
    )
    assert other_seed.token_ids != first[0].token_ids


async def test_stream_yields_deltas_that_add_up_to_the_result(engine):
    request = GenerationRequest(ids(engine, "Once upon a time"), GREEDY)
    deltas = [d async for d in engine.stream(request)]
    result = await engine.generate(request)
    assert len(deltas) > 1
    assert "".join(deltas) == result.text


async def test_stream_never_splits_a_multibyte_character(engine):
    emoji_ids = engine.tokenizer.encode("🙂 é 你好")
    assert engine.tokenizer.decode(emoji_ids[:1]).endswith("\ufffd")  # the emoji spans tokens
    scripted(engine, [*emoji_ids, engine.loaded.eos_id])
    request = GenerationRequest(ids(engine, "Hi"), SamplingParams(temperature=0, max_new_tokens=50))
    deltas = [d async for d in engine.stream(request)]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == "🙂 é 你好"


async def test_end_of_text_and_stop_strings_end_a_row(engine):
    eos = engine.loaded.eos_id
    words = engine.tokenizer.encode(" one two THE END three")
    scripted(engine, [*words, eos])
    params = SamplingParams(temperature=0, max_new_tokens=50)
    stopped = await engine.generate(GenerationRequest(ids(engine, "Count:"), params, ("THE END",)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == " one two "

    scripted(engine, [*engine.tokenizer.encode(" bye"), eos, *words])
    ended = await engine.generate(GenerationRequest(ids(engine, "Say"), params))
    assert ended.finish_reason == "eos"
    assert ended.text == " bye"
    assert eos not in ended.token_ids


async def test_stream_holds_back_the_start_of_a_stop_string(engine):
    scripted(engine, [*engine.tokenizer.encode(" a THE b THE END c"), engine.loaded.eos_id])
    request = GenerationRequest(
        ids(engine, "x"), SamplingParams(temperature=0, max_new_tokens=50), ("THE END",)
    )
    deltas = [d async for d in engine.stream(request)]
    assert "".join(deltas) == " a THE b "


async def test_a_prompt_longer_than_the_window_keeps_its_newest_tokens(engine):
    prompt = tuple(range(100, 1300))
    result = await engine.generate(
        GenerationRequest(prompt, SamplingParams(temperature=0, max_new_tokens=50))
    )
    assert result.prompt_tokens == engine.n_positions - 50
    assert len(result.token_ids) == 50


async def test_cancelling_the_awaiting_task_removes_its_row(engine):
    long = GenerationRequest(
        ids(engine, "Endless"), SamplingParams(temperature=0, max_new_tokens=1000)
    )
    task = asyncio.create_task(engine.generate(long))
    while engine.stats().active == 0:
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while engine.stats().active and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert engine.stats().active == 0
    assert (await engine.generate(GenerationRequest(ids(engine, "Next"), GREEDY))).token_ids


async def test_a_request_past_its_deadline_times_out_and_the_next_works(engine):
    slow = GenerationRequest(
        ids(engine, "Slow"),
        SamplingParams(temperature=0, max_new_tokens=1000),
        deadline=time.monotonic() + 0.05,
    )
    with pytest.raises(GenerationTimeout):
        await engine.generate(slow)
    assert (await engine.generate(GenerationRequest(ids(engine, "Fast"), GREEDY))).text


async def test_a_full_queue_refuses_with_its_depth_and_an_estimated_wait(config, tiny_loaded):
    engine = await started(config, tiny_loaded, max_batch_size=1, max_queue=2)
    try:
        hog = asyncio.create_task(
            engine.generate(
                GenerationRequest((1, 2), SamplingParams(temperature=0, max_new_tokens=400))
            )
        )
        while engine.stats().active == 0:
            await asyncio.sleep(0.001)
        waiting = [
            asyncio.create_task(engine.generate(GenerationRequest((3,), GREEDY))) for _ in range(2)
        ]
        await asyncio.sleep(0)
        with pytest.raises(EngineBusy) as refused:
            await engine.generate(GenerationRequest((4,), GREEDY))
        assert refused.value.depth == 2
        assert refused.value.estimated_wait_s > 0
        assert "2 requests are waiting" in refused.value.user_message
        hog.cancel()
        await asyncio.gather(*waiting)
    finally:
        await engine.close()


async def test_out_of_memory_splits_the_batch_and_every_request_still_finishes(engine, monkeypatch):
    requests = [
        GenerationRequest(ids(engine, p), SamplingParams(temperature=0, max_new_tokens=12))
        for p in ["One", "Two fish", "Three blind mice", "Four score and seven"]
    ]
    solo = [await engine.generate(r) for r in requests]
    real_step = Batch.step
    sizes = []

    def step_with_little_memory(self):
        sizes.append(len(self.rows))
        if len(self.rows) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_step(self)

    monkeypatch.setattr(Batch, "step", step_with_little_memory)
    together = await asyncio.gather(*(engine.generate(r) for r in requests))
    assert [r.token_ids for r in together] == [r.token_ids for r in solo]
    assert max(sizes) > 2 and engine.stats().batch_cap <= 2


async def test_a_request_that_cannot_fit_even_alone_fails_and_others_go_on(engine, monkeypatch):
    real_prefill = Batch.prefill

    def prefill(self, contexts):
        if sum(map(len, contexts)) > 100:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_prefill(self, contexts)

    monkeypatch.setattr(Batch, "prefill", prefill)
    big = engine.generate(GenerationRequest(tuple(range(200, 400)), GREEDY))
    small = engine.generate(GenerationRequest(ids(engine, "Small"), GREEDY))
    big_result, small_result = await asyncio.gather(big, small, return_exceptions=True)
    assert isinstance(big_result, GenerationFailed)
    assert len(small_result.token_ids) == GREEDY.max_new_tokens


async def test_a_dead_worker_fails_waiting_requests_and_a_new_worker_takes_over(
    engine, monkeypatch
):
    real_advance = LocalEngine._advance
    calls = 0

    def advance_then_crash(self, batch):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("a bug in the worker")
        return real_advance(self, batch)

    monkeypatch.setattr(LocalEngine, "_advance", advance_then_crash)
    request = GenerationRequest(
        ids(engine, "Crash"), SamplingParams(temperature=0, max_new_tokens=50)
    )
    started_at = time.monotonic()
    with pytest.raises(EngineUnavailable):
        await engine.generate(request)
    assert time.monotonic() - started_at < 5
    assert engine.stats().restarts == 1
    result = await engine.generate(GenerationRequest(ids(engine, "Again"), GREEDY))
    assert len(result.token_ids) == GREEDY.max_new_tokens


async def test_model_code_runs_only_on_the_worker_thread(engine, monkeypatch):
    model = engine.loaded.model
    threads = set()
    real_forward = model.forward

    def forward(*args, **kwargs):
        threads.add(threading.current_thread().name)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", forward)
    await asyncio.gather(
        *(engine.generate(GenerationRequest(ids(engine, p), GREEDY)) for p in "abc")
    )
    assert threads == {"storybot-engine"}


async def test_closing_fails_queued_requests_and_refuses_new_ones(config, tiny_loaded):
    engine = await started(config, tiny_loaded, max_batch_size=1)
    hog = asyncio.create_task(
        engine.generate(GenerationRequest((5,), SamplingParams(temperature=0, max_new_tokens=1000)))
    )
    while engine.stats().active == 0:
        await asyncio.sleep(0.001)
    await engine.close()
    with pytest.raises(EngineUnavailable):
        await hog
    with pytest.raises(EngineUnavailable):
        await engine.generate(GenerationRequest((5,), GREEDY))


async def test_compiled_decoding_gives_the_same_tokens_as_the_plain_path(
    config, tiny_model_dir, engine
):
    requests = [
        GenerationRequest(ids(engine, p), SamplingParams(temperature=0, max_new_tokens=12))
        for p in ("Hello there", "Once upon a time, in a land far away")
    ]
    plain = await asyncio.gather(*(engine.generate(r) for r in requests))
    # A model of its own: compiling replaces its forward, which the shared fixture must not see.
    compiled = LocalEngine(
        with_model(config, compile=True).model, loaded=load_model(str(tiny_model_dir), "cpu")
    )
    await compiled.start()
    try:
        fast = await asyncio.gather(*(compiled.generate(r) for r in requests))
    finally:
        await compiled.close()
    assert [r.token_ids for r in fast] == [r.token_ids for r in plain]


@pytest.mark.parametrize("continuous", [True, False])
async def test_a_short_request_overtakes_a_long_one_only_with_continuous_batching(
    config, tiny_loaded, continuous
):
    engine = await started(config, tiny_loaded, continuous_batching=continuous)
    finished = []

    async def run(name: str, new_tokens: int) -> None:
        params = SamplingParams(temperature=0, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        await engine.generate(GenerationRequest(ids(engine, name), params))
        finished.append(name)

    try:
        long = asyncio.create_task(run("long", 300))
        while engine.stats().active == 0:
            await asyncio.sleep(0.001)
        await asyncio.gather(long, run("short", 3))
    finally:
        await engine.close()
    assert finished == (["short", "long"] if continuous else ["long", "short"])


async def test_a_crash_while_admitting_fails_those_requests_instead_of_losing_them(
    engine, monkeypatch
):
    # The model failing on one request fails only that one (below); a fault in the engine's own
    # bookkeeping stops the worker, and what it was admitting must not be lost.
    real_add = Batch.add
    crashes = 1

    def add_then_crash(self, rows, prefilled):
        nonlocal crashes
        if crashes:
            crashes -= 1
            raise RuntimeError("a bug in splicing")
        return real_add(self, rows, prefilled)

    monkeypatch.setattr(Batch, "add", add_then_crash)
    requests = [GenerationRequest(ids(engine, p), GREEDY) for p in ("One", "Two", "Three")]
    results = await asyncio.wait_for(
        asyncio.gather(*(engine.generate(r) for r in requests), return_exceptions=True), timeout=10
    )
    failed = [r for r in results if isinstance(r, EngineUnavailable)]
    assert failed and len({id(e) for e in failed}) == len(failed)  # one error object each
    assert all(isinstance(r, EngineUnavailable) or r.token_ids for r in results)
    assert len((await engine.generate(requests[0])).token_ids) == GREEDY.max_new_tokens


async def four_requests_run_alone(engine):
    """Four greedy requests of different lengths, and what each gives when run on its own."""
    requests = [
        GenerationRequest(ids(engine, p), SamplingParams(temperature=0, max_new_tokens=10))
        for p in ["One", "Two fish", "Three blind mice", "Four score and seven"]
    ]
    return requests, [await engine.generate(r) for r in requests]


async def test_out_of_memory_inside_the_forward_pass_is_recovered_by_halving(engine):
    """The error comes from deep in the real model's forward, after some layers wrote the cache."""
    requests, solo = await four_requests_run_alone(engine)
    sizes = []

    def little_memory(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.shape[1] == 1:  # a decoding step, not a prefill
            sizes.append(hidden.shape[0])
            if hidden.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated, inside forward)")

    last_block = engine.loaded.model.transformer.h[-1]
    hook = last_block.register_forward_pre_hook(little_memory, with_kwargs=True)
    try:
        together = await asyncio.gather(*(engine.generate(r) for r in requests))
    finally:
        hook.remove()
    assert [r.token_ids for r in together] == [r.token_ids for r in solo]
    assert max(sizes) > 2 and engine.stats().batch_cap <= 2
    assert engine.stats().restarts == 0


def fault_in_forward(engine, should_fail):
    """A forward pre-hook on the real model that raises when ``should_fail(input_ids)`` says so."""

    def hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if should_fail(input_ids):
            raise RuntimeError("injected model fault")

    return engine.loaded.model.register_forward_pre_hook(hook, with_kwargs=True)


async def test_a_failing_step_retries_each_row_alone_and_nobody_fails(engine):
    requests, solo = await four_requests_run_alone(engine)
    faults = []

    def transient(input_ids) -> bool:
        decoding_together = input_ids.shape[1] == 1 and input_ids.shape[0] > 1
        if decoding_together and len(faults) < 3:
            faults.append(input_ids.shape[0])
            return True
        return False

    hook = fault_in_forward(engine, transient)
    try:
        together = await asyncio.gather(*(engine.generate(r) for r in requests))
    finally:
        hook.remove()
    assert len(faults) == 3
    assert [r.token_ids for r in together] == [r.token_ids for r in solo]
    assert engine.stats().failed == 0 and engine.stats().restarts == 0


async def test_a_request_the_model_always_fails_on_fails_alone(engine):
    poison = 31337
    hook = fault_in_forward(engine, lambda input_ids: bool((input_ids == poison).any()))
    try:
        bad = engine.generate(GenerationRequest((464, poison, 3290), GREEDY))
        good = [engine.generate(GenerationRequest(ids(engine, p), GREEDY)) for p in ("A", "B c")]
        results = await asyncio.gather(bad, *good, return_exceptions=True)
    finally:
        hook.remove()
    assert isinstance(results[0], GenerationFailed)
    assert [len(r.token_ids) for r in results[1:]] == [GREEDY.max_new_tokens] * 2
    assert engine.stats().restarts == 0


async def test_cut_short_ends_rows_with_what_they_have_and_refuses_what_has_not_started(
    config, tiny_loaded, monkeypatch
):
    engine = await started(config, tiny_loaded, max_batch_size=1, batch_wait_ms=0)
    real_step = Batch.step

    def slow_step(self):
        time.sleep(0.02)
        return real_step(self)

    monkeypatch.setattr(Batch, "step", slow_step)
    try:
        long = SamplingParams(temperature=0, max_new_tokens=500, min_new_tokens=500)
        writing = asyncio.ensure_future(engine.generate(GenerationRequest(ids(engine, "A"), long)))
        waiting = asyncio.ensure_future(engine.generate(GenerationRequest(ids(engine, "B"), long)))
        while engine.stats().active == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)

        engine.cut_short()
        done = await asyncio.wait_for(writing, timeout=5)
        with pytest.raises(EngineStopping):
            await asyncio.wait_for(waiting, timeout=5)
        with pytest.raises(EngineStopping):
            await engine.generate(GenerationRequest(ids(engine, "C"), GREEDY))
    finally:
        await engine.close()
    assert done.finish_reason == "interrupted"
    assert 0 < len(done.token_ids) < 500


# -- how sure the model was of each token ------------------------------------------------------------


async def test_explained_greedy_tokens_carry_the_models_own_probabilities(engine):
    prompt = ids(engine, "The lighthouse keeper")
    result = await engine.generate(
        GenerationRequest(prompt, SamplingParams(temperature=0, max_new_tokens=6), explain=True)
    )

    assert [c.token for c in result.choices] == list(result.token_ids)
    model = engine.loaded.model
    context = list(prompt)
    for choice in result.choices:
        with torch.no_grad():
            logits = model(torch.tensor([context])).logits[0, -1].float()
        probs = logits.softmax(-1)
        assert choice.p_model == pytest.approx(float(probs[choice.token]), abs=1e-4)
        assert choice.rank == 1 and choice.p == 1.0  # greedy: the likeliest, drawn for sure
        top = probs.topk(5)
        assert [a for a, _ in choice.alternatives] == top.indices.tolist()
        assert sum(q for _, q in choice.alternatives) <= 1.0 + 1e-6
        context.append(choice.token)


async def test_sampled_choices_note_the_chance_the_sampler_gave_them(engine):
    params = SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=8, seed=3)
    result = await engine.generate(GenerationRequest(ids(engine, "Once"), params, explain=True))

    assert len(result.choices) == len(result.token_ids)
    for choice in result.choices:
        assert 0 < choice.p <= 1 and 0 < choice.p_model <= 1 and choice.rank >= 1
    plain = await engine.generate(GenerationRequest(ids(engine, "Once"), params))
    assert plain.choices == () and plain.token_ids == result.token_ids  # noting changes nothing


async def test_an_explanation_is_the_same_batched_or_alone(engine):
    params = SamplingParams(temperature=0.9, max_new_tokens=10, min_new_tokens=10, seed=11)
    request = GenerationRequest(ids(engine, "A quiet harbour"), params, explain=True)
    alone = await engine.generate(request)
    others = [
        GenerationRequest(ids(engine, text), dataclasses.replace(params, seed=i))
        for i, text in enumerate(["Far away", "It rained all", "Nobody knew the"])
    ]
    together, *_ = await asyncio.gather(*(engine.generate(r) for r in [request, *others]))

    assert together.token_ids == alone.token_ids
    for a, b in zip(alone.choices, together.choices, strict=True):
        assert a.token == b.token and a.rank == b.rank
        assert a.p_model == pytest.approx(b.p_model, abs=1e-4)
        assert a.p == pytest.approx(b.p, abs=1e-4)


STORY = " ".join(["The lighthouse keeper climbed the stairs and lit the great lamp again."] * 12)


async def test_the_next_turn_resumes_from_the_stored_context_and_writes_the_same(
    config, tiny_loaded
):
    """Greedy output is the same whether a turn encodes the whole story or only what is new."""
    results = {}
    for budget in (0, 64):
        engine = await started(config, tiny_loaded, prefix_cache_mb=budget)
        try:
            story = ids(engine, STORY)
            part = await engine.generate(GenerationRequest(story, GREEDY))
            turn = story + part.token_ids[:-4] + ids(engine, " Then a ship came.")
            results[budget] = (part, await engine.generate(GenerationRequest(turn, GREEDY)))
            stats = engine.stats()
        finally:
            await engine.close()
        assert stats.prefix_hits == (1 if budget else 0)
        assert (stats.prefix_mb > 0) == bool(budget)  # the second turn stored its context too
    assert [r.token_ids for r in results[64]] == [r.token_ids for r in results[0]]


async def test_a_story_trimmed_from_the_front_or_edited_early_is_encoded_afresh(engine):
    story = ids(engine, STORY)
    part = await engine.generate(GenerationRequest(story, GREEDY))
    trimmed = story[40:] + part.token_ids
    edited = (story[0] + 1, *story[1:], *part.token_ids)
    fresh = [await engine.generate(GenerationRequest(p, GREEDY)) for p in (trimmed, edited)]
    assert engine.stats().prefix_hits == 0
    for prompt, result in zip((trimmed, edited), fresh, strict=True):
        alone = await started_alone(engine, prompt)
        assert result.token_ids == alone


async def started_alone(engine: LocalEngine, prompt) -> tuple[int, ...]:
    """What an engine without stored contexts writes greedily after ``prompt``."""
    fresh = LocalEngine(dataclasses.replace(engine.config, prefix_cache_mb=0), loaded=engine.loaded)
    await fresh.start()
    try:
        return (await fresh.generate(GenerationRequest(prompt, GREEDY))).token_ids
    finally:
        await fresh.close()


async def test_a_retry_of_a_part_resumes_from_the_context_its_first_version_left(engine):
    story = ids(engine, STORY)
    first = await engine.generate(GenerationRequest(story, GREEDY))
    again = await engine.generate(GenerationRequest(story, GREEDY))
    assert engine.stats().prefix_hits == 1 and again.token_ids == first.token_ids
    assert first.first_token_s is not None and 0 < first.first_token_s <= first.elapsed_s


async def test_requests_arriving_together_are_encoded_in_one_pass(config, tiny_loaded):
    engine = await started(config, tiny_loaded, prefix_cache_mb=0, batch_wait_ms=200)
    prompts = ["Once upon a time", "It was a dark night", "The ship sailed at dawn"]
    requests = [GenerationRequest(ids(engine, p), GREEDY) for p in prompts]
    try:
        solo = [await engine.generate(r) for r in requests]
        shapes = []
        hook = engine.loaded.model.register_forward_pre_hook(
            lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
            with_kwargs=True,
        )
        try:
            together = await asyncio.gather(*(engine.generate(r) for r in requests))
        finally:
            hook.remove()
    finally:
        await engine.close()
    longest = max(len(r.prompt_ids) for r in requests)
    assert shapes[0] == (3, longest)  # one prefill, padded to the longest prompt
    assert all(shape == (3, 1) for shape in shapes[1:])
    assert [r.token_ids for r in together] == [r.token_ids for r in solo]
