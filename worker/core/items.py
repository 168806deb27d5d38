"""Rows → DynamoDB staging items, in DynamoDB's wire format (design §2 "Staging item"). Pure.

Items are built straight into the low-level attribute-value format: it is what BatchWriteItem
sends, and it skips a second walk through a generic serialiser for every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from worker.core.limits import VALUE_PREVIEW_CHARS, preview, preview_cells
from worker.core.rows import ProductRow, RowErrors

STATUS_PENDING = "pending_validation"
STATUS_PARSE_ERROR = "parse_error"

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]


def record_id(row_number: int) -> str:
    """``REC_00001`` for data row 1; grows past five digits after row 99,999."""
    return f"REC_{row_number:05d}"


def row_order_ranges(total_rows: int) -> list[tuple[int, int]]:
    """Rows 1..``total_rows`` as ranges whose record ids sort in row order.

    Record ids sort as text: within one width (five digits, six, ...) that is row order, but
    across widths it is not (``REC_100000`` sorts before ``REC_10001``). So an upload is read
    one width at a time: ``(first, last)`` row of each, in order.
    """
    ranges = []
    first, width = 1, 5
    while first <= total_rows:
        last = min(total_rows, 10**width - 1)
        ranges.append((first, last))
        first, width = last + 1, width + 1
    return ranges


def record_key(upload_id: str, row_number: int) -> Item:
    return {"upload_id": {"S": upload_id}, "record_id": {"S": record_id(row_number)}}


@dataclass(frozen=True, slots=True)
class ItemFactory:
    """Builds the items of one upload; the attributes every item shares are fixed here."""

    upload_id: str
    vendor_id: str
    s3_key: str
    created_at: str  # ISO-8601 UTC with a trailing Z

    def item(self, row_number: int, row: ProductRow | RowErrors) -> Item:
        item: Item = {
            "upload_id": {"S": self.upload_id},
            "record_id": {"S": record_id(row_number)},
            "vendor_id": {"S": self.vendor_id},
            "row_number": {"N": str(row_number)},
            "s3_key": {"S": self.s3_key},
            "created_at": {"S": self.created_at},
        }
        if isinstance(row, ProductRow):
            item["status"] = {"S": STATUS_PENDING}
            item["product_data"] = {"M": product_data(row)}
        else:
            item["status"] = {"S": STATUS_PARSE_ERROR}
            item["raw_data"] = {"M": {name: {"S": cell} for name, cell in row.raw.items()}}
            item["errors"] = {"L": [_error(error.field, error.message) for error in row.errors]}
        return item


# The attributes a replacement keeps from the item it replaces.
_KEPT = ("upload_id", "record_id", "vendor_id", "row_number", "s3_key", "created_at")


def refused_item(item: Item, reason: str) -> Item:
    """What is stored instead of an item DynamoDB refused: its row as a row error, the cells a
    bounded preview."""
    data = item.get("product_data") or item.get("raw_data") or {"M": {}}
    cells: list[tuple[str, str]] = []
    for name, value in data["M"].items():
        if "M" in value:  # the extra columns
            cells.extend((extra, str(cell.get("S", ""))) for extra, cell in value["M"].items())
        else:
            cells.append((name, str(value.get("S", value.get("N", "")))))
    kept = {name: item[name] for name in _KEPT if name in item}
    message = f"the row could not be stored: {preview(reason, VALUE_PREVIEW_CHARS)}"
    return {
        **kept,
        "status": {"S": STATUS_PARSE_ERROR},
        "raw_data": {"M": {n: {"S": v} for n, v in preview_cells(cells, len(cells)).items()}},
        "errors": {"L": [_error("row", message)]},
    }


def _error(field: str, message: str) -> AttributeValue:
    return {"M": {"field": {"S": field}, "message": {"S": message}}}


def product_data(row: ProductRow) -> dict[str, AttributeValue]:
    """The typed values of a row as DynamoDB attributes; absent cells are left out."""
    data: dict[str, AttributeValue] = {}
    for name, value in row.__dict__.items():  # the model's fields, in declaration order
        if value is None or name == "extra":
            continue
        kind = _WIRE_TYPES[type(value)]
        data[name] = {kind: value if kind == "S" else str(value)}
    if row.extra:
        data["extra"] = {"M": {name: {"S": value} for name, value in row.extra.items()}}
    return data


_WIRE_TYPES: dict[type, str] = {str: "S", int: "N", Decimal: "N"}
