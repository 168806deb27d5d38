"""SQS message body → the S3 objects it announces (design §2 "Messages"). Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from worker.core.errors import PoisonMessageError


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One S3 object named by an event record; ``key`` is already URL-decoded."""

    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None


def parse_message_body(body: str) -> tuple[ObjectRef, ...]:
    """The objects an S3 notification names; empty for an ``s3:TestEvent``.

    Raises :class:`PoisonMessageError` for anything that is not an S3 notification.
    """
    try:
        document = json.loads(body)
    except ValueError:
        raise PoisonMessageError("message body is not JSON") from None
    return parse_notification(document)


def parse_notification(document: object) -> tuple[ObjectRef, ...]:
    """As :func:`parse_message_body`, for a notification already decoded from JSON (the event
    a Lambda function receives from S3 directly)."""
    if not isinstance(document, dict):
        raise PoisonMessageError("message body is not a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return ()
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise PoisonMessageError("message body has no S3 'Records'")
    return tuple(
        ref
        for index, record in enumerate(records)
        if (ref := _object_ref(record, index)) is not None
    )


def _object_ref(record: Any, index: int) -> ObjectRef | None:
    if not isinstance(record, dict) or not isinstance(record.get("s3"), dict):
        raise PoisonMessageError(f"record {index} is not an S3 event record")
    if not str(record.get("eventName", "ObjectCreated:")).startswith("ObjectCreated:"):
        return None
    s3 = record["s3"]
    try:
        bucket = s3["bucket"]["name"]
        raw_key = s3["object"]["key"]
    except (KeyError, TypeError):
        raise PoisonMessageError(f"record {index} has no bucket name or object key") from None
    if not isinstance(bucket, str) or not isinstance(raw_key, str) or not bucket or not raw_key:
        raise PoisonMessageError(f"record {index} has an empty bucket name or object key")
    obj = s3["object"]
    size = obj.get("size")
    return ObjectRef(
        bucket=bucket,
        key=unquote_plus(raw_key),
        etag=obj.get("eTag") or obj.get("etag"),
        size=size if isinstance(size, int) else None,
    )
