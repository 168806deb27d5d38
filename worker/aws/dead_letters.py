"""Poison messages go straight to the DLQ of the queue they were found on (``DLQ_URL`` or
``VALIDATION_DLQ_URL``), with the reason as a message attribute."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.aws.queues import entry_bytes
from worker.core.limits import SQS_MESSAGE_BYTES, preview

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)


async def dead_letter(
    sqs: SQSClient, dlq_url: str | None, *, body: str, message_id: str, reason: str
) -> bool:
    """Send a copy to the DLQ; True when the original may now be deleted."""
    if not dlq_url:
        log.error(
            "poison message and no DLQ set for its queue (DLQ_URL, VALIDATION_DLQ_URL); "
            "leaving it for the queue's redrive policy",
            extra={"reason": reason},
        )
        return False
    entry: dict[str, Any] = {
        "MessageBody": body or "(empty)",
        "MessageAttributes": {
            "reason": {"DataType": "String", "StringValue": preview(reason, 1_000)},
            "source_message_id": {"DataType": "String", "StringValue": message_id or "-"},
        },
    }
    if entry_bytes(entry) > SQS_MESSAGE_BYTES:  # the body itself fits: it was a message
        del entry["MessageAttributes"]
    try:
        await sqs.send_message(QueueUrl=dlq_url, **entry)
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not move a poison message to the DLQ", extra={"error": error_code(exc)})
        return False
    log.error("poison message moved to the DLQ", extra={"reason": reason})
    return True
