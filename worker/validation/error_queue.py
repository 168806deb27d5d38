"""Invalid rows to the error queue: one message each, sent with SendMessageBatch.

Each message carries ``upload_id`` and ``record_id`` as attributes too, so that consumers can
deduplicate (a worker that dies between sending and recording can send a row twice). A message
SQS refuses for good is returned to the caller, never retried.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.aws.errors import error_code, is_retryable
from worker.aws.queues import batches
from worker.core.errors import TransientError
from worker.core.limits import PREVIEW_CELL_CHARS, SQS_MESSAGE_BYTES, preview
from worker.validation.judge import Verdict

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

# A body, leaving room for its attributes within one SQS message.
MAX_BODY_BYTES = SQS_MESSAGE_BYTES - 4_096


def error_message(
    upload_id: str, vendor_id: str, s3_key: str, verdict: Verdict, *, s3_etag: str | None = None
) -> dict[str, Any]:
    """The SendMessageBatch entry (without its ``Id``) for one invalid row; its body fits in
    one SQS message whatever the row holds (the row's data is then a preview). ``s3_etag``
    names the object version: the same row of a new version is a new message."""
    data = _plain(verdict.data)
    body: dict[str, Any] = {
        "upload_id": upload_id,
        "s3_etag": s3_etag,
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
    attributes = {
        "upload_id": {"DataType": "String", "StringValue": upload_id},
        "record_id": {"DataType": "String", "StringValue": verdict.record_id},
    }
    if s3_etag:
        attributes["s3_etag"] = {"DataType": "String", "StringValue": s3_etag}
    return {
        "MessageBody": text,
        "MessageAttributes": attributes,
    }


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in data.items()}


class _Unsent(Exception):
    pass


# Errors of a whole SendMessageBatch call that a message's content causes (a message over the
# queue's MaximumMessageSize, characters SQS does not accept): the batch is sent again one
# message at a time, to find which. Anything else about the queue (it does not exist, access
# is denied) concerns every message alike and is a TransientError.
_CONTENT_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidMessageContents",
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
    }
)


@dataclass(frozen=True, slots=True)
class RefusedMessage:
    """An error message SQS refused for good (``SenderFault``): sending it again cannot help.

    ``message`` is the entry as given to :func:`send_errors`; ``code`` and ``reason`` are
    SQS's."""

    message: dict[str, Any]
    code: str
    reason: str

    @property
    def record_id(self) -> str:
        attributes: dict[str, Any] = self.message.get("MessageAttributes", {})
        return str(attributes.get("record_id", {}).get("StringValue", ""))


async def send_errors(
    sqs: SQSClient, queue_url: str, messages: list[dict[str, Any]], *, max_attempts: int = 8
) -> list[RefusedMessage]:
    """Send them in :func:`batches` (at most 10 entries and ``SQS_MESSAGE_BYTES`` a call),
    re-sending only the entries that failed on SQS's side (``SenderFault: false``), after a
    backoff, up to ``max_attempts`` calls.

    Returns the messages SQS refused for good (``SenderFault: true``, or a batch refused as a
    whole for a message's content, which is then sent one message at a time to find it): they
    are never sent again, and each is logged, so the caller can record which rows' messages
    were refused. What is still unsent after ``max_attempts``, or a call that fails for any
    other reason, is a :class:`TransientError`."""
    refused: list[RefusedMessage] = []
    for batch in batches(messages):
        refused += await _send_batch(sqs, queue_url, batch, max_attempts)
    for message in refused:
        log.error(
            "error message refused by SQS; it is not sent again",
            extra={"record_id": message.record_id, "code": message.code, "reason": message.reason},
        )
    return refused


async def _send_batch(
    sqs: SQSClient, queue_url: str, batch: list[dict[str, Any]], max_attempts: int
) -> list[RefusedMessage]:
    pending = {str(i): m for i, m in enumerate(batch)}
    refused: list[RefusedMessage] = []

    async def send() -> None:
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=cast(
                "list[SendMessageBatchRequestEntryTypeDef]",
                [{"Id": i, **m} for i, m in pending.items()],
            ),
        )
        for entry in response.get("Successful", []):
            pending.pop(entry["Id"], None)
        for failure in response.get("Failed", []):
            if failure.get("SenderFault") and failure["Id"] in pending:
                refused.append(
                    RefusedMessage(
                        pending.pop(failure["Id"]),
                        str(failure.get("Code", "")),
                        str(failure.get("Message", "")),
                    )
                )
        if pending:
            codes = sorted({str(f.get("Code")) for f in response.get("Failed", [])})
            raise _Unsent(f"{len(pending)} error message(s) not sent: {', '.join(codes)}")

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Unsent) or is_retryable(exc)),
            wait=wait_random_exponential(multiplier=0.1, max=5),
            stop=stop_after_attempt(max_attempts),
            reraise=True,
        ):
            with attempt:
                await send()
    except _Unsent as exc:
        raise TransientError(f"error queue: {exc}") from exc
    except ClientError as exc:
        code = error_code(exc)
        if code not in _CONTENT_CODES:
            raise TransientError(f"error queue: {code}") from exc
        if len(pending) == 1:
            (only,) = pending.values()
            reason = str(exc.response.get("Error", {}).get("Message", ""))
            return [*refused, RefusedMessage(only, code, reason)]
        for message in list(pending.values()):
            refused += await _send_batch(sqs, queue_url, [message], max_attempts)
    except BotoCoreError as exc:
        raise TransientError(f"error queue: {error_code(exc)}") from exc
    return refused
