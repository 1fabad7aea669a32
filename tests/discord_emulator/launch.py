"""Run the real ``storybot`` command in this process with discord.py pointed at an emulator.

For tests that need a whole ``storybot run`` process (signals, kill -9) against the local Discord::

    python -m tests.discord_emulator.launch http://127.0.0.1:PORT [--step-delay S] -- run

Everything after ``--`` is the ``storybot`` command line. ``--step-delay`` slows every decoding
step of the model by S seconds, so that a test can catch parts while they are being written.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from .patching import pointed_at


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, command = (
        (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    )
    parser = argparse.ArgumentParser(prog="launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the emulator's address, http://127.0.0.1:PORT")
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args(ours)
    if args.step_delay:
        slow_down(args.step_delay)
    # A test may lower this process's file size limit to stand for a full disk: a write past it
    # then fails (EFBIG), as on a full disk, instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    from bot.__main__ import main as storybot

    with pointed_at(args.url):
        return storybot(command)


def slow_down(seconds: float) -> None:
    from bot.engine.batch import Batch

    real_step = Batch.step

    def slow_step(self):
        time.sleep(seconds)
        return real_step(self)

    Batch.step = slow_step


if __name__ == "__main__":
    sys.exit(main())
