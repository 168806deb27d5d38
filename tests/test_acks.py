"""Batched deletes against the moto server."""

from __future__ import annotations

import asyncio

from tests.conftest import Stack
from worker.aws.acknowledger import Acknowledger


async def test_deletes_are_batched_and_each_entry_is_checked(stack: Stack) -> None:
    queue_url = stack.settings.ingest_queue_url or ""
    async with stack.session_client("sqs") as sqs:
        for n in range(12):
            await sqs.send_message(QueueUrl=queue_url, MessageBody=f"m{n}")
        handles: list[str] = []
        while len(handles) < 12:
            response = await sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
            )
            handles += [m["ReceiptHandle"] for m in response.get("Messages", [])]

        async with Acknowledger(sqs, queue_url) as acks:
            # The same handle twice (a message delivered twice in one receive) and a bogus one
            # share a batch with good entries.
            results = await asyncio.gather(
                *(acks.delete(h) for h in handles), acks.delete(handles[0]), acks.delete("bogus")
            )

        attributes = await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    assert results[:12] == [True] * 12
    assert results[-1] is False
    assert set(attributes["Attributes"].values()) == {"0"}
