"""StoryService over the real store, the tiny GPT-2 engine and a fake clock: the rules members meet."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bot.engine import EngineBusy, GenerationResult, GenerationTimeout
from bot.errors import (
    EmptyText,
    GuildOnly,
    InvalidSetting,
    NoStory,
    NotModerator,
    RateLimited,
    StorageError,
    StoryBusy,
    TextTooLong,
)
from bot.limits import Admission, ChannelOrder
from bot.service import Actor, StoryService
from bot.story import MODES, TURN_SEPARATOR, encode_open, story_text

GUILD, OTHER_GUILD = 10, 20
CHANNEL, OTHER_CHANNEL = 100, 101
MAX_NEW = 8


@pytest.fixture
def config(config):
    """Short generations keep the suite fast; everything else stays at the defaults."""
    return dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, max_new_tokens=MAX_NEW)
    )


def member(user: int, channel: int = CHANNEL, guild: int | None = GUILD) -> Actor:
    return Actor(guild_id=guild, channel_id=channel, user_id=user)


def moderator(user: int = 9, channel: int = CHANNEL, guild: int | None = GUILD) -> Actor:
    return Actor(guild_id=guild, channel_id=channel, user_id=user, is_moderator=True)


async def story_turns(service: StoryService, channel: int = CHANNEL, include_deleted=False):
    story = await service.store.active_story(channel)
    return [] if story is None else await service.store.turns(story.id, include_deleted)


async def in_line(service: StoryService, channel: int, count: int) -> None:
    """Wait until ``count`` requests hold or wait for the channel's turn."""
    async with asyncio.timeout(10):
        while service.order.waiting(channel) < count:
            await asyncio.sleep(0.01)


class FailingEngine:
    """The real tokenizer, but every generation times out: a fault injected at the engine."""

    def __init__(self, real) -> None:
        self.tokenizer = real.tokenizer
        self.n_positions = real.n_positions
        self.calls = 0

    async def generate(self, request, on_delta=None):
        self.calls += 1
        raise GenerationTimeout("injected fault")


# -- writing -------------------------------------------------------------------------------------


async def test_write_starts_a_story_with_the_opening_and_the_models_part(service):
    written = await service.write(member(1), "  Once upon a time, a fox  ")

    opening, model = written.turns
    assert written.story.active and written.story.mode == "story"
    assert written.archived is None
    assert (opening.kind, opening.text, opening.author_id) == (
        "opening",
        "Once upon a time, a fox",
        1,
    )
    assert (model.kind, model.author_id, model.position) == ("model", None, 1)
    assert model.text.strip()
    assert written.model_turn == model
    assert await story_turns(service) == [opening, model]  # committed before it is shown

    record = model.settings
    assert record["temperature"] == 0.9 and record["top_p"] == 0.95
    assert record["max_new_tokens"] == MAX_NEW
    assert 1 <= record["new_tokens"] <= MAX_NEW
    # The model saw the framed opening as running text, ending on a paragraph break.
    framing = MODES["story"].framing(written.story.created_at)
    seen = encode_open(service.engine.tokenizer, framing + opening.text + TURN_SEPARATOR)
    assert record["prompt_tokens"] == len(seen)
    assert seen[-2:] == [198, 198]  # GPT-2's "\n\n" before a word, not 628
    assert record["repetition_range"] == service.config.generation.repetition_range
    assert record["no_repeat_ngram_range"] == service.config.generation.no_repeat_ngram_range
    assert record["finish_reason"] in {"eos", "length", "stop"}


async def test_write_in_a_mode_uses_its_sampling_and_continue_keeps_it(service):
    written = await service.write(member(1), "Roses in the rain", mode=" Poem ")
    more = await service.continue_(member(2))

    assert written.story.mode == "poem"
    poem = MODES["poem"]
    assert written.model_turn.settings["temperature"] == poem.temperature
    assert more.model_turn.settings["temperature"] == poem.temperature
    # The poem's framing is part of what the model sees, never part of what members see.
    seen = encode_open(service.engine.tokenizer, poem.framing() + "Roses in the rain\n\n")
    assert written.model_turn.settings["prompt_tokens"] == len(seen)
    assert poem.framing().strip() not in written.model_turn.text


async def test_unknown_mode_is_refused_and_nothing_is_written(service):
    with pytest.raises(InvalidSetting) as caught:
        await service.write(member(1), "Hello", mode="limerick")

    assert "limerick" in caught.value.user_message and "poem" in caught.value.user_message
    assert await service.store.active_story(CHANNEL) is None


async def test_continue_with_a_line_adds_it_before_the_models_part(service):
    await service.write(member(1), "The ship left port.")

    written = await service.continue_(member(2), "  A storm gathered.  ")

    line, model = written.turns
    assert (line.kind, line.author_id, line.text, line.position) == (
        "member",
        2,
        "A storm gathered.",
        2,
    )
    assert (model.kind, model.position) == ("model", 3)
    assert model.settings["max_new_tokens"] == MAX_NEW
    assert [t.position for t in await story_turns(service)] == [0, 1, 2, 3]


async def test_continue_without_text_lets_the_model_go_on(service):
    await service.write(member(1), "The ship left port.")

    for text in (None, "", "   "):
        written = await service.continue_(member(2), text)
        assert [t.kind for t in written.turns] == ["model"]

    kinds = [t.kind for t in await story_turns(service)]
    assert kinds == ["opening", "model", "model", "model", "model"]


async def test_continue_and_show_without_a_story_say_how_to_start_one(service):
    with pytest.raises(NoStory) as caught:
        await service.continue_(member(1), "hello?")
    assert "/write" in caught.value.user_message
    with pytest.raises(NoStory):
        await service.show(member(1))

    assert await service.store.stories(CHANNEL) == []


async def test_write_archives_the_previous_story(service):
    first = await service.write(member(1), "The first tale")
    await service.continue_(member(2), "goes on")

    second = await service.write(member(3), "The second tale")

    assert second.archived is not None and second.archived.id == first.story.id
    assert second.archived.title == "The first tale"
    view = await service.show(member(1))
    assert view.story.id == second.story.id
    assert view.turns[0].text == "The second tale"
    old = await service.store.turns(first.story.id)
    assert [t.kind for t in old] == ["opening", "model", "member", "model"]  # kept in the record


async def test_show_lists_the_visible_turns(service):
    await service.write(member(1), "Start")
    await service.continue_(member(2), "middle")

    view = await service.show(member(3))

    assert [t.kind for t in view.turns] == ["opening", "model", "member", "model"]
    assert view.turns[2].text == "middle"


# -- what members may send -----------------------------------------------------------------------


async def test_a_prompt_is_measured_in_tokens_not_characters(service):
    tokenizer = service.engine.tokenizer
    cjk = "从前有一座山，山里有一座庙。" * 12  # 168 characters
    ascii_prompt = ("Once upon a time. " * 10)[: len(cjk)]  # as many characters
    limit = service.config.caps.max_prompt_tokens
    assert len(cjk) < limit < len(tokenizer.encode(cjk))

    with pytest.raises(TextTooLong) as caught:
        await service.write(member(1), cjk)

    tokens = len(tokenizer.encode(cjk))
    assert (caught.value.tokens, caught.value.limit) == (tokens, limit)
    assert caught.value.user_message.startswith(
        f"Your prompt is {tokens} tokens long; the limit is {limit} tokens."
    )
    assert await service.store.active_story(CHANNEL) is None

    written = await service.write(member(1), ascii_prompt)  # same length in characters: fine
    assert written.turns[0].text == ascii_prompt.strip()


async def test_a_continue_line_over_the_limit_is_refused_and_not_saved(service):
    await service.write(member(1), "Start")
    emoji = "🐉🔥" * 100  # 200 characters, 600 tokens

    with pytest.raises(TextTooLong) as caught:
        await service.continue_(member(2), emoji)

    assert caught.value.user_message.startswith("Your text is 600 tokens long; the limit is 300")
    assert [t.kind for t in await story_turns(service)] == ["opening", "model"]


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
async def test_an_empty_prompt_is_refused(service, prompt):
    with pytest.raises(EmptyText) as caught:
        await service.write(member(1), prompt)

    assert "empty" in caught.value.user_message
    assert await service.store.stories(CHANNEL) == []


# -- rate limits ---------------------------------------------------------------------------------


async def test_a_member_gets_user_rate_generations_a_minute(service, clock):
    assert service.config.generation.user_rate == 5
    await service.write(member(1), "Start")  # t = 0
    for n in range(4):  # t = 10, 20, 30, 40
        clock.advance(10)
        await service.continue_(member(1), f"line {n}")
    before = await story_turns(service, include_deleted=True)
    clock.advance(5)  # t = 45

    with pytest.raises(RateLimited) as caught:
        await service.continue_(member(1), "one too many")

    assert caught.value.scope == "user"
    assert caught.value.retry_after == pytest.approx(15.0)
    assert "You have reached the limit of 5 parts a minute" in caught.value.user_message
    assert "Try again in 15 seconds" in caught.value.user_message
    assert await story_turns(service, include_deleted=True) == before  # nothing written
    with pytest.raises(RateLimited):
        await service.write(member(1), "a new story is a generation too")
    assert (await service.store.active_story(CHANNEL)).id == before[0].story_id

    await service.continue_(member(2), "someone else may still write")
    clock.advance(15)  # t = 60: the first generation leaves the window
    written = await service.continue_(member(1), "one too many")
    assert written.turns[0].text == "one too many"
    clock.advance(60)
    await service.continue_(member(1))


async def test_a_moderator_can_raise_the_members_rate(service, clock):
    await service.set_setting(moderator(), "user_rate", "7")
    await service.write(member(1), "Start")
    for _ in range(6):
        await service.continue_(member(1))

    with pytest.raises(RateLimited) as caught:
        await service.continue_(member(1))
    assert caught.value.limit == 7


# -- one channel, many writers -------------------------------------------------------------------


async def test_concurrent_continues_in_one_channel_never_interleave(service):
    await service.write(member(1), "The council met at dawn.")
    users = [11, 12, 13, 14, 15]

    results = await asyncio.gather(
        *(service.continue_(member(u), f"Member {u} speaks.") for u in users)
    )

    turns = await story_turns(service)
    assert [t.position for t in turns] == list(range(len(turns)))
    assert len(turns) == 2 + 2 * len(users)
    for u, written in zip(users, results, strict=True):
        lines = [t for t in turns if t.kind == "member" and t.author_id == u]
        assert [t.text for t in lines] == [f"Member {u} speaks."]  # exactly once
        [line] = lines
        reply = turns[line.position + 1]
        assert reply.kind == "model"  # its own reply follows at once
        assert written.turns == [line, reply]
        # Its context held everything before it, its own line last: one writer at a time.
        before = turns[: line.position + 1]
        text = MODES["story"].framing() + story_text(before) + TURN_SEPARATOR
        assert reply.settings["prompt_tokens"] == len(encode_open(service.engine.tokenizer, text))


async def test_another_channel_is_served_while_one_channel_waits(service):
    await service.write(member(1), "Channel one.")
    await service.write(member(2, OTHER_CHANNEL), "Channel two.")

    async with service.order.turn(CHANNEL):  # someone holds channel one's turn
        waiting = asyncio.create_task(service.continue_(member(3), "I wait my turn."))
        async with asyncio.timeout(30):
            elsewhere = await service.continue_(member(4, OTHER_CHANNEL), "I do not wait.")
        assert elsewhere.turns[0].text == "I do not wait."
        assert not waiting.done()
        assert len(await story_turns(service)) == 2  # the waiting line is not written yet

    written = await waiting
    assert written.turns[0].text == "I wait my turn."


async def test_a_full_line_is_refused_as_busy_and_costs_nothing(config, store, engine, clock):
    service = StoryService(
        config, store, engine, Admission(clock=clock), ChannelOrder(max_waiting=1), clock=clock
    )
    await service.write(member(1), "Start")

    async with service.order.turn(CHANNEL):
        queued = asyncio.create_task(service.continue_(member(2), "queued"))
        await in_line(service, CHANNEL, 2)  # the holder and the queued one
        for _ in range(6):  # more than user_rate refusals: none of them may count
            with pytest.raises(StoryBusy):
                async with asyncio.timeout(10):
                    await service.continue_(member(3), "no room")
    await queued

    assert [t.text for t in await story_turns(service) if t.kind == "member"] == ["queued"]
    for _ in range(service.config.generation.user_rate):
        await service.continue_(member(3))


async def test_a_story_longer_than_the_model_window_still_continues(service):
    tokenizer = service.engine.tokenizer
    paragraph = "The archivist turned another brittle page and read aloud. " * 25
    assert len(tokenizer.encode(paragraph)) <= service.config.caps.max_prompt_tokens
    await service.write(member(1), "In the deepest vault of the library")
    for n in range(4):
        await service.continue_(member(2 + n), paragraph)

    written = await service.continue_(member(9), "And then the lights went out.")

    # The context was cut to fit the window, leaving room for the new tokens. Old turns are left
    # out a quarter of the budget at a time (so the next turns keep the context's start), cuts
    # fall on token boundaries of the whole text, and a seam may give up a token or two more.
    budget = service.engine.n_positions - MAX_NEW
    assert budget - budget // 4 - 4 <= written.model_turn.settings["prompt_tokens"] <= budget


# -- settings and moderators ---------------------------------------------------------------------


async def test_only_moderators_see_or_change_settings(service):
    with pytest.raises(NotModerator) as caught:
        await service.settings(member(1))
    assert "moderators" in caught.value.user_message.lower()
    with pytest.raises(NotModerator):
        await service.set_setting(member(1), "temperature", "0.5")
    with pytest.raises(NotModerator):
        await service.set_setting(member(1), "temperature", None, scope="channel")

    assert await service.store.settings(GUILD, CHANNEL) == ({}, {})
    assert await service.store.audit(GUILD) == []


async def test_settings_need_a_server(service):
    for actor in (member(1, guild=None), moderator(guild=None)):
        with pytest.raises(GuildOnly):
            await service.settings(actor)
        with pytest.raises(GuildOnly):
            await service.set_setting(actor, "temperature", "0.5")


async def test_a_moderators_change_applies_to_the_next_generation_in_that_server_only(service):
    change = await service.set_setting(moderator(), "temperature", "0.5")

    assert (change.key, change.scope, change.old, change.new, change.effective) == (
        "temperature", "server", None, 0.5, 0.5,
    )  # fmt: skip
    here = await service.write(member(1), "In this server")
    there = await service.write(member(1, channel=200, guild=OTHER_GUILD), "In another server")
    assert here.model_turn.settings["temperature"] == 0.5
    assert there.model_turn.settings["temperature"] == 0.9

    [entry] = await service.store.audit(GUILD)
    assert (entry.key, entry.old_value, entry.new_value, entry.changed_by) == (
        "temperature", None, 0.5, 9,
    )  # fmt: skip


async def test_a_channel_override_beats_the_server_value_in_that_channel_only(service):
    await service.set_setting(moderator(), "max_new_tokens", "6")
    change = await service.set_setting(moderator(), "MAX_NEW_TOKENS ", "3", scope="channel")
    assert (change.key, change.scope, change.new, change.effective) == (
        "max_new_tokens",
        "channel",
        3,
        3,
    )

    here = await service.write(member(1), "Overridden channel")
    next_door = await service.write(member(1, OTHER_CHANNEL), "Server value")

    assert here.model_turn.settings["max_new_tokens"] == 3
    assert here.model_turn.settings["new_tokens"] <= 3
    assert next_door.model_turn.settings["max_new_tokens"] == 6

    view = await service.settings(moderator())
    assert view.resolved["max_new_tokens"] == 3
    assert view.resolved.origins["max_new_tokens"] == "channel"
    assert view.resolved.origins["temperature"] == "host"  # the story mode brings none


async def test_resetting_a_setting_goes_back_to_the_default(service):
    await service.set_setting(moderator(), "temperature", "0.3")

    change = await service.set_setting(moderator(), "temperature", None)

    assert (change.old, change.new, change.effective) == (0.3, None, 0.9)
    written = await service.write(member(1), "Back to normal")
    assert written.model_turn.settings["temperature"] == 0.9


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("temprature", "0.5", "There is no setting `temprature`"),
        ("temperature", "9", "`temperature` takes 0, or a number from 0.05 to 1.5"),
        ("temperature", "warm", "`warm` is not a number"),
        ("max_new_tokens", "1.5", "not a whole number"),
        ("max_new_tokens", "401", "from 1 to 400"),
    ],
)
async def test_invalid_settings_are_refused_and_not_stored(service, key, value, says):
    with pytest.raises(InvalidSetting) as caught:
        await service.set_setting(moderator(), key, value)

    assert says in caught.value.user_message
    assert await service.store.settings(GUILD, CHANNEL) == ({}, {})


# -- when the engine fails -----------------------------------------------------------------------


async def test_an_engine_failure_keeps_the_members_line_and_refunds_the_generation(service):
    await service.write(member(1), "Start")  # 1 of 5 this minute
    real = service.engine
    service.engine = FailingEngine(real)

    for n in range(3):
        with pytest.raises(GenerationTimeout) as caught:
            await service.continue_(member(1), f"kept line {n}")
        message = caught.value.user_message
        assert message.startswith("The writer took too long")
        assert "Your line is saved: use `/continue`" in message
    assert service.engine.calls == 3
    texts = [t.text for t in await story_turns(service) if t.kind == "member"]
    assert texts == ["kept line 0", "kept line 1", "kept line 2"]

    service.engine = real
    for _ in range(4):  # the three failures cost nothing: four more fit in the minute
        await service.continue_(member(1))
    with pytest.raises(RateLimited):
        await service.continue_(member(1))


async def test_an_engine_failure_on_write_says_the_opening_is_saved(service):
    service.engine = FailingEngine(service.engine)

    with pytest.raises(GenerationTimeout) as caught:
        await service.write(member(1), "A brave start")

    assert "Your opening is saved" in caught.value.user_message
    assert [t.text for t in await story_turns(service)] == ["A brave start"]


async def test_an_engine_failure_without_a_line_does_not_claim_one_was_saved(service):
    await service.write(member(1), "Start")
    service.engine = FailingEngine(service.engine)

    with pytest.raises(GenerationTimeout) as caught:
        await service.continue_(member(1))

    assert "saved" not in caught.value.user_message


class BusyEngine(FailingEngine):
    """The real tokenizer, but the writer's queue is always full."""

    async def generate(self, request, on_delta=None):
        self.calls += 1
        raise EngineBusy(64, 12.3)


async def test_a_full_queue_says_busy_when_to_retry_and_that_the_line_is_saved(service):
    await service.write(member(1), "Start")
    service.engine = BusyEngine(service.engine)

    with pytest.raises(EngineBusy) as caught:
        await service.continue_(member(1), "my line")

    message = caught.value.user_message
    assert "busy" in message and "about 13 seconds" in message
    assert "Your line is saved" in message


async def test_settings_are_shown_for_the_mode_of_the_channels_story(service):
    await service.write(member(1), "Roses in the rain", mode="poem")

    view = await service.settings(moderator())

    poem = MODES["poem"].temperature
    assert (view.resolved["temperature"], view.resolved.origins["temperature"]) == (poem, "mode")
    change = await service.set_setting(moderator(), "top_p", None)
    assert change.effective == MODES["poem"].top_p


async def test_a_continue_queued_behind_a_new_write_follows_the_new_story(service):
    await service.write(member(1), "Roses in the rain", mode="poem")
    async with service.order.turn(CHANNEL):  # someone is writing: both requests queue
        news = asyncio.create_task(service.write(member(2), "The mayor resigned", mode="news"))
        await asyncio.sleep(0.05)
        more = asyncio.create_task(service.continue_(member(3)))
        await asyncio.sleep(0.05)
    await news
    written = await more

    assert written.story.mode == "news"
    assert written.model_turn.settings["temperature"] == MODES["news"].temperature


# -- the quality guard and the context cap -------------------------------------------------------


class ScriptedEngine:
    """The real tokenizer, and parts that come from a script: to drive the quality guard."""

    def __init__(self, real, texts: list[str]) -> None:
        self.tokenizer = real.tokenizer
        self.n_positions = real.n_positions
        self.texts = list(texts)
        self.requests = []

    async def generate(self, request, on_delta=None):
        self.requests.append(request)
        text = self.texts.pop(0)
        if on_delta is not None:
            on_delta(text)
        ids = tuple(self.tokenizer.encode(text))
        return GenerationResult(text, ids, "eos", len(request.prompt_ids), 0.0, 0.0)


class Preview(list):
    """What a member would see while the part is written: deltas, and restarts."""

    def __call__(self, delta: str) -> None:
        self.append(delta)

    def restart(self) -> None:
        self.append("<restart>")

    def waiting(self, ahead: int, eta_s: float) -> None:
        self.append(f"<{ahead} ahead>")


JUNK = "1. 2017-08-31 6:45:39 ## 3) 44 -- 5. 12:00 ** 6) 7/8 9.10 11!"
FLUENT = "She opened the bottle and read the letter twice before she understood it."


def guarded(config):
    return dataclasses.replace(
        config, generation=dataclasses.replace(config.generation, quality_guard=True)
    )


async def test_a_degenerate_part_is_written_again_before_anyone_sees_it(service):
    service.config = guarded(service.config)
    service.engine = ScriptedEngine(service.engine, [JUNK, FLUENT])
    preview = Preview()

    written = await service.write(member(1), "The keeper found a bottle.", on_progress=preview)

    assert written.model_turn.text == FLUENT
    first, second = service.engine.requests
    assert second.prompt_ids == first.prompt_ids  # the same context...
    assert second.params.temperature < first.params.temperature  # ...with steadier sampling
    assert preview == [JUNK, "<restart>", FLUENT]  # the preview starts over
    guard = written.model_turn.settings["guard"]
    assert guard["kept"] == "retry" and "list" in guard["problems"]
    assert guard["retry_problems"] == []
    assert written.model_turn.settings["temperature"] == second.params.temperature


async def test_the_guard_keeps_the_first_part_when_the_retry_is_no_better(service):
    service.config = guarded(service.config)
    service.engine = ScriptedEngine(service.engine, [JUNK, JUNK + " 11."])

    written = await service.write(member(1), "The keeper found a bottle.")

    assert written.model_turn.text == JUNK
    assert written.model_turn.settings["guard"]["kept"] == "first"
    assert len(service.engine.requests) == 2  # never more than one retry


async def test_a_fluent_part_is_written_once(service):
    service.config = guarded(service.config)
    service.engine = ScriptedEngine(service.engine, [FLUENT])

    written = await service.write(member(1), "The keeper found a bottle.")

    assert written.model_turn.settings["guard"] == {"problems": []}
    assert len(service.engine.requests) == 1


async def test_with_the_guard_off_a_degenerate_part_is_kept_and_its_problems_recorded(service):
    service.engine = ScriptedEngine(service.engine, [JUNK])

    written = await service.write(member(1), "The keeper found a bottle.")

    assert written.model_turn.text == JUNK
    assert written.model_turn.settings["guard"]["problems"]
    assert len(service.engine.requests) == 1


async def test_the_context_cap_bounds_what_the_model_reads(config, store, engine, clock):
    capped = dataclasses.replace(config, model=dataclasses.replace(config.model, context_tokens=96))
    service = StoryService(capped, store, engine, Admission(clock=clock), clock=clock)
    await service.write(member(1), "The long story begins here. " * 40)
    for n in range(3):
        written = await service.continue_(member(2), f"Line {n} of a story that keeps growing.")

    record = written.model_turn.settings
    assert record["prompt_tokens"] + record["max_new_tokens"] <= 96
    assert record["max_new_tokens"] == MAX_NEW
    assert record["context_truncated"] is True


async def test_a_lone_surrogate_in_member_text_is_replaced_not_crashed_on(service):
    written = await service.write(member(1), "A broken \ud800 character")
    more = await service.continue_(member(1), "and \udfff another")

    assert written.turns[0].text == "A broken \ufffd character"
    assert more.turns[0].text == "and \ufffd another"


async def test_a_database_failure_after_the_line_is_saved_says_it_is_saved(service, monkeypatch):
    await service.write(member(1), "Start")
    real_append = service.store.append_turns

    async def append_but_the_disk_is_full(story_id, turns, reply_id=None):
        if turns[0].kind == "model":
            raise StorageError()
        return await real_append(story_id, turns, reply_id)

    monkeypatch.setattr(service.store, "append_turns", append_but_the_disk_is_full)
    with pytest.raises(StorageError) as caught:
        await service.continue_(member(1), "my precious line")

    assert "Your line is saved" in caught.value.user_message
    texts = [t.text for t in await story_turns(service)]
    assert texts[-1] == "my precious line"  # saved once: a retry does not need to repeat it
