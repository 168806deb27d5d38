"""The validation stage's business rules (README "Validation rules"). Pure: no I/O.

Each rule looks at one typed row (``product_data`` as staged) and names the field, the value
and the rule it breaks. Uniqueness within an upload needs the rows seen before, which
:class:`UploadRules` keeps (the keys only, not the rows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from worker.core.limits import VALUE_PREVIEW_CHARS, preview

SKU_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DIMENSIONS_PATTERN = re.compile(
    r"(\d+(?:\.\d+)?)\s*[xX]\s*(\d+(?:\.\d+)?)\s*[xX]\s*(\d+(?:\.\d+)?)"
)
MAX_NAME_LENGTH = 200
MAX_CATEGORY_LENGTH = 100


@dataclass(frozen=True, slots=True)
class Violation:
    field: str
    value: str
    rule: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "value": self.value, "rule": self.rule}


def _shown(value: Any) -> str:
    return "" if value is None else str(value)


def quoted(value: Any) -> str:
    """A value as a violation quotes it: a bounded preview."""
    return preview(_shown(value), VALUE_PREVIEW_CHARS)


def check_row(data: Mapping[str, Any]) -> list[Violation]:
    """The rules that need one row only."""
    found: list[Violation] = []

    def broken(name: str, rule: str) -> None:
        found.append(Violation(name, quoted(data.get(name)), rule))

    price = _decimal(data.get("price"))
    if price is None or price <= 0:
        broken("price", "must be greater than 0")
    compare_at = _decimal(data.get("compare_at_price"))
    if data.get("compare_at_price") is not None and (
        compare_at is None or (price is not None and compare_at < price)
    ):
        broken("compare_at_price", "must be at least the price")
    stock = _decimal(data.get("stock_quantity"))
    if stock is None or stock < 0 or stock != stock.to_integral_value():
        broken("stock_quantity", "must be a whole number, 0 or more")
    sku = _shown(data.get("sku"))
    if not SKU_PATTERN.fullmatch(sku):
        broken(
            "sku", "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    name = _shown(data.get("product_name")).strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        broken("product_name", f"must be 1-{MAX_NAME_LENGTH} characters")
    category = _shown(data.get("category")).strip()
    if not category or len(category) > MAX_CATEGORY_LENGTH:
        broken("category", f"must be 1-{MAX_CATEGORY_LENGTH} characters")
    if data.get("image_url") is not None and not _is_https_url(_shown(data.get("image_url"))):
        broken("image_url", "must be an https:// URL")
    if data.get("weight_kg") is not None:
        weight = _decimal(data.get("weight_kg"))
        if weight is None or weight < 0:
            broken("weight_kg", "must be 0 or more")
    if data.get("dimensions_cm") is not None:
        match = DIMENSIONS_PATTERN.fullmatch(_shown(data.get("dimensions_cm")).strip())
        if match is None or any(Decimal(side) <= 0 for side in match.groups()):
            broken("dimensions_cm", "must be LxWxH with three positive numbers, e.g. 30x20x10")
    return found


def _is_https_url(text: str) -> bool:
    try:
        url = urlsplit(text)
        return url.scheme == "https" and bool(url.hostname)
    except ValueError:  # e.g. "https://[x": a broken rule, never an exception
        return False


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


@dataclass
class UploadRules:
    """All rules, for the rows of one upload in row order. The first *valid* row with a given
    SKU or vendor_product_id claims it; a later row with the same value breaks the uniqueness
    rule, and an invalid row claims nothing (a valid row after it may have the value)."""

    _skus: dict[str, int] = field(default_factory=dict)
    _product_ids: dict[str, int] = field(default_factory=dict)

    def check(self, row_number: int, data: Mapping[str, Any]) -> list[Violation]:
        found = check_row(data)
        keys = [
            (name, _shown(data.get(name)), seen)
            for name, seen in (("sku", self._skus), ("vendor_product_id", self._product_ids))
        ]
        for name, value, seen in keys:
            first = seen.get(value)
            if value and first is not None and first != row_number:
                found.append(
                    Violation(name, quoted(value), f"must be unique in the file (row {first})")
                )
        if not found:
            for _, value, seen in keys:
                if value:
                    seen[value] = row_number
        return found

    def forget(self, row_number: int) -> None:
        """The row turned out invalid after all (the database refused it): it claims nothing."""
        for seen in (self._skus, self._product_ids):
            for value in [v for v, row in seen.items() if row == row_number]:
                del seen[value]
