"""Moderation in the service: every access rule, banned words (refused, never written, masked),
the audit history, /stats, the pace settings, and the line members wait in."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.banned import BannedWords
from bot.config import ModerationConfig
from bot.errors import (
    BannedWord,
    ChannelOff,
    InvalidSetting,
    Locked,
    NotAllowed,
    NotModerator,
    RateLimited,
    StoryFull,
)
from bot.service import Actor, StoryService
from tests.test_service import (
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    Preview,
    ScriptedEngine,
    in_line,
    member,
    moderator,
    story_turns,
)

WRITERS, MODS = 444_444_444_444_444_444, 555_555_555_555_555_555


@pytest.fixture
def config(config):
    return dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, max_new_tokens=8)
    )


def with_roles(actor: Actor, *roles: int) -> Actor:
    return dataclasses.replace(actor, role_ids=roles)


async def outcomes(service: StoryService) -> list[str]:
    return [r.outcome for r in await service.store.requests_since(GUILD, 0)]


# -- banned words: refused in what members write -------------------------------------------------


async def test_a_prompt_with_a_banned_word_is_refused_naming_it_and_nothing_is_stored(service):
    await service.ban(moderator(), "grue, dark lord")

    with pytest.raises(BannedWord) as caught:
        await service.write(member(1), "Beware the GRUE in the cellar")

    assert "“grue”" in caught.value.user_message and "Rephrase" in caught.value.user_message
    assert await service.store.active_story(CHANNEL) is None
    assert await outcomes(service) == ["banned word"]


@pytest.mark.parametrize(
    "line",
    [
        "the g\u200bru\u200be came",  # zero-width spaces
        "the gruе came",  # a Cyrillic е
        "the ｇｒｕｅ came",  # full width
        "the 𝐠𝐫𝐮𝐞 came",  # mathematical bold
        "the grüe came",  # an accent
        "the Dark\n  Lord came",  # a phrase over a line break
    ],
)
async def test_look_alikes_and_hidden_characters_do_not_slip_through(service, line):
    await service.ban(moderator(), "grue, dark lord")
    await service.write(member(1), "In the cellar")

    with pytest.raises(BannedWord):
        await service.continue_(member(2), line)


async def test_a_banned_word_inside_another_word_is_not_refused(service):
    await service.ban(moderator(), "ass")

    written = await service.write(member(1), "The class passed the grassy hill")

    assert written.turns[0].text == "The class passed the grassy hill"


async def test_the_hosts_list_applies_in_every_server(config, store, engine, clock):
    hosted = dataclasses.replace(config, moderation=ModerationConfig(banned_words=("grue",)))
    service = StoryService(hosted, store, engine, clock=clock, wall_clock=clock)

    for guild in (GUILD, GUILD + 1):
        with pytest.raises(BannedWord):
            await service.write(Actor(guild, CHANNEL + guild, 1), "a grue")
    assert (await service.settings(moderator())).host_banned == ("grue",)


async def test_edits_memory_and_notes_are_checked_too(service):
    await service.write(member(1), "In the cellar")
    await service.ban(moderator(), "grue")

    for move in (
        lambda: service.edit(moderator(), "a grue"),
        lambda: service.memory(member(1), "the grue is real"),
        lambda: service.note(member(1), "mention the grue"),
    ):
        with pytest.raises(BannedWord):
            await move()


# -- banned words: never written by the model ----------------------------------------------------


async def test_the_model_is_told_the_banned_token_sequences(service):
    await service.ban(moderator(), "grue")
    service.engine = ScriptedEngine(service.engine, ["A quiet night."])

    await service.write(member(1), "In the cellar")

    [request] = service.engine.requests
    encode = service.engine.tokenizer.encode
    for form in ("grue", " grue", "Grue", " Grue", "GRUE", " GRUE"):
        assert tuple(encode(form)) in request.banned_ids


async def test_a_part_that_still_holds_a_banned_word_is_written_again(service):
    await service.ban(moderator(), "grue")
    service.engine = ScriptedEngine(service.engine, ["The gr\u200bue ate him.", "A quiet night."])
    preview = Preview()

    written = await service.write(member(1), "In the cellar", on_progress=preview)

    assert written.model_turn.text == "A quiet night."
    assert written.model_turn.settings["guard"]["banned"] == "written again"
    assert "gr" not in "".join(p for p in preview if not p.startswith("<"))


async def test_when_the_second_part_holds_one_too_it_is_masked_everywhere(service):
    await service.ban(moderator(), "grue")
    service.engine = ScriptedEngine(service.engine, ["The Grue ate him.", "Then a GRUE came."])
    preview = Preview()

    written = await service.write(member(1), "In the cellar", on_progress=preview)

    part = written.model_turn
    assert part.text == "Then a ▇▇▇▇ came."
    assert part.settings["guard"]["banned"] == "masked"
    assert "grue" not in (await service.show(member(1))).turns[-1].text.lower()
    assert "grue" not in "".join(preview).lower()  # the live preview never showed it
    assert await service.store.turn_notes(part.id) is None  # nor does an explanation


async def test_the_live_preview_is_masked_as_it_streams(service):
    await service.ban(moderator(), "grue")
    long = "The night was long and the wind was cold, " * 3 + "then the grue came at last."
    service.engine = ScriptedEngine(service.engine, [long, "Calm."])
    streamed = []

    class Streaming(Preview):
        def __call__(self, delta):
            streamed.append(delta)
            super().__call__(delta)

    preview = Streaming()
    await service.write(member(1), "In the cellar", on_progress=preview)

    assert streamed and "grue" not in "".join(streamed)


async def test_the_real_model_cannot_write_a_banned_token(service):
    """Greedy writing on the tiny model: ban a word it writes, and it writes around it."""
    settings = {"temperature": "0", "max_new_tokens": "12"}
    for key, value in settings.items():
        await service.set_setting(moderator(), key, value)
    first = await service.write(member(1), "The old lighthouse keeper")
    words = [w for w in first.model_turn.text.split() if w.isalpha() and len(w) > 2]
    assert words, first.model_turn.text
    await service.ban(moderator(), words[0])

    again = await service.write(member(1), "The old lighthouse keeper")

    assert again.model_turn.text != first.model_turn.text
    banned = (await service.settings(moderator())).banned
    assert banned == [words[0]]
    assert BannedWords(banned).find(again.model_turn.text) is None


# -- banned words: the list ----------------------------------------------------------------------


async def test_adding_and_removing_banned_words_is_audited_and_idempotent(service):
    added = await service.ban(moderator(), "grue, Dark  Lord, grue")
    again = await service.ban(moderator(), "GRUE")
    removed = await service.unban(moderator(), "dark lord, nothing")

    assert added.changed == ["grue", "Dark Lord"] and added.unchanged == []
    assert again.changed == [] and again.unchanged == ["GRUE"]
    assert removed.changed == ["Dark Lord"] and removed.unchanged == ["nothing"]
    assert removed.banned == ["grue"]
    history = await service.history(moderator(), "banned_words")
    assert [(e.old_value, e.new_value) for e in history.entries] == [
        ("Dark Lord", None), (None, "Dark Lord"), (None, "grue"),
    ]  # fmt: skip


async def test_only_moderators_change_banned_words(service):
    with pytest.raises(NotModerator):
        await service.ban(member(1), "grue")
    with pytest.raises(InvalidSetting) as caught:
        await service.ban(moderator(), " , ")
    assert "Name a word" in caught.value.user_message


# -- access: channels, roles, locks, modes -------------------------------------------------------


async def test_a_channel_turned_off_refuses_and_names_where_the_bot_works(service):
    await service.set_setting(moderator(), "enabled", "off", "channel")

    with pytest.raises(ChannelOff) as caught:
        await service.write(member(1), "Hello")
    assert "every other channel" in caught.value.user_message

    await service.write(member(1, channel=OTHER_CHANNEL), "Elsewhere it works")
    assert await outcomes(service) == ["channel off", "written"]


async def test_off_for_the_server_and_on_for_some_channels_is_an_allow_list(service):
    await service.set_setting(moderator(), "enabled", "off", "server")
    await service.set_setting(moderator(channel=OTHER_CHANNEL), "enabled", "on", "channel")

    with pytest.raises(ChannelOff) as caught:
        await service.write(member(1), "Hello")

    assert (
        caught.value.user_message
        == f"I'm turned off in this channel. I write in <#{OTHER_CHANNEL}>."
    )
    await service.write(member(1, channel=OTHER_CHANNEL), "Here it works")


async def test_a_moderator_sets_another_channel_from_here(service):
    change = await service.set_setting(
        moderator(), "enabled", "off", "channel", channel_id=OTHER_CHANNEL
    )

    assert change.channel_id == OTHER_CHANNEL and change.effective is False
    with pytest.raises(ChannelOff):
        await service.write(member(1, channel=OTHER_CHANNEL), "Hello")
    await service.write(member(1), "Still fine here")


async def test_only_listed_roles_start_stories_and_anyone_continues(service):
    await service.set_setting(moderator(), "write_roles", f"<@&{WRITERS}>")

    with pytest.raises(NotAllowed) as caught:
        await service.write(member(1), "Hello")
    assert f"<@&{WRITERS}>" in caught.value.user_message

    await service.write(with_roles(member(2), WRITERS), "A writer begins")
    await service.continue_(member(1), "and a reader goes on")
    await service.write(moderator(), "A moderator may always begin")
    assert await outcomes(service) == ["not allowed", "written", "written", "written"]


async def test_role_lists_are_for_the_whole_server(service):
    with pytest.raises(InvalidSetting) as caught:
        await service.set_setting(moderator(), "write_roles", "everyone", "channel")

    assert "whole server only" in caught.value.user_message


async def test_a_locked_story_takes_only_moderators(service):
    await service.write(member(1), "Once")
    await service.set_setting(moderator(), "locked", "on", "channel")

    for move in (
        lambda: service.continue_(member(1), "more"),
        lambda: service.retry(member(1)),
        lambda: service.undo(member(1)),
        lambda: service.write(member(1), "Anew"),
        lambda: service.memory(member(1), "a fact"),
    ):
        with pytest.raises(Locked):
            await move()

    await service.continue_(moderator(), "a moderator goes on")
    assert (await service.show(member(1))).turns  # reading stays open


async def test_moderator_roles_from_the_database_count_in_the_service(service):
    mod_by_role = with_roles(member(5), MODS)
    with pytest.raises(NotModerator):
        await service.set_setting(mod_by_role, "temperature", "0.5")

    await service.set_setting(moderator(), "moderator_roles", f"<@&{MODS}>")
    change = await service.set_setting(mod_by_role, "temperature", "0.5")

    assert change.new == 0.5
    await service.write(member(1), "Once")
    await service.undo(mod_by_role)  # a moderator's move on another member's part
    with pytest.raises(NotModerator):
        await service.settings(with_roles(member(6), WRITERS))


async def test_modes_a_server_does_not_use_are_refused_and_the_default_mode_applies(service):
    await service.set_setting(moderator(), "modes", "news, poem")
    await service.set_setting(moderator(), "mode", "poem")

    with pytest.raises(InvalidSetting) as caught:
        await service.write(member(1), "Hello", "story")
    assert "Choose one of: poem, news" in caught.value.user_message

    written = await service.write(member(1), "Hello")
    assert written.story.mode == "poem"


# -- pace ------------------------------------------------------------------------------------------


async def test_a_story_at_its_longest_asks_for_a_new_one(service):
    await service.set_setting(moderator(), "max_turns", "4")
    await service.write(member(1), "Once")
    await service.continue_(member(1))  # 3 turns
    await service.continue_(member(1))  # 4 turns

    with pytest.raises(StoryFull) as caught:
        await service.continue_(member(1), "more")

    assert "reached 4 turns" in caught.value.user_message and "/write" in caught.value.user_message
    assert len(await story_turns(service)) == 4


async def test_a_cooldown_rests_the_channel_after_each_part(service, clock):
    await service.set_setting(moderator(), "cooldown_s", "30")
    await service.write(member(1), "Once")
    clock.advance(10)

    with pytest.raises(RateLimited) as caught:
        await service.continue_(member(2))
    assert caught.value.reason == "cooldown"
    assert "rests 30 seconds" in caught.value.user_message

    clock.advance(21)
    await service.continue_(member(2))


async def test_the_channel_rate_counts_every_member(service, clock):
    await service.set_setting(moderator(), "channel_rate", "2")
    await service.write(member(1), "Once")
    await service.continue_(member(2))

    with pytest.raises(RateLimited) as caught:
        await service.continue_(member(3))

    assert caught.value.scope == "channel"
    assert caught.value.user_message.startswith("This channel has reached the limit of 2 parts")
    await service.write(member(3, channel=OTHER_CHANNEL), "Another channel has its own")


async def test_members_waiting_in_line_hear_how_many_are_ahead(service):
    await service.write(member(1), "Once")
    previews = [Preview() for _ in range(3)]

    async with service.order.turn(CHANNEL):  # someone is writing
        waiting = [
            asyncio.create_task(service.continue_(member(n + 2), on_progress=previews[n]))
            for n in range(3)
        ]
        for n in range(3):
            await in_line(service, CHANNEL, n + 2)
    await asyncio.gather(*waiting)

    heard = [[p for p in preview if p.endswith("ahead>")] for preview in previews]
    assert heard == [
        ["<1 ahead>"],
        ["<2 ahead>", "<1 ahead>"],
        ["<3 ahead>", "<2 ahead>", "<1 ahead>"],
    ]


# -- history and statistics ------------------------------------------------------------------------


async def test_history_pages_through_every_change_newest_first(service):
    for n in range(12):
        await service.set_setting(moderator(), "temperature", f"0.{n + 1}")
    await service.set_setting(moderator(), "locked", "on", "channel")

    first = await service.history(moderator())
    second = await service.history(moderator(), page=2)
    only = await service.history(moderator(), "LOCKED")

    assert (first.page, first.pages, len(first.entries)) == (1, 2, 10)
    assert first.entries[0].key == "locked" and first.entries[0].channel_id == CHANNEL
    assert (first.entries[1].old_value, first.entries[1].new_value) == (0.11, 0.12)
    assert [e.new_value for e in second.entries] == [0.3, 0.2, 0.1]
    assert second.entries[-1].old_value is None
    assert [e.key for e in only.entries] == ["locked"]
    with pytest.raises(NotModerator):
        await service.history(member(1))


async def test_stats_count_what_was_done(service, clock):
    await service.ban(moderator(), "grue")
    await service.set_setting(moderator(), "user_rate", "2")
    await service.write(member(1), "Once")
    await service.continue_(member(1))
    with pytest.raises(RateLimited):
        await service.continue_(member(1))
    with pytest.raises(BannedWord):
        await service.continue_(member(2), "a grue")
    await service.continue_(member(2))

    hour = await service.stats(moderator(), "hour")

    parts = [t for t in await story_turns(service) if t.kind == "model"]
    assert (hour.requests, hour.written) == (5, 3)
    assert hour.tokens == sum(t.settings["new_tokens"] for t in parts)
    assert hour.refusals == {"user rate": 1, "banned word": 1}
    assert hour.wait_p50 is not None and hour.wait_p95 >= hour.wait_p50
    assert hour.write_p50 is not None and hour.write_p95 >= hour.write_p50

    clock.advance(2 * 3600)
    later = await service.stats(moderator(), "hour")
    day = await service.stats(moderator(), "day")
    assert (later.requests, later.written, later.wait_p50) == (0, 0, None)
    assert (day.requests, day.written) == (5, 3)
    with pytest.raises(NotModerator):
        await service.stats(member(1))
