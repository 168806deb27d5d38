"""One validation run: staged rows → ``products`` (valid) and the error queue (invalid), the
vendor's report, the notice.

A run holds the upload: it takes the same fenced lease in ``upload_history`` as staging, so a
new version is never staged while a run validates the old one, and a duplicate job finds the
upload busy and is retried when the lease runs out. Every write is fenced: products in a
transaction that first locks the upload's row for this attempt, item statuses, error messages
and the report only while the lease is held, the counts by the attempt.

Rows are read back in row order (``row_order_ranges``) with a paginated Query, one page at a
time; each page's valid rows are upserted in one transaction, its invalid rows sent to the
error queue, then the items' statuses written. Validating an upload again changes nothing:
unchanged products are not rewritten, items whose status is already right are not written, and
a row already ``invalid`` is not sent to the error queue again. The vendor notice is sent until
it is recorded as sent, once per upload version.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.aws.item_writer import ItemWriter
from worker.core.errors import (
    ConfigurationError,
    LeaseLostError,
    PermanentError,
    TransientError,
    UploadBusyError,
)
from worker.core.items import Item, record_id, refused_item, row_order_ranges
from worker.core.report import SAMPLE_ERRORS, ReportSummary, csv_header, csv_lines, report_keys
from worker.core.rules import UploadRules, Violation
from worker.postgres.lease import Lease
from worker.postgres.products import upsert_products
from worker.postgres.uploads import ClaimState, StagedUpload, UploadHistory
from worker.resources import Resources
from worker.validation.error_queue import error_message, send_errors
from worker.validation.judge import STATUS_INVALID, Verdict, judge, product_record, with_new_status
from worker.validation.publish import notify, put_report

log = logging.getLogger(__name__)

# The CSV of broken rules stays in memory up to this size, then moves to a temporary file.
SPOOL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ValidationResult:
    upload_id: str
    vendor_id: str
    total: int
    valid: int
    invalid: int
    superseded: int
    bucket: str
    report_key: str
    errors_key: str
    notice_sent: bool


async def validate_upload(res: Resources, upload_id: str) -> ValidationResult:
    """Validate a staged (or already validated) upload. :class:`PermanentError` when there is
    no such upload or it is not staged; :class:`UploadBusyError` while another run or a new
    version's staging holds it; :class:`LeaseLostError` when the hold was lost mid-run."""
    _, error_queue = res.settings.require_validation_queues()
    lease_seconds = res.settings.visibility_timeout_seconds
    async with res.database.connection() as conn:
        claim = await UploadHistory(conn).claim_validation(upload_id, lease_seconds=lease_seconds)
    if claim.state is ClaimState.BUSY:
        raise UploadBusyError(f"upload {upload_id} is held by another run", claim.lease_left)
    if claim.upload is None:
        raise PermanentError(claim.reason)
    upload = claim.upload
    notice_sent = False
    try:
        async with Lease(res.database, upload_id, upload.attempt, lease_seconds) as lease:
            run = _Run(res, upload, lease, error_queue)
            summary = await run.validate()
            async with res.database.connection() as conn:
                pending = await UploadHistory(conn).record_validated(
                    upload_id,
                    upload.attempt,
                    valid=summary.valid_records,
                    invalid=summary.invalid_records,
                    superseded=summary.superseded_records,
                )
            if pending is None:
                raise LeaseLostError("lease lost before the upload was recorded as validated")
            if pending:
                notice_sent = await notify(res, summary)
    finally:
        await _release(res, upload, notice_sent=notice_sent)
    report_key, errors_key = report_keys(upload.vendor_id, upload_id)
    return ValidationResult(
        upload_id,
        upload.vendor_id,
        summary.total_records,
        summary.valid_records,
        summary.invalid_records,
        summary.superseded_records,
        upload.bucket,
        report_key,
        errors_key,
        notice_sent,
    )


async def _release(res: Resources, upload: StagedUpload, *, notice_sent: bool) -> None:
    """End the hold at once (a retry need not wait for the lease to run out)."""
    try:
        async with res.database.connection() as conn:
            await UploadHistory(conn).release(
                upload.upload_id, upload.attempt, notice_sent=notice_sent
            )
    except (TransientError, ConfigurationError) as exc:
        log.warning("could not release the upload; its lease runs out", extra={"error": str(exc)})


class _Run:
    def __init__(
        self, res: Resources, upload: StagedUpload, lease: Lease, error_queue: str
    ) -> None:
        self._res = res
        self._upload = upload
        self._lease = lease
        self._error_queue = error_queue
        self._rules = UploadRules()
        self.total = self.valid = self.invalid = self.superseded = 0
        self._samples: list[dict[str, Any]] = []
        self._superseded_samples: list[dict[str, Any]] = []

    async def validate(self) -> ReportSummary:
        upload = self._upload
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b") as errors_csv:
            errors_csv.write(csv_header().encode())
            async with ItemWriter.from_settings(
                self._res.item_writes, self._res.settings, on_refused=refused_item
            ) as writer:
                writer.fence = self._lease.check
                async for page in _pages(self._res, upload.upload_id, upload.total_records):
                    await self._page(page, writer, errors_csv)
                self._lease.check()  # lost: the batches still in flight are cancelled
            errors_csv.seek(0)
            summary = ReportSummary(
                upload_id=upload.upload_id,
                vendor_id=upload.vendor_id,
                s3_key=upload.key,
                validated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                total_records=self.total,
                valid_records=self.valid,
                invalid_records=self.invalid,
                errors_csv_key=report_keys(upload.vendor_id, upload.upload_id)[1],
                sample_errors=self._samples,
                superseded_records=self.superseded,
                sample_superseded=self._superseded_samples,
            )
            self._lease.check()
            await put_report(self._res, upload.bucket, summary, errors_csv)
        return summary

    async def _page(self, page: list[Item], writer: ItemWriter, errors_csv: IO[bytes]) -> None:
        upload = self._upload
        verdicts = [judge(self._rules, item) for item in page]
        valid = [v for v in verdicts if not v.violations]
        records = [
            product_record(upload.vendor_id, upload.upload_id, upload.uploaded_at, v.data)
            for v in valid
        ]
        refused: dict[int, str] = {}  # row number → PostgreSQL's reason
        if records:
            async with self._res.database.connection() as conn, conn.transaction():
                if not await UploadHistory(conn).hold(upload.upload_id, upload.attempt):
                    raise LeaseLostError("lease lost: another attempt owns the upload now")
                upserted = await upsert_products(conn, records)
            refused = {valid[i].row_number: reason for i, reason in upserted.refused.items()}
            for verdict in valid:
                product_id = str(verdict.data.get("vendor_product_id", ""))
                newer = upserted.superseded.get(product_id)
                if newer is None:
                    continue
                self.superseded += 1
                if len(self._superseded_samples) < SAMPLE_ERRORS:
                    self._superseded_samples.append(
                        {
                            "row_number": verdict.row_number,
                            "vendor_product_id": product_id,
                            "superseded_by": newer,
                        }
                    )
        messages: list[dict[str, Any]] = []
        updates: list[Item] = []
        for item, verdict in zip(page, verdicts, strict=True):
            if (reason := refused.get(verdict.row_number)) is not None:
                self._rules.forget(verdict.row_number)
                violation = Violation("row", "", f"refused by the database: {reason}")
                verdict = dataclasses.replace(verdict, violations=[violation])
            self.total += 1
            if verdict.violations:
                self.invalid += 1
                self._broken(verdict, errors_csv)
                if verdict.status != STATUS_INVALID:
                    messages.append(
                        error_message(
                            upload.upload_id,
                            upload.vendor_id,
                            upload.key,
                            verdict,
                            s3_etag=upload.etag,
                        )
                    )
            else:
                self.valid += 1
            if (updated := with_new_status(item, verdict)) is not None:
                updates.append(updated)
        self._lease.check()
        await send_errors(self._res.sqs, self._error_queue, messages)
        for updated in updates:  # (the writer checks the lease before every request)
            await writer.put(updated)

    def _broken(self, verdict: Verdict, errors_csv: IO[bytes]) -> None:
        errors_csv.write(
            csv_lines(
                verdict.row_number,
                verdict.record_id,
                str(verdict.data.get("vendor_product_id", "")),
                verdict.violations,
            ).encode()
        )
        if len(self._samples) < SAMPLE_ERRORS:
            self._samples.append(
                {
                    "row_number": verdict.row_number,
                    "errors": [v.as_dict() for v in verdict.violations],
                }
            )


async def _pages(res: Resources, upload_id: str, total_rows: int) -> AsyncIterator[list[Item]]:
    """The upload's items in row order, one Query page at a time (never all in memory)."""
    ranges = row_order_ranges(total_rows)
    for first, last in ranges:
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": res.settings.dynamodb_table,
                "KeyConditionExpression": "upload_id = :u AND record_id BETWEEN :first AND :last",
                "ExpressionAttributeValues": {
                    ":u": {"S": upload_id},
                    ":first": {"S": record_id(first)},
                    ":last": {"S": record_id(last)},
                },
                "ConsistentRead": True,
            }
            if len(ranges) > 1:  # the other widths sort inside this range too: leave them out
                kwargs["FilterExpression"] = "row_number BETWEEN :low AND :high"
                kwargs["ExpressionAttributeValues"] |= {
                    ":low": {"N": str(first)},
                    ":high": {"N": str(last)},
                }
            if start:
                kwargs["ExclusiveStartKey"] = start
            try:
                page = await res.dynamodb.query(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise TransientError(f"DynamoDB Query: {error_code(exc)}") from exc
            yield cast("list[Item]", page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
