"""The Lambda entry point: ``worker.runtimes.lambda_handler.handler``, same image, same pipeline.

It accepts an SQS batch (bodies are S3 notifications) and returns a partial batch response,
``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}``, listing exactly the messages to
retry: transient failures and work that did not finish before the deadline, never the ones that
are done or permanently rejected. It also accepts a direct S3 event and returns a summary per
object.

The event loop, clients, pool and secret cache are created on the first invocation and reused
while the container is warm. Work stops ``LAMBDA_SAFETY_MARGIN_SECONDS`` before
``context.get_remaining_time_in_millis()`` runs out; what is cancelled is recorded ``failed``
and reported for a retry.

The partial-batch logic is written here rather than taken from Powertools' batch utilities:
it needs the deadline, the warm event loop this module keeps for the container's life, and
poison messages moved to the DLQ (not retried), and is a few dozen lines.
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
from worker.core.events import parse_notification
from worker.ingest.stage import process_object
from worker.resources import Resources
from worker.runtimes.handlers import Action, handler_for
from worker.settings import Settings

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
            settings = self._settings or Settings()
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

        async def settle(record: dict[str, Any]) -> bool:
            async with slots:
                with logs.bind(message_id=record.get("messageId", "")):
                    return await _settle_record(res, record)

        tasks = {asyncio.ensure_future(settle(record)): record for record in records}
        done, pending = await asyncio.wait(tasks, timeout=deadline.left())
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


async def _settle_record(res: Resources, record: dict[str, Any]) -> bool:
    """True when the message is done with (processed, rejected, or dead-lettered)."""
    body = record.get("body", "")
    disposition = await handler_for(body)(res, body)
    if disposition.action is Action.DEAD_LETTER:
        return await dead_letter(
            res.sqs,
            res.settings.dlq_url,
            body=body,
            message_id=record.get("messageId", ""),
            reason=disposition.reason,
        )
    return disposition.action is Action.DELETE


logs.configure()
handler = LambdaApp()
