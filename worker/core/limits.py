"""Every limit on what the service reads and writes, in one place (README "The CSV format").

What a vendor sends is bounded row by row: a row over a limit becomes a row error, never a
failed file. What the service writes is bounded by construction: a staging item fits in
DynamoDB's 400 KB (with room for the errors validation adds), an error-queue message and a
SendMessageBatch call fit in SQS's 256 KB, and every quoted value is a bounded preview.
"""

from __future__ import annotations

from collections.abc import Iterable

# DynamoDB: 400 KB per item, attribute names and values together.
ITEM_LIMIT_BYTES = 400_000
# What the validation stage may add to a staged item: at most MAX_ERRORS_PER_ROW errors, each a
# field name (MAX_COLUMN_NAME_CHARS), a rule and a value preview.
VALIDATION_ALLOWANCE_BYTES = 48_000
# An item's own attributes: keys, vendor, row number, the S3 key (at most 1,024 bytes), status.
ITEM_OVERHEAD_BYTES = 4_096
# A row's column names and cells, as DynamoDB counts them (UTF-8 bytes).
MAX_ROW_BYTES = ITEM_LIMIT_BYTES - VALIDATION_ALLOWANCE_BYTES - ITEM_OVERHEAD_BYTES

# One cell: longer is a row error.
MAX_CELL_CHARS = 65_536
# One cell as the CSV parser holds it: longer rejects the file (almost always a quote left open).
MAX_FIELD_CHARS = 1_048_576
# One line of the file (a record may span several): longer rejects the file.
MAX_LINE_CHARS = 2 * MAX_FIELD_CHARS
# A header cell.
MAX_COLUMN_NAME_CHARS = 255
MAX_ERRORS_PER_ROW = 20

# The cells kept with a row error: each cut to PREVIEW_CELL_CHARS, all of them to PREVIEW_BYTES.
PREVIEW_CELL_CHARS = 1_000
PREVIEW_BYTES = 16_384
# A value quoted in an error message, an item's errors, a report cell.
VALUE_PREVIEW_CHARS = 200
# upload_history.error_message.
MAX_ERROR_MESSAGE_CHARS = 2_000
# SQS: one message, and one SendMessageBatch call (bodies and attributes together). SQS takes
# up to 1 MiB for each today, but a queue's MaximumMessageSize (1 KiB to 1 MiB) bounds every
# message and has long defaulted to 256 KiB; the service keeps to 256 KiB for both, so what it
# sends fits a queue left at that default and the consumers that assume it.
SQS_MESSAGE_BYTES = 262_144
# SNS: one notice (its attributes and subject are small and counted apart here).
SNS_MESSAGE_BYTES = 256_000

ELLIPSIS = "…"


def preview(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def preview_cells(cells: Iterable[tuple[str, str]], count: int) -> dict[str, str]:
    """Named cells as a row error keeps them: each cut to ``PREVIEW_CELL_CHARS``, all of them
    to about ``PREVIEW_BYTES``; ``count`` is how many there are in all."""
    shown: dict[str, str] = {}
    budget = PREVIEW_BYTES
    for index, (name, cell) in enumerate(cells):
        value = preview(cell, PREVIEW_CELL_CHARS)
        budget -= len(name.encode()) + len(value.encode())
        if budget < 0:
            shown[ELLIPSIS] = f"{count - index} more cell(s) not kept"
            break
        shown[name] = value
    return shown
