"""Local servers the tests and benchmarks start for themselves: a free port, a server process that
is waited for until it answers and stopped afterwards, `transformers serve` and `redis-server`."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


class DidNotStart(RuntimeError):
    """The server exited, or did not answer in time."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_tcp(port: int) -> Callable[[], bool]:
    """Whether something accepts connections on ``port``."""

    def ready() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    return ready


def answers_http(url: str) -> Callable[[], bool]:
    """Whether ``url`` answers 200."""

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    return ready


@contextlib.contextmanager
def running(
    command: Sequence[str],
    ready: Callable[[], bool],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """``command`` started as a server, once ``ready()`` says it answers; stopped after."""
    server = subprocess.Popen(
        list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline or server.poll() is not None:
                raise DidNotStart(f"{Path(command[0]).name} did not start")
            time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(30)


def transformers_serve(model_dir: Path, port: int, *options: str) -> list[str]:
    """The command that serves ``model_dir`` on ``port``: the venv's own `transformers`, found
    without the venv on PATH."""
    script = Path(sys.executable).parent / "transformers"
    program = str(script) if script.exists() else shutil.which("transformers") or "transformers"
    return [program, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
            "--device", "cpu", *options]  # fmt: skip


@contextlib.contextmanager
def redis_server(binary: str) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free port, keeping nothing; yields its URI."""
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no"]  # fmt: skip
    with running(command, answers_tcp(port), timeout_s=10):
        yield f"redis://127.0.0.1:{port}/0"
