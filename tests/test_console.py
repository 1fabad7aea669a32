"""The console adapter, driven line by line over the real service, store and tiny GPT-2."""

from __future__ import annotations

import dataclasses
import io

import pytest

from bot.console import CONSOLE_ACTOR, Console


@pytest.fixture
def config(config):
    return dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, max_new_tokens=8)
    )


async def lines(*items: str):
    """What stdin_lines yields: one line at a time, newline included."""
    for item in items:
        yield item + "\n"


async def run(service, *commands: str) -> str:
    out = io.StringIO()
    await Console(service, out=out).run(lines(*commands))
    return out.getvalue()


async def visible_turns(service):
    story = await service.store.active_story(CONSOLE_ACTOR.channel_id)
    return await service.store.turns(story.id)


async def test_a_whole_session(service):
    output = await run(
        service,
        "/write Once upon a time, a fox found a key.",
        "",
        "/continue The key opened a door.",
        "/settings set temperature 0.5",
        "/settings set temperature 9",
        "/continue",
        "/story",
        "/frobnicate now",
        "/quit",
        "/write This line comes after /quit and must not run.",
    )

    printed = output.splitlines()
    assert printed[0].startswith("storybot console")
    assert "[opening] Once upon a time, a fox found a key." in printed
    assert "[you] The key opened a door." in printed
    assert "temperature (server) = 0.5" in printed
    assert "! `9` is out of range; `temperature` takes 0, or a number from 0.05 to 1.5." in printed
    assert "Unknown command '/frobnicate'. Type /help for the list." in printed
    assert sum(line.startswith("[model] ") for line in printed) == 3 + 3  # /story: 3 again

    turns = await visible_turns(service)
    assert [t.kind for t in turns] == ["opening", "model", "member", "model", "model"]
    for turn in turns:  # each part was printed as it was written
        assert turn.text.splitlines()[0] in output
    # /story shows the whole story, the member's words and the model's marked apart
    story = output[output.index("[story: Once upon a time") :]
    for turn in turns:
        who = {"opening": "opening", "member": "you", "model": "model"}[turn.kind]
        assert f"[{who}] {turn.text}" in story
    assert turns[-1].settings["temperature"] == 0.5  # the setting took effect
    assert turns[3].settings["temperature"] == 0.9
    assert len(await service.store.stories(CONSOLE_ACTOR.channel_id)) == 1  # /quit stopped it


async def test_refusals_are_one_line_and_the_session_goes_on(service):
    output = await run(
        service,
        "/continue Anyone?",
        "/write",
        "/write mode=limerick There once was a bot",
        "/settings set temprature 1",
        '/settings set temperature "0.5',
        "/settings frobnicate",
        "/write mode=poem Roses in the rain",
    )

    printed = output.splitlines()
    assert "! There is no story in this channel yet. Start one with `/write`." in printed
    assert "! Give me something to start from: the prompt is empty." in printed
    assert any(line.startswith("! There is no mode `limerick`") for line in printed)
    assert any(line.startswith("! There is no setting `temprature`") for line in printed)
    assert "! No closing quotation" in printed
    assert any(line.startswith("Usage: /settings show") for line in printed)
    assert "[opening] Roses in the rain" in printed  # still working after all that
    assert (await service.show(CONSOLE_ACTOR)).story.mode == "poem"


async def test_settings_show_set_for_a_channel_and_reset(service):
    output = await run(
        service,
        "/settings set max_new_tokens 4 channel",
        "/settings set temperature 0.25",
        "/settings show",
        "/settings reset temperature",
        "/settings",
    )

    printed = output.splitlines()
    assert "max_new_tokens (channel) = 4" in printed
    assert "temperature (server) = 0.25" in printed
    assert "  temperature = 0.25 (server)  0, or a number from 0.05 to 1.5" in printed
    assert "  max_new_tokens = 4 (channel)  a whole number from 1 to 400" in printed
    assert "  user_rate = 5 (host)  a whole number from 1 to 30" in printed
    assert "temperature (server) reset; now 0.9" in printed
    assert (
        "  temperature = 0.9 (host)  0, or a number from 0.05 to 1.5" in printed
    )  # a bare /settings shows


async def test_write_again_archives_and_says_so(service):
    output = await run(service, "/write The first tale", "/write The second tale")

    assert "(archived the previous story: 'The first tale')" in output.splitlines()
    assert (await service.show(CONSOLE_ACTOR)).turns[0].text == "The second tale"


async def test_help_lists_the_commands_and_input_can_just_end(service):
    output = await run(service, "/help")  # no /quit: the end of input ends the session

    for name in ("/write", "/continue", "/story", "/settings show", "/settings set", "/quit"):
        assert name in output
    assert "poem" in output  # the modes are listed


async def test_explain_prints_the_explanation_and_saves_the_picture(service, tmp_path):
    out = io.StringIO()
    console = Console(service, out=out, pictures=tmp_path)
    await console.run(lines("/explain", "/write A fox", "/explain", "/explain 2", "/explain two"))
    printed = out.getvalue().splitlines()

    assert "! There is no story in this channel yet. Start one with `/write`." in printed
    assert any(line.startswith("Part 1: ") for line in printed)
    assert any(line.startswith("How sure: Perplexity ") for line in printed)
    assert any(line.startswith("Written with: temperature ") for line in printed)
    [picture] = tmp_path.glob("storybot-story*-part1.png")
    assert f"Picture: {picture}" in printed and picture.read_bytes().startswith(b"\x89PNG")
    assert any("no part 2: I have written 1 part" in line for line in printed)
    assert "Usage: /explain [N]  (N: which of the model's parts, from 1)" in printed


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_a_spinner_turns_on_a_terminal_while_a_part_is_written_and_is_wiped(service):
    terminal, pipe = Terminal(), io.StringIO()
    await Console(service, out=terminal).run(lines("/write A fox"))
    await Console(service, out=pipe).run(lines("/continue"))

    shown = terminal.getvalue()
    assert "\r⠋ writing…" in shown
    assert shown.index("\r   ") < shown.index("[opening] A fox")  # wiped before the answer
    assert "writing…" not in pipe.getvalue()  # piped output stays clean


async def test_every_steering_move_works_in_the_console(service, tmp_path):
    out = io.StringIO()
    story = tmp_path / "story.md"
    await Console(service, out=out).run(
        lines(
            "/write A fox found a key.",
            "/retry",
            "/alt 1",
            "/memory The fox is called Ada.",
            "/note Keep it short.",
            "/continue The key was warm.",
            "/undo",
            "/undo",
            "/redo",
            "/edit The key was cold.",
            f"/export {story}",
            "/list",
            "/end",
            "/resume 1",
            "/alt x",
        )
    )
    printed = out.getvalue().splitlines()

    assert any(line.startswith("[model, version 2 of 2] ") for line in printed)
    assert any(line.startswith("[model, version 1 of 2] ") for line in printed)
    assert "memory: The fox is called Ada." in printed
    assert "author's note: Keep it short." in printed
    assert "[you, version 2] The key was cold." in printed
    assert f"wrote {story}" in " ".join(printed) and "The key was cold." in story.read_text()
    assert any(line.startswith("  1: A fox found a key. (story, active)") for line in printed)
    assert "ended 'A fox found a key.'; /resume 1 takes it up again" in printed
    assert "resumed 'A fox found a key.'" in printed
    assert "Usage: /alt N  (which version of the newest part)" in printed
    assert not [line for line in printed if line.startswith("! ")]


async def test_banned_words_history_and_stats_from_the_console(service):
    output = await run(
        service,
        "/settings banned add grue, dark lord",
        "/write The grue waited",
        "/write The keeper waited",
        "/settings banned remove dark lord",
        "/settings banned list",
        "/settings history banned_words",
        "/stats",
    )

    printed = output.splitlines()
    assert "banned words: grue, dark lord" in printed
    assert any(line.startswith("! Your prompt contains “grue”") for line in printed)
    assert "banned words: grue" in printed
    history = [line for line in printed if "banned_words:" in line]
    assert len(history) == 3 and "'dark lord' → None" in history[0]
    stats = next(p for p in printed if p.startswith("last hour"))
    assert stats.startswith("last hour: 1 of 2 requests written")
    assert stats.endswith("refused: banned word 1")
