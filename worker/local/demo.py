"""``vendor-onboarding demo``: the whole journey on the local stack (upload → staged →
validated → products and a report), with a summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import aioboto3

from worker.core.report import report_keys
from worker.local import stack
from worker.postgres.products import count_from_upload
from worker.postgres.uploads import UploadHistory
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.runtimes.text_table import render_table
from worker.settings import Settings

# (vendor, sample file, what it shows)
DEMO_UPLOADS = (
    ("ACME", "clean.csv", "a clean file"),
    ("GLOBEX", "bad_rows.csv", "a file with bad rows"),
    ("INITECH", "clean.csv", "a file from a suspended vendor"),
    ("ACME", "broken_header.csv", "a file with a broken header"),
)


@dataclass(frozen=True)
class DemoRow:
    what: str
    key: str
    status: str
    total: int
    valid: int
    invalid: int
    products: int
    report: str
    error: str
    row_errors: tuple[str, ...] = ()


async def upload_samples(settings: Settings, bucket: str) -> list[tuple[str, str]]:
    """Put the sample files under fresh keys; return ``(what, key)`` for each."""
    now = datetime.now(UTC)
    uploaded = []
    session = aioboto3.Session()
    async with session.client(
        "s3", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region
    ) as s3:
        for offset, (vendor, sample, what) in enumerate(DEMO_UPLOADS):
            stamp = (now + timedelta(seconds=offset)).strftime("%Y%m%d_%H%M%S")
            key = f"uploads/{vendor}/{vendor}_{stamp}.csv"
            body = resources.files("worker.local").joinpath("samples", sample).read_bytes()
            await s3.put_object(Bucket=bucket, Key=key, Body=body)
            uploaded.append((what, key))
    return uploaded


async def summarise(res: Resources, uploaded: list[tuple[str, str]]) -> list[DemoRow]:
    rows = []
    async with res.database.connection() as conn:
        for what, key in uploaded:
            record = await UploadHistory(conn).find_by_key(key)
            if record is None:
                rows.append(DemoRow(what, key, "not processed", 0, 0, 0, 0, "", ""))
                continue
            validated = record["status"] == "validated"
            rows.append(
                DemoRow(
                    what,
                    key,
                    record["status"],
                    record["total_records"],
                    record["valid_records"] or 0,
                    record["invalid_records"] or 0,
                    await count_from_upload(conn, record["upload_id"]),
                    report_keys(record["vendor_id"], record["upload_id"])[0] if validated else "",
                    record["error_message"] or "",
                    await _row_errors(res, record["upload_id"]) if validated else (),
                )
            )
    return rows


async def _row_errors(res: Resources, upload_id: str) -> tuple[str, ...]:
    """``row N: field: message`` for the rows the validation stage turned down."""
    response = await res.dynamodb.query(
        TableName=res.settings.dynamodb_table,
        KeyConditionExpression="upload_id = :u",
        FilterExpression="#s = :invalid",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":u": {"S": upload_id}, ":invalid": {"S": "invalid"}},
    )
    return tuple(
        f"row {item['row_number']['N']}: {error['M']['field']['S']}: {error['M']['message']['S']}"
        for item in response["Items"]
        for error in item["errors"]["L"]
    )


def render(rows: list[DemoRow]) -> str:
    return render_table(
        ("upload", "status", "rows", "valid", "invalid", "products", "key / report / problems"),
        [
            (
                r.what,
                r.status,
                str(r.total),
                str(r.valid),
                str(r.invalid),
                str(r.products),
                r.key,
            )
            for r in rows
        ],
        [(f"report: {r.report}" if r.report else "", r.error, *r.row_errors) for r in rows],
    )


async def run_demo(database_url: str | None, *, keep: bool) -> list[DemoRow]:
    local = await stack.up(database_url)
    settings = local.settings.model_copy(update={"receive_wait_seconds": 1})
    try:
        uploaded = await upload_samples(settings, local.bucket)
        async with Resources.open(settings) as res:
            await Consumer(res).run(drain=True)  # stage: queues a validation job per upload
            await Consumer(res, stage="validation").run(drain=True)
            return await summarise(res, uploaded)
    finally:
        if not keep:
            stack.down(moto=local.started_moto, postgres=local.started_postgres)
