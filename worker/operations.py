"""What operators do by hand: look at uploads, peek at and redrive the DLQ, reprocess an object.

DLQ peeks consume nothing (messages are handed back at once); a redrive sends each message to
the ingest queue first and deletes it from the DLQ after, so an interruption can duplicate a
message (which the pipeline absorbs) but never lose one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws_errors import error_code
from worker.errors import PoisonMessageError, TransientError, UploadKeyError
from worker.events import parse_message_body
from worker.keys import parse_upload_key, rejected_upload_id
from worker.runtime import Runtime

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef


@dataclass(frozen=True)
class UploadRow:
    upload_id: str
    vendor_id: str
    status: str
    total: int
    successful: int
    failed: int
    valid: int | None
    invalid: int | None
    attempts: int
    updated_at: datetime
    error: str | None


async def list_uploads(
    rt: Runtime, *, status: str | None, vendor: str | None, limit: int
) -> list[UploadRow]:
    async with rt.database.connection() as conn:
        records = await conn.fetch(
            """SELECT upload_id, vendor_id, status, total_records, successful_records,
                      failed_records, valid_records, invalid_records, attempts, updated_at,
                      error_message
               FROM upload_history
               WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR vendor_id = $2)
               ORDER BY updated_at DESC LIMIT $3""",
            status,
            vendor,
            limit,
        )
    return [UploadRow(*record.values()) for record in records]


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


async def last_errors(rt: Runtime, upload_ids: list[str]) -> dict[str, str]:
    """``upload_history.error_message`` of each upload that has one."""
    async with rt.database.connection() as conn:
        records = await conn.fetch(
            "SELECT upload_id, status, error_message FROM upload_history "
            "WHERE upload_id = ANY($1::text[])",
            upload_ids,
        )
    return {r["upload_id"]: f"{r['status']}: {r['error_message'] or ''}" for r in records}


class QueueOperations:
    """SQS calls of the operator commands; every botocore error becomes a TransientError."""

    def __init__(self, rt: Runtime) -> None:
        self._sqs = rt.sqs

    async def receive(self, queue_url: str, count: int, hold_seconds: int) -> list[MessageTypeDef]:
        response = await self._call(
            self._sqs.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=0,
            VisibilityTimeout=hold_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    async def hand_back(self, queue_url: str, messages: list[MessageTypeDef]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            await self._call(
                self._sqs.change_message_visibility_batch,
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )

    async def move(
        self, source: str, target: str, messages: list[MessageTypeDef]
    ) -> tuple[int, list[str]]:
        """Send each message to ``target``, then delete from ``source`` the ones sent.

        Entry ids are positions, so the same message received twice cannot make the batch
        fail with ``BatchEntryIdsNotDistinct``. Returns (moved, errors).
        """
        sent = await self._call(
            self._sqs.send_message_batch,
            QueueUrl=target,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": m.get("Body", ""),
                    "MessageAttributes": _forwardable(m.get("MessageAttributes", {})),
                }
                for i, m in enumerate(messages)
            ],
        )
        errors = [f"send {f['Id']}: {f.get('Code')}" for f in sent.get("Failed", [])]
        done = [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if not done:
            return 0, errors
        deleted = await self._call(
            self._sqs.delete_message_batch,
            QueueUrl=source,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
            ],
        )
        errors += [f"delete {f['Id']}: {f.get('Code')}" for f in deleted.get("Failed", [])]
        return len(deleted.get("Successful", [])), errors

    async def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return await method(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(
                f"SQS {kwargs.get('QueueUrl', '')}: {error_code(exc)}: {exc}"
            ) from exc


def _forwardable(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in attributes.items()
    }


async def peek(rt: Runtime, dlq_url: str, limit: int) -> list[DeadLetter]:
    """Up to ``limit`` DLQ messages, described; every one is handed back before returning."""
    queue = QueueOperations(rt)
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
    rt: Runtime,
    dlq_url: str,
    ingest_url: str,
    *,
    limit: int,
    progress: Callable[[int], None] = lambda _moved: None,
) -> tuple[int, list[str]]:
    """Move up to ``limit`` messages from the DLQ back to the ingest queue."""
    queue = QueueOperations(rt)
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
