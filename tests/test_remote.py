"""The remote engine against a real `transformers serve` (the tiny model), and against a small
stub for the faults a real server will not make on cue."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import pytest
from aiohttp import web

from bot.config import Config, ConfigError, RemoteConfig, parse_config
from bot.engine.remote import RemoteEngine
from bot.engine.types import (
    EngineBusy,
    EngineUnavailable,
    GenerationFailed,
    GenerationRequest,
    GenerationTimeout,
    SamplingParams,
)
from bot.service import Actor, StoryService
from tests.conftest import SERVING
from tests.servers import free_port

needs_server = pytest.mark.skipif(
    not SERVING,
    reason="transformers serve needs the serving extra: pip install 'transformers[serving]'",
)


def remote_config(config: Config, base_url: str, **remote) -> Config:
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, backend="openai"),
        remote=RemoteConfig(base_url=base_url, **remote),
    )


@pytest.fixture
async def remote(served, config):
    engine = RemoteEngine(config.model, RemoteConfig(base_url=served))
    await engine.start()
    yield engine
    await engine.close()


def request(engine, text="Once upon a time, in a land far away", **params) -> GenerationRequest:
    sampling = SamplingParams(**{"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 12} | params)
    return GenerationRequest(tuple(engine.tokenizer.encode(text)), sampling)


# -- against transformers serve --------------------------------------------------------------------


@needs_server
async def test_the_server_and_its_model_are_read_at_start(remote, tiny_model_dir, tiny_loaded):
    assert remote.flavour == "transformers"
    assert str(tiny_model_dir) in await remote.models()
    assert remote.n_positions == tiny_loaded.n_positions
    assert remote.tokenizer.encode("Hello world") == tiny_loaded.tokenizer.encode("Hello world")


@needs_server
async def test_a_part_streams_as_it_is_written(remote):
    pieces = []

    result = await remote.generate(request(remote, seed=5), pieces.append)

    assert len(pieces) >= 2 and "".join(pieces) == result.text
    assert result.finish_reason in ("length", "eos")
    assert result.prompt_tokens == len(request(remote).prompt_ids)
    assert 0 < len(result.token_ids) <= 12


@needs_server
async def test_the_same_seed_writes_the_same_part(remote):
    first = await remote.generate(request(remote, seed=11))
    again = await remote.generate(request(remote, seed=11))

    assert first.text == again.text


@needs_server
async def test_greedy_matches_the_local_model(remote, tiny_loaded):
    """Temperature 0 on the server writes what the same weights write here."""
    import torch

    asked = request(remote, temperature=0, max_new_tokens=8)
    result = await remote.generate(asked)

    ids = torch.tensor([asked.prompt_ids])
    local = tiny_loaded.model.generate(ids, max_new_tokens=8, do_sample=False)
    expected = tiny_loaded.tokenizer.decode(local[0, ids.shape[1] :])
    assert result.text == expected


@needs_server
async def test_cancelling_closes_the_stream_and_the_server_goes_on(remote):
    started = asyncio.Event()
    task = asyncio.create_task(
        remote.generate(request(remote, max_new_tokens=400), lambda _: started.set())
    )
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (await remote.generate(request(remote, max_new_tokens=4))).text
    assert not remote._writing


@needs_server
async def test_cut_short_ends_a_part_with_what_came(remote):
    started = asyncio.Event()
    task = asyncio.create_task(
        remote.generate(request(remote, max_new_tokens=400), lambda _: started.set())
    )
    await asyncio.wait_for(started.wait(), 30)

    remote.cut_short()
    result = await task

    assert result.finish_reason == "interrupted" and result.text


@needs_server
async def test_the_service_writes_a_story_through_the_server(served, config, store, clock):
    config = remote_config(config, served)
    engine = RemoteEngine(config.model, config.remote)
    await engine.start()
    service = StoryService(config, store, engine, clock=clock, wall_clock=clock)
    try:
        actor = Actor(1, 2, 3)
        written = await service.write(actor, "The lighthouse keeper woke")
        more = await service.continue_(actor, "A ship was coming.")
    finally:
        await engine.close()

    assert [t.kind for t in written.turns + more.turns] == ["opening", "model", "member", "model"]
    record = more.model_turn.settings
    assert record["prompt_tokens"] > written.model_turn.settings["prompt_tokens"]
    assert record["new_tokens"] >= 1


# -- faults, from a stub -----------------------------------------------------------------------------


class Stub:
    """An OpenAI-compatible server that misbehaves on cue."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.keys: list[str | None] = []  # the Authorization header of each /v1/models call
        self.port = free_port()
        self.app = web.Application()
        self.app.router.add_get("/v1/models", self.models)
        self.app.router.add_post("/v1/completions", self.completions)

    async def models(self, http):
        self.keys.append(http.headers.get("Authorization"))
        return web.json_response(
            {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "me"}]}
        )

    async def completions(self, http):
        if self.mode == "busy":
            return web.json_response({"error": {"message": "slow down"}}, status=429,
                                     headers={"Retry-After": "7"})  # fmt: skip
        if self.mode == "overloaded":
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        if self.mode == "bad":
            return web.json_response({"error": {"message": "no such model"}}, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(http)
        event = {"id": "1", "object": "text_completion", "created": 0, "model": "stub",
                 "choices": [{"index": 0, "text": " Hello", "finish_reason": None}]}  # fmt: skip
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if self.mode == "stall":
            await asyncio.sleep(30)
        if self.mode == "malformed":
            await response.write(b"data: {not json\n\n")
        if self.mode == "killed":
            http.transport.close()  # the server dies mid-stream
            return response
        done = dict(event, choices=[{"index": 0, "text": "", "finish_reason": "stop"}])
        await response.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        return response

    async def __aenter__(self) -> Stub:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def stub():
    async with Stub() as server:
        yield server


@pytest.fixture
async def stubbed(stub, config):
    engine = RemoteEngine(
        config.model, RemoteConfig(base_url=f"http://127.0.0.1:{stub.port}/v1", model="stub")
    )
    await engine.start()
    yield engine
    await engine.close()


async def test_the_stub_answers_as_a_server_would(stubbed):
    assert stubbed.flavour == "openai"
    assert (await stubbed.generate(request(stubbed))).text == " Hello"


@pytest.mark.parametrize(("mode", "wait"), [("busy", 7.0), ("overloaded", 5.0)])
async def test_a_busy_server_is_busy_with_its_retry_after(stub, stubbed, mode, wait):
    stub.mode = mode

    with pytest.raises(EngineBusy) as caught:
        await stubbed.generate(request(stubbed))

    assert caught.value.estimated_wait_s == wait
    assert "try again in about" in caught.value.user_message


async def test_a_refused_request_is_a_clear_failure(stub, stubbed):
    stub.mode = "bad"

    with pytest.raises(GenerationFailed) as caught:
        await stubbed.generate(request(stubbed))

    assert "400" in str(caught.value)


async def test_a_stall_past_the_deadline_is_a_timeout(stub, stubbed):
    stub.mode = "stall"
    asked = dataclasses.replace(request(stubbed), deadline=time.monotonic() + 0.5)

    with pytest.raises(GenerationTimeout):
        await stubbed.generate(asked)
    assert not stubbed._writing


async def test_a_malformed_event_is_a_failure(stub, stubbed):
    stub.mode = "malformed"

    with pytest.raises(GenerationFailed) as caught:
        await stubbed.generate(request(stubbed))
    assert "malformed" in str(caught.value)


async def test_a_server_killed_mid_stream_is_unavailable(stub, stubbed):
    stub.mode = "killed"

    with pytest.raises(EngineUnavailable):
        await stubbed.generate(request(stubbed))
    assert not stubbed._writing


async def test_nobody_listening_is_unavailable_and_the_log_names_the_url(config, caplog):
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = RemoteEngine(config.model, RemoteConfig(base_url=url, model="stub"))

    with caplog.at_level(logging.ERROR), pytest.raises(EngineUnavailable) as caught:
        await engine.start()

    assert url in caught.value.args[0]
    assert any(
        url in r.getMessage() and "[remote] base_url" in r.getMessage() for r in caplog.records
    )


async def test_the_api_key_comes_from_the_environment_only(stub, config, monkeypatch, caplog):
    monkeypatch.setenv("STORYBOT_REMOTE_API_KEY", "sk-test-secret")
    engine = RemoteEngine(
        config.model, RemoteConfig(base_url=f"http://127.0.0.1:{stub.port}/v1", model="stub")
    )
    with caplog.at_level(logging.DEBUG):
        await engine.start()
        await engine.close()

    assert stub.keys == ["Bearer sk-test-secret"]
    assert "sk-test-secret" not in caplog.text


def test_the_config_names_the_backend_and_the_server():
    config = parse_config(
        {
            "model": {"backend": "openai"},
            "remote": {"base_url": "http://vllm:8000/v1/", "server": "vllm"},
        }
    )

    assert config.model.backend == "openai"
    assert (config.remote.base_url, config.remote.server) == ("http://vllm:8000/v1", "vllm")
    with pytest.raises(ConfigError) as caught:
        parse_config({"remote": {"base_url": "vllm:8000"}})
    assert "remote.base_url" in str(caught.value) and "http(s) URL" in str(caught.value)


async def test_check_says_which_server_serves_which_model(stub, tmp_path, tiny_model_dir, capsys):
    from bot.__main__ import main

    config = tmp_path / "storybot.toml"
    config.write_text(
        f'[model]\nname = "{tiny_model_dir}"\nbackend = "openai"\n'
        f'[remote]\nbase_url = "http://127.0.0.1:{stub.port}/v1"\nmodel = "stub"\n'
        f'[database]\npath = "{tmp_path / "x.db"}"\n',
        encoding="utf-8",
    )

    await asyncio.to_thread(main, ["--config", str(config), "check"])

    out = capsys.readouterr().out
    assert f"[ok] model server: http://127.0.0.1:{stub.port}/v1 (openai) serves stub" in out
    assert "[ok] model: 1024 positions" in out
