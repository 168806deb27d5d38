"""CSV header and row typing (design §2 "CSV"). Pure: no I/O.

*Parsing types, validation judges*: a cell that cannot be typed, or an empty required cell, is a
field error; a well-typed but implausible value (a negative price) is left to the validation
stage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.core.errors import PermanentError

COLUMNS: tuple[str, ...] = (
    "vendor_product_id",
    "product_name",
    "category",
    "subcategory",
    "description",
    "sku",
    "brand",
    "price",
    "compare_at_price",
    "stock_quantity",
    "unit",
    "weight_kg",
    "dimensions_cm",
    "image_url",
)
REQUIRED: tuple[str, ...] = (
    "vendor_product_id",
    "product_name",
    "category",
    "sku",
    "price",
    "stock_quantity",
)
# A DynamoDB item holds at most 400 KB; a row whose cells exceed this cannot be staged whole.
# Such a row is kept as a parse error with the start of each cell.
MAX_ROW_BYTES = 300_000
RAW_PREVIEW_CHARS = 1_000

# At most 12 integer digits and 4 decimals; parsed from the text, never through a float.
Amount = Annotated[Decimal, Field(max_digits=16, decimal_places=4, allow_inf_nan=False)]
Quantity = Annotated[int, Field(gt=-(10**12), lt=10**12)]


class ProductRow(BaseModel):
    """One typed data row. Optional cells that were empty are ``None``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor_product_id: str
    product_name: str
    category: str
    subcategory: str | None = None
    description: str | None = None
    sku: str
    brand: str | None = None
    price: Amount
    compare_at_price: Amount | None = None
    stock_quantity: Quantity
    unit: str | None = None
    weight_kg: Amount | None = None
    dimensions_cm: str | None = None
    image_url: str | None = None
    extra: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class RowErrors:
    """A row that could not be typed: its cells as strings and what was wrong."""

    raw: dict[str, str]
    errors: tuple[FieldError, ...]


@dataclass(frozen=True, slots=True)
class Header:
    """The column names of a file, by position, checked against the contract."""

    names: tuple[str, ...]

    @classmethod
    def parse(cls, cells: Sequence[str]) -> Header:
        """Check the header row; raise :class:`PermanentError` naming what is wrong."""
        names = tuple(cell.strip().lower() for cell in cells)
        if not any(names):
            raise PermanentError("line 1: the header row is empty")
        seen = set(names)
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1 and name)
        if duplicates:
            raise PermanentError(f"line 1: duplicate column(s) in header: {', '.join(duplicates)}")
        missing = [name for name in REQUIRED if name not in seen]
        if missing:
            raise PermanentError(
                f"line 1: missing required column(s): {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED)})"
            )
        if "" in seen:
            raise PermanentError(f"line 1: column {names.index('') + 1} has no name")
        return cls(names)

    def type_row(self, cells: Sequence[str]) -> ProductRow | RowErrors:
        """Type one data row, or say which fields are wrong."""
        names = self.names
        if _too_large(cells):
            raw = {name: cell[:RAW_PREVIEW_CHARS] for name, cell in zip(names, cells, strict=False)}
            return RowErrors(
                raw,
                (FieldError("row", f"row is larger than {MAX_ROW_BYTES} bytes"),),
            )
        if len(cells) > len(names):
            raw = dict(zip(names, cells, strict=False))
            raw.update((f"column_{i + 1}", cells[i]) for i in range(len(names), len(cells)))
            return RowErrors(
                raw,
                (FieldError("row", f"row has {len(cells)} cells but the header has {len(names)}"),),
            )
        values: dict[str, object] = {}
        extra: dict[str, str] = {}
        for name, cell in zip(names, cells, strict=False):
            value = cell.strip()
            if not value:
                continue
            if name in _KNOWN:
                values[name] = value
            else:
                extra[name] = value
        if extra:
            values["extra"] = extra
        try:
            return ProductRow.model_validate(values)
        except ValidationError as exc:
            raw = dict(zip(names, cells, strict=False))
            return RowErrors(raw, tuple(_field_error(error) for error in exc.errors()))


_KNOWN = frozenset(COLUMNS)


def _too_large(cells: Sequence[str]) -> bool:
    chars = sum(map(len, cells))
    if chars * 4 <= MAX_ROW_BYTES:  # no UTF-8 character takes more than 4 bytes
        return False
    return sum(len(cell.encode()) for cell in cells) > MAX_ROW_BYTES


def _field_error(error: object) -> FieldError:
    assert isinstance(error, dict)
    field = str(error["loc"][0]) if error.get("loc") else "row"
    if error.get("type") == "missing":
        return FieldError(field, "is required")
    value = error.get("input")
    shown = f" (got {value[:40]!r})" if isinstance(value, str) else ""
    return FieldError(field, f"{error['msg']}{shown}")
