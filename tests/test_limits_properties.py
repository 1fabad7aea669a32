"""Admission's promises for any sequence of requests, on a fake clock (hypothesis).

A small model of the rules stands beside the real windows (the `limits` library's memory storage):
every admission must be what the model says, no window may ever hold more parts than its limit,
a refusal must leave every window as it was, and the member's and the server's limits compose.
"""

from __future__ import annotations

import asyncio
import types
from collections import defaultdict
from dataclasses import dataclass, field

import limits.aio.storage.memory
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import RateLimited
from bot.limits import Admission, Limit
from tests.conftest import FakeClock

USER_RATE, SERVER_RATE, WINDOW = 3, 5, 60

step = st.tuples(
    # seconds since the previous step: mostly bursts, sometimes a window's worth
    st.one_of(st.just(0.0), st.floats(0, 5), st.floats(0, 40)),
    st.sampled_from(["ask", "ask", "ask", "written", "failed"]),
    st.integers(0, 2),  # which member
    st.integers(0, 1),  # which server
    st.integers(0, 7),  # which part in flight a "written"/"failed" step finishes
)


def limits_for(member: int, server: int) -> list[Limit]:
    return [
        Limit.per_minute("user", ("user", server, member), USER_RATE),
        Limit.per_minute("server", ("server", server), SERVER_RATE),
    ]


@dataclass
class Model:
    """The rules, written plainly: a part counts while written and for a minute once written."""

    recorded: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    held: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def full(self, limit: Limit, now: float) -> bool:
        counted = sum(1 for t in self.recorded[limit.counter] if t > now - limit.window_s)
        return counted + self.held[limit.counter] >= limit.amount


def windows(admission: Admission) -> dict[str, list[float]]:
    """Every window's recorded times, as the storage keeps them."""
    return {key: [e.atime for e in events] for key, events in admission.storage.events.items()}


def run(steps) -> None:
    asyncio.run(_run(steps))


async def _run(steps) -> None:
    clock = FakeClock()
    real_time = limits.aio.storage.memory.time
    limits.aio.storage.memory.time = types.SimpleNamespace(time=clock)
    try:
        admission, model = Admission(clock=clock), Model()
        flying: list[tuple[object, list[Limit]]] = []
        admitted_at: dict[str, list[float]] = defaultdict(list)  # kept (not refunded) parts
        for wait, action, member, server, pick in steps:
            clock.advance(wait)
            now = clock()
            if action == "ask":
                wanted = limits_for(member, server)
                expect_full = [lim.scope for lim in wanted if model.full(lim, now)]
                before = (windows(admission), dict(admission._held))
                try:
                    ticket = await admission.admit(wanted)
                except RateLimited as refusal:
                    # Refused exactly when the model says a limit is full, naming the first.
                    assert expect_full and refusal.scope == expect_full[0]
                    assert 0 <= refusal.retry_after <= WINDOW
                    # A refusal records nothing and holds nothing.
                    assert (windows(admission), dict(admission._held)) == before
                    continue
                assert not expect_full, f"admitted past a full {expect_full} limit"
                for lim in wanted:
                    model.held[lim.counter] += 1
                flying.append((ticket, wanted, now))
            elif flying:
                ticket, wanted, asked = flying.pop(pick % len(flying))
                for lim in wanted:
                    model.held[lim.counter] -= 1
                if action == "written":
                    await ticket.spend()
                    for lim in wanted:
                        model.recorded[lim.counter].append(now)
                        admitted_at[lim.counter].append(asked)
                else:
                    ticket.refund()
        # No minute ever saw more parts admitted (and kept) than its limit, for any counter.
        in_flight = defaultdict(list)
        for _, wanted, asked in flying:
            for lim in wanted:
                in_flight[lim.counter].append(asked)
        for counter in set(admitted_at) | set(in_flight):
            times = sorted(admitted_at[counter] + in_flight[counter])
            limit = USER_RATE if counter.startswith("storybot/user") else SERVER_RATE
            for i, start in enumerate(times):
                inside = [t for t in times[i:] if t < start + WINDOW]
                assert len(inside) <= limit, (counter, inside)
    finally:
        limits.aio.storage.memory.time = real_time


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=60))
def test_any_sequence_of_requests_keeps_every_promise(steps):
    run(steps)


def test_a_burst_fills_the_member_limit_then_the_server_limit():
    burst = [(0.1, "ask", m, 0, 0) for m in (0, 0, 0, 0, 1, 1, 1, 2)]
    burst += [(0.1, "written", 0, 0, 0)] * 8
    run(burst)  # the model's verdicts (3 of member 0, then the server's 5th) are asserted inside


@pytest.mark.parametrize("failed_first", [True, False])
def test_refunds_free_the_place_at_once(failed_first):
    steps = [(0.0, "ask", 0, 0, 0)] * USER_RATE
    steps += [(1.0, "failed" if failed_first else "written", 0, 0, 0)]
    steps += [(1.0, "ask", 0, 0, 0)]
    run(steps)
