from decimal import Decimal

import pytest

from worker.core.errors import PermanentError
from worker.core.limits import MAX_ERRORS_PER_ROW, MAX_ROW_BYTES, PREVIEW_BYTES, PREVIEW_CELL_CHARS
from worker.core.rows import COLUMNS, REQUIRED, FieldError, Header, ProductRow, RowErrors

HEADER = Header.parse(
    ["vendor_product_id", "product_name", "category", "sku", "price", "stock_quantity"]
)


def row(**cells: str) -> list[str]:
    values = {
        "vendor_product_id": "P-1",
        "product_name": "Cup",
        "category": "Kitchen",
        "sku": "SKU-1",
        "price": "12.50",
        "stock_quantity": "7",
    }
    values.update(cells)
    return list(values.values())


def test_values_are_typed_decimal_and_int_never_float() -> None:
    typed = HEADER.type_row(row(price="0.10", stock_quantity="12"))

    assert isinstance(typed, ProductRow)
    assert typed.price == Decimal("0.10")
    assert str(typed.price) == "0.10"
    assert typed.stock_quantity == 12


def test_empty_optional_cells_are_absent_and_extra_columns_kept() -> None:
    header = Header.parse([*COLUMNS, "colour"])
    cells = ["P-1", "Cup", "Kitchen", "", " ", "SKU-1", "", "1", "", "2", "", "", "", "", "red"]

    typed = header.type_row(cells)

    assert isinstance(typed, ProductRow)
    assert typed.subcategory is None
    assert typed.description is None
    assert typed.compare_at_price is None
    assert typed.extra == {"colour": "red"}


def test_header_names_are_matched_in_any_order_and_case() -> None:
    header = Header.parse(
        [" PRICE", "Stock_Quantity", "sku", "category", "product_name", "VENDOR_PRODUCT_ID"]
    )

    typed = header.type_row(["3.00", "4", "S", "C", "N", "V"])

    assert isinstance(typed, ProductRow)
    assert (typed.price, typed.stock_quantity, typed.vendor_product_id) == (Decimal("3.00"), 4, "V")


@pytest.mark.parametrize(
    ("cells", "field", "message"),
    [
        ({"price": "abc"}, "price", "valid decimal"),
        ({"price": "NaN"}, "price", ""),
        ({"price": "1.23456"}, "price", "4 decimal places"),
        ({"price": "1234567890123"}, "price", "12 digits before the decimal point"),
        ({"stock_quantity": "ten"}, "stock_quantity", "valid integer"),
        ({"stock_quantity": "1.5"}, "stock_quantity", "integer"),
        ({"sku": ""}, "sku", "is required"),
        ({"product_name": "   "}, "product_name", "is required"),
    ],
)
def test_a_cell_that_cannot_be_typed_is_a_field_error(
    cells: dict[str, str], field: str, message: str
) -> None:
    typed = HEADER.type_row(row(**cells))

    assert isinstance(typed, RowErrors)
    assert [error.field for error in typed.errors] == [field]
    assert message in typed.errors[0].message
    assert typed.raw["price"] == row(**cells)[4]


def test_implausible_but_well_typed_values_are_left_to_validation() -> None:
    typed = HEADER.type_row(row(price="-5", stock_quantity="-1"))

    assert isinstance(typed, ProductRow)
    assert typed.price == Decimal("-5")


def test_a_row_with_more_cells_than_the_header_keeps_every_cell() -> None:
    typed = HEADER.type_row([*row(), "surplus"])

    assert isinstance(typed, RowErrors)
    assert typed.raw["column_7"] == "surplus"
    assert "7 cells but the header has 6" in typed.errors[0].message


def test_a_short_row_reports_the_missing_required_cells() -> None:
    typed = HEADER.type_row(["P-1", "Cup"])

    assert isinstance(typed, RowErrors)
    assert {error.field for error in typed.errors} == {"category", "sku", "price", "stock_quantity"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["vendor_product_id", "product_name", "category", "sku", "stock_quantity"], "price"),
        (["a", "b"], "vendor_product_id, product_name, category, sku, price, stock_quantity"),
        ([*COLUMNS, "sku"], "duplicate column(s) in header: sku"),
        ([*COLUMNS, ""], "column 15 has no name"),
    ],
)
def test_a_bad_header_rejects_the_upload_naming_the_problem(
    header: list[str], message: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        Header.parse(header)

    assert message in str(caught.value)
    assert str(caught.value).startswith("line 1:")


def test_a_cell_over_the_length_limit_is_an_error_of_that_field_with_a_preview() -> None:
    typed = HEADER.type_row(row(product_name="€" * 100_001))

    assert isinstance(typed, RowErrors)
    assert [(e.field, e.message) for e in typed.errors] == [
        ("product_name", "is 100,001 characters long; a cell may hold at most 65,536")
    ]
    assert typed.raw["product_name"] == "€" * (PREVIEW_CELL_CHARS - 1) + "…"
    assert typed.raw["sku"] == "SKU-1"


def test_a_row_too_large_for_a_staging_item_is_a_row_error_with_a_bounded_preview() -> None:
    header = Header.parse([*COLUMNS, *(f"extra_{n}" for n in range(600))])
    cells = ["P-1", "Cup", "K", "", "", "S-1", "", "1.00", "", "3", "", "", "", ""]
    typed = header.type_row([*cells, *("x" * 2_000 for _ in range(600))])

    assert isinstance(typed, RowErrors)
    assert [e.field for e in typed.errors] == ["row"]
    assert typed.errors[0].message.startswith("the row takes 1,2")
    assert f"at most {MAX_ROW_BYTES:,}" in typed.errors[0].message
    kept = sum(len(k.encode()) + len(v.encode()) for k, v in typed.raw.items())
    assert kept <= PREVIEW_BYTES + 1_000
    assert typed.raw["vendor_product_id"] == "P-1"
    assert typed.raw["…"].endswith("more cell(s) not kept")


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f"])
def test_a_control_character_is_an_error_of_its_field(character: str) -> None:
    typed = HEADER.type_row(row(product_name=f"Cup{character}Large"))

    assert isinstance(typed, RowErrors)
    assert [e.field for e in typed.errors] == ["product_name"]
    assert f"U+{ord(character):04X}) at position 4" in typed.errors[0].message


def test_tabs_and_quoted_line_breaks_are_text() -> None:
    typed = HEADER.type_row(row(product_name="Cup\tLarge\r\nsecond line"))

    assert isinstance(typed, ProductRow)


def test_errors_of_one_row_are_capped() -> None:
    header = Header.parse([*COLUMNS, *(f"extra_{n}" for n in range(40))])
    cells = ["P-1", "Cup", "K", "", "", "S-1", "", "1.00", "", "3", "", "", "", ""]
    typed = header.type_row([*cells, *("\x00" for _ in range(40))])

    assert isinstance(typed, RowErrors)
    assert len(typed.errors) == MAX_ERRORS_PER_ROW
    assert typed.errors[-1] == FieldError("row", "and 21 more error(s)")


def test_a_column_name_over_the_limit_rejects_the_file() -> None:
    with pytest.raises(PermanentError, match="line 1: column 7 needs a name of at most 255"):
        Header.parse([*REQUIRED, "n" * 256])
