"""The error queue's sender against the moto server, and through the fault proxy where SQS must
answer a batch partly failed: batches bounded by bytes as well as entries, entries refused for
good returned (never sent again), entries that failed on SQS's side sent again, and every final
failure a TransientError."""

from __future__ import annotations

import json
from typing import Any

import aioboto3
import pytest

from tests.conftest import REGION, Stack
from tests.fault_proxy import FaultPlan, fault_proxy
from worker.core.errors import TransientError
from worker.core.limits import SQS_MESSAGE_BYTES
from worker.validation.error_queue import send_errors

UPLOAD_ID = "UPLOAD_ACME_20241105_093015"


def entry(row: int, data: str = "") -> dict[str, Any]:
    """An error-queue entry as ``error_message`` builds them: a JSON body and the ids."""
    record_id = f"REC_{row:05d}"
    body = {"upload_id": UPLOAD_ID, "record_id": record_id, "row_number": row, "data": data}
    return {
        "MessageBody": json.dumps(body),
        "MessageAttributes": {
            "upload_id": {"DataType": "String", "StringValue": UPLOAD_ID},
            "record_id": {"DataType": "String", "StringValue": record_id},
        },
    }


def sqs_client(endpoint: str) -> Any:
    return aioboto3.Session().client("sqs", endpoint_url=endpoint, region_name=REGION)


async def received(stack: Stack, queue_url: str) -> list[str]:
    """The record ids of every message in a queue (received and deleted)."""
    ids: list[str] = []
    async with stack.session_client("sqs") as sqs:
        while batch := (
            await sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
        ).get("Messages", []):
            for message in batch:
                ids.append(message["MessageAttributes"]["record_id"]["StringValue"])
                await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return sorted(ids)


def record_ids(rows: range) -> list[str]:
    return [f"REC_{row:05d}" for row in rows]


async def test_batches_stay_under_the_byte_limit_as_well_as_ten_entries(stack: Stack) -> None:
    # GIVEN 25 messages of about 60 KB: ten of them would take 600 KB
    messages = [entry(row, "x" * 60_000) for row in range(1, 26)]
    plan = FaultPlan()

    async with (
        fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy,
        sqs_client(proxy) as sqs,
    ):
        refused = await send_errors(sqs, stack.settings.error_queue_url or "", messages)

    # THEN no call carried more than SQS_MESSAGE_BYTES or ten entries, and every one arrived
    assert refused == []
    assert all(size <= SQS_MESSAGE_BYTES for _, size in plan.sqs_batches)
    assert all(entries <= 10 for entries, _ in plan.sqs_batches)
    assert sum(entries for entries, _ in plan.sqs_batches) == 25
    assert len(plan.sqs_batches) == 7  # four 60 KB messages a call
    assert await received(stack, stack.settings.error_queue_url or "") == record_ids(range(1, 26))


async def test_an_entry_refused_for_good_is_returned_and_not_sent_again(stack: Stack) -> None:
    messages = [entry(row) for row in range(1, 13)]
    # GIVEN SQS refuses row 2's message (SenderFault) and fails two others on its side once
    plan = FaultPlan(sqs_refuse_matching='"REC_00002"', sqs_fail_first=2)

    async with (
        fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy,
        sqs_client(proxy) as sqs,
    ):
        refused = await send_errors(sqs, stack.settings.error_queue_url or "", messages)

    # THEN row 2's message is returned with SQS's code, sent once only
    assert [(r.record_id, r.code) for r in refused] == [("REC_00002", "InvalidMessageContents")]
    assert refused[0].message == messages[1]
    assert plan.sqs_bodies_received[messages[1]["MessageBody"]] == 1
    # AND the ones that failed on SQS's side were sent again, and arrived
    assert sum(plan.sqs_bodies_received.values()) == 12 + 2
    expected = [rid for rid in record_ids(range(1, 13)) if rid != "REC_00002"]
    assert await received(stack, stack.settings.error_queue_url or "") == expected


async def test_entries_still_failing_after_the_attempts_are_a_transient_error(
    stack: Stack,
) -> None:
    plan = FaultPlan(sqs_fail_matching='"REC_00003"')

    async with (
        fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy,
        sqs_client(proxy) as sqs,
    ):
        with pytest.raises(TransientError, match=r"1 error message\(s\) not sent: InternalError"):
            await send_errors(
                sqs,
                stack.settings.error_queue_url or "",
                [entry(row) for row in range(1, 5)],
                max_attempts=3,
            )

    assert plan.sqs_bodies_received[entry(3)["MessageBody"]] == 3


async def test_a_message_over_the_queues_size_limit_is_refused_alone(stack: Stack) -> None:
    # GIVEN a queue that takes messages of at most 1 KiB: the moto server refuses a batch that
    # holds a bigger one as a whole (InvalidParameterValue), as it checks every entry first
    async with stack.session_client("sqs") as sqs:
        small_queue = (
            await sqs.create_queue(
                QueueName="small-errors", Attributes={"MaximumMessageSize": "1024"}
            )
        )["QueueUrl"]
        messages = [entry(1), entry(2, "x" * 2_000), entry(3)]

        refused = await send_errors(sqs, small_queue, messages)

    # THEN the batch was sent again a message at a time: only the big one is refused
    assert [(r.record_id, r.code) for r in refused] == [("REC_00002", "InvalidParameterValue")]
    assert "shorter than 1024 bytes" in refused[0].reason
    assert await received(stack, small_queue) == ["REC_00001", "REC_00003"]


async def test_a_queue_that_does_not_exist_is_a_transient_error_at_once(stack: Stack) -> None:
    missing = (stack.settings.error_queue_url or "").rsplit("/", 1)[0] + "/no-such-queue"
    async with stack.session_client("sqs") as sqs:
        with pytest.raises(TransientError, match="error queue: "):
            await send_errors(sqs, missing, [entry(1)])
