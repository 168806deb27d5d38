"""The upload's lease in ``upload_history``, renewed while a worker stages or validates it, and
the staging checkpoint saved with it.

The lease is lost when a renewal finds another attempt in charge, or when no renewal has
succeeded for a whole lease period (the database was unreachable); from then on ``check()``
raises, so a worker that was paused or cut off never writes over its successor's items.
Every renewal and every ``save()`` also records ``progress()`` (the rows confirmed written) as
the upload's checkpoint, fenced by the attempt like the lease itself.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.core.background import Keepalive
from worker.core.errors import LeaseLostError
from worker.postgres.database import Database
from worker.postgres.uploads import UploadHistory


class Lease(Keepalive):
    def __init__(self, database: Database, upload_id: str, attempt: int, seconds: float) -> None:
        super().__init__(self._renew_lease, seconds, what="lease")
        self._database = database
        self.upload_id = upload_id
        self.attempt = attempt
        self.progress: Callable[[], int] = lambda: 0

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once the lease is no longer held for sure."""
        if not self.held:
            raise LeaseLostError("lease lost: another attempt owns the upload now")

    async def save(self, *, reserve_upto: int = 0) -> None:
        """Save the checkpoint now, reserving rows up to ``reserve_upto`` with it."""
        async with self._database.connection() as conn:
            held = await UploadHistory(conn).reserve_rows(
                self.upload_id, self.attempt, reserve_upto, checkpoint=self.progress()
            )
        if not held:
            self.renewed(False)
        self.check()

    async def _renew_lease(self) -> bool:
        async with self._database.connection() as conn:
            return await UploadHistory(conn).renew_lease(
                self.upload_id, self.attempt, self.period, checkpoint=self.progress()
            )
