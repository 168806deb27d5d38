"""Large uploads under DynamoDB's real per-partition limit, through a proxy that enforces it:
paced to the limit, checkpointed, resumed after a kill, and carried over several Lambda
invocations without using up the queue's receives."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack, eventually, s3_event
from tests.fault_proxy import FaultPlan, fault_proxy
from tests.test_lambda import Context
from tests.test_worker_process import large_csv, worker_process
from worker.runtimes.lambda_handler import LambdaApp

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"


def record_ids(rows: int) -> list[str]:
    return [f"REC_{n:05d}" for n in range(1, rows + 1)]


@pytest.mark.timeout(180)
async def test_at_a_low_partition_limit_a_large_file_is_staged_on_its_first_attempt(
    stack: Stack,
) -> None:
    rows = 3_000
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(rows))
    plan = FaultPlan(wcu_per_second=150)

    # WHEN every write beyond 150 a second per partition comes back unprocessed
    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        await asyncio.wait_for(
            stack.run_worker(aws_endpoint_url=proxy, metrics_interval_seconds=3_600),
            timeout=150,
        )

    # THEN the writer slows down instead of failing: staged on the first attempt, every row
    # once, and the throttles are published
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["attempts"], history["total_records"]) == (
        "staged",
        1,
        rows,
    )
    assert plan.partial + plan.throttled > 0
    assert sorted(set(plan.items_forwarded)) == record_ids(rows)
    assert len(plan.items_forwarded) == rows
    async with stack.session_client("cloudwatch") as cloudwatch:
        listed = await cloudwatch.list_metrics(
            Namespace=stack.settings.metrics_namespace, MetricName="StagingItemsThrottled"
        )
    assert listed["Metrics"], "the throttled items were not published"


@pytest.mark.timeout(240)
async def test_a_worker_killed_half_way_resumes_from_its_checkpoint(
    stack: Stack, tmp_path: Path
) -> None:
    rows = 6_000
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(rows))
    plan = FaultPlan(wcu_per_second=400)

    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        # GIVEN a worker half-way through the file (3 s visibility and lease)
        env = {"AWS_ENDPOINT_URL": proxy, "VISIBILITY_TIMEOUT_SECONDS": "3"}
        with worker_process(stack, tmp_path / "worker.log", **env) as worker:

            async def half_way() -> bool:
                return len(plan.items_forwarded) >= rows // 2

            await eventually(half_way, within=120, what="half of the rows")
            # WHEN it is killed without warning
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        history = await stack.history(UPLOAD_ID)
        assert history is not None
        assert history["status"] == "processing"
        assert history["checkpoint_row"] > 0

        # THEN a fresh worker goes on from the checkpoint once the lease runs out
        async def staged() -> bool:
            await stack.run_worker(
                aws_endpoint_url=proxy, visibility_timeout_seconds=3, retry_backoff_seconds=1
            )
            return (await stack.history(UPLOAD_ID) or {}).get("status") == "staged"

        await eventually(staged, within=150, what="a fresh worker to stage the upload")

    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["total_records"], history["attempts"]) == (rows, 2)
    assert sorted(set(plan.items_forwarded)) == record_ids(rows)
    assert len(plan.items_forwarded) <= 1.1 * rows, "the second attempt started over"
    assert len(await stack.items(UPLOAD_ID)) == rows


@pytest.mark.timeout(240)
async def test_lambda_goes_on_over_several_invocations_without_using_up_receives(
    stack: Stack,
) -> None:
    rows = 4_000
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, large_csv(rows))
    queue_url = stack.settings.ingest_queue_url or ""
    async with stack.session_client("sqs") as sqs:
        dlq_arn = (
            await sqs.get_queue_attributes(
                QueueUrl=stack.settings.dlq_url or "", AttributeNames=["QueueArn"]
            )
        )["Attributes"]["QueueArn"]
        await sqs.set_queue_attributes(
            QueueUrl=queue_url,
            Attributes={
                "RedrivePolicy": f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "2"}}'
            },
        )
        await sqs.send_message(QueueUrl=queue_url, MessageBody=s3_event(stack.bucket, KEY))
    plan = FaultPlan(wcu_per_second=300)
    invocations = 0

    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        app = LambdaApp(
            stack.settings.model_copy(
                update={"aws_endpoint_url": proxy, "lambda_safety_margin_seconds": 2}
            )
        )
        try:
            async with stack.session_client("sqs") as sqs:

                async def finished() -> bool:
                    # One poll of the event source mapping: receive, invoke (4 s to run),
                    # delete what the function did not report as failed.
                    nonlocal invocations
                    if (await stack.history(UPLOAD_ID) or {}).get("status") == "staged":
                        return True
                    response = await sqs.receive_message(
                        QueueUrl=queue_url,
                        MaxNumberOfMessages=1,
                        VisibilityTimeout=30,
                        MessageSystemAttributeNames=["All"],
                    )
                    for message in response.get("Messages", []):
                        invocations += 1
                        result = await asyncio.to_thread(
                            app, {"Records": [lambda_record(message)]}, Context(6)
                        )
                        if not result["batchItemFailures"]:
                            await sqs.delete_message(
                                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                            )
                    return False

                await eventually(finished, within=200, what="the upload to be staged")
        finally:
            await asyncio.to_thread(app.close)

    # THEN it took several invocations, each going on from the last checkpoint, and nothing
    # was dead-lettered although the queue allows only two receives of a message
    assert invocations >= 3
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["total_records"] == rows
    assert len(await stack.items(UPLOAD_ID)) == rows
    assert len(plan.items_forwarded) <= 1.1 * rows
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []


def lambda_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as the event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ingest",
        "awsRegion": "us-east-1",
    }
