"""Every item and message the service writes fits, by construction: the staging item of any row
(counted as DynamoDB counts), a replacement for a refused item, an error-queue message and a
SendMessageBatch call."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.aws.queues import batches, entry_bytes
from worker.core.items import ItemFactory, refused_item
from worker.core.limits import (
    ITEM_LIMIT_BYTES,
    SNS_MESSAGE_BYTES,
    SQS_MESSAGE_BYTES,
    VALIDATION_ALLOWANCE_BYTES,
)
from worker.core.report import ReportSummary
from worker.core.rows import COLUMNS, Header
from worker.core.rules import Violation
from worker.validation.error_queue import error_message
from worker.validation.judge import Verdict
from worker.validation.publish import notice_text

# The longest S3 key there is (1,024 bytes) and a long vendor id.
VENDOR = "V" * 64
FACTORY = ItemFactory(
    upload_id=f"UPLOAD_{VENDOR}_20241105_093015",
    vendor_id=VENDOR,
    s3_key="uploads/" + "k" * 1_016,
    created_at="2024-11-05T09:30:15Z",
)


def dynamodb_size(value: dict[str, Any]) -> int:
    """An attribute value's size as DynamoDB documents it (numbers over-estimated)."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        return len(inner) + 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + dynamodb_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(dynamodb_size(v) + 1 for v in inner)
    raise AssertionError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + dynamodb_size(value) for name, value in item.items())


cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=3_000) | st.sampled_from(
    ["€" * 70_000, "x" * 60_000, "1.50", "", "\x00"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extra=st.lists(
        st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=120),
        max_size=300,
        unique_by=str.lower,
    ),
    values=st.lists(cells, max_size=320),
)
def test_the_staging_item_of_any_row_leaves_room_for_validation(
    extra: list[str], values: list[str]
) -> None:
    names = [*COLUMNS, *(f"x_{name}" for name in extra)]
    header = Header.parse(names)
    typed = header.type_row(values)

    item = FACTORY.item(1, typed)

    assert item_size(item) <= ITEM_LIMIT_BYTES - VALIDATION_ALLOWANCE_BYTES


def test_a_refused_item_is_replaced_by_a_small_row_error() -> None:
    header = Header.parse([*COLUMNS, "notes"])
    row = header.type_row(
        ["P-1", "Cup", "K", "", "", "S-1", "", "1.00", "", "3", "", "", "", "", "n" * 60_000]
    )
    item = FACTORY.item(7, row)

    replacement = refused_item(item, "Item size has exceeded the maximum allowed size")

    assert item_size(replacement) < 40_000
    assert replacement["status"] == {"S": "parse_error"}
    assert replacement["record_id"] == {"S": "REC_00007"}
    assert replacement["raw_data"]["M"]["vendor_product_id"] == {"S": "P-1"}
    assert replacement["errors"]["L"][0]["M"]["message"]["S"] == (
        "the row could not be stored: Item size has exceeded the maximum allowed size"
    )


def test_an_error_message_fits_in_one_sqs_message_whatever_the_row_holds() -> None:
    data: dict[str, Any] = {f"c{n}": "€" * 1_500 for n in range(200)}
    data["price"] = Decimal("1.50")
    verdict = Verdict(3, "REC_00003", "parse_error", data, [Violation("row", "", "too big")])

    message = error_message("UPLOAD_A_20241105_093015", "A", "uploads/A/k.csv", verdict)

    assert entry_bytes(message) <= SQS_MESSAGE_BYTES
    body = json.loads(message["MessageBody"])
    assert body["data_truncated"] is True
    assert body["errors"] == [{"field": "row", "value": "", "rule": "too big"}]


def test_send_message_batch_calls_stay_under_256_kb_and_10_entries() -> None:
    sizes = [100_000, 100_000, 100_000, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 250_000]
    messages = [{"MessageBody": "x" * size} for size in sizes]

    calls = list(batches(messages))

    assert [m for call in calls for m in call] == messages
    for call in calls:
        assert len(call) <= 10
        assert sum(entry_bytes(m) for m in call) <= SQS_MESSAGE_BYTES
    assert [len(call) for call in calls] == [2, 10, 2]


def test_a_notice_fits_in_one_sns_message_whatever_the_samples_hold() -> None:
    samples = [
        {
            "row_number": n,
            "errors": [{"field": "f" * 255, "value": "v" * 200, "rule": "r" * 200}] * 20,
        }
        for n in range(20)
    ]
    summary = ReportSummary("U", "V", "k", "t", 20, 0, 20, "reports/V/U.csv", samples)

    text = notice_text(summary)

    assert len(text.encode()) <= SNS_MESSAGE_BYTES
    assert json.loads(text)["sample_errors_omitted"] is True
    small = ReportSummary("U", "V", "k", "t", 1, 0, 1, "reports/V/U.csv", samples[:1])
    assert json.loads(notice_text(small))["sample_errors"] == samples[:1]
