"""The GPT-2 worker: request and result types, the local batching engine."""

from bot.engine.local import LocalEngine
from bot.engine.types import (
    EngineBusy,
    EngineError,
    EngineStopping,
    EngineUnavailable,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    GenerationTimeout,
    SamplingParams,
    TokenChoice,
)
from bot.engine.worker import EngineStats

__all__ = [
    "EngineBusy",
    "EngineError",
    "EngineStats",
    "EngineStopping",
    "EngineUnavailable",
    "GenerationFailed",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTimeout",
    "LocalEngine",
    "SamplingParams",
    "TokenChoice",
]
