"""The operators' DLQ commands: peek at a DLQ and redrive it. Both need an SQS client only.

Each queue has its own DLQ (``DLQ_URL``, ``VALIDATION_DLQ_URL``). Peeks consume nothing
(messages are handed back at once); a redrive returns each message to the queue of the stage
it belongs to — an S3 event to the ingest queue, a validation job to the validation queue, a
poison message to the queue whose DLQ it is in — sending it first and deleting it from the DLQ
after, so an interruption can duplicate a message (which the pipeline absorbs) but never lose
one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from worker.aws.queues import QueueOperations
from worker.core.errors import PoisonMessageError, UploadKeyError
from worker.core.events import parse_message_body
from worker.core.keys import parse_upload_key, rejected_upload_id
from worker.runtimes.handlers import stage_of
from worker.settings import Stage
from worker.validation.jobs import job_upload_id

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
    # The stage it belongs to (None: poison, neither an S3 event nor a validation job).
    stage: Stage | None = None


def describe(message: MessageTypeDef) -> DeadLetter:
    """What a DLQ message is about, from its body and attributes alone: an S3 event names its
    object (and so its upload), a validation job its upload."""
    attributes = message.get("Attributes", {})
    sent_ms = int(attributes.get("SentTimestamp", "0"))
    message_attributes: dict[str, Any] = dict(message.get("MessageAttributes", {}))
    reason = str(message_attributes.get("reason", {}).get("StringValue", ""))
    body = message.get("Body", "")
    upload_id, key = job_upload_id(body) or "", ""
    try:
        refs = [] if upload_id else parse_message_body(body)
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
        stage=stage_of(body),
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
    queues: Mapping[Stage, str],
    *,
    home: Stage,
    limit: int,
    progress: Callable[[int], None] = lambda _moved: None,
) -> tuple[dict[str, int], list[str]]:
    """Move up to ``limit`` messages from the DLQ of ``home``'s queue back: each to the queue
    of the stage it belongs to (``queues[stage]``), a poison message — or one whose stage has
    no queue in ``queues`` — to ``queues[home]``. Returns the count moved to each queue's URL,
    and the errors."""
    queue = QueueOperations(sqs)
    moved: dict[str, int] = {}
    errors: list[str] = []
    total = 0
    while total < limit:
        batch = await queue.receive(dlq_url, limit - total, hold_seconds=60)
        if not batch:
            break
        by_target: dict[str, list[MessageTypeDef]] = {}
        for message in batch:
            stage = stage_of(message.get("Body", "")) or home
            by_target.setdefault(queues.get(stage) or queues[home], []).append(message)
        count = 0
        batch_errors: list[str] = []
        for target, messages in by_target.items():
            sent, failed = await queue.move(dlq_url, target, messages)
            moved[target] = moved.get(target, 0) + sent
            count += sent
            batch_errors += failed
        total += count
        errors += batch_errors
        progress(total)
        if batch_errors and not count:
            break
    return moved, errors
