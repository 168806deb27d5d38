"""What to do with one queue message, whatever runtime received it (ECS worker or Lambda).

A handler reads a message body and returns a :class:`Disposition`: delete it (done, or a retry
cannot help), retry it later, or move it to the DLQ (a poison message). :func:`stage_of` says
which stage a message belongs to, whichever queue it was found on.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from worker import logs
from worker.core.errors import (
    PermanentError,
    PoisonMessageError,
    TransientError,
    UploadBusyError,
)
from worker.core.events import parse_message_body
from worker.ingest.stage import Outcome, process_object
from worker.resources import Resources
from worker.settings import Stage
from worker.validation.jobs import job_upload_id
from worker.validation.run import validate_upload

log = logging.getLogger(__name__)


class Action(enum.Enum):
    DELETE = "delete"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    # Done for this receive, not for good: a copy goes back to the queue (a new message, so
    # no receive is used up) and the original is deleted. A file paused at a deadline.
    CONTINUE = "continue"
    # Another run holds the upload: a copy goes back to the queue, delayed until the holder's
    # lease runs out (``not_before``), and the original is deleted, so that waiting behind a
    # long run never uses up receives (and never ends in the DLQ).
    WAIT = "wait"


@dataclass(frozen=True, slots=True)
class Disposition:
    action: Action
    reason: str = ""
    # RETRY, WAIT: not sooner than this many seconds (another worker's lease runs out then).
    not_before: float = 0.0


DELETE = Disposition(Action.DELETE)


class Handler(Protocol):
    def __call__(
        self,
        res: Resources,
        body: str,
        *,
        stop_at: float | None = None,
        land_by: float | None = None,
    ) -> Awaitable[Disposition]: ...


async def handle_ingest(
    res: Resources, body: str, *, stop_at: float | None = None, land_by: float | None = None
) -> Disposition:
    """An S3 notification: stage every object it names (no more rows past ``stop_at``, and
    what is in flight landed by ``land_by``)."""
    try:
        refs = parse_message_body(body)
    except PoisonMessageError as exc:
        return Disposition(Action.DEAD_LETTER, str(exc))
    if not refs:
        log.info("test event or no ObjectCreated records; acknowledged")
        return DELETE
    results = [await process_object(res, ref, stop_at=stop_at, land_by=land_by) for ref in refs]
    if all(result.outcome.settled for result in results):
        return DELETE
    if any(result.outcome is Outcome.PAUSED for result in results):
        return Disposition(Action.CONTINUE, "paused at the deadline")
    unsettled = [r for r in results if not r.outcome.settled]
    if all(r.outcome is Outcome.BUSY and r.retry_after for r in unsettled):
        # Held by a live lease elsewhere (a duplicate delivery, or a validation run).
        return Disposition(
            Action.WAIT,
            "held by another run",
            not_before=max(r.retry_after or 0.0 for r in unsettled),
        )
    busy = [r.retry_after or 0.0 for r in results if r.outcome is Outcome.BUSY]
    return Disposition(Action.RETRY, "not finished", not_before=max(busy, default=0.0))


async def handle_validation(
    res: Resources, body: str, *, stop_at: float | None = None, land_by: float | None = None
) -> Disposition:
    """A validation job: validate the upload it names (``stop_at`` and ``land_by`` are not
    used: a run cut short is simply retried)."""
    upload_id = job_upload_id(body)
    if upload_id is None:
        return Disposition(Action.DEAD_LETTER, 'not a validation job: expected {"upload_id": ...}')
    with logs.bind(upload_id=upload_id):
        try:
            result = await validate_upload(res, upload_id)
        except PermanentError as exc:
            log.warning("validation skipped", extra={"reason": str(exc)})
            return DELETE
        except UploadBusyError as exc:
            log.info("upload busy; validation waits", extra={"reason": str(exc)})
            return Disposition(Action.WAIT, str(exc), not_before=max(1.0, exc.retry_after))
        except TransientError as exc:
            log.warning("validation failed; will retry", extra={"error": str(exc)})
            return Disposition(Action.RETRY, str(exc))
        log.info(
            "upload validated",
            extra={
                "outcome": "validated",
                "valid_records": result.valid,
                "invalid_records": result.invalid,
                "superseded_records": result.superseded,
                "notice_sent": result.notice_sent,
            },
        )
    return DELETE


HANDLERS: dict[Stage, Handler] = {"ingest": handle_ingest, "validation": handle_validation}


def stage_of(body: str) -> Stage | None:
    """The stage a message belongs to: ``validation`` for a job (it names an ``upload_id``),
    ``ingest`` for an S3 notification (or an ``s3:TestEvent``); None for anything else, a
    poison message for whichever stage meets it."""
    if job_upload_id(body) is not None:
        return "validation"
    try:
        parse_message_body(body)
    except PoisonMessageError:
        return None
    return "ingest"
