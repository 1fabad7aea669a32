"""Load a causal language model and its tokenizer by hub id or local directory."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from bot.errors import ModelUnavailable
from bot.paths import looks_like_path

log = logging.getLogger(__name__)

HUB_PROBE_S = 5.0  # how long to try reaching the hub before saying it cannot be reached

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


def context_size(config: PretrainedConfig) -> int:
    """How many positions a model of this config can attend over (1024 for GPT-2)."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1024


def load_model(
    name: str, device: str = "auto", dtype: str = "auto", attention: str = "sdpa"
) -> LoadedModel:
    """Load ``name`` (a hub id such as ``gpt2`` or a directory) onto the chosen device.

    A missing folder, a folder without a model, or a hub id that is neither cached nor
    reachable raises :class:`ModelUnavailable` at once, saying what to do.
    """
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    offline = check_available(name)
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
    model = AutoModelForCausalLM.from_pretrained(
        name, dtype=torch_dtype, attn_implementation=attention, local_files_only=offline
    )
    model.to(target).eval()
    log.info("loaded %s on %s as %s (%s attention)", name, target, torch_dtype, attention)
    return LoadedModel(
        model, tokenizer, target, torch_dtype, context_size(model.config),
        eos_id(tokenizer, model.config),
    )  # fmt: skip


def eos_id(tokenizer, config: PretrainedConfig) -> int | None:
    """The end-of-text id: the tokenizer's, else the model config's."""
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else config.eos_token_id


def load_tokenizer(name: str) -> tuple[Any, int, int | None]:
    """The tokenizer of ``name`` (a hub id or a folder), its model's context size and its end of
    text id, without the weights: what a remote engine needs to count tokens exactly."""
    offline = check_available(name)
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=offline)
    config = AutoConfig.from_pretrained(name, local_files_only=offline)
    return tokenizer, context_size(config), eos_id(tokenizer, config)


def check_available(name: str) -> bool:
    """Raise ModelUnavailable unless ``name`` can be loaded; return True when it must be loaded
    from the local cache only (the hub is off or unreachable, and the model is cached)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(
                f"{path} is not a model folder (it has no config.json). Save a model into it "
                "with `storybot model download NAME --to FOLDER`."
            )
        return False
    if looks_like_path(name):
        raise ModelUnavailable(f"the model folder {path} does not exist")
    cached = _cached(name)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        if cached:
            return True
        raise ModelUnavailable(
            f"the model {name!r} is not in the local cache and HF_HUB_OFFLINE is set. "
            "Set model.name to a model folder, or unset HF_HUB_OFFLINE to download it."
        )
    if _hub_reachable():
        return False
    if cached:
        log.warning("the Hugging Face hub cannot be reached: using the cached copy of %s", name)
        return True
    raise ModelUnavailable(
        f"the model {name!r} is not in the local cache and the Hugging Face hub "
        f"({_hub_host()}) cannot be reached. On a machine with internet, run "
        f"`storybot model download {name} --to FOLDER`, copy the folder here, and set "
        "model.name to it."
    )


def _cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "config.json")
    except Exception:  # a name the hub would refuse: not cached, and the hub will say why
        return False
    return isinstance(found, str)


def _hub_host() -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return urlparse(endpoint).hostname or "huggingface.co"


def _hub_reachable() -> bool:
    """A quick TCP connection to the hub, instead of a minute of retries (behind a proxy, the
    hub library's own connection decides)."""
    proxies = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")
    if any(os.environ.get(name) for name in proxies):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((_hub_host(), port), timeout=HUB_PROBE_S).close()
    except OSError:
        return False
    return True


def download(name: str, target: Path) -> int:
    """Save the hub model ``name`` (and its tokenizer) into the folder ``target``; its size."""
    check_available(name)
    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def describe(folder: Path) -> list[str]:
    """What a model folder holds, one line each, without loading its weights."""
    from safetensors import safe_open
    from transformers import AutoConfig

    if not folder.is_dir():
        raise ModelUnavailable(f"{folder} is not a folder (model info describes a model folder)")
    check_available(str(folder))
    config = AutoConfig.from_pretrained(folder)
    parameters = 0
    for weights in sorted(folder.glob("*.safetensors")):
        with safe_open(weights, "pt") as tensors:
            for key in tensors.keys():  # noqa: SIM118 - safe_open is not a mapping
                count = 1
                for size in tensors.get_slice(key).get_shape():
                    count *= size
                parameters += count
    files = [f for f in folder.rglob("*") if f.is_file()]
    window = next(
        (getattr(config, n) for n in ("n_positions", "max_position_embeddings", "n_ctx")
         if isinstance(getattr(config, n, None), int)),
        "?",
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return [
        f"folder: {folder}",
        f"architecture: {', '.join(config.architectures or [config.model_type])}",
        f"parameters: {parameters / 1e6:.1f} M" if parameters else "parameters: ? (no safetensors)",
        f"window: {window} tokens",
        f"vocabulary: {len(tokenizer)} tokens",
        f"stored as: {getattr(config, 'dtype', None) or getattr(config, 'torch_dtype', '?')}",
        f"files: {len(files)}, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB",
    ]
