"""A helper that runs one background task for the life of an ``async with`` block."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


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
