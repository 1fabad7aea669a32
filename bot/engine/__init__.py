"""The GPT-2 worker: request and result types, the local batching engine."""

from bot.engine.local import EngineStats, LocalEngine
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
