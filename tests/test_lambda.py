"""The Lambda handler with real-shaped SQS and S3 events against the moto server and
PostgreSQL. The handler is synchronous, as Lambda calls it, so tests call it from a thread."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Stack, s3_event
from tests.fault_proxy import FaultPlan, fault_proxy
from worker.runtimes.lambda_handler import LambdaApp

BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


class Context:
    """What the Lambda runtime passes as ``context``: a request id and the time left."""

    def __init__(self, seconds: float) -> None:
        self.aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
        self._deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def sqs_record(
    message_id: str, body: str, queue: str = "vendor-onboarding-ingest"
) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1731801600000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1731801600001",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
        "awsRegion": "us-east-1",
    }


@pytest.fixture
def lambda_app(stack: Stack) -> Iterator[LambdaApp]:
    app = LambdaApp(stack.settings)
    yield app
    app.close()


async def invoke(app: LambdaApp, event: dict[str, Any], seconds: float = 60) -> dict[str, Any]:
    return await asyncio.to_thread(app, event, Context(seconds))


async def test_a_mixed_batch_reports_exactly_the_messages_to_retry(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    good, unknown, throttled = (
        "uploads/ACME/ACME_20240101_000001.csv",
        "uploads/NOBODY/NOBODY_20240101_000002.csv",
        "uploads/ACME/ACME_20240101_000003.csv",
    )
    for key in (good, unknown, throttled):
        await stack.put_object(key, BODY)
    event = {
        "Records": [
            sqs_record("m-good", s3_event(stack.bucket, good)),
            sqs_record("m-rejected", s3_event(stack.bucket, unknown)),
            sqs_record("m-transient", s3_event(stack.bucket, throttled)),
            sqs_record("m-poison", "not an S3 event"),
            sqs_record("m-test", json.dumps({"Event": "s3:TestEvent", "Bucket": stack.bucket})),
        ]
    }
    plan = FaultPlan(throttle_matching="UPLOAD_ACME_20240101_000003")

    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        app = LambdaApp(
            stack.settings.model_copy(
                update={"aws_endpoint_url": proxy, "staging_stall_seconds": 0.5}
            )
        )
        try:
            response = await invoke(app, event)
        finally:
            await asyncio.to_thread(app.close)

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-transient"}]}
    assert (await stack.history("UPLOAD_ACME_20240101_000001") or {})["status"] == "staged"
    assert (await stack.history("UPLOAD_NOBODY_20240101_000002") or {})["status"] == "rejected"
    assert (await stack.history("UPLOAD_ACME_20240101_000003") or {})["status"] == "failed"
    (dead,) = await stack.queue_messages(stack.settings.dlq_url or "")
    assert dead["Body"] == "not an S3 event"


async def test_warm_invocations_reuse_the_runtime_and_pool(
    stack: Stack, lambda_app: LambdaApp
) -> None:
    await stack.add_vendor("ACME")
    for n in (1, 2):
        await stack.put_object(f"uploads/ACME/ACME_20240101_00000{n}.csv", BODY)

    first = await invoke(
        lambda_app,
        {
            "Records": [
                sqs_record("a", s3_event(stack.bucket, "uploads/ACME/ACME_20240101_000001.csv"))
            ]
        },
    )
    resources, pool = (
        lambda_app.resources,
        lambda_app.resources and lambda_app.resources.database._pool,
    )
    connections = await _connections(stack)
    second = await invoke(
        lambda_app,
        {
            "Records": [
                sqs_record("b", s3_event(stack.bucket, "uploads/ACME/ACME_20240101_000002.csv"))
            ]
        },
    )

    assert first == second == {"batchItemFailures": []}
    assert lambda_app.invocations == 2
    assert lambda_app.resources is resources
    assert lambda_app.resources is not None
    assert lambda_app.resources.database._pool is pool
    assert await _connections(stack) == connections


async def test_an_all_failed_batch_lists_every_message(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    keys = [f"uploads/ACME/ACME_20240101_00000{n}.csv" for n in (1, 2, 3)]
    for key in keys:
        await stack.put_object(key, BODY)
    event = {
        "Records": [sqs_record(f"m{n}", s3_event(stack.bucket, k)) for n, k in enumerate(keys)]
    }

    async with fault_proxy(
        stack.settings.aws_endpoint_url or "", FaultPlan(throttle_all=True)
    ) as proxy:
        app = LambdaApp(
            stack.settings.model_copy(
                update={"aws_endpoint_url": proxy, "staging_stall_seconds": 0.1}
            )
        )
        try:
            response = await invoke(app, event)
        finally:
            await asyncio.to_thread(app.close)

    assert response == {"batchItemFailures": [{"itemIdentifier": f"m{n}"} for n in range(3)]}


async def test_at_the_deadline_a_file_saves_its_checkpoint_and_is_handed_on(
    stack: Stack, lambda_app: LambdaApp
) -> None:
    await stack.add_vendor("ACME")
    rows = "".join(f"P-{n},Cup,K,S-{n},1.00,3\n" for n in range(2, 60_000))
    await stack.put_object("uploads/ACME/ACME_20240101_000001.csv", BODY + rows)
    body = s3_event(stack.bucket, "uploads/ACME/ACME_20240101_000001.csv")
    margin = stack.settings.lambda_safety_margin_seconds

    response = await invoke(lambda_app, {"Records": [sqs_record("big", body)]}, margin + 1.5)

    # The original is acknowledged (a receive is not used up) and a copy goes on from the
    # checkpoint in the next invocation.
    assert response == {"batchItemFailures": []}
    history = await stack.history("UPLOAD_ACME_20240101_000001")
    assert history is not None
    assert history["status"] == "failed"
    assert history["error_message"].startswith("paused at the invocation's deadline: rows 1-")
    assert 0 < history["checkpoint_row"] < 60_000
    assert history["lease_expires_at"] is None
    queued = await stack.queue_messages(stack.settings.ingest_queue_url or "")
    assert body in [m["Body"] for m in queued]  # beside the notification of the put itself
    items = await stack.items("UPLOAD_ACME_20240101_000001")
    assert len(items) >= history["checkpoint_row"]


async def test_a_direct_s3_event_returns_a_summary_per_object(
    stack: Stack, lambda_app: LambdaApp
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object("uploads/ACME/ACME_20240101_000001.csv", BODY)
    await stack.put_object("uploads/ACME/bad name.csv", BODY)
    event = json.loads(
        s3_event(stack.bucket, "uploads/ACME/ACME_20240101_000001.csv", "uploads/ACME/bad name.csv")
    )
    for record in event["Records"]:
        record["eventSource"] = "aws:s3"

    response = await invoke(lambda_app, event)

    first, second = response["results"]
    assert first["upload_id"] == "UPLOAD_ACME_20240101_000001"
    assert (first["status"], first["total_records"], first["error"]) == ("staged", 1, None)
    assert second["status"] == "rejected"
    assert "does not match" in second["error"]


async def test_an_unknown_event_is_an_error(stack: Stack, lambda_app: LambdaApp) -> None:
    with pytest.raises(ValueError, match="unsupported event"):
        await invoke(lambda_app, {"detail-type": "Scheduled Event"})


async def _connections(stack: Stack) -> int:
    count: int = await stack.db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        stack.credentials.dbname,
    )
    return count


async def test_a_validation_job_is_run_by_the_same_function(
    stack: Stack, lambda_app: LambdaApp
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object("uploads/ACME/ACME_20240101_000001.csv", BODY)
    await stack.run_worker()

    response = await invoke(
        lambda_app,
        {"Records": [sqs_record("job", json.dumps({"upload_id": "UPLOAD_ACME_20240101_000001"}))]},
    )

    assert response == {"batchItemFailures": []}
    history = await stack.history("UPLOAD_ACME_20240101_000001")
    assert history is not None
    assert (history["status"], history["valid_records"], history["invalid_records"]) == (
        "validated",
        1,
        0,
    )


async def test_a_poison_message_goes_to_the_dlq_of_the_queue_it_came_from(
    stack: Stack, lambda_app: LambdaApp
) -> None:
    event = {
        "Records": [
            sqs_record("bad-job", '{"upload": 1}', queue=stack.names.validation_queue),
            sqs_record("bad-event", "not an S3 event", queue=stack.names.ingest_queue),
        ]
    }

    response = await invoke(lambda_app, event)

    assert response == {"batchItemFailures": []}
    (job,) = await stack.queue_messages(stack.settings.validation_dlq_url or "")
    assert job["Body"] == '{"upload": 1}'
    assert job["MessageAttributes"]["reason"]["StringValue"].startswith("not a validation job")
    (other,) = await stack.queue_messages(stack.settings.dlq_url or "")
    assert other["Body"] == "not an S3 event"
