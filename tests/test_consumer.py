"""The receive loop against the moto server: bounded concurrency, and a stop that lands while a
long poll is under way."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.conftest import Stack, eventually
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.runtimes.handlers import DELETE, Disposition


async def test_no_more_messages_are_handled_at_once_than_the_capacity(stack: Stack) -> None:
    queue_url = stack.settings.ingest_queue_url or ""
    async with stack.session_client("sqs") as sqs:
        for n in range(7):
            await sqs.send_message(QueueUrl=queue_url, MessageBody=f"job {n}")
    running: set[str] = set()
    peak = 0
    handled: list[str] = []
    release = asyncio.Event()

    async def handler(_res: Resources, body: str) -> Disposition:
        nonlocal peak
        running.add(body)
        peak = max(peak, len(running))
        if len(running) == 2:
            release.set()
        await release.wait()  # the first two overlap: the slots are really used
        running.discard(body)
        handled.append(body)
        return DELETE

    async with Resources.open(stack.settings) as res:
        consumer = Consumer(res, handler=handler, capacity=2)
        await asyncio.wait_for(consumer.run(drain=True), timeout=60)

    assert peak == 2
    assert sorted(handled) == [f"job {n}" for n in range(7)]
    assert await stack.queue_messages(queue_url) == []


async def test_messages_received_by_a_poll_that_a_stop_interrupts_are_handed_back_at_once(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    queue_url = stack.settings.ingest_queue_url or ""
    settings = stack.settings.model_copy(
        update={"receive_wait_seconds": 5, "visibility_timeout_seconds": 600}
    )
    handled: list[str] = []

    async def handler(_res: Resources, body: str) -> Disposition:
        handled.append(body)
        return DELETE

    async with Resources.open(settings) as res:
        consumer = Consumer(res, handler=handler)
        started = consumer.last_turn
        run = asyncio.create_task(consumer.run())

        async def polling() -> bool:
            return consumer.last_turn != started

        # GIVEN a worker in a long poll on an empty queue
        await eventually(polling, within=10, what="the first receive")
        # WHEN it is told to stop, and a message arrives before the poll returns
        consumer.stop()
        async with stack.session_client("sqs") as sqs:
            sent = await sqs.send_message(QueueUrl=queue_url, MessageBody="arrived late")
        await asyncio.wait_for(run, timeout=30)
        stopped_at = time.monotonic()

    # THEN the message was not handled, is visible again at once (not after 600 s), and the
    # hand-back is logged with its id
    assert handled == []
    messages = await stack.queue_messages(queue_url)
    assert [m["MessageId"] for m in messages] == [sent["MessageId"]]
    assert time.monotonic() - stopped_at < 600
    records = [r for r in caplog.records if "handed back" in r.getMessage()]
    assert records
    assert records[0].__dict__["message_ids"] == [sent["MessageId"]]
