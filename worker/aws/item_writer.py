"""The DynamoDB item writer: concurrent BatchWriteItem calls, paced to what DynamoDB accepts.

aioboto3's ``BatchWriter`` re-sends ``UnprocessedItems`` immediately and one batch at a time.
This writer keeps up to ``batches_in_flight`` batches in flight at a send rate that follows what
DynamoDB delivers (``worker.core.pacing``), backs off with full jitter on ``UnprocessedItems``,
throttling and network errors, and gives up only after making no progress at all for
``stall_seconds``. It knows, at any time, the highest row below which every row is written
(``confirmed_through``): the checkpoint an interrupted file resumes from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from worker.aws.errors import error_code, is_retryable
from worker.core.errors import LeaseLostError, TransientError
from worker.core.items import Item
from worker.core.pacing import Pacer
from worker.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_dynamodb.type_defs import WriteRequestUnionTypeDef

log = logging.getLogger(__name__)

BATCH_SIZE = 25  # BatchWriteItem's limit


class _Unfinished(Exception):
    """Some requests of a batch are still to be written: try them again after a pause."""


class _Refused(Exception):
    """DynamoDB refused these requests as they are (ValidationException): no retry helps."""

    def __init__(self, requests: list[dict[str, Any]], reason: str) -> None:
        super().__init__(reason)
        self.requests = requests
        self.reason = reason


# What to store instead of an item DynamoDB refuses, given the item and DynamoDB's reason.
OnRefused = Callable[[Item, str], Item]


def _message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or error_code(exc)
    return str(exc)


class ItemWriter:
    """Writes put and delete requests to one table, ``BATCH_SIZE`` per call, several at once.

    Use as an async context manager; leaving the block waits for every batch (or, when it is
    left by a cancellation or a lost lease, cancels them). A batch that fails for good
    surfaces as a :class:`TransientError` at the next ``put`` or on leaving. A batch DynamoDB
    refuses as it is (ValidationException) is split to find the item at fault, which is
    replaced by what ``on_refused`` makes of it (without ``on_refused``, the batch fails).
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        batches_in_flight: int,
        stall_seconds: float,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        on_refused: OnRefused | None = None,
    ) -> None:
        self._client = client
        self._table = table
        self._stall_seconds = stall_seconds
        self._on_refused = on_refused
        self.pacer = Pacer(batches_in_flight)
        self._tasks: dict[asyncio.Task[None], int] = {}  # each batch and its first row (or 0)
        self._pending: list[dict[str, Any]] = []
        self._pending_first = 0
        self._last_row = 0  # the highest row handed to put()
        self._lost_from = 0  # the first row of a batch that failed or was cancelled
        self._failure: BaseException | None = None
        self._progress_at = time.monotonic()
        self.throttled_items = 0  # items DynamoDB turned back (UnprocessedItems, throttles)
        # Called before every request, re-sends included: raises (LeaseLostError) once this
        # writer may no longer write, e.g. ``Lease.check`` of the upload it writes.
        self.fence: Callable[[], None] = lambda: None
        self._backoff = wait_random_exponential(multiplier=base_delay, max=max_delay)
        self._retrying = AsyncRetrying(
            retry=retry_if_exception_type(
                (_Unfinished, ClientError, HTTPClientError, BotocoreConnectionError)
            ),
            wait=self._wait,
            stop=self._stalled,
            reraise=True,
        )

    @classmethod
    def from_settings(
        cls, client: DynamoDBClient, settings: Settings, *, on_refused: OnRefused | None = None
    ) -> Self:
        return cls(
            client,
            settings.dynamodb_table,
            batches_in_flight=settings.batches_in_flight,
            stall_seconds=settings.staging_stall_seconds,
            on_refused=on_refused,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.flush()
        elif isinstance(exc, asyncio.CancelledError | LeaseLostError):
            await self._cancel_all()  # another attempt may own the upload: write no more
        else:
            # Let batches already sent land (they count for the checkpoint), so that a clean-up
            # that follows (deleting the items of a rejected upload) is not overtaken either.
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def confirmed_through(self) -> int:
        """The highest row N such that every row up to N handed to ``put`` is written."""
        firsts = (*self._tasks.values(), self._pending_first, self._lost_from)
        unfinished = [first for first in firsts if first]
        return min(unfinished) - 1 if unfinished else self._last_row

    async def put(self, item: Item, *, row: int = 0) -> None:
        """Queue an item; ``row`` (its row number, rising) makes it count for the checkpoint."""
        if row:
            self._pending_first = self._pending_first or row
            self._last_row = row
        await self._add({"PutRequest": {"Item": item}})

    async def delete(self, key: Item) -> None:
        await self._add({"DeleteRequest": {"Key": key}})

    async def flush(self) -> None:
        """Send what is pending and wait for every batch in flight."""
        if self._pending:
            await self._dispatch()
        while self._tasks:
            await asyncio.wait(self._tasks)
            self._raise_failure()

    async def settle(self, until: float) -> None:
        """Let the batches in flight land until ``until`` (a ``time.monotonic()`` value), then
        cancel what is left; nothing pending is sent. For a writer that must stop soon."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=max(0.0, until - time.monotonic()))
        await self._cancel_all()

    async def _add(self, request: dict[str, Any]) -> None:
        self._pending.append(request)
        if len(self._pending) == BATCH_SIZE:
            await self._dispatch()

    async def _dispatch(self) -> None:
        self._raise_failure()
        await self.pacer.acquire(len(self._pending))  # back-pressure: the reader waits
        # Only now: while it waits, the batch still counts as pending for the checkpoint.
        batch, self._pending = self._pending, []
        first, self._pending_first = self._pending_first, 0  # 0: a batch without rows
        task = asyncio.create_task(self._write_batch(batch))
        self._tasks[task] = first
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        first = self._tasks.pop(task)
        self.pacer.release()
        if first and (task.cancelled() or task.exception() is not None):
            self._lost_from = min(self._lost_from or first, first)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._failure = self._failure or exc

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure = self._failure
            if isinstance(failure, TransientError):
                raise failure
            raise TransientError(
                f"DynamoDB {self._table}: {error_code(failure)}: {failure}"
            ) from failure

    def _wait(self, state: RetryCallState) -> float:
        """Once the writer is paced, what DynamoDB turned back goes again as the pacer allows;
        anything else (a network error; a throttle before pacing starts) backs off
        exponentially, with full jitter."""
        failure = state.outcome.exception() if state.outcome else None
        throttled = isinstance(failure, _Unfinished) or (
            isinstance(failure, ClientError) and is_retryable(failure)
        )
        if throttled and self.pacer.rate is not None:
            return 0.0
        return float(self._backoff(state))

    def _stalled(self, state: RetryCallState) -> bool:
        """Give up once no request of this writer has landed for ``stall_seconds``."""
        return time.monotonic() - self._progress_at > self._stall_seconds

    async def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        try:
            await self._send(batch)
        except _Refused as refused:
            await self._isolate(refused.requests, refused.reason)

    async def _isolate(self, requests: list[dict[str, Any]], reason: str) -> None:
        """DynamoDB refused a batch whole (ValidationException: an item too large, say): split
        it until the request it refuses is alone, then store the replacement ``on_refused``
        makes for it (a row error). Without one, or if that is refused too, the batch fails."""
        if len(requests) > 1:
            half = len(requests) // 2
            for part in (requests[:half], requests[half:]):
                try:
                    await self._send(part)
                except _Refused as refused:
                    await self._isolate(refused.requests, refused.reason)
            return
        item = requests[0].get("PutRequest", {}).get("Item")
        if item is None or self._on_refused is None:
            raise TransientError(f"DynamoDB {self._table}: ValidationException: {reason}")
        replacement = self._on_refused(item, reason)
        log.warning(
            "DynamoDB refused an item; it is stored as a row error",
            extra={"record_id": item.get("record_id", {}).get("S"), "reason": reason},
        )
        try:
            await self._send([{"PutRequest": {"Item": replacement}}])
        except _Refused as refused:
            raise TransientError(
                f"DynamoDB {self._table}: ValidationException: {refused.reason}"
            ) from None

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        """One batch, with what DynamoDB turns back re-sent after a pause."""
        requests = batch
        # A copy per batch: a retrying object keeps its state on itself, and batches run at once.
        async for attempt in self._retrying.copy():
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    await self.pacer.pace(len(requests))  # re-sends count against the rate
                sent_in = self.pacer.generation
                self.fence()
                try:
                    response = await self._client.batch_write_item(
                        RequestItems={self._table: cast("list[WriteRequestUnionTypeDef]", requests)}
                    )
                except (ClientError, HTTPClientError, BotocoreConnectionError) as exc:
                    if error_code(exc) == "ValidationException":
                        raise _Refused(requests, _message(exc)) from exc
                    if not is_retryable(exc):
                        raise TransientError(
                            f"DynamoDB {self._table}: {error_code(exc)}: {exc}"
                        ) from exc
                    if isinstance(exc, ClientError):  # a throttle: nothing of it landed
                        self.throttled_items += len(requests)
                        self.pacer.throttled(sent_in)
                    raise
                unprocessed = cast(
                    "list[dict[str, Any]]", response.get("UnprocessedItems", {}).get(self._table)
                )
                if (landed := len(requests) - len(unprocessed or ())) > 0:
                    self._progress_at = time.monotonic()
                    self.pacer.landed(landed)
                if unprocessed:
                    self.throttled_items += len(unprocessed)
                    self.pacer.throttled(sent_in)
                    requests = unprocessed
                    raise _Unfinished(f"{len(requests)} unprocessed items")

    async def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
