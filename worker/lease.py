"""The upload's lease in ``upload_history``, renewed while a worker writes its rows.

The lease is lost when a renewal finds another attempt in charge, or when no renewal has
succeeded for a whole lease period (the database was unreachable); from then on ``check()``
raises, so a worker that was paused or cut off never writes over its successor's items.
"""

from __future__ import annotations

import asyncio
import logging
import time

from worker.background import Background
from worker.database import Database
from worker.errors import LeaseLostError
from worker.history import UploadHistory

log = logging.getLogger(__name__)


class Lease(Background):
    def __init__(self, database: Database, upload_id: str, attempt: int, seconds: float) -> None:
        self._database = database
        self.upload_id = upload_id
        self.attempt = attempt
        self._seconds = seconds
        self._renewed_at = time.monotonic()
        self._lost = False

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once the lease is no longer held for sure."""
        if self._lost or time.monotonic() - self._renewed_at > self._seconds:
            self._lost = True
            raise LeaseLostError("lease lost: another attempt owns the upload now")

    async def reserve_rows(self, upto: int) -> None:
        async with self._database.connection() as conn:
            held = await UploadHistory(conn).reserve_rows(self.upload_id, self.attempt, upto)
        if not held:
            self._lost = True
        self.check()

    async def _background(self) -> None:
        while not self._lost:
            await asyncio.sleep(max(self._seconds / 3, 0.5))
            try:
                async with self._database.connection() as conn:
                    held = await UploadHistory(conn).renew_lease(
                        self.upload_id, self.attempt, self._seconds
                    )
            except Exception as exc:  # keep trying until the lease period is over
                log.warning("could not renew the lease", extra={"error": str(exc)})
                continue
            if held:
                self._renewed_at = time.monotonic()
            else:
                log.warning("lease lost; another attempt owns the upload now")
                self._lost = True
