"""Reliability figures: storybot's database under kill -9.

Usage::

    python -m bench.reliability [--runs 200] [--seed 1]

Each run starts a child process that writes stories through the real ``Store`` (a /write, then
member lines and model parts, each committed in its own transaction) and prints an
acknowledgement after every commit, as the bot shows a part only after it is committed. The
parent kills the child with SIGKILL at a random moment, reopens the file and checks that
``PRAGMA integrity_check`` says ok and that every acknowledged turn is there, in order. The last
line: ``kill9: N runs, integrity ok N, M turns acknowledged, lost 0``.
"""

from __future__ import annotations

import argparse
import asyncio
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures = run(args.runs, args.seed)
    print(
        f"kill9: {figures['runs']} runs, integrity ok {figures['integrity_ok']}, "
        f"{figures['acknowledged']} turns acknowledged, lost {figures['lost']} "
        f"({time.monotonic() - started:.0f} s)"
    )


if __name__ == "__main__":
    main()
