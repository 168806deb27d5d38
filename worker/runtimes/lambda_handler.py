"""The Lambda entry point: ``worker.runtimes.lambda_handler.handler``, same image, same pipeline.

It accepts an SQS batch (S3 notifications and validation jobs) and returns a partial batch
response, ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``, listing exactly the
messages to retry (transient failures, made visible again after the backoff by the handler
itself), never the ones that are done, permanently rejected or handed on. It also accepts a
direct S3 event and returns a summary per object.

The event loop, clients, pool and secret cache are created on the first invocation and reused
while the container is warm. ``LAMBDA_SAFETY_MARGIN_SECONDS`` before
``context.get_remaining_time_in_millis()`` runs out, files stop writing rows: the batches in
flight land, the checkpoint is saved, and a file that made progress is handed on in a new
message (the original is acknowledged), so a long file goes on over as many invocations as it
needs without using up ``maxReceiveCount``. A file that made no progress is retried with the
backoff. What still runs half a margin later is cancelled and reported for a retry.

The partial-batch logic is written here rather than taken from Powertools' batch utilities:
it needs the deadline, the warm event loop this module keeps for the container's life, and
poison messages moved to the DLQ of the queue they came from (not retried), and is a few dozen
lines. A message is handled by the stage it belongs to, whichever of the two queues it came
from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from worker import logs
from worker.aws.dead_letters import dead_letter
from worker.aws.queues import hand_on
from worker.aws.visibility import change_visibility, retry_delay
from worker.core.events import parse_notification
from worker.ingest.stage import process_object
from worker.resources import Resources
from worker.runtimes.handlers import HANDLERS, Action, Disposition, stage_of
from worker.settings import STAGES, Settings, Stage

log = logging.getLogger(__name__)


class LambdaContext(Protocol):
    aws_request_id: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True)
class _Deadline:
    at: float  # time.monotonic()

    def left(self) -> float:
        return max(0.0, self.at - time.monotonic())


class LambdaApp:
    """One per container: a loop and a runtime that live as long as it stays warm."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self.resources: Resources | None = None
        self.invocations = 0

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return self._loop.run_until_complete(self._handle(event, context))

    def close(self) -> None:
        """Close the runtime and the loop (Lambda itself just freezes the container)."""
        self._loop.run_until_complete(self._stack.aclose())
        self._loop.close()

    async def _open(self) -> Resources:
        if self.resources is None:
            settings = self._settings or Settings.from_environment()
            self.resources = await self._stack.enter_async_context(Resources.open(settings))
        return self.resources

    async def _handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        self.invocations += 1
        res = await self._open()
        margin = res.settings.lambda_safety_margin_seconds
        deadline = _Deadline(
            time.monotonic() + context.get_remaining_time_in_millis() / 1000 - margin
        )
        records = event.get("Records") or []
        sources = {record.get("eventSource") for record in records}
        with logs.bind(request_id=context.aws_request_id):
            try:
                if sources == {"aws:sqs"}:
                    return await self._sqs_batch(res, records, deadline)
                if sources == {"aws:s3"}:
                    return await self._s3_event(res, event, deadline)
            finally:
                await res.metrics.flush()  # the container may be frozen after this invocation
        raise ValueError(
            f"unsupported event: expected SQS or S3 records, got {sorted(map(str, sources))}"
        )

    async def _sqs_batch(
        self, res: Resources, records: list[dict[str, Any]], deadline: _Deadline
    ) -> dict[str, Any]:
        slots = asyncio.Semaphore(res.settings.files_in_flight)
        # At the deadline files stop by themselves: the batches in flight get half the safety
        # margin to land, then the checkpoint is saved. What still runs a quarter of the
        # margin later is cancelled.
        margin = res.settings.lambda_safety_margin_seconds
        grace = margin / 2

        async def settle(record: dict[str, Any]) -> bool:
            async with slots:
                with logs.bind(message_id=record.get("messageId", "")):
                    return await _settle_record(res, record, deadline.at, deadline.at + grace)

        tasks = {asyncio.ensure_future(settle(record)): record for record in records}
        done, pending = await asyncio.wait(tasks, timeout=deadline.left() + margin * 3 / 4)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("deadline reached; %d message(s) left for a retry", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
        failures = [
            {"itemIdentifier": record["messageId"]}
            for task, record in tasks.items()
            if task not in done or task.exception() is not None or not task.result()
        ]
        for task in done:
            if task.exception() is not None:
                log.error("unexpected error", exc_info=task.exception())
        return {"batchItemFailures": failures}

    async def _s3_event(
        self, res: Resources, event: dict[str, Any], deadline: _Deadline
    ) -> dict[str, Any]:
        refs = parse_notification(event)
        async with asyncio.timeout(deadline.left()):
            results = [await process_object(res, ref) for ref in refs]
        return {
            "results": [
                {
                    "bucket": r.bucket,
                    "key": r.key,
                    "upload_id": r.upload_id,
                    "status": r.outcome.value,
                    "total_records": r.total,
                    "successful_records": r.successful,
                    "failed_records": r.failed,
                    "error": r.error,
                }
                for r in results
            ]
        }


async def _settle_record(
    res: Resources, record: dict[str, Any], stop_at: float, land_by: float
) -> bool:
    """True when the message is done with for this receive: processed, rejected,
    dead-lettered, or handed on in a new message. A message to retry is made visible again
    after the backoff (the queue's own visibility timeout is not waited out).

    A message is handled by the stage it belongs to, whichever queue it came from; a poison
    message goes to the DLQ of the queue it came from."""
    body = record.get("body", "")
    found_on, source_url = _source(record, res.settings)
    stage = stage_of(body) or found_on
    handler, queue_url = HANDLERS[stage], res.settings.queue_url_of(stage)
    if time.monotonic() >= stop_at:  # its turn came too late: hand it on untouched
        disposition = Disposition(Action.CONTINUE, "not started before the deadline")
    else:
        disposition = await handler(res, body, stop_at=stop_at, land_by=land_by)
    if disposition.action is Action.DELETE:
        return True
    if disposition.action is Action.DEAD_LETTER:
        return await dead_letter(
            res.sqs,
            res.settings.dlq_url_of(stage),
            body=body,
            message_id=record.get("messageId", ""),
            reason=disposition.reason,
        )
    if disposition.action in (Action.CONTINUE, Action.WAIT) and await hand_on(
        res.sqs, queue_url, body, delay=disposition.not_before
    ):
        return True
    receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
    delay = retry_delay(
        receives,
        base=res.settings.retry_backoff_seconds,
        cap=res.settings.retry_backoff_max_seconds,
        not_before=disposition.not_before,
    )
    source_url = source_url or queue_url
    if source_url and record.get("receiptHandle"):
        await change_visibility(res.sqs, source_url, record["receiptHandle"], delay)
    return False


def _source(record: dict[str, Any], settings: Settings) -> tuple[Stage, str | None]:
    """The stage whose queue a record came from (its ``eventSourceARN`` names the queue, as
    the last part of the queue's URL does) and that queue's URL; the ingest queue's when
    the ARN names neither."""
    name = str(record.get("eventSourceARN", "")).rsplit(":", 1)[-1]
    for stage in STAGES:
        url = settings.queue_url_of(stage)
        if name and url and url.rstrip("/").rsplit("/", 1)[-1] == name:
            return stage, url
    return "ingest", None


logs.configure()
handler = LambdaApp()
