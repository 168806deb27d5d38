"""One staged item judged by the business rules, and what that changes. Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from worker.core.items import STATUS_PARSE_ERROR, Item
from worker.core.rows import COLUMNS
from worker.core.rules import UploadRules, Violation, quoted

STATUS_VALIDATED = "validated"
STATUS_INVALID = "invalid"
_NUMERIC = frozenset({"price", "compare_at_price", "weight_kg"})
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class Verdict:
    row_number: int
    record_id: str
    status: str  # the item's status before this run
    data: dict[str, Any]
    violations: list[Violation]

    @property
    def new_status(self) -> str:
        return STATUS_INVALID if self.violations else STATUS_VALIDATED


def judge(rules: UploadRules, item: Item) -> Verdict:
    """Apply the rules to a typed row; a row that could not be typed keeps its parse errors
    (also when it was judged ``invalid`` before and has no ``product_data``)."""
    row_number = int(item["row_number"]["N"])
    record_id = item["record_id"]["S"]
    status = item["status"]["S"]
    if status == STATUS_PARSE_ERROR or "product_data" not in item:
        raw = _deserializer.deserialize(item.get("raw_data", {"M": {}}))
        errors = _deserializer.deserialize(item.get("errors", {"L": []}))
        violations = [
            Violation(
                str(e.get("field", "")),
                quoted(raw.get(e.get("field"))),
                str(e.get("message", "")),
            )
            for e in errors
        ]
        return Verdict(row_number, record_id, status, raw, violations)
    data = _deserializer.deserialize(item["product_data"])
    return Verdict(row_number, record_id, status, data, rules.check(row_number, data))


def with_new_status(item: Item, verdict: Verdict) -> Item | None:
    """The item with its new status (and errors), or None when it already has it."""
    status = verdict.new_status
    if verdict.status == status:
        return None
    updated = dict(item)
    updated["status"] = {"S": status}
    if verdict.violations:
        updated["errors"] = {
            "L": [
                {"M": {"field": {"S": v.field}, "message": {"S": v.rule}, "value": {"S": v.value}}}
                for v in verdict.violations
            ]
        }
    else:
        updated.pop("errors", None)
    return updated


def product_record(
    vendor_id: str, upload_id: str, uploaded_at: datetime | None, data: dict[str, Any]
) -> tuple[Any, ...]:
    """A valid row as a ``products`` record, in ``worker.postgres.products.PRODUCT_COLUMNS``
    order."""

    def column(name: str) -> Any:
        value = data.get(name)
        if value is None:
            return None
        if name == "stock_quantity":
            return int(value)
        return Decimal(value) if name in _NUMERIC else value

    extra = json.dumps(data.get("extra", {}), sort_keys=True)
    return (vendor_id, *(column(name) for name in COLUMNS), extra, upload_id, uploaded_at)
