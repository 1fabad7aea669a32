"""The ``storybot`` command line: the console across two runs, generate, check, and a missing token."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.__main__ import build_parser, main
from bot.store import migrations

REPO_ROOT = Path(__file__).resolve().parents[1]


def clean_env() -> dict[str, str]:
    """The environment of a host who has not set a token or a config file; no hub access."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISCORD_TOKEN", "STORYBOT_CONFIG")}
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def storybot(
    *args: str, stdin: str = "", cwd: Path, env: dict[str, str] | None = None, module: str = "bot"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env() | (env or {}),
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
    story = second.stdout.split("[story: Once upon a time", 1)[1]
    shown = re.split(r"^\[(?:opening|model|you)\] ", story, flags=re.MULTILINE)[1:]
    assert words("".join(shown)) == words("".join(parts))  # the first run's story, turn by turn
    assert "Traceback" not in first.stderr + second.stderr
    # Quiet: no log lines or progress bars between the console's own lines.
    assert " INFO " not in first.stderr and "Loading weights" not in first.stderr


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
    assert f"[ok] database: {db} does not exist yet; it will be created at the first start" in out
    assert any(line.startswith("[ok] model:") and "1024 positions" in line for line in out)
    assert "[ok] device: cpu (torch.float32)" in out
    assert "[ok] rate limits: memory://" in out
    assert not db.parent.exists()  # check writes nothing

    db.parent.mkdir()
    sqlite3.connect(db).close()  # an empty file: schema version 0, all migrations to come
    main(["--config", str(config), "check", "--model", str(tiny_model_dir)])
    out = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("[ok] database:")
        and f"schema version 0; {len(migrations())} migration(s) will run" in line
        for line in out
    )


def test_check_names_an_unreachable_redis_without_its_password(
    tmp_path, tiny_model_dir, capsys, monkeypatch
):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once it is closed
    config = tmp_path / "storybot.toml"
    config.write_text(
        f'[model]\ndevice = "cpu"\n[database]\npath = "{tmp_path / "x.db"}"\n'
        f'[moderation]\nlimits_storage = "redis://:hunter2@127.0.0.1:{port}/0"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DISCORD_TOKEN", "x")

    checked = main(["--config", str(config), "check", "--model", str(tiny_model_dir)])

    out = capsys.readouterr().out
    assert checked == 1
    assert f"[FAIL] rate limits: the rate-limit storage redis://***@127.0.0.1:{port}/0" in out
    assert "hunter2" not in out


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


# -- a host's first hour: every failure one clear line, and the set-up commands ------------------


def one_clear_line(result: subprocess.CompletedProcess, *says: str) -> None:
    """A set-up failure: exit status 2, no traceback, one line on stderr saying ``says``."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("storybot")]
    assert len(lines) == 1, result.stderr
    for text in says:
        assert text in lines[0], lines[0]


def test_version_and_help_read_plainly(tmp_path):
    result = storybot("--version", cwd=tmp_path)
    assert re.fullmatch(r"storybot \S+\n", result.stdout)
    helped = storybot("--help", cwd=tmp_path).stdout
    assert "``" not in helped and "init" in helped and "model" in helped and "health" in helped


def test_init_writes_the_commented_config_where_storybot_finds_it(tmp_path):
    home = tmp_path / "home"
    first = storybot("init", cwd=tmp_path, env={"STORYBOT_HOME": str(home)})

    written = home / "config.toml"
    assert first.returncode == 0 and f"Wrote {written}" in first.stdout
    assert written.read_text() == (REPO_ROOT / "config.example.toml").read_text()
    assert "storybot sync --guild" in first.stdout and "storybot run" in first.stdout
    again = storybot("init", cwd=tmp_path, env={"STORYBOT_HOME": str(home)})
    assert again.returncode == 2 and "already exists" in again.stderr
    kept = storybot("init", "--keep", cwd=tmp_path, env={"STORYBOT_HOME": str(home)})
    assert kept.returncode == 0
    checked = storybot(
        "check", "--model", "/nowhere", cwd=tmp_path, env={"STORYBOT_HOME": str(home)}
    )
    assert f"[ok] config: {written}" in checked.stdout  # found without --config
    assert not (home / "storybot.db").exists()  # check creates nothing


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("/path/that/does/not/exist", "the model folder /path/that/does/not/exist does not exist"),
        ("gpt2-not-cached-here", "is not in the local cache and HF_HUB_OFFLINE is set"),
    ],
)
def test_a_model_that_cannot_be_loaded_is_one_line_at_once(tmp_path, model, says):
    started = time.monotonic()
    result = storybot("generate", "--model", model, "Once", cwd=tmp_path)
    one_clear_line(result, says)
    assert time.monotonic() - started < 60  # no minute of hub retries


def test_a_folder_without_a_model_says_how_to_make_one(tmp_path):
    (tmp_path / "empty").mkdir()
    result = storybot("console", "--model", str(tmp_path / "empty"), stdin="/quit\n", cwd=tmp_path)
    one_clear_line(result, "is not a model folder", "storybot model download")


def test_an_unreachable_hub_fails_fast_and_says_what_to_do(tmp_path):
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:1", "HF_HOME": str(tmp_path)}
    result = storybot("generate", "--model", "some-org/some-model", "Once", cwd=tmp_path, env=env)
    one_clear_line(result, "the Hugging Face hub (127.0.0.1) cannot be reached", "model download")


def test_discord_out_of_reach_is_one_line(tmp_path, tiny_model_dir):
    config = tmp_path / "c.toml"
    config.write_text(f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n', encoding="utf-8")
    result = storybot(
        "http://127.0.0.1:1", "--", "--config", str(config), "run",
        cwd=tmp_path, env={"DISCORD_TOKEN": "x"}, module="tests.discord_emulator.launch",
    )  # fmt: skip
    one_clear_line(result, "cannot reach Discord", "network")
    assert "PyNaCl" not in result.stderr and "davey" not in result.stderr  # no voice noise


def test_model_download_saves_a_folder_and_info_describes_it(tmp_path, tiny_model_dir):
    target = tmp_path / "saved"
    saved = storybot("model", "download", str(tiny_model_dir), "--to", str(target), cwd=tmp_path)

    assert saved.returncode == 0, saved.stderr
    assert f'name = "{target}"' in saved.stdout and "HF_HUB_OFFLINE=1" in saved.stdout
    info = storybot("model", "info", str(target), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "architecture: GPT2LMHeadModel" in info.stdout
    assert "window: 1024 tokens" in info.stdout and "vocabulary: 50257 tokens" in info.stdout
    assert re.search(r"parameters: [0-9.]+ M", info.stdout)
    again = storybot("model", "download", str(tiny_model_dir), "--to", str(target), cwd=tmp_path)
    assert again.returncode == 2 and "is not empty" in again.stderr


def test_model_convert_makes_the_one_folder_the_ctranslate2_backend_needs(
    tmp_path, tiny_model_dir, capsys
):
    target = tmp_path / "gpt2-int8"
    assert main(["model", "convert", str(tiny_model_dir), "--to", str(target)]) == 0
    out = capsys.readouterr().out
    assert 'backend = "ctranslate2"' in out and f'folder = "{target}"' in out

    assert main(["model", "info", str(target)]) == 0
    info = capsys.readouterr().out
    assert f"converted from: {tiny_model_dir}" in info and "stored as: int8" in info
    assert "window: 1024 tokens" in info and "vocabulary: 50257 tokens" in info

    config = tmp_path / "storybot.toml"
    config.write_text(
        '[model]\nbackend = "ctranslate2"\ndevice = "cpu"\n'
        '[ctranslate2]\nfolder = "gpt2-int8"\nthreads = 1\n'  # read from the config's folder
        f'[database]\npath = "{tmp_path / "check.db"}"\n',
        encoding="utf-8",
    )
    main(["--config", str(config), "check"])
    checked = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith(f"[ok] model: {target} (converted from {tiny_model_dir}, stored as int8)")
        and "1024 positions" in line
        for line in checked
    ), checked
    assert any(line.startswith("[ok] device: cpu (int8") for line in checked)  # int8_float32

    argv = ["--config", str(config), "generate", "--max-new-tokens", "5", "Once upon a time"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("Once upon a time")
    assert main(["model", "convert", str(tiny_model_dir), "--to", str(target)]) == 2
    assert "is not empty; name a new folder with --to" in capsys.readouterr().err


def test_converting_a_model_that_is_not_there_is_one_line(tmp_path):
    missing = tmp_path / "no-model-here"
    result = storybot("model", "convert", str(missing), "--to", str(tmp_path / "out"), cwd=tmp_path)
    one_clear_line(result, f"the model folder {missing} does not exist")
    assert not (tmp_path / "out").exists()


def test_the_ctranslate2_backend_without_its_folder_is_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nbackend = "ctranslate2"\n', encoding="utf-8")
    result = storybot("--config", str(config), "check", cwd=tmp_path)
    one_clear_line(result, "needs [ctranslate2] folder", "storybot model convert")


def test_health_says_whether_a_running_bot_is_well(tmp_path):
    home = tmp_path / "home"
    env = {"STORYBOT_HOME": str(home)}
    missing = storybot("health", cwd=tmp_path, env=env)
    assert missing.returncode == 1 and "no bot is running here" in missing.stdout

    home.mkdir()
    beat = {"time": time.time(), "connected": True, "guilds": 2, "latency_ms": 40}
    (home / "health.json").write_text(json.dumps(beat))
    assert storybot("health", cwd=tmp_path, env=env).returncode == 0
    (home / "health.json").write_text(json.dumps(beat | {"time": time.time() - 600}))
    stale = storybot("health", cwd=tmp_path, env=env)
    assert stale.returncode == 1 and "last sign of life" in stale.stdout


def test_the_health_file_is_written_before_the_first_heartbeat_too(tmp_path, monkeypatch):
    """Until Discord answers a heartbeat the latency is infinite: the file says unknown."""
    from types import SimpleNamespace

    from bot.client import StoryBot

    monkeypatch.setenv("STORYBOT_HOME", str(tmp_path))
    fresh = SimpleNamespace(
        latency=float("inf"),
        _gateway_up=False,
        is_closed=lambda: False,
        guilds=[],
        _in_flight=set(),
        draining=False,
    )
    StoryBot.write_health(fresh)
    beat = json.loads((tmp_path / "health.json").read_text())
    assert beat["latency_ms"] is None and not beat["connected"]


async def test_a_token_discord_refuses_is_one_line(tmp_path, tiny_model_dir):
    import asyncio

    from tests.discord_emulator import DiscordEmulator

    config = tmp_path / "c.toml"
    config.write_text(f'[model]\nname = "{tiny_model_dir}"\ndevice = "cpu"\n', encoding="utf-8")
    async with DiscordEmulator(token="the-right-token") as emu:
        result = await asyncio.to_thread(
            storybot,
            emu.url, "--", "--config", str(config), "run",
            cwd=tmp_path, env={"DISCORD_TOKEN": "a-wrong-token"},
            module="tests.discord_emulator.launch",
        )  # fmt: skip
        emu.pop_violations()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Discord refused the token in DISCORD_TOKEN" in result.stderr
    assert "a-wrong-token" not in result.stderr


def test_stories_where_an_earlier_version_kept_them_are_not_left_behind(tmp_path, tiny_model_dir):
    (tmp_path / "data").mkdir()
    sqlite3.connect(tmp_path / "data" / "storybot.db").close()
    home = tmp_path / "home"
    result = storybot(
        "console", "--model", str(tiny_model_dir), stdin="/quit\n", cwd=tmp_path,
        env={"STORYBOT_HOME": str(home)},
    )  # fmt: skip
    one_clear_line(result, "stories were found at", "move the file there")
    assert not (home / "storybot.db").exists()  # no empty database started instead


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.mkdir(), "is a folder, not a file"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00[model]"), "is not UTF-8 text"),
        (lambda p: None, "does not exist"),
    ],
)
def test_a_bad_config_path_is_one_line_from_the_real_command(tmp_path, make, says):
    path = tmp_path / "config.toml"
    make(path)
    result = storybot("--config", str(path), "check", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert says in result.stderr and result.stderr.count("\n") == 1
