"""SQS visibility of one message while it is worked on: kept extended by a :class:`Keepalive`,
or changed once (handed back at once, or retried after a backoff)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.background import Keepalive

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)

MAX_VISIBILITY_SECONDS = 12 * 3600


def retry_delay(receive_count: int, *, base: float, cap: float, not_before: float = 0.0) -> int:
    """Seconds a failed message stays invisible: doubles with each receive, up to ``cap``; and
    not less than ``not_before`` (another worker's lease runs out then: each early receive
    would bring the message closer to the DLQ)."""
    delay = min(cap, base * 2 ** max(0, receive_count - 1))
    if not_before:
        delay = max(delay, int(not_before) + 1)
    return int(min(delay, MAX_VISIBILITY_SECONDS))


async def change_visibility(
    sqs: SQSClient, queue_url: str, receipt_handle: str, seconds: int
) -> bool:
    """Make a received message visible again in ``seconds`` (0: at once); False if SQS
    refused (the message then comes back when its current visibility runs out)."""
    try:
        await sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not change message visibility", extra={"error": error_code(exc)})
        return False
    return True


class MessageVisibility(Keepalive):
    """While the block runs, the message's visibility is re-extended to ``timeout`` every
    ``timeout / 3`` seconds, so a long file is never received by a second worker."""

    def __init__(self, sqs: SQSClient, queue_url: str, receipt_handle: str, timeout: int) -> None:
        super().__init__(self._extend, timeout, what="message visibility")
        self._sqs = sqs
        self._queue_url = queue_url
        self._receipt_handle = receipt_handle

    async def _extend(self) -> bool:
        await self._sqs.change_message_visibility(
            QueueUrl=self._queue_url,
            ReceiptHandle=self._receipt_handle,
            VisibilityTimeout=int(self.period),
        )
        return True

    async def set(self, seconds: int) -> bool:
        """Make the message visible again in ``seconds`` (0: at once)."""
        return await change_visibility(self._sqs, self._queue_url, self._receipt_handle, seconds)
