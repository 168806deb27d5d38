"""The service's exceptions: one base, one subclass per failure mode.

Third-party errors are classified once, in the adapter that calls them, and re-raised as one of
these with ``raise ... from exc``. Messages are written for a vendor or an operator to act on and
never contain secrets.
"""

from __future__ import annotations


class OnboardingError(Exception):
    """Base of every error this service raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PermanentError(OnboardingError):
    """The upload can never succeed as it is: it is rejected and its message deleted."""


class UploadKeyError(PermanentError):
    """The S3 key does not follow ``uploads/{VENDOR}/{VENDOR}_{YYYYMMDD}_{HHMMSS}.csv``."""


class TransientError(OnboardingError):
    """A dependency failed (database, AWS, network): a later retry may succeed."""


class PoisonMessageError(OnboardingError):
    """A queue message that is not an S3 event notification: it goes to the DLQ."""


class ConfigurationError(OnboardingError):
    """The service is missing a setting or cannot reach a resource it needs to start."""


class LeaseLostError(TransientError):
    """Another attempt owns the upload now: this one must stop writing at once."""


class UploadBusyError(TransientError):
    """Another run holds the upload: try again once its lease runs out."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
