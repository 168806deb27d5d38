"""The ceiling: how many BatchWriteItem items per second the server absorbs from a client that
does nothing else.

The items are the worker's own (``worker.core.items.ItemFactory`` over the same CSV files), built in
DynamoDB's wire format *before* the clock starts; the timed part only sends them, 25 per call,
``batches_in_flight`` calls at once, on one aiobotocore client with parameter validation off.

``python -m bench.ceiling CONFIG_JSON REPORT_JSON``
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench.data import upload_id
from bench.measure import Window
from worker.core.items import Item, ItemFactory
from worker.core.rows import Header

BATCH_SIZE = 25


def build_items(key: str, path: Path) -> list[Item]:
    """Every row of one file as the worker would stage it."""
    factory = ItemFactory(
        upload_id=upload_id(key),
        vendor_id=key.split("/")[1],
        s3_key=key,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        header = Header.parse(next(reader))
        return [
            factory.item(number, header.type_row(cells))
            for number, cells in enumerate(reader, start=1)
        ]


def batches(files: list[list[Item]]) -> Iterator[list[dict[str, Any]]]:
    """Each file's items in batches of 25, as a per-file pipeline must send them."""
    for items in files:
        for start in range(0, len(items), BATCH_SIZE):
            yield [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH_SIZE]]


async def write_all(config: dict[str, Any], files: list[list[Item]]) -> Window:
    table, in_flight = config["table"], config["batches_in_flight"]
    client_config = AioConfig(
        max_pool_connections=in_flight,
        retries={"total_max_attempts": 1},
        parameter_validation=False,
    )
    session = get_session()
    async with session.create_client(
        "dynamodb",
        region_name=config["region"],
        endpoint_url=config["endpoint"],
        config=client_config,
    ) as client:
        await client.describe_table(TableName=table)  # connect before the clock starts
        pending = batches(files)

        async def sender() -> None:
            for batch in pending:  # one shared iterator: each batch is sent once
                requests = batch
                while requests:
                    response = await client.batch_write_item(RequestItems={table: requests})
                    requests = response.get("UnprocessedItems", {}).get(table, [])

        with Window() as window:
            await asyncio.gather(*(sender() for _ in range(in_flight)))
    return window


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[0]).read_text())
    files = [build_items(f["key"], Path(f["path"])) for f in config["files"]]
    window = asyncio.run(write_all(config, files))
    window.write(argv[1], rows=sum(map(len, files)), files=len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
