"""Files that real vendor exports produce, end to end on the moto server and PostgreSQL: each
ends in a known state, row by row, and nothing reaches the DLQ."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import Stack
from tests.test_validation import drain, products
from worker.aws.item_writer import ItemWriter
from worker.core.items import ItemFactory, refused_item
from worker.core.limits import SQS_MESSAGE_BYTES
from worker.core.rows import Header
from worker.resources import Resources

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"
HEADER = "vendor_product_id,product_name,category,sku,price,stock_quantity"


async def upload(stack: Stack, body: str | bytes) -> dict[str, Any]:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, body)
    await stack.run_worker()
    await stack.run_validation()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    return history


async def nothing_dead_lettered(stack: Stack) -> bool:
    return await stack.queue_messages(stack.settings.dlq_url or "") == []


def rows(*lines: str) -> str:
    return "\n".join([HEADER, *lines]) + "\n"


async def assert_one_invalid_row(
    stack: Stack, history: dict[str, Any], field: str, message: str
) -> None:
    assert history["status"] == "validated"
    assert (history["total_records"], history["valid_records"], history["invalid_records"]) == (
        3,
        2,
        1,
    )
    items = await stack.items(UPLOAD_ID)
    assert [i["status"] for i in items] == ["validated", "invalid", "validated"]
    errors = items[1]["errors"]
    assert [e["field"] for e in errors] == [field]
    assert message in errors[0]["message"]
    assert sorted(await products(stack)) == ["P-1", "P-3"]
    (sent,) = await drain(stack, stack.settings.error_queue_url or "")
    assert len(sent["Body"].encode()) <= SQS_MESSAGE_BYTES
    body = json.loads(sent["Body"])
    assert (body["record_id"], body["errors"][0]["field"]) == ("REC_00002", field)
    assert await nothing_dead_lettered(stack)


async def test_a_row_too_large_for_dynamodb_is_a_row_error_and_the_rest_is_staged(
    stack: Stack,
) -> None:
    extra = [f"x{n}" for n in range(600)]
    big = ",".join("y" * 2_000 for _ in extra)
    short = "," * (len(extra) - 1)
    body = "\n".join(
        [
            ",".join([HEADER, *extra]),
            f"P-1,Cup,K,S-1,1.00,3,{short}",
            f"P-2,Huge,K,S-2,1.00,3,{big}",
            f"P-3,Pot,K,S-3,2.00,1,{short}\n",
        ]
    )

    history = await upload(stack, body)

    await assert_one_invalid_row(stack, history, "row", "the row takes 1,2")
    items = await stack.items(UPLOAD_ID)
    assert items[1]["raw_data"]["vendor_product_id"] == "P-2"


async def test_a_200_kb_cell_is_an_error_of_its_field_not_of_the_file(stack: Stack) -> None:
    body = rows("P-1,Cup,K,S-1,1.00,3", f"P-2,{'n' * 200_000},K,S-2,1.00,3", "P-3,Pot,K,S-3,2,1")

    history = await upload(stack, body)

    await assert_one_invalid_row(stack, history, "product_name", "200,000 characters long")


async def test_a_nul_byte_in_a_cell_makes_its_row_invalid(stack: Stack) -> None:
    body = rows("P-1,Cup,K,S-1,1.00,3", "P-2,Mug\x00,K,S-2,1.00,3", "P-3,Pot,K,S-3,2,1")

    history = await upload(stack, body)

    await assert_one_invalid_row(stack, history, "product_name", "control character (U+0000)")


async def test_an_image_url_the_parser_cannot_read_makes_its_row_invalid(stack: Stack) -> None:
    body = (
        HEADER
        + ",image_url\nP-1,Cup,K,S-1,1.00,3,\nP-2,Mug,K,S-2,1.00,3,https://[x\nP-3,Pot,K,S-3,2,1,\n"
    )

    history = await upload(stack, body)

    await assert_one_invalid_row(stack, history, "image_url", "must be an https:// URL")


async def test_a_quote_left_open_in_row_2_rejects_the_file_naming_its_line(stack: Stack) -> None:
    body = rows("P-1,Cup,K,S-1,1.00,3", 'P-2,"Mug,K,S-2,1.00,3', "P-3,Pot,K,S-3,2,1")

    history = await upload(stack, body)

    assert history["status"] == "rejected"
    assert history["error_message"] == ("line 3: a quoted cell opened on this line is never closed")
    assert await stack.items(UPLOAD_ID) == []
    assert await nothing_dead_lettered(stack)


async def test_a_csv_error_inside_a_line_names_that_line(stack: Stack) -> None:
    body = rows("P-1,Cup,K,S-1,1.00,3", 'P-2,"Mug"s,K,S-2,1.00,3', "P-3,Pot,K,S-3,2,1")

    history = await upload(stack, body)

    assert history["status"] == "rejected"
    assert history["error_message"].startswith("line 3: the file is not valid CSV")
    assert await nothing_dead_lettered(stack)


async def test_an_item_dynamodb_refuses_is_found_in_its_batch_and_kept_as_a_row_error(
    stack: Stack,
) -> None:
    # Items built past the typing limits (as a future bug might): DynamoDB refuses the batch
    # that carries one, and the writer isolates it.
    header = Header.parse([*HEADER.split(","), "notes"])
    factory = ItemFactory(UPLOAD_ID, "ACME", KEY, "2024-11-05T09:30:15Z")
    items = [
        factory.item(n, header.type_row([f"P-{n}", "Cup", "K", f"S-{n}", "1.00", "3", "ok"]))
        for n in range(1, 41)
    ]
    items[12]["product_data"]["M"]["notes"] = {"S": "z" * 420_000}
    refused: list[str] = []

    def replace(item: dict[str, Any], reason: str) -> dict[str, Any]:
        refused.append(item["record_id"]["S"])
        return refused_item(item, reason)

    async with (
        Resources.open(stack.settings) as res,
        ItemWriter.from_settings(res.item_writes, res.settings, on_refused=replace) as writer,
    ):
        for item in items:
            await writer.put(item)

    stored = await stack.items(UPLOAD_ID)
    assert len(stored) == 40
    assert refused == ["REC_00013"]
    assert stored[12]["status"] == "parse_error"
    assert stored[12]["errors"][0]["message"].startswith("the row could not be stored: ")
    assert {i["status"] for i in stored[:12] + stored[13:]} == {"pending_validation"}
