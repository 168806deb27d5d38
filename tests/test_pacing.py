"""The item writer's pacer, on its own, with a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest

from worker.core.pacing import DECREASE, HOLD, MIN_RATE, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def saturate(pacer: Pacer, clock: Clock, per_second: int) -> None:
    """One second of 25-item batches sent and landed at ``per_second``."""
    for _ in range(per_second // 25):
        clock.now += 25 / per_second
        pacer.landed(25)


async def test_unpaced_until_the_first_throttle_then_paced_below_what_was_sent() -> None:
    clock = Clock()
    pacer = Pacer(16, clock)
    for _ in range(16):  # a first burst of 400 items
        await pacer.acquire(25)
    assert pacer.rate is None
    clock.now += 0.2
    pacer.landed(200)

    pacer.throttled(pacer.generation)

    assert pacer.rate == pytest.approx(400 * DECREASE)


def test_one_decrease_per_round_and_never_above_what_landed() -> None:
    clock = Clock()
    pacer = Pacer(16, clock)
    pacer.rate = 1_000.0
    saturate(pacer, clock, 500)  # half of it got through
    sent_in = pacer.generation

    pacer.throttled(sent_in)
    assert pacer.rate == pytest.approx(500, rel=0.05)

    clock.now += HOLD
    pacer.throttled(sent_in)  # sent before the decrease: the same congestion
    assert pacer.rate == pytest.approx(500, rel=0.05)


def test_the_increase_grows_while_no_throttle_comes() -> None:
    clock = Clock()
    pacer = Pacer(16, clock)
    pacer.rate = 100.0
    gains = []
    for _ in range(3):
        before = pacer.rate
        saturate(pacer, clock, 100)
        gains.append(pacer.rate - before)
    assert gains[0] < gains[1] < gains[2]


def test_nothing_landing_brings_the_rate_down_to_a_floor() -> None:
    clock = Clock()
    pacer = Pacer(4, clock)
    pacer.rate = 100.0
    for _ in range(40):
        clock.now += HOLD
        pacer.throttled(pacer.generation)
    assert pacer.rate == MIN_RATE


async def test_acquire_waits_for_room_and_a_release_makes_it() -> None:
    pacer = Pacer(2)
    await pacer.acquire(25)
    await pacer.acquire(25)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pacer.acquire(25), timeout=0.05)  # no room: it waits

    pacer.release()
    await asyncio.wait_for(pacer.acquire(25), timeout=1)
    assert pacer.in_flight == 2


def test_writers_sharing_a_partition_fill_it_and_drift_towards_equal_shares() -> None:
    """Two paced writers on one 1,000-a-second partition, one starting at four times the
    other's rate: each 10 ms both send at their rates; what the partition cannot take is
    turned back (both see the throttle), the rest lands."""
    clock = Clock()
    writers = [Pacer(16, clock), Pacer(16, clock)]
    writers[0].rate, writers[1].rate = 160.0, 640.0
    capacity, step, landed = 1_000.0, 0.01, 0.0
    for _ in range(6_000):  # a minute
        clock.now += step
        wanted = [(w.rate or 0.0) * step for w in writers]
        share = min(1.0, capacity * step / sum(wanted))
        for writer, items in zip(writers, wanted, strict=True):
            writer.landed(round(items * share))
            landed += items * share
            if share < 1.0:
                writer.throttled(writer.generation)
    rates = [w.rate or 0.0 for w in writers]
    assert landed >= 0.9 * capacity * 60
    assert min(rates) / max(rates) > 0.5  # from 0.25
