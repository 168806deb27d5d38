"""SQS visibility of one message while its file is worked on: a heartbeat that extends it
before it runs out, and a one-off change (hand back at once, or retry after a backoff)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws_errors import error_code
from worker.background import Background

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

MAX_VISIBILITY_SECONDS = 12 * 3600


def retry_delay(receive_count: int, *, base: float, cap: float) -> int:
    """Seconds a failed message stays invisible: doubles with each receive, up to ``cap``."""
    return int(min(cap, base * 2 ** max(0, receive_count - 1), MAX_VISIBILITY_SECONDS))


class VisibilityHeartbeat(Background):
    """While the block runs, re-extend the message's visibility to ``timeout`` every
    ``timeout / 3`` seconds, so a long file is never received by a second worker."""

    def __init__(self, sqs: SQSClient, queue_url: str, receipt_handle: str, timeout: int) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._receipt_handle = receipt_handle
        self._timeout = timeout

    async def set(self, seconds: int) -> bool:
        """Make the message visible again in ``seconds`` (0: at once)."""
        try:
            await self._sqs.change_message_visibility(
                QueueUrl=self._queue_url,
                ReceiptHandle=self._receipt_handle,
                VisibilityTimeout=seconds,
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not change message visibility", extra={"error": error_code(exc)})
            return False
        return True

    async def _background(self) -> None:
        interval = max(self._timeout / 3, 0.5)
        while True:
            await asyncio.sleep(interval)
            await self.set(self._timeout)
