"""One S3 object through the ingest steps of design §1, ending in one status of §2's table.

``process_object`` never raises for a problem with the upload or a dependency: it returns an
:class:`UploadResult` whose ``outcome`` tells the caller what to do with the message. It knows
nothing about where it runs (ECS worker, Lambda, CLI).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker import logs
from worker.aws.item_writer import ItemWriter
from worker.aws.s3 import S3Body, open_object
from worker.core.errors import LeaseLostError, PermanentError, TransientError, UploadKeyError
from worker.core.events import ObjectRef
from worker.core.items import STATUS_PENDING, Item, ItemFactory, record_key, refused_item
from worker.core.keys import UploadKey, folder_vendor, parse_upload_key, rejected_upload_id
from worker.core.rows import ProductRow
from worker.ingest.csv_stream import typed_rows
from worker.postgres.lease import Lease
from worker.postgres.uploads import Claim, ClaimState, NewUpload, UploadHistory
from worker.resources import Resources
from worker.validation.jobs import request_validation

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the worker stopped before the file was finished"
PAUSED = "paused at the invocation's deadline"
# Row numbers are reserved in upload_history this many at a time, before items are written.
RESERVE_ROWS = 1_000
# The checkpoint is saved at least this often (and with every lease renewal).
CHECKPOINT_ROWS = 500


class Outcome(enum.StrEnum):
    STAGED = "staged"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"  # already staged with the same ETag: nothing to do
    BUSY = "busy"  # another worker holds the upload's lease: try again later
    PAUSED = "paused"  # stopped at ``stop_at`` after writing more rows: go on from the checkpoint

    @property
    def settled(self) -> bool:
        """True when the message can be deleted: a retry would change nothing."""
        return self in (Outcome.STAGED, Outcome.REJECTED, Outcome.DUPLICATE)


@dataclass(frozen=True, slots=True)
class UploadResult:
    upload_id: str
    vendor_id: str
    bucket: str
    key: str
    outcome: Outcome
    total: int = 0
    successful: int = 0
    failed: int = 0
    error: str | None = None
    seconds: float = 0.0
    retry_after: float | None = None  # BUSY: when the other worker's lease runs out
    resumed_from: int = 0  # rows of this object version written before this attempt
    checkpoint: int = 0  # rows of this object version written when this attempt ended


@dataclass(slots=True)
class RowCounts:
    total: int = 0
    successful: int = 0
    failed: int = 0


@dataclass(slots=True)
class _Upload:
    """What one processing attempt knows about its upload."""

    res: Resources
    ref: ObjectRef
    key: UploadKey
    started: float
    force: bool = False
    stop_at: float | None = None  # time.monotonic() past which no more rows are written
    land_by: float | None = None  # ... and by which the batches in flight must have landed
    counts: RowCounts = field(default_factory=RowCounts)
    resumed_from: int = 0
    checkpoint: int = 0

    def result(
        self, outcome: Outcome, error: str | None = None, *, retry_after: float | None = None
    ) -> UploadResult:
        return UploadResult(
            upload_id=self.key.upload_id,
            vendor_id=self.key.vendor_id,
            bucket=self.ref.bucket,
            key=self.ref.key,
            outcome=outcome,
            total=self.counts.total,
            successful=self.counts.successful,
            failed=self.counts.failed,
            error=error,
            seconds=time.monotonic() - self.started,
            retry_after=retry_after,
            resumed_from=self.resumed_from,
            checkpoint=self.checkpoint,
        )

    def record(self, etag: str | None, size: int | None) -> NewUpload:
        return NewUpload(
            upload_id=self.key.upload_id,
            vendor_id=self.key.vendor_id,
            file_name=self.key.file_name,
            bucket=self.ref.bucket,
            key=self.ref.key,
            etag=etag,
            size=size,
            uploaded_at=self.key.uploaded_at,
        )


async def process_object(
    res: Resources,
    ref: ObjectRef,
    *,
    force: bool = False,
    stop_at: float | None = None,
    land_by: float | None = None,
) -> UploadResult:
    """Stage one uploaded object; see the module docstring. ``force`` processes it even when it
    is already staged with the same ETag (an operator's ``reprocess``). Past ``stop_at`` (a
    ``time.monotonic()`` value: a Lambda deadline) it writes no more rows, lets the batches in
    flight land until ``land_by``, saves the checkpoint and returns ``PAUSED`` (or ``FAILED``
    if it wrote nothing)."""
    started = time.monotonic()
    try:
        key = parse_upload_key(ref.key)
    except UploadKeyError as exc:
        return await _reject_unparsable_key(res, ref, exc, started)
    upload = _Upload(res, ref, key, started, force, stop_at, land_by)
    with logs.bind(upload_id=key.upload_id, vendor_id=key.vendor_id):
        try:
            result = await _process(upload)
        except Exception as exc:  # a bug must not stop the worker: retry, then the DLQ
            log.exception("unexpected error while processing upload")
            result = upload.result(Outcome.FAILED, f"internal error: {type(exc).__name__}")
        log.info(
            "upload %s",
            result.outcome.value,
            extra={
                "outcome": result.outcome.value,
                "s3_key": ref.key,
                "total_records": result.total,
                "successful_records": result.successful,
                "failed_records": result.failed,
                "error": result.error,
                "seconds": round(result.seconds, 3),
                "resumed_from": result.resumed_from,
                "checkpoint": result.checkpoint,
            },
        )
        return result


async def _process(upload: _Upload) -> UploadResult:
    res, ref = upload.res, upload.ref
    try:
        async with open_object(res.s3, ref.bucket, ref.key) as obj:
            record = upload.record(obj.etag, obj.size)
            async with res.database.connection() as conn:
                claim = await UploadHistory(conn).claim(
                    record,
                    lease_seconds=res.settings.visibility_timeout_seconds,
                    reserve=RESERVE_ROWS,
                    force=upload.force,
                )
            if claim.state is ClaimState.DUPLICATE:
                if claim.status == "staged":  # its validation job may have been lost: ask again
                    await request_validation(res, upload.key.upload_id)
                return upload.result(Outcome.DUPLICATE)
            if claim.state is ClaimState.BUSY:
                return upload.result(
                    Outcome.BUSY,
                    "another worker is processing this upload",
                    retry_after=claim.lease_left,
                )
            return await _stage_claimed(upload, claim, obj.body)
    except PermanentError as exc:  # the object is gone: nothing was claimed
        return await _reject_unclaimed(upload, str(exc))
    except TransientError as exc:  # S3 or the database failed before the claim
        return upload.result(Outcome.FAILED, str(exc))


class _Paused(Exception):
    """``stop_at`` has passed: write no more rows."""


NEVER = float("inf")


def _loop_time(monotonic: float) -> float:
    """A ``time.monotonic()`` instant in the running loop's clock."""
    return asyncio.get_running_loop().time() + monotonic - time.monotonic()


async def _stage_claimed(upload: _Upload, claim: Claim, body: S3Body) -> UploadResult:
    """Everything after a successful claim; the upload never stays ``processing``."""
    res, key, counts = upload.res, upload.key, upload.counts
    upload.resumed_from = upload.checkpoint = claim.checkpoint
    lease = Lease(
        res.database, key.upload_id, claim.attempt, res.settings.visibility_timeout_seconds
    )

    def stored_as_row_error(item: Item, reason: str) -> Item:
        if item["status"]["S"] == STATUS_PENDING:
            counts.successful -= 1
            counts.failed += 1
        return refused_item(item, reason)

    writer = ItemWriter.from_settings(res.item_writes, res.settings, on_refused=stored_as_row_error)
    lease.progress = lambda: writer.confirmed_through
    writer.fence = lease.check  # no request, re-sends included, once the lease may be lost
    try:
        _check_vendor(key.vendor_id, claim.vendor_status)
        async with lease:
            try:
                await _write_rows(upload, claim, body, lease, writer)
            finally:
                upload.checkpoint = max(claim.checkpoint, writer.confirmed_through)
                res.metrics.record_throttled(key.vendor_id, writer.throttled_items)
        await _record_staged(upload, claim)
    except PermanentError as exc:
        return await _finish_rejected(upload, claim, str(exc))
    except LeaseLostError as exc:
        # Another attempt owns the upload: it records the outcome, this one stops here.
        return upload.result(Outcome.BUSY, str(exc))
    except _Paused:
        message = f"{PAUSED}: rows 1-{upload.checkpoint:,} are written; it goes on from there"
        await _finish_failed(upload, claim, message)
        went_on = upload.checkpoint > claim.checkpoint
        return upload.result(Outcome.PAUSED if went_on else Outcome.FAILED, message)
    except asyncio.CancelledError:
        # Shutdown: release the lease so the next worker can go on at once.
        await asyncio.shield(_finish_failed(upload, claim, INTERRUPTED))
        raise
    except Exception as exc:
        if isinstance(exc, TransientError):
            message = str(exc)
        else:
            log.exception("unexpected error while staging rows")
            message = f"internal error: {type(exc).__name__}"
        await _finish_failed(upload, claim, message)
        return upload.result(Outcome.FAILED, message)
    res.metrics.record(
        vendor_id=key.vendor_id,
        total=counts.total,
        successful=counts.successful,
        failed=counts.failed,
        seconds=time.monotonic() - upload.started,
    )
    try:
        await request_validation(res, key.upload_id)
    except TransientError as exc:
        # Staged, but its validation job is not queued: the message is retried, and the
        # redelivery (a duplicate of a staged upload) asks for the validation again.
        return upload.result(Outcome.FAILED, f"staged, but {exc}")
    return upload.result(Outcome.STAGED)


async def _record_staged(upload: _Upload, claim: Claim) -> None:
    async with upload.res.database.connection() as conn:
        held = await UploadHistory(conn).finish_staged(
            upload.key.upload_id,
            claim.attempt,
            total=upload.counts.total,
            successful=upload.counts.successful,
            failed=upload.counts.failed,
        )
    if not held:
        raise LeaseLostError("lease lost before the upload was recorded as staged")


def _check_vendor(vendor_id: str, status: str | None) -> None:
    if status is None:
        raise PermanentError(f"vendor {vendor_id!r} is not registered")
    if status != "active":
        raise PermanentError(f"vendor {vendor_id!r} is {status}, not active")


async def _write_rows(
    upload: _Upload, claim: Claim, body: S3Body, lease: Lease, writer: ItemWriter
) -> None:
    """Stream, type and stage every row; then remove surplus items of an older version.

    Row numbers are reserved in ``upload_history`` before their items are written, so that
    whatever happens to this worker, a later attempt knows which items may exist. Rows up to
    the claim's checkpoint were written by an earlier attempt on this object version: they are
    read and counted, not written again. The checkpoint is saved every ``CHECKPOINT_ROWS``.
    """
    res, key, counts = upload.res, upload.key, upload.counts
    items = ItemFactory(
        upload_id=key.upload_id,
        vendor_id=key.vendor_id,
        s3_key=key.key,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    reserved, written_before = claim.reserved_rows, claim.checkpoint
    stop_at = upload.stop_at if upload.stop_at is not None else NEVER
    async with writer:
        async for row_number, row in typed_rows(body, res.settings.s3_read_chunk_bytes):
            if row_number > reserved:
                reserved = row_number + RESERVE_ROWS - 1
                await lease.save(reserve_upto=reserved)
            elif row_number % CHECKPOINT_ROWS == 0 and row_number > written_before:
                await lease.save()
            lease.check()
            counts.total = row_number
            if isinstance(row, ProductRow):
                counts.successful += 1
            else:
                counts.failed += 1
            if row_number <= written_before:
                continue
            item = items.item(row_number, row)
            if stop_at == NEVER:
                await writer.put(item, row=row_number)
                continue
            try:  # the writer may make the reader wait (pacing): not past the deadline
                async with asyncio.timeout_at(_loop_time(stop_at)):
                    await writer.put(item, row=row_number)
            except TimeoutError:
                await writer.settle(upload.land_by or stop_at)
                raise _Paused from None
        try:  # the surplus of an older version, and the last batches: not past the deadline
            async with asyncio.timeout_at(None if stop_at == NEVER else _loop_time(stop_at)):
                for row_number in range(counts.total + 1, claim.previous_rows + 1):
                    lease.check()
                    await writer.delete(record_key(key.upload_id, row_number))
                await writer.flush()
        except TimeoutError:
            await writer.settle(upload.land_by or stop_at)
            raise _Paused from None


async def _delete_items(res: Resources, upload_id: str, rows: int) -> None:
    async with ItemWriter.from_settings(res.item_writes, res.settings) as writer:
        for row_number in range(1, rows + 1):
            await writer.delete(record_key(upload_id, row_number))


async def _finish_rejected(upload: _Upload, claim: Claim, message: str) -> UploadResult:
    """A rejected upload keeps no staging items: remove those this or an older version wrote."""
    res, upload_id = upload.res, upload.key.upload_id
    try:
        await _delete_items(res, upload_id, max(upload.counts.total, claim.previous_rows))
        async with res.database.connection() as conn:
            await UploadHistory(conn).finish_rejected(upload_id, claim.attempt, message)
    except TransientError as exc:
        failure = f"{message}; then removing its staged items failed: {exc}"
        await _finish_failed(upload, claim, failure)
        return upload.result(Outcome.FAILED, failure)
    upload.counts = RowCounts()
    return upload.result(Outcome.REJECTED, message)


async def _finish_failed(upload: _Upload, claim: Claim, message: str) -> None:
    try:
        async with upload.res.database.connection() as conn:
            await UploadHistory(conn).finish_failed(
                upload.key.upload_id,
                claim.attempt,
                message,
                rows_read=upload.counts.total,
                checkpoint=upload.checkpoint,
            )
    except Exception as exc:  # the lease runs out and the message comes back regardless
        log.warning("could not record the failure", extra={"error": str(exc)})


async def _reject_unclaimed(upload: _Upload, message: str) -> UploadResult:
    """Record a rejection without a claim (the object is gone) and remove any items left by
    earlier attempts. A staged upload stands; one under a live lease is left to its worker."""
    res, upload_id = upload.res, upload.key.upload_id
    try:
        async with res.database.connection() as conn:
            reserved = await UploadHistory(conn).record_rejected(upload.record(None, None), message)
        if reserved is None:
            return upload.result(Outcome.DUPLICATE, message)
        if reserved:
            await _delete_items(res, upload_id, reserved)
            async with res.database.connection() as conn:
                await UploadHistory(conn).clear_reserved(upload_id)
    except TransientError as exc:
        return upload.result(Outcome.FAILED, str(exc))
    return upload.result(Outcome.REJECTED, message)


async def _reject_unparsable_key(
    res: Resources, ref: ObjectRef, exc: UploadKeyError, started: float
) -> UploadResult:
    record = NewUpload(
        upload_id=rejected_upload_id(ref.bucket, ref.key),
        vendor_id=folder_vendor(ref.key),
        file_name=ref.key.rsplit("/", 1)[-1],
        bucket=ref.bucket,
        key=ref.key,
        etag=ref.etag,
        size=ref.size,
        uploaded_at=None,
    )
    outcome, error = Outcome.REJECTED, str(exc)
    with logs.bind(upload_id=record.upload_id, vendor_id=record.vendor_id):
        try:
            async with res.database.connection() as conn:
                await UploadHistory(conn).record_rejected(record, error)
        except TransientError as db_exc:
            outcome, error = Outcome.FAILED, str(db_exc)
        log.info(
            "upload %s",
            outcome.value,
            extra={"outcome": outcome.value, "s3_key": ref.key, "error": error},
        )
    return UploadResult(
        record.upload_id,
        record.vendor_id,
        ref.bucket,
        ref.key,
        outcome,
        error=error,
        seconds=time.monotonic() - started,
    )
