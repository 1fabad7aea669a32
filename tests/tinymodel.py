"""Build small random GPT-2 models around the real GPT-2 tokenizer, saved like a hub checkout."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

TOKENIZER_DIR = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"


def build_model(directory: Path, *, seed: int = 0, **shape) -> Path:
    """Save a random ``GPT2LMHeadModel`` (tiny unless ``shape`` says otherwise) and its tokenizer."""
    torch.manual_seed(seed)
    tokenizer = GPT2Tokenizer.from_pretrained(TOKENIZER_DIR)
    dims = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": 1024} | shape
    config = GPT2Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **dims,
    )
    model = GPT2LMHeadModel(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
