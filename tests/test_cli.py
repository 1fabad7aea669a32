"""The ``storybot`` command line: the console across two runs, generate, check, and a missing token."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.__main__ import build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """The environment of a host who has not set a token or a config file; no hub access."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "STORYBOT_CONFIG")}
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def storybot(*args: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(),
        timeout=180,
    )


def words(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def short_config(tmp_path) -> Path:
    """CPU and short generations, so the runs stay quick; the database path comes from --db."""
    path = tmp_path / "storybot.toml"
    path.write_text('[model]\ndevice = "cpu"\n[generation]\nmax_new_tokens = 8\n', encoding="utf-8")
    return path


def test_a_story_written_in_one_console_run_is_there_in_the_next(
    tmp_path, tiny_model_dir, short_config
):
    db = tmp_path / "c.db"
    common = (
        "--config",
        str(short_config),
        "console",
        "--model",
        str(tiny_model_dir),
        "--db",
        str(db),
    )

    first = storybot(
        *common,
        stdin="/write Once upon a time in a quiet harbour\n/continue The lighthouse blinked twice.\n"
        "/quit\n",
        cwd=tmp_path,
    )
    second = storybot(*common, stdin="/story\n", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    parts = re.split(r"^\[(?:opening|model|you)\] ", first.stdout, flags=re.MULTILINE)[1:]
    assert len(parts) == 4  # opening, model, the member's line, model
    assert parts[0].strip() == "Once upon a time in a quiet harbour"
    assert parts[2].strip() == "The lighthouse blinked twice."
    story = second.stdout.split("[story] ", 1)[1]
    assert words(story) == words("".join(parts))  # the whole story, from the first run's database
    assert "Traceback" not in first.stderr + second.stderr


def test_run_without_a_token_explains_how_to_get_one(tmp_path):
    result = storybot("run", cwd=tmp_path)

    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr
    assert "https://discord.com/developers/applications" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was created on the way out


def test_sync_without_a_token_is_refused_too(tmp_path):
    result = storybot("sync", cwd=tmp_path)

    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr


def test_a_bad_config_stops_at_start_with_the_key_and_the_range(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("STORYBOT_CONFIG", raising=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("[generation]\ntemperature = 9\n", encoding="utf-8")

    assert main(["--config", str(bad), "run"]) == 2

    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "generation.temperature = 9" in err and "from 0.0 to 1.5" in err


def test_generate_prints_the_prompt_and_its_continuation(tiny_model_dir, capsys, monkeypatch):
    # main() is exactly what `python -m bot` runs; in-process spares a second torch start-up.
    monkeypatch.delenv("STORYBOT_CONFIG", raising=False)
    argv = ["generate", "--model", str(tiny_model_dir), "--max-new-tokens", "5", "--seed", "1"]

    assert main([*argv, "Once upon a time"]) == 0
    first = capsys.readouterr().out
    assert main([*argv, "Once upon a time"]) == 0
    again = capsys.readouterr().out

    assert first.startswith("Once upon a time")
    assert len(first.rstrip("\n")) > len("Once upon a time")  # something was written after it
    assert again == first  # the same seed writes the same words


def test_check_reports_each_part_of_the_set_up(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv("STORYBOT_CONFIG", raising=False)
    config = tmp_path / "storybot.toml"
    db = tmp_path / "data" / "check.db"
    config.write_text(f'[model]\ndevice = "cpu"\n[database]\npath = "{db}"\n', encoding="utf-8")

    status = main(["--config", str(config), "check", "--model", str(tiny_model_dir)])

    out = capsys.readouterr().out.splitlines()
    assert status == 1  # the token is missing
    assert f"[ok] config: {config}" in out
    assert "[FAIL] token: DISCORD_TOKEN is not set" in out
    assert any(
        line.startswith("[ok] database:") and "sound (schema version 1)" in line for line in out
    )
    assert any(line.startswith("[ok] model:") and "1024 positions" in line for line in out)
    assert "[ok] device: cpu (torch.float32)" in out
    assert db.exists()


def test_config_may_come_before_or_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--config", "a.toml", "run"]).config == "a.toml"
    assert parser.parse_args(["run", "--config", "b.toml"]).config == "b.toml"
    assert parser.parse_args(["run"]).config is None
    assert parser.parse_args(["-v", "check"]).verbose == 1
    assert parser.parse_args(["check", "-vv"]).verbose == 2


def test_a_file_that_is_not_a_database_is_named_in_one_line(tmp_path, tiny_model_dir, short_config):
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping: bread, milk\n" * 200, encoding="utf-8")
    model = ("--model", str(tiny_model_dir))

    console = storybot("--config", str(short_config), "console", *model, "--db", str(notes),
                       stdin="/quit\n", cwd=tmp_path)  # fmt: skip
    pointed = tmp_path / "pointed.toml"
    pointed.write_text(short_config.read_text() + f'[database]\npath = "{notes}"\n')
    check = storybot("--config", str(pointed), "check", *model, cwd=tmp_path)

    assert console.returncode == 2
    assert f"storybot: the database {notes} cannot be used: it is not a SQLite database" in (
        console.stderr
    )
    assert "Traceback" not in console.stderr
    assert notes.read_text(encoding="utf-8").startswith("shopping")  # left as it was
    assert check.returncode == 1
    assert f"[FAIL] database: the database {notes} cannot be used: it is not" in check.stdout


def test_backup_copies_the_database_and_never_overwrites(tmp_path, tiny_model_dir, short_config):
    db = tmp_path / "stories.db"
    model = ("--model", str(tiny_model_dir))
    storybot("--config", str(short_config), "console", *model, "--db", str(db),
             stdin="/write A tale\n/quit\n", cwd=tmp_path)  # fmt: skip
    pointed = tmp_path / "pointed.toml"
    pointed.write_text(short_config.read_text() + f'[database]\npath = "{db}"\n')

    first = storybot("--config", str(pointed), "backup", "copy.db", cwd=tmp_path)
    again = storybot("--config", str(pointed), "backup", "copy.db", cwd=tmp_path)

    assert first.returncode == 0 and f"backed up {db} to copy.db" in first.stdout
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT text FROM turns WHERE position = 0").fetchone() == ("A tale",)
    assert again.returncode == 2 and "already exists" in again.stderr
