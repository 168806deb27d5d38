"""``vendor-onboarding demo``: the whole ingest flow on the local stack, with a summary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources

import aioboto3

from worker.consumer import Consumer
from worker.local import stack
from worker.runtime import Runtime
from worker.settings import Settings
from worker.table import render_table

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
    successful: int
    failed: int
    items: int
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


async def summarise(rt: Runtime, uploaded: list[tuple[str, str]]) -> list[DemoRow]:
    rows = []
    async with rt.database.connection() as conn:
        for what, key in uploaded:
            record = await conn.fetchrow(
                """SELECT upload_id, status, total_records, successful_records, failed_records,
                          error_message FROM upload_history WHERE s3_key = $1""",
                key,
            )
            if record is None:
                rows.append(DemoRow(what, key, "not processed", 0, 0, 0, 0, ""))
                continue
            response = await rt.dynamodb.query(
                TableName=rt.settings.dynamodb_table,
                KeyConditionExpression="upload_id = :u",
                ExpressionAttributeValues={":u": {"S": record["upload_id"]}},
                Select="COUNT",
            )
            rows.append(
                DemoRow(
                    what,
                    key,
                    record["status"],
                    record["total_records"],
                    record["successful_records"],
                    record["failed_records"],
                    response["Count"],
                    record["error_message"] or "",
                    await _row_errors(rt, record["upload_id"]),
                )
            )
    return rows


async def _row_errors(rt: Runtime, upload_id: str) -> tuple[str, ...]:
    """``row N: field: message`` for the items that could not be typed."""
    response = await rt.dynamodb.query(
        TableName=rt.settings.dynamodb_table,
        KeyConditionExpression="upload_id = :u",
        FilterExpression="#s = :e",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":u": {"S": upload_id}, ":e": {"S": "parse_error"}},
    )
    return tuple(
        f"row {item['row_number']['N']}: {error['M']['field']['S']}: {error['M']['message']['S']}"
        for item in response["Items"]
        for error in item["errors"]["L"]
    )


def render(rows: list[DemoRow]) -> str:
    return render_table(
        ("upload", "status", "rows", "ok", "bad", "items", "key / error"),
        [
            (r.what, r.status, str(r.total), str(r.successful), str(r.failed), str(r.items), r.key)
            for r in rows
        ],
        [(r.error, *r.row_errors) for r in rows],
    )


async def run_demo(database_url: str | None, *, keep: bool) -> list[DemoRow]:
    local = await stack.up(database_url)
    settings = local.settings.model_copy(update={"receive_wait_seconds": 1})
    try:
        uploaded = await upload_samples(settings, local.bucket)
        async with Runtime.open(settings) as rt:
            await Consumer(rt).run(drain=True)
            return await summarise(rt, uploaded)
    finally:
        if not keep:
            stack.down(moto=local.started_moto, postgres=local.started_postgres)
