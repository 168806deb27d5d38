"""How fast a writer sends to DynamoDB: batches in flight up to a limit, and a send rate that
follows what DynamoDB accepts. Pure asyncio: no I/O.

Every item of an upload shares one partition (and, through ``VendorIndex``, every item of a
vendor), and a partition takes about 1,000 writes a second at best. A writer starts unpaced
(only its batches in flight are bounded). When DynamoDB first turns writes back
(``UnprocessedItems`` or a throttle), the send rate is set a ``DECREASE`` below what was sent
over the last second. From then on, additive increase and multiplicative decrease, as TCP paces a
connection: a throttle multiplies the rate by ``DECREASE`` (at most once a ``HOLD``, and not
for requests sent before the last decrease: that is the same congestion), and every landed
write adds ``INCREASE`` of itself, an increase that doubles for every further second without a
throttle (up to ``MAX_BOOST``), so a rate set too low recovers in seconds (a writer left alone
on a partition when the others finish takes it over within a few seconds). The increase also
has a part that does not grow with the rate (``ADDITIVE`` a second): with it, writers that
share a partition drift towards equal shares of it, as under TCP's additive increase.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

INCREASE = 0.02  # of each landed write, added to the rate (about 2 % a second)
MAX_BOOST = 16  # the increase doubles per second without a throttle, up to this many times
ADDITIVE = 20.0  # items a second, added to the rate every second
DECREASE = 0.85  # the rate is multiplied by it on a throttle
HOLD = 1.0  # seconds: at most one decrease in this long
MIN_RATE = 10.0  # items a second
DELIVERY_WINDOW = 1.0  # seconds of deliveries the first rate is set from


class Pacer:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.in_flight = 0
        self.rate: float | None = None  # items a second; None: not paced yet
        # Bumped by every decrease: a throttle of a request sent before it is ignored.
        self.generation = 0
        self._clock = clock
        self._next_send = 0.0
        self._cut_at = -HOLD
        self._boost = 1
        self._boost_at = clock()
        self._increased_at = self._boost_at
        self._delivered: deque[tuple[float, int]] = deque()  # (when, items) that landed
        self._sent: deque[tuple[float, int]] = deque()  # ... that were sent, before pacing
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self, items: int) -> None:
        """Wait for room among the batches in flight, then for the rate to allow ``items``."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        try:
            await self.pace(items)
        except BaseException:
            self.release()
            raise

    async def pace(self, items: int) -> None:
        """Wait until the rate allows sending ``items`` more (re-sends included)."""
        if self.rate is None:
            self._record(self._sent, items)
            return
        now = self._clock()
        start = max(now, self._next_send)
        self._next_send = start + items / self.rate
        if start > now:
            await asyncio.sleep(start - now)

    def release(self) -> None:
        self.in_flight -= 1
        for waiter in self._waiters:  # one slot came free: one waiter looks again
            if not waiter.done():
                waiter.set_result(None)
                break

    def _record(self, log: deque[tuple[float, int]], items: int) -> float:
        now = self._clock()
        log.append((now, items))
        while log and log[0][0] < now - DELIVERY_WINDOW:
            log.popleft()
        return now

    def landed(self, items: int) -> None:
        """``items`` were written."""
        now = self._record(self._delivered, items)
        if self.rate is None:
            return
        if now - self._boost_at >= 1.0:
            self._boost, self._boost_at = min(MAX_BOOST, self._boost * 2), now
        # (At most a second of it: time without writes in flight is not time at the rate.)
        elapsed = min(1.0, now - self._increased_at)
        self.rate += INCREASE * items * self._boost + ADDITIVE * elapsed
        self._increased_at = now

    def throttled(self, sent_in: int) -> None:
        """A request sent in generation ``sent_in`` had writes turned back."""
        now = self._clock()
        if sent_in != self.generation or now - self._cut_at < HOLD:
            return
        landed = sum(n for at, n in self._delivered if at >= now - DELIVERY_WINDOW)
        delivered = landed / DELIVERY_WINDOW
        if self.rate is None:  # the first throttle: a decrease from what was sent
            sent = sum(n for at, n in self._sent if at >= now - DELIVERY_WINDOW)
            # (Not from what landed: the first answers are the quick refusals, and the writes
            # that got through are still on their way back.)
            self.rate = max(MIN_RATE, delivered, sent / DELIVERY_WINDOW * DECREASE)
        else:  # and never above what got through since (the overshoot is gone at once)
            self.rate = max(MIN_RATE, min(self.rate * DECREASE, max(delivered, self.rate / 2)))
        self.generation += 1
        self._cut_at = self._increased_at = now
        self._boost, self._boost_at = 1, now
