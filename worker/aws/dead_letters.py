"""Poison messages go straight to the DLQ, with the reason as a message attribute."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = logging.getLogger(__name__)


async def dead_letter(
    sqs: SQSClient, dlq_url: str | None, *, body: str, message_id: str, reason: str
) -> bool:
    """Send a copy to the DLQ; True when the original may now be deleted."""
    if not dlq_url:
        log.error(
            "poison message and no DLQ_URL set; leaving it for the queue's redrive policy",
            extra={"reason": reason},
        )
        return False
    try:
        await sqs.send_message(
            QueueUrl=dlq_url,
            MessageBody=body or "(empty)",
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason},
                "source_message_id": {"DataType": "String", "StringValue": message_id or "-"},
            },
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not move a poison message to the DLQ", extra={"error": error_code(exc)})
        return False
    log.error("poison message moved to the DLQ", extra={"reason": reason})
    return True
