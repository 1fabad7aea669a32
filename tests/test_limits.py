"""Admission: sliding-window rate limits on a fake clock, and first-come order per channel."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import RateLimited, StoryBusy
from bot.limits import ChannelOrder, RateLimiter


def user(n: int, per_minute: int = 3) -> dict:
    return {"user": (("user", 1, n), per_minute)}


def both(n: int, user_rate: int, guild_rate: int, guild: int = 1) -> dict:
    return {"user": (("user", guild, n), user_rate), "server": (("guild", guild), guild_rate)}


# -- RateLimiter ---------------------------------------------------------------------------------


def test_n_per_minute_are_allowed_and_the_next_is_refused_with_the_real_wait(clock):
    limiter = RateLimiter(clock=clock)
    limiter.admit(user(1))  # t = 0
    clock.advance(10)
    limiter.admit(user(1))  # t = 10
    clock.advance(15)
    limiter.admit(user(1))  # t = 25

    with pytest.raises(RateLimited) as caught:
        limiter.admit(user(1))

    refusal = caught.value
    assert refusal.scope == "user" and refusal.limit == 3
    assert refusal.retry_after == pytest.approx(35.0)  # the first slot frees at t = 60
    assert "limit of 3 generations a minute" in refusal.user_message
    assert "Try again in 35 seconds" in refusal.user_message


def test_the_window_slides(clock):
    limiter = RateLimiter(clock=clock)
    for _ in range(2):
        limiter.admit(user(1, per_minute=2))
        clock.advance(20)  # hits at t = 0 and t = 20; now t = 40

    clock.advance(19.5)  # t = 59.5: both still inside the minute
    with pytest.raises(RateLimited) as caught:
        limiter.admit(user(1, per_minute=2))
    assert caught.value.retry_after == pytest.approx(0.5)
    assert "Try again in 1 second." in caught.value.user_message  # never "0 seconds"

    clock.advance(0.5)  # t = 60: the first hit has left the window
    limiter.admit(user(1, per_minute=2))
    with pytest.raises(RateLimited) as caught:  # the t = 20 hit is still in it
        limiter.admit(user(1, per_minute=2))
    assert caught.value.retry_after == pytest.approx(20.0)


def test_a_refusal_records_nothing(clock):
    limiter = RateLimiter(clock=clock)
    limiter.admit(user(1, per_minute=1))
    for _ in range(5):  # hammering while refused must not push the wait further out
        clock.advance(10)
        with pytest.raises(RateLimited):
            limiter.admit(user(1, per_minute=1))

    clock.advance(10)  # t = 60
    limiter.admit(user(1, per_minute=1))


def test_a_refusal_by_one_scope_charges_no_other_scope(clock):
    limiter = RateLimiter(clock=clock)
    limiter.admit(both(1, user_rate=1, guild_rate=10))

    for _ in range(3):
        with pytest.raises(RateLimited) as caught:
            limiter.admit(both(1, user_rate=1, guild_rate=10))
        assert caught.value.scope == "user"

    for n in range(2, 11):  # the guild still has its nine other slots
        limiter.admit(both(n, user_rate=1, guild_rate=10))
    with pytest.raises(RateLimited) as caught:
        limiter.admit(both(11, user_rate=1, guild_rate=10))
    assert caught.value.scope == "server"
    assert caught.value.user_message.startswith("This server has reached the limit of 10")


def test_refund_gives_the_slot_back(clock):
    limiter = RateLimiter(clock=clock)
    limiter.admit(both(1, user_rate=2, guild_rate=2))
    ticket = limiter.admit(both(1, user_rate=2, guild_rate=2))
    with pytest.raises(RateLimited):
        limiter.admit(both(1, user_rate=2, guild_rate=2))

    ticket.refund()

    limiter.admit(both(1, user_rate=2, guild_rate=2))  # both scopes have the slot again
    with pytest.raises(RateLimited):
        limiter.admit(both(1, user_rate=2, guild_rate=2))


def test_refund_after_the_window_has_moved_on_is_harmless(clock):
    limiter = RateLimiter(clock=clock)
    ticket = limiter.admit(user(1, per_minute=1))
    clock.advance(61)
    limiter.admit(user(1, per_minute=1))

    ticket.refund()  # its hit already left the window; the new one must stay counted

    with pytest.raises(RateLimited):
        limiter.admit(user(1, per_minute=1))


def test_users_and_servers_are_counted_apart(clock):
    limiter = RateLimiter(clock=clock)
    limiter.admit(both(1, user_rate=1, guild_rate=5, guild=1))

    limiter.admit(both(2, user_rate=1, guild_rate=5, guild=1))  # another member, same server
    limiter.admit(both(1, user_rate=1, guild_rate=5, guild=2))  # same member, another server
    with pytest.raises(RateLimited):
        limiter.admit(both(1, user_rate=1, guild_rate=5, guild=1))


def test_a_lowered_limit_counts_the_hits_already_made(clock):
    limiter = RateLimiter(clock=clock)
    for _ in range(4):
        limiter.admit(user(1, per_minute=5))
        clock.advance(5)  # hits at t = 0, 5, 10, 15; now t = 20

    with pytest.raises(RateLimited) as caught:
        limiter.admit(user(1, per_minute=2))

    # Two slots must free up: the one at t = 10 leaves the window at t = 70.
    assert caught.value.retry_after == pytest.approx(50.0)


# -- ChannelOrder --------------------------------------------------------------------------------


def test_idle_users_are_forgotten_once_many_have_come_and_gone(clock):
    limiter = RateLimiter(clock=clock)
    for n in range(5000):
        limiter.admit(user(n))
    assert len(limiter._hits) == 5000  # all within the window: all remembered
    clock.advance(61)
    for n in range(5000):
        limiter.admit(user(10_000 + n))
    assert len(limiter._hits) < 5000 + 5000  # a sweep dropped users idle for a whole window
    assert ("user", 1, 10_000) in limiter._hits and ("user", 1, 0) not in limiter._hits
    for _ in range(2):
        limiter.admit(user(10_000))
    with pytest.raises(RateLimited):  # the sweep kept what the active user did
        limiter.admit(user(10_000))


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
