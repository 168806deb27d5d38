"""SQS calls of the operator commands and of a stopping consumer: receive, hand back, move.

Every botocore error becomes a :class:`TransientError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import TransientError

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
