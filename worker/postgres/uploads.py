"""``upload_history`` (and the vendor status a claim reads): every SQL statement on the table,
one method per transition or question.

Every upload ends in one status of design §2's table. A claim is a lease: the worker that
claims an upload bumps ``attempts`` and only that attempt's ``finish_*`` calls take effect
(``attempts`` is the fencing token), so a worker that lost its lease cannot overwrite the
outcome of the one that took over. Staging and validation take the same lease: one holder
per upload at a time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from worker.core.limits import MAX_ERROR_MESSAGE_CHARS, preview


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # this worker holds the upload now
    DUPLICATE = "duplicate"  # already staged/validated with the same ETag
    BUSY = "busy"  # another worker holds a live lease
    GONE = "gone"  # validation: no such upload, or it is not staged


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    attempt: int = 0
    # Rows that may have items from earlier attempts or versions: surplus above the new count
    # is removed.
    previous_rows: int = 0
    # BUSY: seconds until the other worker's lease runs out.
    lease_left: float = 0.0
    # DUPLICATE: the upload's status (staged or validated).
    status: str = ""
    # CLAIMED: the vendor's status (None: not registered), and the rows already reserved.
    vendor_status: str | None = None
    reserved_rows: int = 0
    # CLAIMED: every row up to this one of the same object version is written already.
    checkpoint: int = 0


@dataclass(frozen=True, slots=True)
class NewUpload:
    upload_id: str
    vendor_id: str
    file_name: str
    bucket: str
    key: str
    etag: str | None
    size: int | None
    uploaded_at: datetime | None

    def columns(self) -> tuple[object, ...]:
        """Parameters $1..$7 of the statements below."""
        return (
            self.upload_id,
            self.vendor_id,
            self.file_name,
            self.bucket,
            self.key,
            self.etag,
            self.size,
        )


# One round trip: take the lease, reserve the first rows, and read the vendor's status. The
# CTE reads the row as it was before this statement, so previous_rows is the earlier value.
_CLAIM = """
WITH previous AS (SELECT reserved_rows FROM upload_history WHERE upload_id = $1)
INSERT INTO upload_history AS h (
    upload_id, vendor_id, file_name, s3_bucket, s3_key, s3_etag, file_size_bytes, status,
    attempts, lease_expires_at, upload_timestamp, processing_started_at, updated_at,
    reserved_rows)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'processing', 1, now() + make_interval(secs => $8), $9,
        now(), now(), $11)
ON CONFLICT (upload_id) DO UPDATE SET
    s3_bucket = EXCLUDED.s3_bucket, s3_key = EXCLUDED.s3_key, s3_etag = EXCLUDED.s3_etag,
    file_size_bytes = EXCLUDED.file_size_bytes, status = 'processing',
    attempts = h.attempts + 1, lease_expires_at = EXCLUDED.lease_expires_at,
    successful_records = 0, failed_records = 0, valid_records = NULL, invalid_records = NULL,
    error_message = NULL, processing_started_at = now(), processing_completed_at = NULL,
    updated_at = now(), reserved_rows = GREATEST(h.reserved_rows, EXCLUDED.reserved_rows),
    notice_sent_at = NULL, superseded_records = NULL,
    checkpoint_row = CASE WHEN NOT $10 AND h.s3_etag IS NOT DISTINCT FROM EXCLUDED.s3_etag
                          THEN h.checkpoint_row ELSE 0 END
WHERE ($10 OR NOT (h.status IN ('staged', 'validated')
                  AND h.s3_etag IS NOT DISTINCT FROM EXCLUDED.s3_etag))
  AND NOT coalesce(h.lease_expires_at > now(), false)
RETURNING h.attempts, h.checkpoint_row,
          COALESCE((SELECT reserved_rows FROM previous), 0) AS previous_rows,
          (SELECT status FROM vendors WHERE vendor_id = $2) AS vendor_status
"""

_INSPECT = """
SELECT status, s3_etag,
       GREATEST(0, EXTRACT(EPOCH FROM lease_expires_at - now()))::float8 AS lease_left
FROM upload_history WHERE upload_id = $1
"""

_RECORD_REJECTED = """
INSERT INTO upload_history AS h (
    upload_id, vendor_id, file_name, s3_bucket, s3_key, s3_etag, file_size_bytes, status,
    attempts, error_message, upload_timestamp, processing_started_at, processing_completed_at,
    updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'rejected', 1, $8, $9, now(), now(), now())
ON CONFLICT (upload_id) DO UPDATE SET
    status = 'rejected', attempts = h.attempts + 1, error_message = EXCLUDED.error_message,
    total_records = 0, successful_records = 0, failed_records = 0, lease_expires_at = NULL,
    processing_completed_at = now(), updated_at = now()
WHERE h.status NOT IN ('staged', 'validated')
  AND (h.status <> 'processing' OR h.lease_expires_at <= now())
RETURNING h.reserved_rows
"""


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """What the validation stage needs to know about an upload it holds."""

    upload_id: str
    vendor_id: str
    status: str
    bucket: str
    key: str
    uploaded_at: datetime | None  # the key's timestamp: the newest upload's products win
    attempt: int  # the fencing token of this validation run
    total_records: int
    etag: str | None  # the object version staged


@dataclass(frozen=True, slots=True)
class ValidationClaim:
    state: ClaimState  # CLAIMED, BUSY or GONE
    upload: StagedUpload | None = None  # CLAIMED
    lease_left: float = 0.0  # BUSY
    reason: str = ""  # GONE


@dataclass(frozen=True, slots=True)
class UploadRow:
    """One line of ``vendor-onboarding uploads``."""

    upload_id: str
    vendor_id: str
    status: str
    total: int
    successful: int
    failed: int
    valid: int | None
    invalid: int | None
    attempts: int
    updated_at: datetime
    error: str | None


class UploadHistory:
    """The ``upload_history`` table; takes a connection, owns no resources."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def claim(
        self, upload: NewUpload, *, lease_seconds: float, reserve: int, force: bool = False
    ) -> Claim:
        """Take the upload's lease and reserve rows up to ``reserve``; ``force`` re-processes
        even an unchanged staged upload."""
        for _ in range(3):  # the row may change between the two statements: look again
            row = await self._conn.fetchrow(
                _CLAIM,
                *upload.columns(),
                float(lease_seconds),
                upload.uploaded_at,
                force,
                reserve,
            )
            if row is not None:
                return Claim(
                    ClaimState.CLAIMED,
                    row["attempts"],
                    row["previous_rows"],
                    vendor_status=row["vendor_status"],
                    reserved_rows=max(reserve, row["previous_rows"]),
                    checkpoint=row["checkpoint_row"],
                )
            current = await self._conn.fetchrow(_INSPECT, upload.upload_id)
            if current is None:
                continue
            if (
                not force
                and current["status"] in ("staged", "validated")
                and current["s3_etag"] == upload.etag
            ):
                return Claim(ClaimState.DUPLICATE, status=current["status"])
            if current["lease_left"] > 0:  # staging or validation holds it
                return Claim(ClaimState.BUSY, lease_left=current["lease_left"])
        return Claim(ClaimState.BUSY)

    async def record_rejected(self, upload: NewUpload, message: str) -> int | None:
        """Record an upload rejected without a claim (a bad key, an object that is gone).

        Returns the rows that may still have items, or None when nothing was recorded: a
        staged upload stands, and one under a live lease is left to its worker.
        """
        reserved: int | None = await self._conn.fetchval(
            _RECORD_REJECTED,
            *upload.columns(),
            preview(message, MAX_ERROR_MESSAGE_CHARS),
            upload.uploaded_at,
        )
        return reserved

    async def clear_reserved(self, upload_id: str) -> None:
        """The items of a rejected upload are gone."""
        await self._conn.execute(
            "UPDATE upload_history SET reserved_rows = 0 WHERE upload_id = $1 AND status = "
            "'rejected'",
            upload_id,
        )

    async def reserve_rows(
        self, upload_id: str, attempt: int, upto: int, *, checkpoint: int = 0
    ) -> bool:
        """Note, before writing them, that rows up to ``upto`` may have items; and save the
        checkpoint (both fenced by the attempt)."""
        result: str = await self._conn.execute(
            """UPDATE upload_history SET reserved_rows = GREATEST(reserved_rows, $3),
                   checkpoint_row = GREATEST(checkpoint_row, $4)
               WHERE upload_id = $1 AND attempts = $2 AND status = 'processing'""",
            upload_id,
            attempt,
            upto,
            checkpoint,
        )
        return result == "UPDATE 1"

    async def finish_staged(
        self, upload_id: str, attempt: int, *, total: int, successful: int, failed: int
    ) -> bool:
        return await self._finish(
            """UPDATE upload_history SET status = 'staged', total_records = $3,
                   successful_records = $4, failed_records = $5, error_message = NULL,
                   reserved_rows = $3, checkpoint_row = 0""",
            upload_id,
            attempt,
            total,
            successful,
            failed,
        )

    async def finish_rejected(self, upload_id: str, attempt: int, message: str) -> bool:
        return await self._finish(
            """UPDATE upload_history SET status = 'rejected', error_message = $3,
                   total_records = 0, successful_records = 0, failed_records = 0,
                   reserved_rows = 0, checkpoint_row = 0""",
            upload_id,
            attempt,
            preview(message, MAX_ERROR_MESSAGE_CHARS),
        )

    async def finish_failed(
        self, upload_id: str, attempt: int, message: str, *, rows_read: int, checkpoint: int
    ) -> bool:
        return await self._finish(
            """UPDATE upload_history SET status = 'failed', error_message = $3,
                   total_records = $4, checkpoint_row = GREATEST(checkpoint_row, $5)""",
            upload_id,
            attempt,
            preview(message, MAX_ERROR_MESSAGE_CHARS),
            rows_read,
            checkpoint,
        )

    async def _finish(self, update: str, upload_id: str, attempt: int, *args: object) -> bool:
        result: str = await self._conn.execute(
            update
            + """, lease_expires_at = NULL, processing_completed_at = now(), updated_at = now()
                 WHERE upload_id = $1 AND attempts = $2 AND status = 'processing'""",
            upload_id,
            attempt,
            *args,
        )
        return result == "UPDATE 1"

    async def renew_lease(
        self, upload_id: str, attempt: int, lease_seconds: float, *, checkpoint: int = 0
    ) -> bool:
        """Extend the lease, and save the checkpoint with it (both fenced by the attempt; a
        staging or a validation run's lease alike)."""
        result: str = await self._conn.execute(
            """UPDATE upload_history SET lease_expires_at = now() + make_interval(secs => $3),
                   checkpoint_row = GREATEST(checkpoint_row, $4), updated_at = now()
               WHERE upload_id = $1 AND attempts = $2 AND lease_expires_at IS NOT NULL""",
            upload_id,
            attempt,
            float(lease_seconds),
            checkpoint,
        )
        return result == "UPDATE 1"

    async def claim_validation(self, upload_id: str, *, lease_seconds: float) -> ValidationClaim:
        """Take the lease of a staged (or validated) upload for a validation run."""
        row = await self._conn.fetchrow(
            """UPDATE upload_history SET attempts = attempts + 1, updated_at = now(),
                   lease_expires_at = now() + make_interval(secs => $2)
               WHERE upload_id = $1 AND status IN ('staged', 'validated')
                 AND NOT coalesce(lease_expires_at > now(), false)
               RETURNING attempts, vendor_id, status, s3_bucket, s3_key, upload_timestamp,
                         total_records, s3_etag""",
            upload_id,
            float(lease_seconds),
        )
        if row is not None:
            upload = StagedUpload(
                upload_id,
                row["vendor_id"],
                row["status"],
                row["s3_bucket"],
                row["s3_key"],
                row["upload_timestamp"],
                row["attempts"],
                row["total_records"],
                row["s3_etag"],
            )
            return ValidationClaim(ClaimState.CLAIMED, upload=upload)
        current = await self._conn.fetchrow(_INSPECT, upload_id)
        if current is None:
            return ValidationClaim(ClaimState.GONE, reason=f"no upload {upload_id!r}")
        if current["lease_left"] > 0:
            return ValidationClaim(ClaimState.BUSY, lease_left=current["lease_left"])
        if current["status"] in ("staged", "validated"):  # the lease ran out just now
            return ValidationClaim(ClaimState.BUSY)
        return ValidationClaim(
            ClaimState.GONE, reason=f"upload {upload_id} is {current['status']}, not staged"
        )

    async def hold(self, upload_id: str, attempt: int) -> bool:
        """Inside a transaction: lock the upload's row against a new claim until the
        transaction ends; False when ``attempt`` no longer holds the upload."""
        held = await self._conn.fetchval(
            """SELECT true FROM upload_history
               WHERE upload_id = $1 AND attempts = $2 AND lease_expires_at IS NOT NULL
               FOR SHARE""",
            upload_id,
            attempt,
        )
        return bool(held)

    async def record_validated(
        self, upload_id: str, attempt: int, *, valid: int, invalid: int, superseded: int
    ) -> bool | None:
        """Record the validation counts (fenced by the attempt); whether the vendor notice is
        still to be sent, or None when the attempt no longer holds the upload."""
        pending: bool | None = await self._conn.fetchval(
            """UPDATE upload_history SET status = 'validated', valid_records = $3,
                      invalid_records = $4, superseded_records = $5,
                      processing_completed_at = now(), updated_at = now()
               WHERE upload_id = $1 AND attempts = $2 AND lease_expires_at IS NOT NULL
                 AND status IN ('staged', 'validated')
               RETURNING notice_sent_at IS NULL""",
            upload_id,
            attempt,
            valid,
            invalid,
            superseded,
        )
        return pending

    async def release(self, upload_id: str, attempt: int, *, notice_sent: bool = False) -> None:
        """End a validation run's hold (fenced by the attempt), noting the notice if sent."""
        await self._conn.execute(
            """UPDATE upload_history SET lease_expires_at = NULL, updated_at = now(),
                      notice_sent_at = CASE WHEN $3 THEN now() ELSE notice_sent_at END
               WHERE upload_id = $1 AND attempts = $2 AND status IN ('staged', 'validated')""",
            upload_id,
            attempt,
            notice_sent,
        )

    async def recent(
        self, *, status: str | None, vendor: str | None, limit: int
    ) -> list[UploadRow]:
        records = await self._conn.fetch(
            """SELECT upload_id, vendor_id, status, total_records, successful_records,
                      failed_records, valid_records, invalid_records, attempts, updated_at,
                      error_message
               FROM upload_history
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR vendor_id = $2)
               ORDER BY updated_at DESC LIMIT $3""",
            status,
            vendor,
            limit,
        )
        return [UploadRow(*record.values()) for record in records]

    async def last_errors(self, upload_ids: list[str]) -> dict[str, str]:
        """``status: error_message`` of each of these uploads that is recorded."""
        records = await self._conn.fetch(
            "SELECT upload_id, status, error_message FROM upload_history "
            "WHERE upload_id = ANY($1::text[])",
            upload_ids,
        )
        return {r["upload_id"]: f"{r['status']}: {r['error_message'] or ''}" for r in records}

    async def find_by_key(self, s3_key: str) -> asyncpg.Record | None:
        """The upload recorded for an S3 key (the demo's summary)."""
        record: asyncpg.Record | None = await self._conn.fetchrow(
            """SELECT upload_id, vendor_id, status, total_records, valid_records,
                      invalid_records, error_message
               FROM upload_history WHERE s3_key = $1""",
            s3_key,
        )
        return record
