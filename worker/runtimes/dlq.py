"""The operators' DLQ commands: peek at it and redrive it. Both need an SQS client only.

Peeks consume nothing (messages are handed back at once); a redrive sends each message to
the ingest queue first and deletes it from the DLQ after, so an interruption can duplicate a
message (which the pipeline absorbs) but never lose one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.aws.queues import QueueOperations
from worker.core.errors import PoisonMessageError, UploadKeyError
from worker.core.events import parse_message_body
from worker.core.keys import parse_upload_key, rejected_upload_id

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    upload_id: str
    key: str
    receive_count: int
    age_seconds: float
    reason: str


def describe(message: MessageTypeDef) -> DeadLetter:
    """What a DLQ message is about, from its body and attributes alone."""
    attributes = message.get("Attributes", {})
    sent_ms = int(attributes.get("SentTimestamp", "0"))
    message_attributes: dict[str, Any] = dict(message.get("MessageAttributes", {}))
    reason = str(message_attributes.get("reason", {}).get("StringValue", ""))
    upload_id, key = "", ""
    try:
        refs = parse_message_body(message.get("Body", ""))
    except PoisonMessageError as exc:
        reason = reason or str(exc)
    else:
        if refs:
            key = refs[0].key
            try:
                upload_id = parse_upload_key(key).upload_id
            except UploadKeyError:
                upload_id = rejected_upload_id(refs[0].bucket, key)
            if len(refs) > 1:
                key += f" (+{len(refs) - 1} more)"
    return DeadLetter(
        message_id=message.get("MessageId", ""),
        upload_id=upload_id,
        key=key,
        receive_count=int(attributes.get("ApproximateReceiveCount", "0")),
        age_seconds=max(0.0, time.time() - sent_ms / 1000) if sent_ms else 0.0,
        reason=reason,
    )


async def peek(sqs: SQSClient, dlq_url: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` DLQ messages, described; every one is handed back before returning."""
    queue = QueueOperations(sqs)
    held: dict[str, MessageTypeDef] = {}
    try:
        while len(held) < limit:
            batch = await queue.receive(dlq_url, limit - len(held), hold_seconds=60)
            fresh = [m for m in batch if m.get("MessageId") not in held]
            if not fresh:
                break
            held.update((m.get("MessageId", ""), m) for m in fresh)
    finally:
        await queue.hand_back(dlq_url, list(held.values()))
    return [describe(m) for m in held.values()]


async def redrive(
    sqs: SQSClient,
    dlq_url: str,
    ingest_url: str,
    *,
    limit: int,
    progress: Callable[[int], None] = lambda _moved: None,
) -> tuple[int, list[str]]:
    """Move up to ``limit`` messages from the DLQ back to the ingest queue."""
    queue = QueueOperations(sqs)
    moved, errors = 0, []
    while moved < limit:
        batch = await queue.receive(dlq_url, limit - moved, hold_seconds=60)
        if not batch:
            break
        count, batch_errors = await queue.move(dlq_url, ingest_url, batch)
        moved += count
        errors += batch_errors
        progress(moved)
        if batch_errors and not count:
            break
    return moved, errors
