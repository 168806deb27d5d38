from decimal import Decimal

import pytest

from worker.core.errors import PermanentError
from worker.core.rows import COLUMNS, Header, ProductRow, RowErrors

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


def test_a_row_too_large_for_a_staging_item_is_a_parse_error_with_a_preview() -> None:
    typed = HEADER.type_row(row(product_name="€" * 100_001))

    assert isinstance(typed, RowErrors)
    assert typed.errors[0].message == "row is larger than 300000 bytes"
    assert typed.raw["product_name"] == "€" * 1_000
