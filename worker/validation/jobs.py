"""Validation jobs: ``{"upload_id": ...}`` on the validation queue, one per staged upload."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import TransientError
from worker.resources import Resources


def job_body(upload_id: str) -> str:
    return json.dumps({"upload_id": upload_id})


def job_upload_id(body: str) -> str | None:
    """The upload a job body names, or None when the body is not a validation job."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    upload_id = document.get("upload_id") if isinstance(document, dict) else None
    return upload_id if isinstance(upload_id, str) and upload_id else None


async def request_validation(res: Resources, upload_id: str) -> None:
    """Queue the validation job of a staged upload (no-op without a validation queue)."""
    queue_url = res.settings.validation_queue_url
    if not queue_url:
        return
    try:
        await res.sqs.send_message(QueueUrl=queue_url, MessageBody=job_body(upload_id))
    except (ClientError, BotoCoreError) as exc:
        raise TransientError(f"could not queue validation: {error_code(exc)}") from exc
