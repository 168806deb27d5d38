"""SQS calls beyond receiving and deleting: the operator commands' receive, hand back and move
(every botocore error becomes a :class:`TransientError`), and handing a message on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import TransientError
from worker.core.limits import SQS_MESSAGE_BYTES

log = logging.getLogger(__name__)

MAX_BATCH = 10  # entries per SQS batch call

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef


class QueueOperations:
    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs

    async def receive(self, queue_url: str, count: int, hold_seconds: int) -> list[MessageTypeDef]:
        response = await self._call(
            self._sqs.receive_message,
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, count),
            # Not 0: a short poll samples only some of SQS's servers, and on a small queue (a
            # DLQ, usually) often answers empty while messages are there.
            WaitTimeSeconds=1,
            VisibilityTimeout=hold_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    async def hand_back(self, queue_url: str, messages: list[MessageTypeDef]) -> None:
        """Make received messages visible again at once; a refused entry is an error."""
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            response = await self._call(
                self._sqs.change_message_visibility_batch,
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
            if failed := response.get("Failed"):
                codes = sorted({str(f.get("Code")) for f in failed})
                raise TransientError(f"SQS {queue_url}: {len(failed)} not handed back: {codes}")

    async def move(
        self, source: str, target: str, messages: list[MessageTypeDef]
    ) -> tuple[int, list[str]]:
        """Send each message to ``target``, then delete from ``source`` the ones sent.

        Entry ids are positions, so the same message received twice cannot make the batch
        fail with ``BatchEntryIdsNotDistinct``; the sends are split as :func:`batches` says.
        Returns (moved, errors).
        """
        entries = [
            {
                "Id": str(i),
                "MessageBody": m.get("Body", ""),
                "MessageAttributes": _forwardable(m.get("MessageAttributes", {})),
            }
            for i, m in enumerate(messages)
        ]
        errors: list[str] = []
        done: list[MessageTypeDef] = []
        for batch in batches(entries):
            sent = await self._call(self._sqs.send_message_batch, QueueUrl=target, Entries=batch)
            errors += [f"send {f['Id']}: {f.get('Code')}" for f in sent.get("Failed", [])]
            done += [messages[int(entry["Id"])] for entry in sent.get("Successful", [])]
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


def entry_bytes(entry: dict[str, Any]) -> int:
    """An entry's size as SQS counts it: the body, and each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, attribute in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute.get("StringValue", "").encode())
        size += len(attribute.get("BinaryValue", b""))
    return size


def batches(messages: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """The messages in SendMessageBatch calls: at most ``MAX_BATCH`` entries and
    ``SQS_MESSAGE_BYTES`` in all per call."""
    batch: list[dict[str, Any]] = []
    size = 0
    for message in messages:
        length = entry_bytes(message)
        if batch and (len(batch) == MAX_BATCH or size + length > SQS_MESSAGE_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch


def _forwardable(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        for name, value in attributes.items()
    }


# SendMessage's longest delay.
MAX_DELAY_SECONDS = 900


async def hand_on(sqs: SQSClient, queue_url: str | None, body: str, *, delay: float = 0.0) -> bool:
    """Send a copy of a message to its queue, visible at once or after ``delay`` seconds (at
    most 15 minutes): a continuation, or a wait, that uses up no receive. False when there is
    no queue or SQS refused (then the original must stay)."""
    if not queue_url:
        return False
    seconds = min(MAX_DELAY_SECONDS, math.ceil(delay))
    try:
        await sqs.send_message(QueueUrl=queue_url, MessageBody=body, DelaySeconds=seconds)
    except (ClientError, BotoCoreError) as exc:
        log.warning("could not hand the message on", extra={"error": error_code(exc)})
        return False
    log.info("handed on in a new message", extra={"delay_seconds": seconds})
    return True
