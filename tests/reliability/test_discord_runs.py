"""The fast subset of ``bench.reliability`` over a real ``storybot run`` process and the local
Discord: stops, a crash and restart, a little load, and the fault matrix."""

from __future__ import annotations

import signal

import pytest

from bench import discord_runs, faults


def assert_nobody_misled(outcome: discord_runs.Outcome) -> None:
    assert outcome.waiting == []
    assert outcome.answered == outcome.requests
    assert (outcome.lost, outcome.misled, outcome.duplicated) == (0, 0, 0)
    assert outcome.contiguous and outcome.integrity == "ok"


async def test_sigterm_lets_every_part_in_flight_finish_and_exits_cleanly(tmp_path, tiny_model_dir):
    run = await discord_runs.stop_run(tmp_path, tiny_model_dir, signal.SIGTERM, drain_s=20.0)

    assert run.exit_status == 0 and run.exit_s < 20.0 + 5
    assert_nobody_misled(run.outcome)
    assert run.outcome.parts_shown == run.outcome.requests  # all finished within the drain
    assert run.late_told_restarting


async def test_ctrl_c_past_the_drain_limit_saves_and_shows_what_was_written(
    tmp_path, tiny_model_dir
):
    run = await discord_runs.stop_run(tmp_path, tiny_model_dir, signal.SIGINT, drain_s=1.0)

    assert run.exit_status == 0 and run.exit_s < 1.0 + 5
    assert_nobody_misled(run.outcome)
    assert run.outcome.told_saved == run.outcome.requests  # cut short, or not begun: saved lines
    assert run.late_told_restarting


async def test_after_kill_9_the_next_start_tells_every_waiting_member(tmp_path, tiny_model_dir):
    run = await discord_runs.crash_run(tmp_path, tiny_model_dir)

    assert_nobody_misled(run.outcome)
    assert run.told_after_restart == run.outcome.requests


async def test_members_writing_at_once_in_many_channels_lose_nothing(tmp_path, tiny_model_dir):
    load = await discord_runs.load_run(tmp_path, tiny_model_dir, members=10, requests=3, channels=5)

    assert_nobody_misled(load.outcome)
    assert load.requests == 30 and load.outcome.parts_shown == 30 and load.refused == 0
    assert load.ack_late == 0


@pytest.mark.parametrize("name", [*faults.CASES, "disk full"])
async def test_each_fault_is_survived_and_every_member_told_the_truth(
    tmp_path, tiny_model_dir, name
):
    [result] = [r async for r in faults.run_faults(tmp_path, tiny_model_dir, only=[name])]

    assert result.survived, result.line()
    assert result.truthful, result.line()
