"""The baseline: the ingest Lambda as the tutorials write it.

Synchronous boto3; the whole object read into memory; ``csv.DictReader``; one
``Table.batch_writer()`` per file with ``put_item`` for every row, the item a plain dict with
``Decimal`` prices and ``int`` stock (boto3's resource layer serialises and validates it).
The items carry the same attributes as the worker's, so both write the same data.

``python -m bench.tutorial CONFIG_JSON REPORT_JSON`` calls the handler once per S3 record, one
file after the other, as a Lambda invocation per file would. ``AWS_ENDPOINT_URL`` points boto3 at
the moto server.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import urllib.parse
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import boto3

from bench.measure import Window

# --- the tutorial's code, as written -------------------------------------------------------

TABLE_NAME = os.environ.get("DYNAMODB_TABLE", "UploadRecords")
s3 = boto3.client("s3")
table = boto3.resource("dynamodb").Table(TABLE_NAME)

DECIMAL_FIELDS = ("price", "compare_at_price", "weight_kg")
INT_FIELDS = ("stock_quantity",)
REQUIRED_FIELDS = ("vendor_product_id", "product_name", "category", "sku", "price")


def lambda_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    processed = 0
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        processed += process_file(bucket, key)
    return {"statusCode": 200, "body": json.dumps({"processed": processed})}


def process_file(bucket: str, key: str) -> int:
    vendor_id = key.split("/")[1]
    stamp = key.rsplit("/", 1)[-1].removesuffix(".csv").split("_", 1)[1]
    upload_id = f"UPLOAD_{vendor_id}_{stamp}"
    created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

    response = s3.get_object(Bucket=bucket, Key=key)
    content = response["Body"].read().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(content))

    count = 0
    with table.batch_writer() as batch:
        for row_number, row in enumerate(reader, start=1):
            item = {
                "upload_id": upload_id,
                "record_id": f"REC_{row_number:05d}",
                "vendor_id": vendor_id,
                "row_number": row_number,
                "s3_key": key,
                "created_at": created_at,
            }
            try:
                item["product_data"] = parse_row(row)
                item["status"] = "pending_validation"
            except (ValueError, InvalidOperation) as exc:
                item["raw_data"] = {k: v for k, v in row.items() if k and v is not None}
                item["errors"] = [{"field": "row", "message": str(exc)}]
                item["status"] = "parse_error"
            batch.put_item(Item=item)
            count += 1
    return count


def parse_row(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, value in row.items():
        value = (value or "").strip()
        if not value:
            continue
        if name in DECIMAL_FIELDS:
            data[name] = Decimal(value)
        elif name in INT_FIELDS:
            data[name] = int(value)
        else:
            data[name] = value
    for name in REQUIRED_FIELDS:
        if name not in data:
            raise ValueError(f"{name} is required")
    return data


# --- the benchmark's harness ----------------------------------------------------------------


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    rows = 0
    with Window() as window:
        for key in config["keys"]:
            event = {
                "Records": [{"s3": {"bucket": {"name": config["bucket"]}, "object": {"key": key}}}]
            }
            result = lambda_handler(event, None)
            rows += json.loads(result["body"])["processed"]
    window.write(argv[1], rows=rows, files=len(config["keys"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
