"""The SQS receive loop: long polling, a bounded number of messages in flight, one disposition
per message (delete, retry after a backoff, or dead-letter a poison message). What a message
means is up to its handler (``worker.messages``): the worker runs one loop for the ingest queue
and one for the validation queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker import logs
from worker.acks import Acknowledger
from worker.aws_errors import error_code
from worker.dead_letters import dead_letter
from worker.disposition import Action
from worker.errors import ConfigurationError
from worker.messages import Handler, handle_ingest
from worker.runtime import Runtime
from worker.visibility import MAX_VISIBILITY_SECONDS, VisibilityHeartbeat, retry_delay

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

# In --drain mode an empty receive ends the run, so it need not wait the full long poll.
DRAIN_WAIT_SECONDS = 2


async def check_resources(rt: Runtime, *queue_urls: str) -> None:
    """Fail fast at start-up when a queue or the staging table cannot be reached (the
    database was reached when the runtime opened)."""
    for queue_url in queue_urls:
        try:
            await rt.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        except (ClientError, BotoCoreError) as exc:
            raise ConfigurationError(
                f"queue {queue_url} is not reachable: {error_code(exc)}"
            ) from exc
    table = rt.settings.dynamodb_table
    try:
        await rt.dynamodb.describe_table(TableName=table)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(f"table {table} is not reachable: {error_code(exc)}") from exc


class Consumer:
    """Receives from one queue and handles up to ``capacity`` messages at once.

    ``run(drain=True)`` returns once a receive comes back empty and no work is in flight;
    ``stop()`` (SIGTERM) stops receiving at once, lets work in flight finish within the shutdown
    grace period and cancels what is left (its messages come back after their visibility
    timeout).
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        queue_url: str | None = None,
        handler: Handler = handle_ingest,
        capacity: int | None = None,
    ) -> None:
        self._rt = rt
        self._settings = rt.settings
        self._queue_url = queue_url or rt.settings.require_ingest_queue()
        self._handler = handler
        self._capacity = capacity or rt.settings.files_in_flight
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._acks: Acknowledger
        self.last_turn = time.monotonic()  # when the receive loop last went round (liveness)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: no new messages will be received")
        self._stopping.set()

    async def run(self, *, drain: bool = False) -> None:
        async with Acknowledger(self._rt.sqs, self._queue_url) as self._acks:
            await self._run(drain=drain)

    async def _run(self, *, drain: bool) -> None:
        capacity = self._capacity
        wait = min(self._settings.receive_wait_seconds, DRAIN_WAIT_SECONDS) if drain else None
        failures = 0
        try:
            while not self._stopping.is_set():
                self.last_turn = time.monotonic()
                if len(self._tasks) >= capacity:
                    await self._wait_for_room()
                    continue
                try:
                    messages = await self._receive(min(10, capacity - len(self._tasks)), wait)
                except (ClientError, BotoCoreError) as exc:
                    failures += 1
                    delay = min(2.0**failures, 30.0)
                    log.warning(
                        "receive failed; retrying",
                        extra={"error": error_code(exc), "retry_in_seconds": delay},
                    )
                    await self._sleep_unless_stopped(delay)
                    continue
                failures = 0
                if messages is None:  # stopped while waiting
                    break
                for message in messages:
                    self._start(message)
                if not messages and drain:
                    if not self._tasks:
                        break
                    await self._wait_for_room()
        finally:
            await self._finish_in_flight()

    def _start(self, message: MessageTypeDef) -> None:
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self, count: int, wait: int | None) -> list[MessageTypeDef] | None:
        receive = asyncio.ensure_future(
            self._rt.sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=self._settings.receive_wait_seconds if wait is None else wait,
                VisibilityTimeout=self._settings.visibility_timeout_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({receive, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not receive.done():
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receive
            return None
        return receive.result().get("Messages", [])

    async def _wait_for_room(self) -> None:
        """Until a file finishes, a stop is asked for, or a few seconds pass (so the loop keeps
        turning and liveness stays true while long files are processed)."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                {*self._tasks, stopping}, timeout=5, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _finish_in_flight(self) -> None:
        if not self._tasks:
            return
        grace = self._settings.shutdown_grace_seconds if self._stopping.is_set() else None
        _, pending = await asyncio.wait(self._tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("shutdown grace period over; %d file(s) handed back", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, message: MessageTypeDef) -> None:
        message_id = message.get("MessageId", "")
        with logs.bind(message_id=message_id):
            try:
                await self._handle_message(message)
            except Exception:  # one bad message never stops the loop
                log.exception("unexpected error while handling a message; it will be retried")

    async def _handle_message(self, message: MessageTypeDef) -> None:
        visibility = VisibilityHeartbeat(
            self._rt.sqs,
            self._queue_url,
            message["ReceiptHandle"],
            self._settings.visibility_timeout_seconds,
        )
        try:
            async with visibility:
                disposition = await self._handler(self._rt, message.get("Body", ""))
        except asyncio.CancelledError:
            # Shutdown: hand the message back so another worker can take it at once.
            await asyncio.shield(visibility.set(0))
            raise
        if disposition.action is Action.DELETE:
            await self._delete(message)
        elif disposition.action is Action.DEAD_LETTER:
            await self._dead_letter(message, disposition.reason)
        else:
            receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            delay = retry_delay(
                receives,
                base=self._settings.retry_backoff_seconds,
                cap=self._settings.retry_backoff_max_seconds,
            )
            # A busy upload is retried when its holder's lease runs out, not sooner: each
            # early receive would bring the message closer to the DLQ.
            if disposition.not_before:
                delay = max(delay, min(int(disposition.not_before) + 1, MAX_VISIBILITY_SECONDS))
            log.info(
                "message left for a retry", extra={"receive_count": receives, "retry_in": delay}
            )
            await visibility.set(delay)

    async def _delete(self, message: MessageTypeDef) -> None:
        # A failed delete is logged by the acknowledger; the message comes back and is then
        # acknowledged as a duplicate.
        await self._acks.delete(message["ReceiptHandle"])

    async def _dead_letter(self, message: MessageTypeDef, reason: str) -> None:
        moved = await dead_letter(
            self._rt.sqs,
            self._settings.dlq_url,
            body=message.get("Body", ""),
            message_id=message.get("MessageId", ""),
            reason=reason,
        )
        if moved:
            await self._delete(message)
