"""Invalid rows to the error queue: one message each, sent with SendMessageBatch.

Each message carries ``upload_id`` and ``record_id`` as attributes too, so that consumers can
deduplicate (a worker that dies between sending and recording can send a row twice).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.aws.errors import error_code
from worker.core.errors import TransientError
from worker.validation.judge import Verdict

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

MAX_BATCH = 10


def error_message(upload_id: str, vendor_id: str, s3_key: str, verdict: Verdict) -> dict[str, Any]:
    """The SendMessageBatch entry (without its ``Id``) for one invalid row."""
    body = {
        "upload_id": upload_id,
        "record_id": verdict.record_id,
        "row_number": verdict.row_number,
        "vendor_id": vendor_id,
        "s3_key": s3_key,
        "errors": [v.as_dict() for v in verdict.violations],
        "data": {k: str(v) if isinstance(v, Decimal) else v for k, v in verdict.data.items()},
    }
    return {
        "MessageBody": json.dumps(body, default=str),
        "MessageAttributes": {
            "upload_id": {"DataType": "String", "StringValue": upload_id},
            "record_id": {"DataType": "String", "StringValue": verdict.record_id},
        },
    }


class _Unsent(Exception):
    pass


async def send_errors(
    sqs: SQSClient, queue_url: str, messages: list[dict[str, Any]], *, max_attempts: int
) -> None:
    """Send ``MAX_BATCH`` at a time, re-sending only the entries that failed; what is still
    unsent after ``max_attempts`` is a :class:`TransientError`."""

    async def send(pending: dict[str, dict[str, Any]]) -> None:
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=cast(
                "list[SendMessageBatchRequestEntryTypeDef]",
                [{"Id": i, **m} for i, m in pending.items()],
            ),
        )
        for entry in response.get("Successful", []):
            pending.pop(entry["Id"], None)
        if pending:
            raise _Unsent(f"{len(pending)} error message(s) not sent")

    for start in range(0, len(messages), MAX_BATCH):
        pending = {str(i): m for i, m in enumerate(messages[start : start + MAX_BATCH])}
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((_Unsent, ClientError, BotoCoreError)),
                wait=wait_random_exponential(multiplier=0.1, max=5),
                stop=stop_after_attempt(max_attempts),
                reraise=True,
            ):
                with attempt:
                    await send(pending)
        except _Unsent as exc:
            raise TransientError(f"error queue: {exc}") from exc
        except (ClientError, BotoCoreError) as exc:
            raise TransientError(f"error queue: {error_code(exc)}") from exc
