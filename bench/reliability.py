"""Reliability figures: kill -9 during writes, graceful stops, a crash and restart, load, faults
and fuzz, each printed as one line.

Usage::

    python -m bench.reliability [--only kill9,stop,crash,load,faults,fuzz] [--runs 200]
        [--stop-runs 3] [--members 50 --requests 20 --channels 10] [--fuzz-examples 1000]

- ``kill9``: a child process writes stories through the real ``Store`` (a /write, then member
  lines and model parts, each committed in its own transaction) and prints an acknowledgement
  after every commit, as the bot shows a part only after it is committed. The parent kills it with
  SIGKILL at a random moment, reopens the file and checks that ``PRAGMA integrity_check`` says ok
  and that every acknowledged turn is there, in order.
- ``stop``, ``crash``, ``load`` (:mod:`bench.discord_runs`): a real ``storybot run`` process with
  members on the local Discord; stopped with SIGTERM and SIGINT (parts finishing within the drain
  limit, and parts cut short past it), killed with SIGKILL and started again, or loaded.
- ``faults`` (:mod:`bench.faults`): model errors, out of memory, a worker crash, a locked,
  read-only or full database, while members wait.
- ``fuzz``: ``tests/reliability/test_fuzz.py`` with many more examples.

The bot runs a tiny random GPT-2 (``tests/tinymodel.py``): these figures are about what happens
to members and their stories, not about how well the model writes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

CHILD = """
import asyncio, sys
from bot.store import NewTurn, Store

async def main(path):
    store = await Store.open(path)
    n = 0
    while True:
        story, opening, _ = await store.start_story(1, n % 3, "story", f"opening {n}", 7)
        print(f"ack {opening.story_id} 0", flush=True)
        for position in range(1, 9):
            kind = "member" if position % 2 else "model"
            [turn] = await store.append_turns(story.id, [NewTurn(kind, 7, f"turn {position}")])
            print(f"ack {turn.story_id} {turn.position}", flush=True)
        n += 1

asyncio.run(main(sys.argv[1]))
"""


def one_run(path: Path, rng: random.Random) -> tuple[bool, int, int]:
    """Kill a writer at a random moment: (integrity ok, turns acknowledged, of them missing)."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()  # every acknowledgement, read as it comes, until the pipe closes
    time.sleep(rng.uniform(0.3, 1.5))  # past start-up, somewhere in the writing
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join(timeout=10)
    acked = [tuple(map(int, line.split()[1:])) for line in lines if line.startswith("ack ")]
    with sqlite3.connect(path) as db:
        ok = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = set(db.execute("SELECT story_id, position FROM turns"))
    return ok, len(acked), sum(1 for turn in acked if turn not in stored)


def run(runs: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    sound = acknowledged = lost = 0
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "kill9.db"
        asyncio.run(_create(path))
        for _ in range(runs):
            ok, acked, missing = one_run(path, rng)
            sound += ok
            acknowledged += acked
            lost += missing
    return {"runs": runs, "integrity_ok": sound, "acknowledged": acknowledged, "lost": lost}


async def _create(path: Path) -> None:
    from bot.store import Store

    await (await Store.open(path)).close()


def stop_line(runs: list) -> str:
    """One line for the stop runs of one signal and drain limit."""
    first, outcomes = runs[0], [r.outcome for r in runs]
    total = sum(o.requests for o in outcomes)
    return (
        f"stop {first.signal} (drain {first.drain_s:g} s): {len(runs)} runs, "
        f"exit 0 in {sum(r.exit_status == 0 for r in runs)}, "
        f"slowest exit {max(r.exit_s for r in runs):.1f} s (limit drain + 5 s), "
        f"{sum(o.answered for o in outcomes)}/{total} members answered "
        f"({sum(o.parts_shown for o in outcomes)} parts shown, "
        f"{sum(o.told_saved for o in outcomes)} cut short or told their line is saved), "
        f"{_losses(outcomes)}, newcomer told to retry in {sum(r.late_told_restarting for r in runs)}"
    )


def _losses(outcomes: list) -> str:
    return (
        f"lost {sum(o.lost for o in outcomes)}, misled {sum(o.misled for o in outcomes)}, "
        f"duplicated {sum(o.duplicated for o in outcomes)}, "
        f"integrity ok {sum(o.integrity == 'ok' for o in outcomes)}/{len(outcomes)}"
    )


async def discord_figures(args, only: set[str]) -> None:
    from bench import discord_runs, faults
    from tests.tinymodel import build_model

    with tempfile.TemporaryDirectory(prefix="storybot-reliability-") as scratch:
        folder = Path(scratch)
        model = build_model(folder / "model")
        count = iter(range(1_000_000))

        def fresh() -> Path:
            path = folder / f"run{next(count)}"
            path.mkdir()
            return path

        if "stop" in only:
            for sig in (signal.SIGTERM, signal.SIGINT):
                for drain_s in (20.0, 1.0):
                    runs = [
                        await discord_runs.stop_run(fresh(), model, sig, drain_s=drain_s)
                        for _ in range(args.stop_runs)
                    ]
                    print(stop_line(runs), flush=True)
        if "crash" in only:
            runs = [await discord_runs.crash_run(fresh(), model) for _ in range(args.stop_runs)]
            outcomes = [r.outcome for r in runs]
            print(
                f"crash (kill -9 with parts in flight, then a restart): {len(runs)} runs, "
                f"{sum(r.told_after_restart for r in runs)}/{sum(o.requests for o in outcomes)} "
                f"members told after the restart (within {max(r.restart_s for r in runs):.1f} s "
                f"of it), {_losses(outcomes)}",
                flush=True,
            )
        if "load" in only:
            load = await discord_runs.load_run(
                fresh(), model, members=args.members, requests=args.requests,
                channels=args.channels,
            )  # fmt: skip
            o = load.outcome
            print(
                f"load: {load.members} members x {args.requests} requests over {load.channels} "
                f"channels in {load.seconds:.0f} s: {o.answered}/{load.requests} answered "
                f"({o.parts_shown} parts, {load.refused} refused), {_losses([o])}, positions "
                f"{'contiguous' if o.contiguous else 'NOT CONTIGUOUS'}, acknowledged within "
                f"{load.ack_max_s:.2f} s at most ({load.ack_late} past 3 s), answer p50 "
                f"{load.answer_p50_s:.2f} s, p95 {load.answer_p95_s:.2f} s",
                flush=True,
            )
        if "faults" in only:
            async for result in faults.run_faults(fresh(), model):
                print(result.line(), flush=True)


def fuzz_figures(examples: int) -> None:
    import pytest

    os.environ["STORYBOT_FUZZ_EXAMPLES"] = str(examples)
    report = io.StringIO()  # pytest's own report: shown only when a test failed
    with contextlib.redirect_stdout(report):
        status = pytest.main(["-q", "-p", "no:cacheprovider", "tests/reliability/test_fuzz.py"])
    from tests.reliability.test_fuzz import summary

    if status:
        print(report.getvalue())
    print(f"{summary()} (pytest exit status {int(status)})", flush=True)


FIGURES = ("kill9", "stop", "crash", "load", "faults", "fuzz")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(FIGURES), help="which figures, comma-separated")
    parser.add_argument("--runs", type=int, default=200, help="kill -9 runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stop-runs", type=int, default=3, help="runs per stop and crash case")
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per member, one after another")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--fuzz-examples", type=int, default=1000, help="per fuzz test")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    if unknown := only - set(FIGURES):
        parser.error(f"unknown figures {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
    if "kill9" in only:
        started = time.monotonic()
        figures = run(args.runs, args.seed)
        print(
            f"kill9: {figures['runs']} runs, integrity ok {figures['integrity_ok']}, "
            f"{figures['acknowledged']} turns acknowledged, lost {figures['lost']} "
            f"({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    if only & {"stop", "crash", "load", "faults"}:
        asyncio.run(discord_figures(args, only))
    if "fuzz" in only:
        fuzz_figures(args.fuzz_examples)


if __name__ == "__main__":
    main()
