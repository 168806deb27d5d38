"""The DynamoDB staging writer: concurrent BatchWriteItem calls with backoff and jitter.

aioboto3's ``BatchWriter`` re-sends ``UnprocessedItems`` immediately and one batch at a time;
this writer keeps a bounded number of batches in flight, and backs off (exponentially, with full
jitter) on ``UnprocessedItems``, throttling and network errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.aws.errors import error_code, is_retryable
from worker.core.errors import TransientError
from worker.core.items import Item
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


# What to store instead of an item DynamoDB refuses (None: fail the batch).
OnRefused = Callable[[Item, str], Item | None]


def _message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or error_code(exc)
    return str(exc)


class ItemWriter:
    """Writes put and delete requests to one table, ``BATCH_SIZE`` per call, several at once.

    Use as an async context manager; leaving the block waits for every batch. The first batch
    that fails for good cancels the others and surfaces as a :class:`TransientError`. A batch
    DynamoDB refuses as it is (ValidationException) is split to find the item at fault, which
    is replaced by what ``on_refused`` makes of it.
    """

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        *,
        batches_in_flight: int,
        max_attempts: int,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        on_refused: OnRefused | None = None,
    ) -> None:
        self._client = client
        self._on_refused = on_refused
        self._table = table
        self._slots = asyncio.BoundedSemaphore(batches_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[dict[str, Any]] = []
        self._failure: BaseException | None = None
        self._retrying = AsyncRetrying(
            retry=retry_if_exception_type(
                (_Unfinished, ClientError, HTTPClientError, BotocoreConnectionError)
            ),
            wait=wait_random_exponential(multiplier=base_delay, max=max_delay),
            stop=stop_after_attempt(max_attempts),
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
            max_attempts=settings.staging_max_attempts,
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
        elif isinstance(exc, asyncio.CancelledError):
            await self._cancel_all()
        else:
            # Let batches already sent land, so that a clean-up that follows (deleting the
            # items of a rejected upload) is not overtaken by a late put.
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def put(self, item: Item) -> None:
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

    async def _add(self, request: dict[str, Any]) -> None:
        self._pending.append(request)
        if len(self._pending) == BATCH_SIZE:
            await self._dispatch()

    async def _dispatch(self) -> None:
        self._raise_failure()
        batch, self._pending = self._pending, []
        await self._slots.acquire()  # back-pressure: the reader waits for a free slot
        task = asyncio.create_task(self._write_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
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
        replacement = self._on_refused(item, reason) if item and self._on_refused else None
        if replacement is None:
            raise TransientError(f"DynamoDB {self._table}: ValidationException: {reason}")
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
        """One batch, with its unprocessed requests re-sent after a pause."""
        requests = batch
        # A copy per batch: a retrying object keeps its state on itself, and batches run at once.
        async for attempt in self._retrying.copy():
            with attempt:
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
                    raise
                unprocessed = response.get("UnprocessedItems", {}).get(self._table)
                if unprocessed:
                    requests = cast("list[dict[str, Any]]", unprocessed)
                    raise _Unfinished(f"{len(requests)} unprocessed items")

    async def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
