"""Load a causal language model and its tokenizer by hub id or local directory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class LoadedModel:
    """A model ready to serve, with what the rest of the engine needs to know about it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    n_positions: int
    eos_id: int | None


def resolve_device(device: str) -> torch.device:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("model.device = 'cuda' but no CUDA device is available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` means bfloat16 (or float16) on a GPU and float32 on the CPU."""
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def context_size(model: PreTrainedModel) -> int:
    """How many positions the model can attend over (1024 for GPT-2)."""
    config = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def load_model(
    name: str, device: str = "auto", dtype: str = "auto", attention: str = "sdpa"
) -> LoadedModel:
    """Load ``name`` (a hub id such as ``gpt2`` or a directory) onto the chosen device."""
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(
        name, dtype=torch_dtype, attn_implementation=attention
    )
    model.to(target).eval()
    eos_id = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else model.config.eos_token_id
    )
    log.info("loaded %s on %s as %s (%s attention)", name, target, torch_dtype, attention)
    return LoadedModel(model, tokenizer, target, torch_dtype, context_size(model), eos_id)
