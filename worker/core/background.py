"""Background tasks that live as long as an ``async with`` block.

:class:`Background` runs one task for the life of the block. :class:`Keepalive` is the one
renewal loop of the service, written once: an SQS message's visibility
(``worker.aws.visibility``) and an upload's lease (``worker.postgres.lease``) are both instances
of it, so their timing and their handling of a failed renewal cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

log = logging.getLogger(__name__)

# A lease (or a message's visibility) counts as held for this share of its period after the
# last renewal that succeeded; the rest of the period is the margin for writes already sent.
HELD_FOR = 2 / 3


class Background:
    """Subclasses implement ``_background()``; it starts on enter and is cancelled (and
    awaited) on exit. Subclasses that need more on exit call ``super().__aexit__`` first."""

    _task: asyncio.Task[None] | None = None

    async def _background(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._background())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


Renew = Callable[[], Awaitable[bool]]


class Keepalive(Background):
    """Calls ``renew()`` every ``period / 3`` seconds while the block runs.

    ``renew`` extends whatever it keeps alive to ``period`` from now and returns True, returns
    False when the thing is definitely gone (another worker owns it), or raises when it could
    not tell (a network error: the loop tries again at the next tick). ``held`` turns False for
    good on a False, or once no renewal has succeeded for ``HELD_FOR`` of a ``period`` (counted
    from when the last successful renewal was asked): the holder stops writing a third of a
    period before anyone else can take over, so a request it sent just before it noticed has
    landed (or failed) by then.
    """

    def __init__(self, renew: Renew, period: float, *, what: str) -> None:
        self._renew = renew
        self.period = period
        self._what = what
        self._renewed_at = time.monotonic()
        self._gone = False

    @property
    def held(self) -> bool:
        if not self._gone and time.monotonic() - self._renewed_at > self.period * HELD_FOR:
            self._gone = True
        return not self._gone

    def renewed(self, held: bool, *, asked_at: float | None = None) -> None:
        """Record the answer of a renewal made outside the loop (asked at ``asked_at``, a
        ``time.monotonic()`` value: the renewal runs from then, not from its answer)."""
        if held:
            self._renewed_at = time.monotonic() if asked_at is None else asked_at
        else:
            self._gone = True

    async def _background(self) -> None:
        pause = self.period / 3
        while not self._gone:
            await asyncio.sleep(max(pause, 0.5))
            asked_at = time.monotonic()
            try:
                held = await self._renew()
            except Exception as exc:  # unknown: try again soon, until the lease counts as lost
                log.warning("could not renew the %s", self._what, extra={"error": str(exc)})
                pause = self.period / 10  # several tries before HELD_FOR runs out, not one
                continue
            pause = self.period / 3
            if not held:
                log.warning("%s lost", self._what)
            self.renewed(held, asked_at=asked_at)
