"""DynamoDB under load, through the fault-injecting proxy: throttles and UnprocessedItems."""

from __future__ import annotations

import time
from collections import Counter

from tests.conftest import Stack
from tests.fault_proxy import FaultPlan, fault_proxy

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"


def csv_file(rows: int) -> str:
    header = "vendor_product_id,product_name,category,sku,price,stock_quantity\n"
    return header + "".join(f"P-{n},Name {n},K,S-{n},{n}.99,{n}\n" for n in range(1, rows + 1))


async def test_throttles_and_unprocessed_items_are_retried_until_every_row_lands_once(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(600))
    plan = FaultPlan(throttle_every=3, unprocessed_every=4)

    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        await stack.run_worker(aws_endpoint_url=proxy)

    assert plan.throttled > 0
    assert plan.partial > 0
    writes = Counter(plan.items_forwarded)
    assert sorted(writes) == sorted(f"REC_{n:05d}" for n in range(1, 601))
    assert set(writes.values()) == {1}, "an item was written twice"
    items = await stack.items(UPLOAD_ID)
    assert [item["row_number"] for item in items] == list(range(1, 601))
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["total_records"]) == ("staged", 600)


async def test_throttling_that_outlasts_the_retries_fails_the_upload_for_a_later_retry(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(60))
    plan = FaultPlan(throttle_all=True)

    # WHEN DynamoDB throttles every call (a failed message comes back after 1 s here)
    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        await stack.run_worker(
            aws_endpoint_url=proxy, staging_stall_seconds=1, retry_backoff_seconds=1
        )

    # THEN the upload is failed with the reason, and its message is left for SQS
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "failed"
    assert history["error_message"].startswith(
        "DynamoDB UploadRecords: ProvisionedThroughputExceededException"
    )
    assert (history["attempts"], history["lease_expires_at"]) == (1, None)
    assert await messages_in_queue(stack) == 1

    # AND once DynamoDB recovers, the redelivered message stages the upload
    deadline = time.monotonic() + 30
    while (await stack.history(UPLOAD_ID) or {}).get("status") != "staged":
        assert time.monotonic() < deadline, "the upload was not retried"
        await stack.run_worker()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["total_records"], history["attempts"]) == (60, 2)
    assert await messages_in_queue(stack) == 0


async def messages_in_queue(stack: Stack) -> int:
    async with stack.session_client("sqs") as sqs:
        response = await sqs.get_queue_attributes(
            QueueUrl=stack.settings.ingest_queue_url or "",
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    return sum(int(value) for value in response["Attributes"].values())
