"""Admission: moving-window rate limits on a fake clock, and first-come order per channel."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import LimitsUnavailable, RateLimited, StoryBusy
from bot.limits import Admission, ChannelOrder, Limit


def user(n: int, per_minute: int = 3) -> list[Limit]:
    return [Limit.per_minute("user", ("user", 1, n), per_minute)]


def both(n: int, user_rate: int, guild_rate: int, guild: int = 1) -> list[Limit]:
    return [
        Limit.per_minute("user", ("user", guild, n), user_rate),
        Limit.per_minute("server", ("server", guild), guild_rate),
    ]


async def part(admission: Admission, limits: list[Limit]) -> None:
    """A part asked for and written at once."""
    ticket = await admission.admit(limits)
    await ticket.spend()


# -- Admission -----------------------------------------------------------------------------------


async def test_n_per_minute_are_allowed_and_the_next_is_refused_with_the_real_wait(clock):
    admission = Admission(clock=clock)
    await part(admission, user(1))  # t = 0
    clock.advance(10)
    await part(admission, user(1))  # t = 10
    clock.advance(15)
    await part(admission, user(1))  # t = 25

    with pytest.raises(RateLimited) as caught:
        await admission.admit(user(1))

    refusal = caught.value
    assert refusal.scope == "user" and refusal.limit == 3 and refusal.reason == "user rate"
    assert refusal.retry_after == pytest.approx(35.0)  # the first slot frees at t = 60
    assert "limit of 3 parts a minute" in refusal.user_message
    assert "Try again in 35 seconds" in refusal.user_message


async def test_the_window_moves(clock):
    admission = Admission(clock=clock)
    for _ in range(2):
        await part(admission, user(1, per_minute=2))
        clock.advance(20)  # parts at t = 0 and t = 20; now t = 40

    clock.advance(19.5)  # t = 59.5: both still inside the minute
    with pytest.raises(RateLimited) as caught:
        await admission.admit(user(1, per_minute=2))
    assert caught.value.retry_after == pytest.approx(0.5)
    assert "Try again in 1 second." in caught.value.user_message  # never "0 seconds"

    clock.advance(0.75)  # the first part has left the window
    await part(admission, user(1, per_minute=2))
    with pytest.raises(RateLimited) as caught:  # the t = 20 part is still in it
        await admission.admit(user(1, per_minute=2))
    assert caught.value.retry_after == pytest.approx(19.75)


async def test_parts_being_written_hold_their_places(clock):
    admission = Admission(clock=clock)
    writing = [await admission.admit(user(1, per_minute=2)) for _ in range(2)]

    with pytest.raises(RateLimited) as caught:  # nothing recorded yet, but both places are held
        await admission.admit(user(1, per_minute=2))
    assert caught.value.retry_after == pytest.approx(60.0)

    clock.advance(30)
    for ticket in writing:
        await ticket.spend()  # recorded now, at t = 30
    clock.advance(59)
    with pytest.raises(RateLimited):
        await admission.admit(user(1, per_minute=2))
    clock.advance(2)
    await part(admission, user(1, per_minute=2))


async def test_a_refusal_records_nothing(clock):
    admission = Admission(clock=clock)
    await part(admission, user(1, per_minute=1))
    for _ in range(5):  # hammering while refused must not push the wait further out
        clock.advance(10)
        with pytest.raises(RateLimited):
            await admission.admit(user(1, per_minute=1))

    clock.advance(10.5)  # past t = 60
    await part(admission, user(1, per_minute=1))


async def test_a_refusal_by_one_scope_charges_no_other_scope(clock):
    admission = Admission(clock=clock)
    await part(admission, both(1, user_rate=1, guild_rate=10))

    for _ in range(3):
        with pytest.raises(RateLimited) as caught:
            await admission.admit(both(1, user_rate=1, guild_rate=10))
        assert caught.value.scope == "user"

    for n in range(2, 11):  # the server still has its nine other slots
        await part(admission, both(n, user_rate=1, guild_rate=10))
    with pytest.raises(RateLimited) as caught:
        await admission.admit(both(11, user_rate=1, guild_rate=10))
    assert caught.value.scope == "server"
    assert caught.value.user_message.startswith("This server has reached the limit of 10")


async def test_refund_gives_the_place_back_and_records_nothing(clock):
    admission = Admission(clock=clock)
    await part(admission, both(1, user_rate=2, guild_rate=2))
    ticket = await admission.admit(both(1, user_rate=2, guild_rate=2))
    with pytest.raises(RateLimited):
        await admission.admit(both(1, user_rate=2, guild_rate=2))

    ticket.refund()
    ticket.refund()  # twice is once
    await ticket.spend()  # and a refunded ticket records nothing later

    await part(admission, both(1, user_rate=2, guild_rate=2))  # both scopes have it again
    with pytest.raises(RateLimited):
        await admission.admit(both(1, user_rate=2, guild_rate=2))


async def test_users_and_servers_are_counted_apart(clock):
    admission = Admission(clock=clock)
    await part(admission, both(1, user_rate=1, guild_rate=5, guild=1))

    await part(admission, both(2, user_rate=1, guild_rate=5, guild=1))  # another member
    await part(admission, both(1, user_rate=1, guild_rate=5, guild=2))  # another server
    with pytest.raises(RateLimited):
        await admission.admit(both(1, user_rate=1, guild_rate=5, guild=1))


async def test_a_cooldown_lets_one_part_through_per_period(clock):
    admission = Admission(clock=clock)
    rest = [Limit.cooldown(("cooldown", 7), 30)]
    await part(admission, rest)
    clock.advance(12)

    with pytest.raises(RateLimited) as caught:
        await admission.admit(rest)
    assert caught.value.reason == "cooldown"
    assert caught.value.user_message == (
        "This channel rests 30 seconds after each part. Try again in 18 seconds."
    )
    clock.advance(18.5)
    await part(admission, rest)


async def test_a_lowered_limit_counts_the_parts_already_written(clock):
    admission = Admission(clock=clock)
    for _ in range(4):
        await part(admission, user(1, per_minute=5))
        clock.advance(5)  # parts at t = 0, 5, 10, 15; now t = 20

    with pytest.raises(RateLimited) as caught:
        await admission.admit(user(1, per_minute=2))
    assert caught.value.retry_after > 0


async def test_an_unreachable_redis_is_a_setup_error_that_hides_the_password():
    admission = Admission("redis://user:hunter2@127.0.0.1:1/0")

    with pytest.raises(LimitsUnavailable) as caught:
        await admission.ready()

    assert "redis://***@127.0.0.1:1/0" in str(caught.value)
    assert "hunter2" not in str(caught.value)


# -- ChannelOrder --------------------------------------------------------------------------------


async def test_one_writer_per_channel_in_arrival_order():
    order = ChannelOrder()
    log: list[str] = []

    async def writer(name: str) -> None:
        async with order.turn(7):
            log.append(f"{name} in")
            await asyncio.sleep(0)  # give the others every chance to barge in
            await asyncio.sleep(0)
            log.append(f"{name} out")

    await asyncio.gather(*(writer(str(n)) for n in range(6)))

    assert log == [f"{n} {step}" for n in range(6) for step in ("in", "out")]


async def test_late_arrivals_wait_behind_earlier_ones():
    order = ChannelOrder()
    log: list[int] = []
    release = asyncio.Event()

    async def writer(n: int) -> None:
        async with order.turn(7):
            if n == 0:
                await release.wait()
            log.append(n)

    tasks = []
    for n in (0, 1, 2, 3):
        tasks.append(asyncio.create_task(writer(n)))
        await asyncio.sleep(0)  # each arrives after the previous is queued
    release.set()
    await asyncio.gather(*tasks)

    assert log == [0, 1, 2, 3]


async def test_beyond_max_waiting_is_refused_with_story_busy():
    order = ChannelOrder(max_waiting=2)
    release = asyncio.Event()
    entered: list[int] = []

    async def writer(n: int) -> None:
        async with order.turn(7):
            entered.append(n)
            await release.wait()

    holder = asyncio.create_task(writer(0))
    waiting = [asyncio.create_task(writer(n)) for n in (1, 2)]
    await asyncio.sleep(0)

    with pytest.raises(StoryBusy) as caught:
        async with order.turn(7):
            pass
    assert "Too many people are waiting" in caught.value.user_message

    async with asyncio.timeout(1):  # another channel is not affected
        async with order.turn(8):
            pass

    release.set()
    await asyncio.gather(holder, *waiting)
    assert entered == [0, 1, 2]
    async with order.turn(7):  # once the line is gone, the channel is free again
        pass


async def test_channels_do_not_block_each_other():
    order = ChannelOrder()
    release = asyncio.Event()

    async def hold() -> None:
        async with order.turn(1):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)

    async with asyncio.timeout(1):
        async with order.turn(2):
            done_elsewhere = True

    assert done_elsewhere and not holder.done()
    release.set()
    await holder


async def test_a_failing_writer_frees_the_channel():
    order = ChannelOrder(max_waiting=0)

    with pytest.raises(RuntimeError):
        async with order.turn(7):
            raise RuntimeError("boom")

    async with asyncio.timeout(1):
        async with order.turn(7):
            pass


async def test_waiting_too_long_for_a_turn_is_refused_as_busy_and_leaves_the_line():
    order = ChannelOrder(max_waiting=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with order.turn(7):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)

    with pytest.raises(StoryBusy) as caught:
        async with order.turn(7, wait_s=0.05):
            pass
    assert "busy for too long" in caught.value.user_message

    # The one that gave up no longer takes a place in the line.
    second = asyncio.create_task(_enter(order, 7))
    await asyncio.sleep(0)
    release.set()
    await holder
    async with asyncio.timeout(1):
        await second


async def _enter(order: ChannelOrder, channel: int) -> None:
    async with order.turn(channel):
        pass


async def test_waiters_hear_how_many_are_ahead_as_the_line_moves():
    order = ChannelOrder()
    heard: dict[int, list[int]] = {1: [], 2: [], 3: []}
    release = {n: asyncio.Event() for n in range(4)}

    async def writer(n: int) -> None:
        async with order.turn(7, on_wait=heard[n].append if n else None):
            await release[n].wait()

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(writer(n)))
        await asyncio.sleep(0)
    assert heard == {1: [1], 2: [2], 3: [3]}

    release[0].set()
    await asyncio.sleep(0)
    assert heard == {1: [1], 2: [2, 1], 3: [3, 2]}  # the one now writing hears nothing more

    for n in (1, 2, 3):
        release[n].set()
    await asyncio.gather(*tasks)
    assert heard == {1: [1], 2: [2, 1], 3: [3, 2, 1]}
