"""The upload's lease in ``upload_history``, renewed while a worker writes its rows.

The lease is lost when a renewal finds another attempt in charge, or when no renewal has
succeeded for a whole lease period (the database was unreachable); from then on ``check()``
raises, so a worker that was paused or cut off never writes over its successor's items.
"""

from __future__ import annotations

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

    def check(self) -> None:
        """Raise :class:`LeaseLostError` once the lease is no longer held for sure."""
        if not self.held:
            raise LeaseLostError("lease lost: another attempt owns the upload now")

    async def reserve_rows(self, upto: int) -> None:
        async with self._database.connection() as conn:
            held = await UploadHistory(conn).reserve_rows(self.upload_id, self.attempt, upto)
        if not held:
            self.renewed(False)
        self.check()

    async def _renew_lease(self) -> bool:
        async with self._database.connection() as conn:
            return await UploadHistory(conn).renew_lease(self.upload_id, self.attempt, self.period)
