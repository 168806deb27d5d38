"""The SQS receive loop: long polling, a bounded number of messages in flight, one disposition
per message (delete, retry after a backoff, or dead-letter a poison message to the DLQ of the
queue it was found on). What a message means is up to its handler
(``worker.runtimes.handlers``): the worker runs one loop for the ingest queue and one for the
validation queue, and a loop that receives a message of the other stage hands it on to that
stage's queue rather than taking it for poison."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker import logs
from worker.aws.acknowledger import Acknowledger
from worker.aws.dead_letters import dead_letter
from worker.aws.errors import error_code
from worker.aws.queues import QueueOperations, hand_on
from worker.aws.task_protection import TaskProtection
from worker.aws.visibility import MessageVisibility, change_visibility, retry_delay
from worker.core.errors import ConfigurationError, TransientError
from worker.resources import Resources
from worker.runtimes.handlers import HANDLERS, Action, Handler, stage_of
from worker.settings import QUEUE_VARIABLES, Stage

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

# In --drain mode an empty receive ends the run, so it need not wait the full long poll.
DRAIN_WAIT_SECONDS = 2
# ReceiveMessage returns at most this many messages.
MAX_RECEIVE = 10
# The loop goes round at least this often while every slot is busy (liveness).
LOOP_TICK_SECONDS = 5
# Receives that may be under way at once: while one waits for SQS's answer, a slot that comes
# free is filled by the next (on files of a few rows, one receive at a time would leave slots
# idle for a round trip each).
RECEIVERS = 2


async def check_resources(res: Resources, *queue_urls: str) -> None:
    """Fail fast at start-up when a queue or the staging table cannot be reached (the
    database was reached when the runtime opened)."""
    for queue_url in queue_urls:
        try:
            await res.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        except (ClientError, BotoCoreError) as exc:
            raise ConfigurationError(
                f"queue {queue_url} is not reachable: {error_code(exc)}"
            ) from exc
    table = res.settings.dynamodb_table
    try:
        await res.dynamodb.describe_table(TableName=table)
    except (ClientError, BotoCoreError) as exc:
        raise ConfigurationError(f"table {table} is not reachable: {error_code(exc)}") from exc


class Consumer:
    """Receives from one stage's queue and handles up to ``capacity`` messages at once.

    ``stage`` (``ingest`` unless ``queue_url`` is the validation queue) chooses the queue, the
    handler, the capacity (``FILES_IN_FLIGHT`` or ``VALIDATIONS_IN_FLIGHT``) and the DLQ where
    poison messages go; ``queue_url``, ``handler`` and ``capacity`` override it.

    A slot of a ``BoundedSemaphore`` is taken per message and freed as soon as its handler
    returns. ``run(drain=True)`` returns once a receive comes back empty and no work is in
    flight. ``stop()`` (SIGTERM) stops receiving: a receive already under way is let finish and
    whatever it brought is handed back at once; work in flight gets the shutdown grace period,
    and what is left then is cancelled (its messages are made visible again at once).
    """

    def __init__(
        self,
        res: Resources,
        *,
        stage: Stage | None = None,
        queue_url: str | None = None,
        handler: Handler | None = None,
        capacity: int | None = None,
        protection: TaskProtection | None = None,
    ) -> None:
        settings = res.settings
        if stage is None:
            stage = (
                "validation"
                if queue_url and queue_url == settings.validation_queue_url
                else "ingest"
            )
        self._res = res
        self._settings = settings
        self._stage: Stage = stage
        self._queue_url = queue_url or settings.require_queue(stage)
        self._handler = handler or HANDLERS[stage]
        default_capacity = (
            settings.files_in_flight if stage == "ingest" else settings.validations_in_flight
        )
        self._slots = asyncio.BoundedSemaphore(capacity or default_capacity)
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # ECS scale-in protection, held while a message is being handled (shared by the loops).
        self._protection = protection
        self._acks: Acknowledger
        # When each receive loop last went round (liveness: the stalest one counts).
        self._turns: dict[int, float] = {}
        self._created = time.monotonic()
        self._stop_asked_at = 0.0

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        if not self._stopping.is_set():
            log.info("stopping: no new messages will be received")
            self._stop_asked_at = time.monotonic()
        self._stopping.set()

    async def run(self, *, drain: bool = False) -> None:
        async with Acknowledger(self._res.sqs, self._queue_url) as self._acks:
            try:
                async with asyncio.TaskGroup() as receivers:
                    for number in range(RECEIVERS):
                        receivers.create_task(self._receive_loop(number, drain=drain))
            finally:
                await self._finish_in_flight()

    @property
    def last_turn(self) -> float:
        """When the stalest receive loop last went round (when none runs: when the last one
        ended, or the consumer was made)."""
        return min(self._turns.values(), default=self._created)

    async def _receive_loop(self, number: int, *, drain: bool) -> None:
        try:
            await self._receive_until_stopped(number, drain=drain)
        finally:
            self._created = max(self._created, self._turns.pop(number, self._created))

    async def _receive_until_stopped(self, number: int, *, drain: bool) -> None:
        wait = min(self._settings.receive_wait_seconds, DRAIN_WAIT_SECONDS) if drain else None
        failures = 0
        while not self._stopping.is_set():
            self._turns[number] = time.monotonic()
            slots = await self._take_slots()
            if not slots:
                continue  # every slot still busy: look again (the loop stays live)
            if self._stopping.is_set():  # asked while waiting for a slot: no new receive
                self._release(slots)
                break
            try:
                messages = await self._receive(slots, wait)
            except (ClientError, BotoCoreError) as exc:
                self._release(slots)
                failures += 1
                delay = min(2.0**failures, 30.0)
                log.warning(
                    "receive failed; retrying",
                    extra={"error": error_code(exc), "retry_in_seconds": delay},
                )
                await self._sleep_unless_stopped(delay)
                continue
            failures = 0
            self._release(slots - len(messages))
            if self._stopping.is_set():
                await self._hand_back(messages)
                break
            for message in messages:
                self._start(message)
            if not messages and drain:
                if not self._tasks:
                    break
                await asyncio.wait(
                    self._tasks, timeout=LOOP_TICK_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )

    async def _take_slots(self) -> int:
        """Wait (a few seconds at most) for a free slot, then take every other free one, up to
        one receive's worth; 0 when none came free."""
        try:
            await asyncio.wait_for(self._slots.acquire(), LOOP_TICK_SECONDS)
        except TimeoutError:
            return 0
        taken = 1
        while taken < MAX_RECEIVE and not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            taken += 1
        return taken

    def _release(self, count: int) -> None:
        for _ in range(count):
            self._slots.release()

    def _start(self, message: MessageTypeDef) -> None:
        if self._protection is not None:
            self._protection.hold()
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()  # a finished message frees its slot at once
        if self._protection is not None:
            self._protection.release()

    async def _receive(self, count: int, wait: int | None) -> list[MessageTypeDef]:
        """One receive, never cancelled midway: messages SQS has handed over are never
        dropped on the floor (a stop that lands during a long poll waits for it)."""
        response = await self._res.sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=self._settings.receive_wait_seconds if wait is None else wait,
            VisibilityTimeout=self._settings.visibility_timeout_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return list(response.get("Messages", []))

    async def _hand_back(self, messages: list[MessageTypeDef]) -> None:
        """Messages received after a stop was asked for go back to the queue, visible at once."""
        if not messages:
            return
        ids = [m.get("MessageId", "") for m in messages]
        try:
            await QueueOperations(self._res.sqs).hand_back(self._queue_url, messages)
        except TransientError as exc:
            log.warning(
                "stopping: could not hand back %d message(s); they return when their "
                "visibility runs out",
                len(messages),
                extra={"message_ids": ids, "error": str(exc)},
            )
            return
        log.info(
            "stopping: %d message(s) received during the last poll handed back",
            len(messages),
            extra={"message_ids": ids},
        )

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _finish_in_flight(self) -> None:
        if not self._tasks:
            return
        grace = None
        if self._stopping.is_set():  # counted from the stop, not from the last poll's end
            spent = time.monotonic() - self._stop_asked_at
            grace = max(0.0, self._settings.shutdown_grace_seconds - spent)
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
        owner = stage_of(message.get("Body", ""))
        if owner is not None and owner != self._stage:
            target = self._settings.queue_url_of(owner)
            if target != self._queue_url:
                await self._pass_on(message, owner, target)
                return
        visibility = MessageVisibility(
            self._res.sqs,
            self._queue_url,
            message["ReceiptHandle"],
            self._settings.visibility_timeout_seconds,
        )
        try:
            async with visibility:
                disposition = await self._handler(self._res, message.get("Body", ""))
        except asyncio.CancelledError:
            # Shutdown: hand the message back so another worker can take it at once.
            await asyncio.shield(visibility.set(0))
            raise
        if disposition.action is Action.DELETE:
            await self._delete(message)
        elif disposition.action is Action.DEAD_LETTER:
            await self._dead_letter(message, disposition.reason)
        elif disposition.action in (Action.CONTINUE, Action.WAIT):
            body, delay = message.get("Body", ""), disposition.not_before
            if await hand_on(self._res.sqs, self._queue_url, body, delay=delay):
                await self._delete(message)
            elif disposition.action is Action.WAIT:
                await visibility.set(self._retry_delay(message, delay))
            else:
                await visibility.set(0)
        else:
            await visibility.set(self._retry_delay(message, disposition.not_before))

    def _retry_delay(self, message: MessageTypeDef, not_before: float = 0.0) -> int:
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        delay = retry_delay(
            receives,
            base=self._settings.retry_backoff_seconds,
            cap=self._settings.retry_backoff_max_seconds,
            not_before=not_before,
        )
        log.info("message left for a retry", extra={"receive_count": receives, "retry_in": delay})
        return delay

    async def _pass_on(self, message: MessageTypeDef, owner: Stage, target: str | None) -> None:
        """A message of the other stage (a validation job on the ingest queue, an S3 event on
        the validation queue) is not poison: it is sent to that stage's queue, then deleted
        here. Only when that queue is not configured does it go to this queue's DLQ."""
        if not target:
            reason = f"a message for the {owner} stage, and {QUEUE_VARIABLES[owner]} is not set"
            await self._dead_letter(message, reason)
            return
        log.info(
            "message of the %s stage found on the %s queue; handing it on",
            owner,
            self._stage,
            extra={"to_queue": target},
        )
        if await hand_on(self._res.sqs, target, message.get("Body", "")):
            await self._delete(message)
        else:
            delay = self._retry_delay(message)
            await change_visibility(self._res.sqs, self._queue_url, message["ReceiptHandle"], delay)

    async def _delete(self, message: MessageTypeDef) -> None:
        # A failed delete is logged by the acknowledger; the message comes back and is then
        # acknowledged as a duplicate.
        await self._acks.delete(message["ReceiptHandle"])

    async def _dead_letter(self, message: MessageTypeDef, reason: str) -> None:
        moved = await dead_letter(
            self._res.sqs,
            self._settings.dlq_url_of(self._stage),
            body=message.get("Body", ""),
            message_id=message.get("MessageId", ""),
            reason=reason,
        )
        if moved:
            await self._delete(message)
