"""Operator commands against real failures: a throttled DynamoDB sends an upload (or its
validation job) to its queue's DLQ after maxReceiveCount; `dlq peek` shows it, `dlq redrive`
brings it back to the queue it came from, and it is staged (or validated)."""

from __future__ import annotations

import json
import re

from tests.conftest import Stack, s3_event
from tests.fault_proxy import FaultPlan, fault_proxy
from tests.test_cli import cli, stack_env

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


async def test_a_repeatedly_failing_upload_reaches_the_dlq_and_redrive_stages_it(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)

    # GIVEN DynamoDB throttles every write: each delivery fails and comes back at once
    async with fault_proxy(
        stack.settings.aws_endpoint_url or "", FaultPlan(throttle_all=True)
    ) as proxy:
        await stack.run_worker(
            aws_endpoint_url=proxy, staging_stall_seconds=0.5, retry_backoff_seconds=0
        )

    # THEN after maxReceiveCount (3) deliveries SQS moved the message to the DLQ
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["attempts"]) == ("failed", 3)
    assert "ProvisionedThroughputExceededException" in history["error_message"]
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []

    # WHEN an operator peeks: the table names the upload and its last error, consuming nothing
    peek = cli("dlq", "peek", env=stack_env(stack))
    assert peek.returncode == 0, peek.stderr
    (row,) = [line for line in peek.stdout.splitlines() if line.startswith(UPLOAD_ID)]
    assert KEY in row
    assert "failed: DynamoDB UploadRecords: ProvisionedThroughputExceededException" in row
    again = cli("dlq", "peek", env=stack_env(stack))
    assert UPLOAD_ID in again.stdout

    # AND a dry run moves nothing
    dry = cli("dlq", "redrive", "--dry-run", env=stack_env(stack))
    assert dry.returncode == 0, dry.stderr
    assert "dry run: 1 message(s) would be redriven" in dry.stdout
    assert len(await stack.queue_messages(stack.settings.dlq_url or "")) == 1

    # WHEN DynamoDB has recovered and the operator redrives
    redrive = cli("dlq", "redrive", env=stack_env(stack))
    assert redrive.returncode == 0, redrive.stderr
    assert "redriven 1 message(s)" in redrive.stdout
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
    await stack.run_worker()

    # THEN the upload is staged
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["attempts"], history["error_message"]) == ("staged", 4, None)
    assert len(await stack.items(UPLOAD_ID)) == 1


async def test_a_failing_validation_job_reaches_its_dlq_and_redrive_validates_it(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)
    await stack.run_worker()  # staged: its validation job is queued

    # GIVEN DynamoDB throttles every write while the job is validated: each delivery fails
    async with fault_proxy(
        stack.settings.aws_endpoint_url or "", FaultPlan(throttle_all=True)
    ) as proxy:
        await stack.run_validation(
            aws_endpoint_url=proxy, staging_stall_seconds=0.5, retry_backoff_seconds=0
        )

    # THEN after maxReceiveCount (3) deliveries SQS moved the job to the validation queue's DLQ
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "staged"
    assert await stack.queue_messages(stack.settings.validation_queue_url or "") == []
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
    (dead,) = await stack.queue_messages(stack.settings.validation_dlq_url or "")
    assert json.loads(dead["Body"]) == {"upload_id": UPLOAD_ID}

    # WHEN an operator peeks at the validation DLQ: the job's upload, where it would go back
    peek = cli("dlq", "peek", "--queue", "validation", env=stack_env(stack))
    assert peek.returncode == 0, peek.stderr
    (row,) = [columns(line) for line in peek.stdout.splitlines() if line.startswith(UPLOAD_ID)]
    assert row[1:3] == ["(validation job)", "validation"]  # goes back to the validation queue
    assert int(row[3]) > 3  # its receives on the validation queue, and since
    assert UPLOAD_ID not in cli("dlq", "peek", env=stack_env(stack)).stdout  # not the ingest DLQ

    # AND redrives it once DynamoDB has recovered
    redrive = cli("dlq", "redrive", "--queue", "validation", env=stack_env(stack))
    assert redrive.returncode == 0, redrive.stderr
    assert redrive.stdout == (f"redriven 1 message(s) to {stack.settings.validation_queue_url}\n")
    assert await stack.queue_messages(stack.settings.validation_dlq_url or "") == []
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    await stack.run_validation()

    # THEN the upload is validated
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["valid_records"]) == ("validated", 1)


async def test_redrive_returns_each_message_to_the_queue_of_its_stage(stack: Stack) -> None:
    # GIVEN the ingest DLQ holds an S3 event, a validation job (from the days of one shared
    # DLQ) and a poison message
    job = json.dumps({"upload_id": UPLOAD_ID})
    event = s3_event(stack.bucket, KEY)
    async with stack.session_client("sqs") as sqs:
        for body in (event, job, "not a message"):
            await sqs.send_message(QueueUrl=stack.settings.dlq_url or "", MessageBody=body)

    peek = cli("dlq", "peek", env=stack_env(stack))
    assert peek.returncode == 0, peek.stderr
    rows = [columns(line)[:3] for line in peek.stdout.splitlines()[2:]]
    assert sorted(rows) == sorted(
        [
            [UPLOAD_ID, KEY, "ingest"],
            [UPLOAD_ID, "(validation job)", "validation"],
            ["-", "-", "ingest"],
        ]
    )

    # WHEN the ingest DLQ is redriven
    redrive = cli("dlq", "redrive", env=stack_env(stack))

    # THEN the job went to the validation queue, the rest back to the ingest queue
    assert redrive.returncode == 0, redrive.stderr
    ingest, validation = stack.settings.ingest_queue_url, stack.settings.validation_queue_url
    assert sorted(redrive.stdout.splitlines()) == sorted(
        [f"redriven 2 message(s) to {ingest}", f"redriven 1 message(s) to {validation}"]
    )
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
    assert sorted(m["Body"] for m in await stack.queue_messages(ingest or "")) == sorted(
        [event, "not a message"]
    )
    assert [m["Body"] for m in await stack.queue_messages(validation or "")] == [job]


def columns(line: str) -> list[str]:
    """A row of a text table's columns (separated by two spaces or more)."""
    return re.split(r"\s{2,}", line.strip())


async def test_uploads_lists_history_filtered_by_status_and_vendor(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)
    await stack.put_object("uploads/NOBODY/NOBODY_20240101_120000.csv", BODY)
    await stack.run_worker()

    result = cli("uploads", "--status", "rejected", env=stack_env(stack))

    assert result.returncode == 0, result.stderr
    assert "UPLOAD_NOBODY_20240101_120000" in result.stdout
    assert "vendor 'NOBODY' is not registered" in result.stdout
    assert UPLOAD_ID not in result.stdout
    by_vendor = cli("uploads", "--vendor", "ACME", env=stack_env(stack))
    assert UPLOAD_ID in by_vendor.stdout
    assert "NOBODY" not in by_vendor.stdout
    assert cli("uploads", "--status", "bogus", env=stack_env(stack)).returncode == 2


async def test_reprocess_processes_an_unchanged_staged_object_again(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)
    await stack.run_worker()

    result = cli("reprocess", f"s3://{stack.bucket}/{KEY}", env=stack_env(stack))

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{UPLOAD_ID}: staged (1 rows, 1 ok, 0 bad)"
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["attempts"]) == ("staged", 2)
    assert cli("reprocess", "not-a-uri", env=stack_env(stack)).returncode == 2


async def test_a_poison_message_in_the_dlq_shows_its_reason(stack: Stack) -> None:
    await stack.send_raw(json.dumps({"hello": "world"}))
    await stack.run_worker()

    peek = cli("dlq", "peek", env=stack_env(stack))

    assert peek.returncode == 0, peek.stderr
    assert "message body has no S3 'Records'" in peek.stdout
