"""The validation stage: staged rows → ``products`` (valid) and the error queue (invalid), a
report for the vendor, a notice on SNS.

One job per upload (``{"upload_id": ...}`` on the validation queue). Rows are read back with a
paginated Query, one page at a time; each page's valid rows are upserted in one transaction
(COPY into a temporary table, then one ``INSERT ... ON CONFLICT DO UPDATE``), its invalid rows
sent to the error queue, then the items' statuses written. Validating an upload again changes
nothing: unchanged products are not rewritten, items whose status is already right are not
written, and a row already ``invalid`` is not sent to the error queue again.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from worker import logs
from worker.aws_errors import error_code
from worker.disposition import DELETE, Action, Disposition
from worker.errors import PermanentError, TransientError
from worker.items import STATUS_PARSE_ERROR
from worker.report import SAMPLE_ERRORS, ReportSummary, csv_header, csv_lines, report_keys
from worker.rows import COLUMNS
from worker.rules import UploadRules, Violation
from worker.runtime import Runtime
from worker.staging import StagingWriter

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

STATUS_VALIDATED = "validated"
STATUS_INVALID = "invalid"
# The products table's columns, in the order the records below are built.
PRODUCT_COLUMNS = ("vendor_id", *COLUMNS, "extra", "upload_id")
_NUMERIC = frozenset({"price", "compare_at_price", "weight_kg"})
_UPSERT = f"""
INSERT INTO products ({", ".join(PRODUCT_COLUMNS)}, updated_at)
SELECT {", ".join(PRODUCT_COLUMNS)}, now() FROM staged_products
ON CONFLICT (vendor_id, vendor_product_id) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in PRODUCT_COLUMNS[2:])}, updated_at = now()
WHERE ({", ".join(f"products.{c}" for c in PRODUCT_COLUMNS[2:])})
      IS DISTINCT FROM ({", ".join(f"EXCLUDED.{c}" for c in PRODUCT_COLUMNS[2:])})
"""
_deserializer = TypeDeserializer()


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


async def handle_validation(rt: Runtime, body: str) -> Disposition:
    """A validation job from the queue."""
    upload_id = _job_upload_id(body)
    if upload_id is None:
        return Disposition(Action.DEAD_LETTER, 'not a validation job: expected {"upload_id": ...}')
    with logs.bind(upload_id=upload_id):
        try:
            result = await validate_upload(rt, upload_id)
        except PermanentError as exc:
            log.warning("validation skipped", extra={"reason": str(exc)})
            return DELETE
        except TransientError as exc:
            log.warning("validation failed; will retry", extra={"error": str(exc)})
            return Disposition(Action.RETRY, str(exc))
        log.info(
            "upload validated",
            extra={"valid_records": result.valid, "invalid_records": result.invalid},
        )
    return DELETE


def _job_upload_id(body: str) -> str | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    upload_id = document.get("upload_id") if isinstance(document, dict) else None
    return upload_id if isinstance(upload_id, str) and upload_id else None


async def request_validation(rt: Runtime, upload_id: str) -> None:
    """Queue the validation job of a staged upload (no-op without a validation queue)."""
    queue_url = rt.settings.validation_queue_url
    if not queue_url:
        return
    try:
        await rt.sqs.send_message(
            QueueUrl=queue_url, MessageBody=json.dumps({"upload_id": upload_id})
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not queue validation: {error_code(exc)}") from exc


async def validate_upload(rt: Runtime, upload_id: str) -> ValidationResult:
    _, error_queue = rt.settings.require_validation_queues()
    async with rt.database.connection() as conn:
        upload = await conn.fetchrow(
            "SELECT vendor_id, status, s3_bucket, s3_key FROM upload_history WHERE upload_id = $1",
            upload_id,
        )
    if upload is None:
        raise PermanentError(f"no upload {upload_id!r}")
    if upload["status"] not in ("staged", "validated"):
        raise PermanentError(f"upload {upload_id} is {upload['status']}, not staged")
    vendor_id: str = upload["vendor_id"]
    rules = UploadRules()
    total = valid = invalid = 0
    samples: list[dict[str, Any]] = []
    with tempfile.SpooledTemporaryFile(max_size=4 * 1024 * 1024, mode="w+b") as errors_csv:
        errors_csv.write(csv_header().encode())
        async with StagingWriter.from_settings(rt.dynamodb, rt.settings) as writer:
            async for page in _pages(rt, upload_id):
                products: list[tuple[Any, ...]] = []
                messages: list[dict[str, Any]] = []
                updates: list[dict[str, Any]] = []
                for item in page:
                    total += 1
                    verdict = _judge(rules, item)
                    data = verdict.data
                    record_id = item["record_id"]["S"]
                    if verdict.violations:
                        invalid += 1
                        errors_csv.write(
                            csv_lines(
                                verdict.row_number,
                                record_id,
                                str(data.get("vendor_product_id", "")),
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
                        if item["status"]["S"] != STATUS_INVALID:
                            messages.append(_error_message(upload_id, vendor_id, item, verdict))
                    else:
                        valid += 1
                        products.append(_product_record(vendor_id, upload_id, data))
                    if (updated := _with_status(item, verdict.violations)) is not None:
                        updates.append(updated)
                if products:
                    await _upsert_products(rt, products)
                await _send_errors(rt, error_queue, messages)
                for updated in updates:
                    await writer.put(updated)
        errors_csv.seek(0)
        summary = ReportSummary(
            upload_id=upload_id,
            vendor_id=vendor_id,
            s3_key=upload["s3_key"],
            validated_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            total_records=total,
            valid_records=valid,
            invalid_records=invalid,
            errors_csv_key=report_keys(vendor_id, upload_id)[1],
            sample_errors=samples,
        )
        await _put_report(rt, upload["s3_bucket"], summary, errors_csv)
    async with rt.database.connection() as conn:
        first_time = await _record_validated(conn, upload_id, valid=valid, invalid=invalid)
    notice_sent = first_time and await _notify(rt, summary)
    report_key, errors_key = report_keys(vendor_id, upload_id)
    return ValidationResult(
        upload_id,
        vendor_id,
        total,
        valid,
        invalid,
        upload["s3_bucket"],
        report_key,
        errors_key,
        notice_sent,
    )


async def _pages(rt: Runtime, upload_id: str) -> Any:
    """The upload's items, one Query page at a time (never all of them in memory)."""
    start: dict[str, Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": rt.settings.dynamodb_table,
            "KeyConditionExpression": "upload_id = :u",
            "ExpressionAttributeValues": {":u": {"S": upload_id}},
            "ConsistentRead": True,
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        try:
            page = await rt.dynamodb.query(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"DynamoDB Query: {error_code(exc)}") from exc
        yield page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return


@dataclass(frozen=True)
class _Verdict:
    row_number: int
    data: dict[str, Any]
    violations: list[Violation]


def _judge(rules: UploadRules, item: dict[str, Any]) -> _Verdict:
    row_number = int(item["row_number"]["N"])
    if item["status"]["S"] == STATUS_PARSE_ERROR or "product_data" not in item:
        raw = _deserializer.deserialize(item.get("raw_data", {"M": {}}))
        errors = _deserializer.deserialize(item.get("errors", {"L": []}))
        return _Verdict(
            row_number,
            raw,
            [
                Violation(
                    str(e.get("field", "")),
                    str(raw.get(e.get("field"), "")),
                    str(e.get("message", "")),
                )
                for e in errors
            ],
        )
    data = _deserializer.deserialize(item["product_data"])
    return _Verdict(row_number, data, rules.check(row_number, data))


def _with_status(item: dict[str, Any], violations: list[Violation]) -> dict[str, Any] | None:
    """The item with its new status, or None when it already has it."""
    if item["status"]["S"] == STATUS_PARSE_ERROR and not violations:
        return None  # cannot happen: a parse error always has its errors
    status = STATUS_INVALID if violations else STATUS_VALIDATED
    if item["status"]["S"] == status:
        return None
    updated = dict(item)
    updated["status"] = {"S": status}
    if violations:
        updated["errors"] = {
            "L": [
                {"M": {"field": {"S": v.field}, "message": {"S": v.rule}, "value": {"S": v.value}}}
                for v in violations
            ]
        }
    else:
        updated.pop("errors", None)
    return updated


def _product_record(vendor_id: str, upload_id: str, data: dict[str, Any]) -> tuple[Any, ...]:
    def column(name: str) -> Any:
        value = data.get(name)
        if value is None:
            return None
        if name == "stock_quantity":
            return int(value)
        return Decimal(value) if name in _NUMERIC else value

    extra = json.dumps(data.get("extra", {}), sort_keys=True)
    return (vendor_id, *(column(name) for name in COLUMNS), extra, upload_id)


async def _upsert_products(rt: Runtime, records: list[tuple[Any, ...]]) -> None:
    async with rt.database.connection() as conn, conn.transaction():
        await conn.execute(
            "CREATE TEMPORARY TABLE staged_products "
            "(LIKE products INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            "staged_products", records=records, columns=PRODUCT_COLUMNS
        )
        await conn.execute(_UPSERT)


def _error_message(
    upload_id: str, vendor_id: str, item: dict[str, Any], verdict: _Verdict
) -> dict[str, Any]:
    record_id = item["record_id"]["S"]
    body = {
        "upload_id": upload_id,
        "record_id": record_id,
        "row_number": verdict.row_number,
        "vendor_id": vendor_id,
        "s3_key": item.get("s3_key", {}).get("S", ""),
        "errors": [v.as_dict() for v in verdict.violations],
        "data": {k: str(v) if isinstance(v, Decimal) else v for k, v in verdict.data.items()},
    }
    return {
        "MessageBody": json.dumps(body, default=str),
        "MessageAttributes": {
            "upload_id": {"DataType": "String", "StringValue": upload_id},
            "record_id": {"DataType": "String", "StringValue": record_id},
        },
    }


class _Unsent(Exception):
    pass


async def _send_errors(rt: Runtime, queue_url: str, messages: list[dict[str, Any]]) -> None:
    """SendMessageBatch, 10 at a time, re-sending only the entries that failed."""
    for start in range(0, len(messages), 10):
        pending = {str(i): m for i, m in enumerate(messages[start : start + 10])}
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((_Unsent, ClientError, BotoCoreError)),
            wait=wait_random_exponential(multiplier=0.1, max=5),
            stop=stop_after_attempt(rt.settings.staging_max_attempts),
            reraise=True,
        ):
            with attempt:
                response = await rt.sqs.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=cast(
                        "list[SendMessageBatchRequestEntryTypeDef]",
                        [{"Id": i, **m} for i, m in pending.items()],
                    ),
                )
                for entry in response.get("Successful", []):
                    pending.pop(entry["Id"], None)
                if pending:
                    raise _Unsent(f"{len(pending)} error message(s) not sent")
        if pending:
            raise TransientError(f"{len(pending)} error message(s) could not be sent")


async def _put_report(rt: Runtime, bucket: str, summary: ReportSummary, errors_csv: Any) -> None:
    json_key, csv_key = report_keys(summary.vendor_id, summary.upload_id)
    try:
        await rt.s3.put_object(
            Bucket=bucket,
            Key=json_key,
            Body=json.dumps(summary.document(), indent=2).encode(),
            ContentType="application/json",
        )
        await rt.s3.put_object(
            Bucket=bucket, Key=csv_key, Body=errors_csv.read(), ContentType="text/csv"
        )
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not write the report: {error_code(exc)}") from exc


async def _record_validated(
    conn: asyncpg.Connection, upload_id: str, *, valid: int, invalid: int
) -> bool:
    """Record the counts; True when this is the upload's first validation."""
    previous: str | None = await conn.fetchval(
        """WITH before AS (SELECT status FROM upload_history WHERE upload_id = $1)
           UPDATE upload_history SET status = 'validated', valid_records = $2,
                  invalid_records = $3, processing_completed_at = now(), updated_at = now()
           WHERE upload_id = $1 AND status IN ('staged', 'validated')
           RETURNING (SELECT status FROM before)""",
        upload_id,
        valid,
        invalid,
    )
    return previous == "staged"


async def _notify(rt: Runtime, summary: ReportSummary) -> bool:
    topic = rt.settings.notice_topic_arn
    if not topic:
        return False
    try:
        await rt.sns.publish(
            TopicArn=topic,
            Subject=f"Upload {summary.upload_id}: {summary.valid_records} valid, "
            f"{summary.invalid_records} invalid"[:100],
            Message=json.dumps(
                {
                    **summary.document(),
                    "report_key": report_keys(summary.vendor_id, summary.upload_id)[0],
                }
            ),
            MessageAttributes={
                "vendor_id": {"DataType": "String", "StringValue": summary.vendor_id}
            },
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not publish the vendor notice", extra={"error": error_code(exc)})
        return False
    return True
