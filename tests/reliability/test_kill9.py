"""The fast subset of ``bench.reliability`` in CI: kill -9 during writes loses nothing acknowledged."""

from __future__ import annotations

from bench.reliability import run


def test_kill_9_during_writes_keeps_the_file_sound_and_every_acknowledged_turn():
    figures = run(runs=20, seed=7)

    assert figures["integrity_ok"] == 20 and figures["lost"] == 0
    assert figures["acknowledged"] >= 100  # the kills really came in the middle of writing
