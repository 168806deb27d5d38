"""Structured logs: one JSON object per line, with the upload and message bound from context.

``bind(upload_id=..., vendor_id=..., message_id=...)`` adds fields to every record logged inside
the block (contextvars, so each asyncio task has its own). In a terminal the same records are
printed in a readable one-line form.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_bound: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_fields", default={})  # noqa: B039

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(_bound.get())
    fields.update((k, v) for k, v in vars(record).items() if k not in _RESERVED)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        line = f"{time} {record.levelname:<7} {record.getMessage()}" + (
            f"  {fields}" if fields else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class WithholdSecrets(logging.Filter):
    """botocore logs request parameters and response bodies at DEBUG; a Secrets Manager call
    carries the database password in ``SecretString``. Such records are withheld whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "SecretString" in record.getMessage():
            record.msg, record.args = "(withheld: the record holds a SecretString)", None
        return True


# The loggers that print request parameters and response bodies.
_BODY_LOGGERS = ("botocore.endpoint", "botocore.parsers")


def withhold_secrets() -> None:
    """Install :class:`WithholdSecrets` on botocore's body-logging loggers (idempotent)."""
    for name in _BODY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, WithholdSecrets) for f in logger.filters):
            logger.addFilter(WithholdSecrets())


def configure(level: str = "INFO", *, json_format: bool | None = None) -> None:
    """Log to stderr: JSON unless stderr is a terminal (or ``json_format`` says otherwise)."""
    use_json = not sys.stderr.isatty() if json_format is None else json_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3", "asyncio", "pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    withhold_secrets()
