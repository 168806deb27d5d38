"""Deletes of processed messages, sent in batches (DeleteMessageBatch, up to 10 a call).

Entry ids are positions in the batch, never message ids, so the same message delivered twice
in one receive cannot make a whole batch fail with ``BatchEntryIdsNotDistinct``; each entry's
result is checked. A delete that fails is logged: the message comes back, and the pipeline
acknowledges it then as a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.background import Background

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

MAX_BATCH = 10


class Acknowledger(Background):
    """Collects receipt handles and deletes them in batches; ``delete`` returns once its
    message's batch was answered, with whether that entry succeeded."""

    def __init__(self, sqs: SQSClient, queue_url: str, *, linger: float = 0.05) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._linger = linger
        self._pending: asyncio.Queue[tuple[str, asyncio.Future[bool]]] = asyncio.Queue()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await super().__aexit__(exc_type, exc, tb)
        while not self._pending.empty():  # anything left is sent now, one batch at a time
            await self._send([self._pending.get_nowait() for _ in range(self._batch_size())])

    async def delete(self, receipt_handle: str) -> bool:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        await self._pending.put((receipt_handle, done))
        return await done

    def _batch_size(self) -> int:
        return min(MAX_BATCH, self._pending.qsize())

    async def _background(self) -> None:
        while True:
            batch = [await self._pending.get()]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._linger):
                    while len(batch) < MAX_BATCH:
                        batch.append(await self._pending.get())
            await asyncio.shield(self._send(batch))

    async def _send(self, batch: list[tuple[str, asyncio.Future[bool]]]) -> None:
        try:
            response = await self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": handle} for i, (handle, _) in enumerate(batch)
                ],
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not delete messages", extra={"error": error_code(exc)})
            results = {str(i): False for i in range(len(batch))}
        else:
            results = {entry["Id"]: True for entry in response.get("Successful", [])}
            for failure in response.get("Failed", []):
                results[failure["Id"]] = False
                log.warning(
                    "could not delete a message",
                    extra={"error": failure.get("Code"), "detail": failure.get("Message")},
                )
        for i, (_, done) in enumerate(batch):
            if not done.done():
                done.set_result(results.get(str(i), False))
