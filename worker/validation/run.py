"""One validation run: staged rows → ``products`` (valid) and the error queue (invalid), the
vendor's report, the notice.

Rows are read back with a paginated Query, one page at a time; each page's valid rows are
upserted in one transaction, its invalid rows sent to the error queue, then the items'
statuses written. Validating an upload again changes nothing: unchanged products are not
rewritten, items whose status is already right are not written, and a row already ``invalid``
is not sent to the error queue again.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.aws.item_writer import ItemWriter
from worker.core.errors import PermanentError, TransientError
from worker.core.items import Item
from worker.core.report import SAMPLE_ERRORS, ReportSummary, csv_header, csv_lines, report_keys
from worker.core.rules import UploadRules
from worker.postgres.products import upsert_products
from worker.postgres.uploads import UploadHistory
from worker.resources import Resources
from worker.validation.error_queue import error_message, send_errors
from worker.validation.judge import STATUS_INVALID, judge, product_record, with_new_status
from worker.validation.publish import notify, put_report

# The CSV of broken rules stays in memory up to this size, then moves to a temporary file.
SPOOL_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ValidationResult:
    upload_id: str
    vendor_id: str
    total: int
    valid: int
    invalid: int
    bucket: str
    report_key: str
    errors_key: str
    notice_sent: bool


async def validate_upload(res: Resources, upload_id: str) -> ValidationResult:
    """Validate a staged (or already validated) upload; :class:`PermanentError` when there is
    no such upload or it is not staged."""
    _, error_queue = res.settings.require_validation_queues()
    async with res.database.connection() as conn:
        upload = await UploadHistory(conn).get(upload_id)
    if upload is None:
        raise PermanentError(f"no upload {upload_id!r}")
    if upload.status not in ("staged", "validated"):
        raise PermanentError(f"upload {upload_id} is {upload.status}, not staged")
    vendor_id = upload.vendor_id
    rules = UploadRules()
    total = valid = invalid = 0
    samples: list[dict[str, Any]] = []
    report_key, errors_key = report_keys(vendor_id, upload_id)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b") as errors_csv:
        errors_csv.write(csv_header().encode())
        async with ItemWriter.from_settings(res.item_writes, res.settings) as writer:
            async for page in _pages(res, upload_id):
                products: list[tuple[Any, ...]] = []
                messages: list[dict[str, Any]] = []
                updates: list[Item] = []
                for item in page:
                    total += 1
                    verdict = judge(rules, item)
                    if verdict.violations:
                        invalid += 1
                        errors_csv.write(
                            csv_lines(
                                verdict.row_number,
                                verdict.record_id,
                                str(verdict.data.get("vendor_product_id", "")),
                                verdict.violations,
                            ).encode()
                        )
                        if len(samples) < SAMPLE_ERRORS:
                            samples.append(
                                {
                                    "row_number": verdict.row_number,
                                    "errors": [v.as_dict() for v in verdict.violations],
                                }
                            )
                        if verdict.status != STATUS_INVALID:
                            messages.append(
                                error_message(upload_id, vendor_id, upload.key, verdict)
                            )
                    else:
                        valid += 1
                        products.append(product_record(vendor_id, upload_id, verdict.data))
                    if (updated := with_new_status(item, verdict)) is not None:
                        updates.append(updated)
                if products:
                    async with res.database.connection() as conn:
                        await upsert_products(conn, products)
                await send_errors(res.sqs, error_queue, messages)
                for updated in updates:
                    await writer.put(updated)
        errors_csv.seek(0)
        summary = ReportSummary(
            upload_id=upload_id,
            vendor_id=vendor_id,
            s3_key=upload.key,
            validated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            total_records=total,
            valid_records=valid,
            invalid_records=invalid,
            errors_csv_key=errors_key,
            sample_errors=samples,
        )
        await put_report(res, upload.bucket, summary, errors_csv)
    async with res.database.connection() as conn:
        first_time = await UploadHistory(conn).record_validated(
            upload_id, valid=valid, invalid=invalid
        )
    notice_sent = first_time and await notify(res, summary)
    return ValidationResult(
        upload_id,
        vendor_id,
        total,
        valid,
        invalid,
        upload.bucket,
        report_key,
        errors_key,
        notice_sent,
    )


async def _pages(res: Resources, upload_id: str) -> AsyncIterator[list[Item]]:
    """The upload's items, one Query page at a time (never all of them in memory)."""
    start: dict[str, Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": res.settings.dynamodb_table,
            "KeyConditionExpression": "upload_id = :u",
            "ExpressionAttributeValues": {":u": {"S": upload_id}},
            "ConsistentRead": True,
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
            return
