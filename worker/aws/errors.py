"""Classification of botocore errors, shared by the AWS adapters."""

from __future__ import annotations

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

# Throttles and server-side faults: worth another try after a pause.
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    }
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def is_retryable(exc: BaseException) -> bool:
    """Throttles, server-side faults and network failures: worth another try soon."""
    if isinstance(exc, (HTTPClientError, BotocoreConnectionError)):
        return True
    return isinstance(exc, ClientError) and error_code(exc) in RETRYABLE_CODES
