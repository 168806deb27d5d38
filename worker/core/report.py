"""The vendor report of a validated upload (README "Vendor report"). Pure: no I/O.

``reports/{VENDOR}/{upload_id}.json`` summarises the upload; ``reports/{VENDOR}/{upload_id}.csv``
lists every rule a rejected row broke, one line each. Cells that a spreadsheet would take for
a formula are escaped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from worker.core.limits import VALUE_PREVIEW_CHARS, preview
from worker.core.rules import Violation

CSV_COLUMNS = ("row_number", "record_id", "vendor_product_id", "field", "value", "rule")
# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
SAMPLE_ERRORS = 20
# Every cell of the CSV report is a bounded preview.
REPORT_CELL_CHARS = VALUE_PREVIEW_CHARS


def report_keys(vendor_id: str, upload_id: str) -> tuple[str, str]:
    base = f"reports/{vendor_id}/{upload_id}"
    return f"{base}.json", f"{base}.csv"


def safe_cell(value: str) -> str:
    """Escape a cell so that a spreadsheet shows it as text, never runs it."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def csv_header() -> str:
    return _line(CSV_COLUMNS)


def csv_lines(
    row_number: int, record_id: str, vendor_product_id: str, violations: Iterable[Violation]
) -> str:
    return "".join(
        _line((str(row_number), record_id, vendor_product_id, v.field, v.value, v.rule))
        for v in violations
    )


def _line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        [safe_cell(preview(cell, REPORT_CELL_CHARS)) for cell in cells]
    )
    return buffer.getvalue()


@dataclass(frozen=True)
class ReportSummary:
    upload_id: str
    vendor_id: str
    s3_key: str
    validated_at: str
    total_records: int
    valid_records: int
    invalid_records: int
    errors_csv_key: str
    sample_errors: list[dict[str, Any]]
    # Valid rows whose product a newer upload of the vendor had already replaced (the newest
    # upload wins): their count, and the first of them with the upload that holds each.
    superseded_records: int = 0
    sample_superseded: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id,
            "vendor_id": self.vendor_id,
            "s3_key": self.s3_key,
            "validated_at": self.validated_at,
            "total_records": self.total_records,
            "valid_records": self.valid_records,
            "invalid_records": self.invalid_records,
            "errors_csv_key": self.errors_csv_key,
            "sample_errors": self.sample_errors,
            "superseded_records": self.superseded_records,
            "sample_superseded": self.sample_superseded,
        }
