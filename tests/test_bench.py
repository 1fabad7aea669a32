"""The throughput benchmark still runs end to end (on the tiny model; no timing is asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_every_side_and_reports_the_ratios(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--tiny", "--requests", "3", "--new-tokens", "4",
         "--prompt-tokens", "20", "--stagger", "0.05", "--threads", "1", "--json", str(report),
         "--backend", "ctranslate2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"speedup=\d+\.\d\d vs_static=\d+\.\d\d ctranslate2/ours=\d+\.\d\d", last)
    figures = json.loads(report.read_text())
    sides = ("baseline", "static", "ours", "ctranslate2")
    assert [figures[side]["tokens"] for side in sides] == [3 * 4] * 4
    for side in sides:
        assert figures[side]["wall_s"] > 0 and figures[side]["latency_p95_s"] > 0


def test_the_long_story_mode_times_the_first_token_with_and_without_reuse(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--tiny", "--story-tokens", "300",
         "--new-tokens", "4", "--threads", "1", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"reuse .* stored-context hits 5$", done.stdout, re.MULTILINE)
    assert re.fullmatch(
        r"speedup=\d+\.\d\d first_token_reuse/full=\d+\.\d\d", done.stdout.strip().splitlines()[-1]
    )
    stories = json.loads(report.read_text())["stories"]
    for side in ("re-encode", "reuse"):
        assert len(stories[side]["first_token_s"]) == 5
        assert all(0 < first <= whole for first, whole in zip(
            stories[side]["first_token_s"], stories[side]["part_s"], strict=True
        ))  # fmt: skip


def test_the_remote_backend_side_runs_against_transformers_serve(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.throughput", "--tiny", "--backend", "openai",
         "--requests", "2", "--new-tokens", "4", "--prompt-tokens", "20", "--stagger", "0.05",
         "--threads", "1", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(report.read_text())
    assert figures["local"]["tokens"] == 2 * 4 and figures["remote"]["tokens"] > 0
    assert figures["remote_ms_per_request"] > 0 and figures["remote_ms_per_delta"] > 0


def test_the_capacity_benchmark_runs_the_service_against_a_stub():
    done = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--channels", "3", "--parts", "3",
         "--deltas", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=os.environ | {"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.match(r"9 parts from 3 channels at once, .* \d+\.\d parts/s", done.stdout.strip())


def test_the_gpu_checks_run_as_a_smoke_run_on_the_cpu(tmp_path):
    report = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--device", "cpu", "--tiny", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    rows = json.loads(report.read_text())
    assert len(table) == 2 + len(rows) and len(rows) == 4  # every way but the compiled one
    for row in rows:
        assert all(rate > 0 for rate in row["tokens_per_s"].values())
        assert row["first_token_reused_s"] > 0 and row["first_token_s"] > 0
