"""CSV header and row typing (design §2 "CSV"). Pure: no I/O.

*Parsing types, validation judges*: a cell that cannot be typed, or an empty required cell, is a
field error; a well-typed but implausible value (a negative price) is left to the validation
stage.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.core.errors import PermanentError
from worker.core.limits import (
    MAX_CELL_CHARS,
    MAX_COLUMN_NAME_CHARS,
    MAX_ERRORS_PER_ROW,
    MAX_ROW_BYTES,
    preview,
    preview_cells,
)

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
    names_bytes: int = 0  # UTF-8 bytes of all the names: part of every row's size

    @classmethod
    def parse(cls, cells: Sequence[str], *, line: int = 1) -> Header:
        """Check the header row (on ``line``); raise :class:`PermanentError` naming what is
        wrong."""
        names = tuple(cell.strip().lower() for cell in cells)
        if not any(names):
            raise PermanentError(f"line {line}: the header row is empty")
        seen = set(names)
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1 and name)
        if duplicates:
            shown = ", ".join(preview(name, 40) for name in duplicates)
            raise PermanentError(f"line {line}: duplicate column(s) in header: {shown}")
        missing = [name for name in REQUIRED if name not in seen]
        if missing:
            raise PermanentError(
                f"line {line}: missing required column(s): {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED)})"
            )
        if "" in seen:
            raise PermanentError(f"line {line}: column {names.index('') + 1} has no name")
        for index, name in enumerate(names):
            if len(name) > MAX_COLUMN_NAME_CHARS or _CONTROL.search(name):
                raise PermanentError(
                    f"line {line}: column {index + 1} needs a name of at most "
                    f"{MAX_COLUMN_NAME_CHARS} characters, without control characters"
                )
        return cls(names, sum(len(name.encode()) for name in names))

    def type_row(self, cells: Sequence[str]) -> ProductRow | RowErrors:
        """Type one data row, or say which fields are wrong (at most ``MAX_ERRORS_PER_ROW``)."""
        names = self.names
        problems = self._problems(cells)
        if problems:
            return RowErrors(self._preview(cells), _capped(problems))
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
            errors = [_field_error(error) for error in exc.errors()]
            return RowErrors(self._preview(cells), _capped(errors))

    def _problems(self, cells: Sequence[str]) -> list[FieldError]:
        """What makes a row impossible to type or to stage, whatever its values mean: more
        cells than columns, a cell too long or holding a control character, a row too large
        for a staging item."""
        names = self.names
        problems: list[FieldError] = []
        if len(cells) > len(names):
            problems.append(
                FieldError("row", f"row has {len(cells)} cells but the header has {len(names)}")
            )
        chars = sum(map(len, cells))
        if chars > MAX_CELL_CHARS:
            problems.extend(
                FieldError(
                    name,
                    f"is {len(cell):,} characters long; a cell may hold at most {MAX_CELL_CHARS:,}",
                )
                for name, cell in self._named(cells)
                if len(cell) > MAX_CELL_CHARS
            )
        if _CONTROL.search("".join(cells)):
            for name, cell in self._named(cells):
                if found := _CONTROL.search(cell):
                    problems.append(
                        FieldError(
                            name,
                            f"contains a control character (U+{ord(found.group()):04X}) at "
                            f"position {found.start() + 1}",
                        )
                    )
        # Every cell's name and value, plus a byte a cell and the maps' own overhead; no UTF-8
        # character takes more than 4 bytes, so most rows need no exact count.
        overhead = self.names_bytes + len(cells) * (1 + len("column_") + 4) + 16
        if chars * 4 + overhead > MAX_ROW_BYTES:
            size = sum(len(cell.encode()) for cell in cells) + overhead
            if size > MAX_ROW_BYTES:
                problems.append(
                    FieldError(
                        "row",
                        f"the row takes {size:,} bytes; a row may take at most "
                        f"{MAX_ROW_BYTES:,} (column names and cells, in UTF-8)",
                    )
                )
        return problems

    def _named(self, cells: Sequence[str]) -> Iterator[tuple[str, str]]:
        """Each cell with its column name; cells past the header are ``column_N``."""
        names = self.names
        for index, cell in enumerate(cells):
            yield (names[index] if index < len(names) else f"column_{index + 1}"), cell

    def _preview(self, cells: Sequence[str]) -> dict[str, str]:
        return preview_cells(self._named(cells), len(cells))


_KNOWN = frozenset(COLUMNS)
# Control characters other than tab, line feed and carriage return (which a quoted cell may
# hold): PostgreSQL refuses NUL in text, and none of them belongs in a product field.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _capped(errors: list[FieldError]) -> tuple[FieldError, ...]:
    if len(errors) <= MAX_ERRORS_PER_ROW:
        return tuple(errors)
    more = len(errors) - MAX_ERRORS_PER_ROW + 1
    return (*errors[: MAX_ERRORS_PER_ROW - 1], FieldError("row", f"and {more} more error(s)"))


def _field_error(error: object) -> FieldError:
    assert isinstance(error, dict)
    field = str(error["loc"][0]) if error.get("loc") else "row"
    if error.get("type") == "missing":
        return FieldError(field, "is required")
    value = error.get("input")
    shown = f" (got {value[:40]!r})" if isinstance(value, str) else ""
    return FieldError(field, f"{error['msg']}{shown}")
