"""A model converted for CTranslate2: make one from a Hugging Face model, load one, describe one.

A converted folder is all the CTranslate2 engine needs: CTranslate2's ``model.bin``, ``config.json``
and ``vocabulary.json`` (from its ``TransformersConverter``), the Hugging Face tokenizer saved
beside them (the service counts tokens with it), and ``storybot.json``: the window, the
end-of-text id and where the model came from, which CTranslate2's own config does not keep.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from bot.config import QUANTIZATIONS
from bot.engine.loader import check_available, context_size, eos_id
from bot.errors import ModelUnavailable

log = logging.getLogger(__name__)

METADATA = "storybot.json"
FORMAT = 1


@dataclass
class ConvertedModel:
    """A converted model loaded and ready to serve."""

    generator: ctranslate2.Generator
    tokenizer: PreTrainedTokenizerBase
    vocabulary: list[str]  # CTranslate2 takes tokens as strings: id -> its string
    n_positions: int
    eos_id: int | None
    source: str  # the model it was converted from
    quantization: str  # how the folder stores its weights
    device: str
    compute_type: str  # what it computes in


def convert(name: str, target: Path, quantization: str = "int8") -> int:
    """Convert the Hugging Face model ``name`` (a hub id or a folder) into the new folder
    ``target``, with its tokenizer and window; return the folder's size in bytes."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization {quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ModelUnavailable(f"{target} is not empty; name a new folder to convert into")
    offline = check_available(name)
    # The converter loads by name and cannot be told to stay offline: give it the cached copy.
    source = _cached_folder(name) if offline else name
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = AutoConfig.from_pretrained(source)
    from ctranslate2.converters import TransformersConverter

    try:
        TransformersConverter(source).convert(str(target), quantization=quantization, force=True)
    except NotImplementedError as error:
        raise ModelUnavailable(f"CTranslate2 cannot convert {name}: {error}") from None
    tokenizer.save_pretrained(target)
    metadata = {
        "format": FORMAT,
        "source": name,
        "quantization": quantization,
        "n_positions": context_size(config),
        "eos_id": eos_id(tokenizer, config),
        "ctranslate2": ctranslate2.__version__,
    }
    (target / METADATA).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return sum(f.stat().st_size for f in target.rglob("*") if f.is_file())


def load_converted(
    folder: Path, device: str = "cpu", compute_type: str = "int8", threads: int = 0
) -> ConvertedModel:
    """Load a folder made by :func:`convert`; a folder that is missing or not converted raises
    :class:`ModelUnavailable`, saying what to do."""
    metadata = read_metadata(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    try:
        generator = ctranslate2.Generator(
            str(folder), device=device, compute_type=compute_type, intra_threads=threads
        )
    except (RuntimeError, ValueError) as error:
        raise ModelUnavailable(
            f"CTranslate2 cannot load {folder} as {compute_type} on {device}: {error}"
        ) from None
    loaded = ConvertedModel(
        generator=generator,
        tokenizer=tokenizer,
        vocabulary=_vocabulary(folder),
        n_positions=int(metadata["n_positions"]),
        eos_id=metadata.get("eos_id"),
        source=str(metadata.get("source", folder.name)),
        quantization=str(metadata.get("quantization", "?")),
        device=generator.device,
        compute_type=generator.compute_type,
    )
    log.info(
        "loaded %s (converted from %s, %s) on %s as %s",
        folder, loaded.source, loaded.quantization, loaded.device, loaded.compute_type,
    )  # fmt: skip
    return loaded


def read_metadata(folder: Path) -> dict[str, Any]:
    """What :func:`convert` noted about the folder; ModelUnavailable if it is not one."""
    convert_hint = f"`storybot model convert NAME --to {folder}`"
    if not folder.is_dir():
        raise ModelUnavailable(
            f"the converted model folder {folder} does not exist; make it with {convert_hint}"
        )
    if not (folder / "model.bin").is_file():
        if (folder / "config.json").is_file():
            raise ModelUnavailable(
                f"{folder} is a Hugging Face model folder, not a converted one; convert it with "
                f"`storybot model convert {folder} --to NEW_FOLDER`"
            )
        raise ModelUnavailable(f"{folder} holds no converted model (no model.bin); {convert_hint}")
    try:
        metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
        int(metadata["n_positions"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelUnavailable(
            f"{folder} was converted without storybot's notes ({METADATA}: the tokenizer and the "
            f"window); convert the model again with {convert_hint}"
        ) from None
    return metadata


def describe(folder: Path) -> list[str]:
    """What a converted folder holds, one line each, without loading it."""
    metadata = read_metadata(folder)
    files = [f for f in folder.rglob("*") if f.is_file()]
    return [
        f"folder: {folder}",
        f"converted from: {metadata.get('source', '?')} for CTranslate2 "
        f"{metadata.get('ctranslate2', '?')}",
        f"stored as: {metadata.get('quantization', '?')}",
        f"window: {metadata['n_positions']} tokens",
        f"vocabulary: {len(_vocabulary(folder))} tokens",
        f"files: {len(files)}, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB",
    ]


def _vocabulary(folder: Path) -> list[str]:
    """CTranslate2's tokens by id, as its converter wrote them."""
    return json.loads((folder / "vocabulary.json").read_text(encoding="utf-8"))


def _cached_folder(name: str) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(name, local_files_only=True)
