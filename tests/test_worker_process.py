"""The worker as a real process: SIGKILL in the middle of a large file, SIGTERM with and
without time to finish. Nothing is lost and the end state equals an uninterrupted run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CANARY_PASSWORD, Stack, eventually
from tests.test_cli import stack_env

HEADER = "vendor_product_id,product_name,category,sku,price,stock_quantity,description\n"


def large_csv(rows: int) -> bytes:
    lines = [
        f'P-{n},"Product {n}, large",Kitchen,SKU-{n},{n % 500}.{n % 100:02d},{n % 37},'
        f'"line one\nline two of {n}"\n'
        if n % 97
        else f"P-{n},Broken {n},Kitchen,SKU-{n},not-a-price,{n},\n"
        for n in range(1, rows + 1)
    ]
    return (HEADER + "".join(lines)).encode()


async def count_items(stack: Stack, upload_id: str) -> int:
    total = 0
    async with stack.session_client("dynamodb") as dynamodb:
        paginator = dynamodb.get_paginator("query")
        async for page in paginator.paginate(
            TableName=stack.settings.dynamodb_table,
            KeyConditionExpression="upload_id = :u",
            ExpressionAttributeValues={":u": {"S": upload_id}},
            Select="COUNT",
        ):
            total += page["Count"]
    return total


async def visible_messages(stack: Stack) -> int:
    async with stack.session_client("sqs") as sqs:
        response = await sqs.get_queue_attributes(
            QueueUrl=stack.settings.ingest_queue_url or "",
            AttributeNames=["ApproximateNumberOfMessages"],
        )
    return int(response["Attributes"]["ApproximateNumberOfMessages"])


@contextmanager
def worker_process(stack: Stack, log_file: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.runtimes.cli", "run"],
            env={**os.environ, **stack_env(stack), "RECEIVE_WAIT_SECONDS": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def comparable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items without what differs between two uploads of the same content."""
    ignore = {"upload_id", "s3_key", "created_at"}
    return [{k: v for k, v in item.items() if k not in ignore} for item in items]


def comparable_history(row: dict[str, Any] | None) -> tuple[Any, ...]:
    assert row is not None
    return (
        row["status"],
        row["total_records"],
        row["successful_records"],
        row["failed_records"],
        row["error_message"],
    )


ROWS = 8_000
KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"
REFERENCE_KEY = "uploads/ACME/ACME_20200101_000000.csv"
REFERENCE_ID = "UPLOAD_ACME_20200101_000000"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kill_after_items", [0, 1_500, 5_000])
async def test_a_worker_killed_mid_file_is_finished_by_a_fresh_one(
    stack: Stack, tmp_path: Path, kill_after_items: int
) -> None:
    await stack.add_vendor("ACME")
    body = large_csv(ROWS)
    # The reference: the same content, processed without interruption.
    await stack.put_object(REFERENCE_KEY, body)
    await stack.run_worker()
    reference_items = comparable(await stack.items(REFERENCE_ID))
    assert len(reference_items) == ROWS

    # GIVEN a worker process in the middle of the file (3 s visibility and lease)
    await stack.put_object(KEY, body)
    with worker_process(stack, tmp_path / "worker.log", VISIBILITY_TIMEOUT_SECONDS="3") as worker:

        async def reached_kill_point() -> bool:
            history = await stack.history(UPLOAD_ID)
            if history is None or history["status"] != "processing":
                return False
            return kill_after_items == 0 or await _has_item(stack, UPLOAD_ID, kill_after_items)

        await eventually(reached_kill_point, within=120, what="the kill point")
        # WHEN it is killed without warning
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "processing", "the file finished before the kill: kill earlier"

    # THEN once the lease and the message's visibility run out, a fresh worker finishes it
    async def staged() -> bool:
        await stack.run_worker(visibility_timeout_seconds=3, retry_backoff_seconds=1)
        return (await stack.history(UPLOAD_ID) or {}).get("status") == "staged"

    await eventually(staged, within=120, what="a fresh worker to stage the upload")
    assert CANARY_PASSWORD not in (tmp_path / "worker.log").read_text()
    assert comparable(await stack.items(UPLOAD_ID)) == reference_items
    finished = await stack.history(UPLOAD_ID)
    assert finished is not None
    assert finished["lease_expires_at"] is None, "the lease was released"
    # (The reference's own lease may be held: the killed worker was validating it.)
    assert comparable_history(finished) == comparable_history(await stack.history(REFERENCE_ID))
    assert (await stack.history(UPLOAD_ID) or {})["attempts"] == 2


async def test_sigterm_lets_files_in_flight_finish_and_exits_0(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(8_000))
    log_file = tmp_path / "worker.log"
    with worker_process(stack, log_file, SHUTDOWN_GRACE_SECONDS="120") as worker:
        await eventually(
            lambda: _has_items(stack, UPLOAD_ID), within=60, what="the worker to start the file"
        )
        worker.send_signal(signal.SIGTERM)
        returncode = worker.wait(timeout=120)

    assert returncode == 0, log_file.read_text()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["total_records"]) == ("staged", 8_000)
    assert await count_items(stack, UPLOAD_ID) == 8_000
    assert await visible_messages(stack) == 0
    assert "stopping: no new messages will be received" in log_file.read_text()
    assert CANARY_PASSWORD not in log_file.read_text()


async def test_sigterm_without_grace_hands_the_file_back_for_another_worker(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(ROWS))
    log_file = tmp_path / "worker.log"
    with worker_process(stack, log_file, SHUTDOWN_GRACE_SECONDS="0") as worker:
        await eventually(
            lambda: _has_items(stack, UPLOAD_ID), within=60, what="the worker to start the file"
        )
        worker.send_signal(signal.SIGTERM)
        returncode = worker.wait(timeout=60)

    assert returncode == 0, log_file.read_text()
    assert CANARY_PASSWORD not in log_file.read_text()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "failed"
    assert (
        history["error_message"] == "interrupted: the worker stopped before the file was finished"
    )
    assert history["lease_expires_at"] is None
    # The message is visible again at once (not after its 300 s visibility timeout).
    assert await visible_messages(stack) == 1

    await stack.run_worker()

    assert (await stack.history(UPLOAD_ID) or {})["status"] == "staged"
    assert await count_items(stack, UPLOAD_ID) == ROWS


async def test_a_second_signal_exits_at_once(stack: Stack, tmp_path: Path) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(ROWS))
    log_file = tmp_path / "worker.log"
    with worker_process(stack, log_file, SHUTDOWN_GRACE_SECONDS="600") as worker:
        await eventually(
            lambda: _has_items(stack, UPLOAD_ID), within=60, what="the worker to start the file"
        )
        worker.send_signal(signal.SIGTERM)
        # Signals of one kind coalesce: send the second once the first was handled.
        await eventually(
            lambda: _logged(log_file, "stopping: no new messages will be received"),
            within=30,
            what="the first signal to be handled",
        )
        worker.send_signal(signal.SIGTERM)
        returncode = worker.wait(timeout=30)

    assert returncode == 1
    assert "second signal: exiting now" in log_file.read_text()
    assert (await stack.history(UPLOAD_ID) or {})["status"] == "processing"


async def _logged(log_file: Path, text: str) -> bool:
    return text in await asyncio.to_thread(log_file.read_text)


async def _has_item(stack: Stack, upload_id: str, row_number: int) -> bool:
    async with stack.session_client("dynamodb") as dynamodb:
        response = await dynamodb.get_item(
            TableName=stack.settings.dynamodb_table,
            Key={"upload_id": {"S": upload_id}, "record_id": {"S": f"REC_{row_number:05d}"}},
            ProjectionExpression="record_id",
        )
    return "Item" in response


async def _has_items(stack: Stack, upload_id: str) -> bool:
    async with stack.session_client("dynamodb") as dynamodb:
        response = await dynamodb.query(
            TableName=stack.settings.dynamodb_table,
            KeyConditionExpression="upload_id = :u",
            ExpressionAttributeValues={":u": {"S": upload_id}},
            Limit=1,
        )
    return bool(response["Items"])
