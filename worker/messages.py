"""What to do with one queue message, whatever runtime received it (ECS worker or Lambda).

A handler reads a message body and returns a :class:`Disposition`: delete it (done, or a retry
cannot help), retry it later, or move it to the DLQ (a poison message).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from worker.disposition import DELETE, Action, Disposition
from worker.errors import PoisonMessageError
from worker.events import parse_message_body
from worker.pipeline import Outcome, process_object
from worker.runtime import Runtime
from worker.validation import handle_validation

log = logging.getLogger(__name__)


Handler = Callable[[Runtime, str], Awaitable[Disposition]]


async def handle_ingest(rt: Runtime, body: str) -> Disposition:
    """An S3 notification: stage every object it names."""
    try:
        refs = parse_message_body(body)
    except PoisonMessageError as exc:
        return Disposition(Action.DEAD_LETTER, str(exc))
    if not refs:
        log.info("test event or no ObjectCreated records; acknowledged")
        return DELETE
    results = [await process_object(rt, ref) for ref in refs]
    if all(result.outcome.settled for result in results):
        return DELETE
    busy = [r.retry_after or 0.0 for r in results if r.outcome is Outcome.BUSY]
    return Disposition(Action.RETRY, "not finished", not_before=max(busy, default=0.0))


def handler_for(body: str) -> Handler:
    """Lambda reads both queues: a validation job is a JSON object with an ``upload_id``."""
    try:
        document = json.loads(body)
    except ValueError:
        return handle_ingest
    if isinstance(document, dict) and "upload_id" in document:
        return handle_validation
    return handle_ingest
