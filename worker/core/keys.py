"""S3 key → vendor, timestamp and upload_id (design §2 "S3 key", "upload_id"). Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from worker.core.errors import UploadKeyError

KEY_FORMAT = "uploads/{VENDOR_ID}/{VENDOR_ID}_{YYYYMMDD}_{HHMMSS}.csv"
_VENDOR = r"[A-Za-z0-9-]{1,64}"
_KEY = re.compile(
    rf"uploads/(?P<folder>{_VENDOR})/(?P<vendor>{_VENDOR})_(?P<date>\d{{8}})_(?P<time>\d{{6}})\.csv"
)


@dataclass(frozen=True, slots=True)
class UploadKey:
    """A well-formed upload key."""

    key: str
    vendor_id: str
    uploaded_at: datetime

    @property
    def upload_id(self) -> str:
        return f"UPLOAD_{self.vendor_id}_{self.uploaded_at:%Y%m%d_%H%M%S}"

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def parse_upload_key(key: str) -> UploadKey:
    """Parse a decoded S3 key, or raise :class:`UploadKeyError` naming the problem."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise UploadKeyError(f"S3 key {key!r} does not match {KEY_FORMAT}")
    folder, vendor = match["folder"], match["vendor"]
    if folder != vendor:
        raise UploadKeyError(
            f"S3 key {key!r}: folder {folder!r} and file prefix {vendor!r} name different "
            f"vendors (expected {KEY_FORMAT})"
        )
    try:
        uploaded_at = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        raise UploadKeyError(
            f"S3 key {key!r}: {match['date']}_{match['time']} is not a real UTC date-time "
            f"(expected {KEY_FORMAT})"
        ) from None
    return UploadKey(key=key, vendor_id=vendor, uploaded_at=uploaded_at.replace(tzinfo=UTC))


def rejected_upload_id(bucket: str, key: str) -> str:
    """The upload_id recorded for a key that cannot be parsed."""
    digest = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()
    return f"REJECTED_{digest[:16]}"


def folder_vendor(key: str) -> str:
    """The vendor folder of a key that may not parse (empty if there is none)."""
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "uploads" else ""
