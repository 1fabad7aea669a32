"""Admission on a real Redis server: the windows two bot processes share.

`.ci/run` installs Debian's ``redis-server``, starts it and names it in ``STORYBOT_TEST_REDIS``
(then it must answer). Elsewhere the tests start their own (on a free port, nothing saved to
disk) when it is installed, and are skipped with the reason when it is not.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import pytest

from bot.errors import LimitsUnavailable, RateLimited
from bot.limits import Admission, Limit
from tests.servers import DidNotStart, free_port, redis_server

GIVEN = os.environ.get("STORYBOT_TEST_REDIS")
REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    not GIVEN and REDIS is None,
    reason="redis-server is not installed (Debian: apt-get install redis-server)",
)
RUN = uuid.uuid4().hex[:8]  # this run's keys, apart from any earlier run's on the same server


@pytest.fixture(scope="module")
def redis_uri():
    if GIVEN:
        yield GIVEN
        return
    try:
        with redis_server(REDIS) as uri:
            yield uri
    except DidNotStart as error:
        pytest.fail(str(error))


def member(n: int, rate: int = 2, test: str = "") -> list[Limit]:
    return [Limit.per_minute("user", ("user", RUN, test, n), rate)]


async def test_two_processes_share_one_window(redis_uri, request):
    test = request.node.name
    one, two = Admission(redis_uri), Admission(redis_uri)
    await one.ready()  # when CI names a server, it must answer

    ticket = await one.admit(member(1, test=test))
    await ticket.spend()
    ticket = await two.admit(member(1, test=test))  # the other process sees one part of two
    await ticket.spend()

    for process in (one, two):
        with pytest.raises(RateLimited) as caught:
            await process.admit(member(1, test=test))
        assert 55 < caught.value.retry_after <= 60
    await (await one.admit(member(2, test=test))).spend()  # another member is counted apart


async def test_a_refusal_and_a_refund_record_nothing_in_redis(redis_uri, request):
    test = request.node.name
    admission = Admission(redis_uri)
    failed = await admission.admit(member(1, rate=1, test=test))
    with pytest.raises(RateLimited):
        await admission.admit(member(1, rate=1, test=test))  # held while being written

    failed.refund()

    other = Admission(redis_uri)  # nothing reached Redis: a fresh process sees room
    await (await other.admit(member(1, rate=1, test=test))).spend()


async def test_a_cooldown_in_redis_frees_after_its_seconds(redis_uri, request):
    rest = [Limit.cooldown(("cooldown", RUN, request.node.name), 1)]
    admission = Admission(redis_uri)
    await (await admission.admit(rest)).spend()

    with pytest.raises(RateLimited) as caught:
        await Admission(redis_uri).admit(rest)
    assert caught.value.reason == "cooldown" and caught.value.retry_after <= 1

    await asyncio.sleep(1.1)
    await (await admission.admit(rest)).spend()


async def test_a_lowered_limit_counts_the_parts_already_in_redis(redis_uri, request):
    test = request.node.name
    admission = Admission(redis_uri)
    for _ in range(3):
        await (await admission.admit(member(1, rate=5, test=test))).spend()

    with pytest.raises(RateLimited):
        await admission.admit(member(1, rate=3, test=test))


async def test_a_server_that_went_away_is_reported_for_the_host():
    port = free_port()  # nothing listens here
    with pytest.raises(LimitsUnavailable) as caught:
        await Admission(f"redis://:secret@127.0.0.1:{port}/0").ready()

    assert f"redis://***@127.0.0.1:{port}/0" in str(caught.value) and "secret" not in str(
        caught.value
    )
