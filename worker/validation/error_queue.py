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
from worker.aws.queues import batches
from worker.core.errors import TransientError
from worker.core.limits import PREVIEW_CELL_CHARS, SQS_MESSAGE_BYTES, preview
from worker.validation.judge import Verdict

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

# A body, leaving room for its attributes within one SQS message.
MAX_BODY_BYTES = SQS_MESSAGE_BYTES - 4_096


def error_message(upload_id: str, vendor_id: str, s3_key: str, verdict: Verdict) -> dict[str, Any]:
    """The SendMessageBatch entry (without its ``Id``) for one invalid row; its body fits in
    one SQS message whatever the row holds (the row's data is then a preview)."""
    data = _plain(verdict.data)
    body: dict[str, Any] = {
        "upload_id": upload_id,
        "record_id": verdict.record_id,
        "row_number": verdict.row_number,
        "vendor_id": vendor_id,
        "s3_key": s3_key,
        "errors": [v.as_dict() for v in verdict.violations],
        "data": data,
    }
    text = json.dumps(body, default=str)
    if len(text.encode()) > MAX_BODY_BYTES:
        data = {
            k: preview(v if isinstance(v, str) else json.dumps(v, default=str), PREVIEW_CELL_CHARS)
            for k, v in data.items()
        }
        body["data"] = data
        body["data_truncated"] = True
        text = json.dumps(body, default=str)
        while len(text.encode()) > MAX_BODY_BYTES and data:
            data.popitem()
            text = json.dumps(body, default=str)
    return {
        "MessageBody": text,
        "MessageAttributes": {
            "upload_id": {"DataType": "String", "StringValue": upload_id},
            "record_id": {"DataType": "String", "StringValue": verdict.record_id},
        },
    }


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in data.items()}


class _Unsent(Exception):
    pass


async def send_errors(
    sqs: SQSClient, queue_url: str, messages: list[dict[str, Any]], *, max_attempts: int = 8
) -> None:
    """Send them in :func:`batches`, re-sending only the entries that failed; what is still
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

    for batch in batches(messages):
        pending = {str(i): m for i, m in enumerate(batch)}
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
