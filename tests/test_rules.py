"""Each validation rule at its boundaries."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from worker.core.rules import UploadRules, check_row

GOOD: dict[str, Any] = {
    "vendor_product_id": "P-1",
    "product_name": "Cup",
    "category": "Kitchen",
    "sku": "SKU-1",
    "price": Decimal("1.00"),
    "stock_quantity": Decimal(0),
}


def broken(**changes: Any) -> list[tuple[str, str, str]]:
    data = {**GOOD, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    return [(v.field, v.value, v.rule) for v in check_row(data)]


def test_a_good_row_breaks_no_rule() -> None:
    assert broken() == []


@pytest.mark.parametrize(
    ("price", "ok"), [("0.0001", True), ("0", False), ("-0.01", False), ("99999999.99", True)]
)
def test_price_must_be_greater_than_zero(price: str, ok: bool) -> None:
    assert (broken(price=Decimal(price)) == []) is ok
    if not ok:
        assert broken(price=Decimal(price)) == [("price", price, "must be greater than 0")]


@pytest.mark.parametrize(("compare_at", "ok"), [("1.00", True), ("0.99", False), ("5", True)])
def test_compare_at_price_is_at_least_the_price(compare_at: str, ok: bool) -> None:
    result = broken(compare_at_price=Decimal(compare_at))
    assert (result == []) is ok
    if not ok:
        assert result == [("compare_at_price", compare_at, "must be at least the price")]


@pytest.mark.parametrize(("stock", "ok"), [(0, True), (1, True), (-1, False)])
def test_stock_is_zero_or_more(stock: int, ok: bool) -> None:
    assert (broken(stock_quantity=Decimal(stock)) == []) is ok


@pytest.mark.parametrize(
    ("sku", "ok"),
    [
        ("A", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("SKU_1.2-3", True),
        ("-SKU", False),
        ("SKU 1", False),
        ("SKÜ", False),
    ],
)
def test_sku_matches_the_pattern(sku: str, ok: bool) -> None:
    assert (broken(sku=sku) == []) is ok


@pytest.mark.parametrize(
    ("name", "ok"), [("N", True), ("n" * 200, True), ("n" * 201, False), ("  ", False)]
)
def test_product_name_is_non_empty_and_at_most_200_characters(name: str, ok: bool) -> None:
    assert (broken(product_name=name) == []) is ok


@pytest.mark.parametrize(("category", "ok"), [("c" * 100, True), ("c" * 101, False), ("", False)])
def test_category_is_non_empty_and_at_most_100_characters(category: str, ok: bool) -> None:
    assert (broken(category=category) == []) is ok


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cdn.example/a.jpg", True),
        ("http://cdn.example/a.jpg", False),
        ("https://", False),
        ("javascript:alert(1)", False),
    ],
)
def test_image_url_is_https(url: str, ok: bool) -> None:
    assert (broken(image_url=url) == []) is ok


@pytest.mark.parametrize(("weight", "ok"), [("0", True), ("0.0001", True), ("-0.0001", False)])
def test_weight_is_zero_or_more(weight: str, ok: bool) -> None:
    assert (broken(weight_kg=Decimal(weight)) == []) is ok


@pytest.mark.parametrize(
    ("dimensions", "ok"),
    [
        ("30x20x10", True),
        ("30.5 X 20 x 0.1", True),
        ("30x20", False),
        ("30x0x10", False),
        ("-30x20x10", False),
        ("axbxc", False),
    ],
)
def test_dimensions_are_three_positive_numbers(dimensions: str, ok: bool) -> None:
    assert (broken(dimensions_cm=dimensions) == []) is ok


def test_sku_and_vendor_product_id_are_unique_within_the_upload() -> None:
    rules = UploadRules()

    first = rules.check(1, GOOD)
    same_sku = rules.check(2, {**GOOD, "vendor_product_id": "P-2"})
    same_id = rules.check(3, {**GOOD, "sku": "SKU-3"})

    assert first == []
    assert [(v.field, v.rule) for v in same_sku] == [("sku", "must be unique in the file (row 1)")]
    assert [(v.field, v.value) for v in same_id] == [("vendor_product_id", "P-1")]


def test_each_failure_names_the_field_the_value_and_the_rule() -> None:
    result = broken(price=Decimal("-1"), image_url="ftp://x", stock_quantity=Decimal(-2))

    assert result == [
        ("price", "-1", "must be greater than 0"),
        ("stock_quantity", "-2", "must be a whole number, 0 or more"),
        ("image_url", "ftp://x", "must be an https:// URL"),
    ]


@pytest.mark.parametrize("url", ["https://[x", "https://[::1", "https://]", "https://"])
def test_a_url_the_parser_cannot_read_is_a_broken_rule_not_an_exception(url: str) -> None:
    assert broken(image_url=url) == [("image_url", url, "must be an https:// URL")]


def test_a_quoted_value_is_a_bounded_preview() -> None:
    (violation,) = check_row({**GOOD, "sku": "s" * 5_000})

    assert violation.field == "sku"
    assert len(violation.value) == 200
    assert violation.value.endswith("…")
