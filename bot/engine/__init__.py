"""The GPT-2 worker: request and result types, the local batching engine."""

from bot.engine.local import EngineStats, LocalEngine
from bot.engine.types import (
    EngineBusy,
    EngineError,
    EngineUnavailable,
    GenerationFailed,
    GenerationRequest,
    GenerationResult,
    GenerationTimeout,
    SamplingParams,
)

__all__ = [
    "EngineBusy",
    "EngineError",
    "EngineStats",
    "EngineUnavailable",
    "GenerationFailed",
    "GenerationRequest",
    "GenerationResult",
    "GenerationTimeout",
    "LocalEngine",
    "SamplingParams",
]
