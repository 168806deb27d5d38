"""The validation stage end to end: staged rows → products, invalid rows → the error queue,
statuses and counts, the vendor report in S3 and the notice on SNS."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from tests.conftest import Stack, s3_event
from tests.test_cli import cli, stack_env

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"
HEADER = (
    "vendor_product_id,product_name,category,sku,price,compare_at_price,stock_quantity,"
    "weight_kg,dimensions_cm,image_url,colour\n"
)
ROWS = [
    "P-1,Cup,Kitchen,SKU-1,12.50,15.00,10,0.45,8x8x7,https://cdn.example/1.jpg,white",  # valid
    "P-2,Kettle,Kitchen,SKU-2,39.90,,0,1.1,30x16x20,,",  # valid
    "P-3,Free lunch,Kitchen,SKU-3,0,,5,,,,",  # price 0
    "P-4,Bad URL,Kitchen,SKU-4,5.00,4.00,5,,,http://x.example/4.jpg,",  # compare<price, http
    "P-5,Dupe SKU,Kitchen,SKU-1,5.00,,5,,,,",  # sku seen in row 1
    "P-6,Unparsable,Kitchen,SKU-6,abc,,5,,,,",  # parse error from staging
    "=HYPERLINK(1),Formula,Kitchen,SKU-7,1,,-3,,,,",  # stock < 0, formula-looking id
]


def csv_file(rows: list[str]) -> str:
    return HEADER + "\n".join(rows) + "\n"


async def stage_and_validate(stack: Stack, body: str) -> None:
    await stack.put_object(KEY, body)
    await stack.run_worker()
    await stack.run_validation()


async def subscribe_to_notices(stack: Stack) -> str:
    async with stack.session_client("sqs") as sqs, stack.session_client("sns") as sns:
        queue_url = (await sqs.create_queue(QueueName="notices-inbox"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await sns.subscribe(
            TopicArn=stack.settings.notice_topic_arn or "",
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true"},
        )
    return str(queue_url)


async def drain(stack: Stack, queue_url: str) -> list[dict[str, Any]]:
    """Every message in a queue (received and deleted)."""
    messages: list[dict[str, Any]] = []
    async with stack.session_client("sqs") as sqs:
        while True:
            response = await sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            )
            batch = response.get("Messages", [])
            if not batch:
                return messages
            messages += batch
            for message in batch:
                await sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


async def products(stack: Stack) -> dict[str, dict[str, Any]]:
    rows = await stack.db.fetch("SELECT * FROM products ORDER BY vendor_product_id")
    return {row["vendor_product_id"]: dict(row) for row in rows}


async def get_object(stack: Stack, key: str) -> bytes:
    async with stack.session_client("s3") as s3:
        response = await s3.get_object(Bucket=stack.bucket, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data


async def test_a_mixed_file_ends_as_products_error_messages_a_report_and_a_notice(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    notices = await subscribe_to_notices(stack)

    await stage_and_validate(stack, csv_file(ROWS))

    # Valid rows are products, with exact typed columns
    stored = await products(stack)
    assert sorted(stored) == ["P-1", "P-2"]
    cup = stored["P-1"]
    assert (cup["price"], cup["compare_at_price"], cup["weight_kg"]) == (
        Decimal("12.5000"),
        Decimal("15.0000"),
        Decimal("0.4500"),
    )
    assert (cup["stock_quantity"], cup["sku"], cup["upload_id"]) == (10, "SKU-1", UPLOAD_ID)
    assert json.loads(cup["extra"]) == {"colour": "white"}
    assert stored["P-2"]["compare_at_price"] is None

    # Every item has its final status; invalid ones carry the reasons
    items = {item["row_number"]: item for item in await stack.items(UPLOAD_ID)}
    assert {n: items[n]["status"] for n in items} == {
        1: "validated",
        2: "validated",
        3: "invalid",
        4: "invalid",
        5: "invalid",
        6: "invalid",
        7: "invalid",
    }
    assert items[4]["errors"] == [
        {"field": "compare_at_price", "value": "4.00", "message": "must be at least the price"},
        {
            "field": "image_url",
            "value": "http://x.example/4.jpg",
            "message": "must be an https:// URL",
        },
    ]
    assert items[5]["errors"][0]["message"] == "must be unique in the file (row 1)"

    # One error-queue message per invalid row
    errors = await drain(stack, stack.settings.error_queue_url or "")
    bodies = sorted((json.loads(m["Body"]) for m in errors), key=lambda b: b["row_number"])
    assert [b["row_number"] for b in bodies] == [3, 4, 5, 6, 7]
    assert bodies[0]["errors"] == [
        {"field": "price", "value": "0", "rule": "must be greater than 0"}
    ]
    assert bodies[3]["errors"][0]["field"] == "price"  # the parse error, carried over
    assert {m["MessageAttributes"]["upload_id"]["StringValue"] for m in errors} == {UPLOAD_ID}

    # upload_history has the counts
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["valid_records"], history["invalid_records"]) == (
        "validated",
        2,
        5,
    )

    # The report, and its CSV safe to open in a spreadsheet
    report = json.loads(await get_object(stack, f"reports/ACME/{UPLOAD_ID}.json"))
    assert (report["total_records"], report["valid_records"], report["invalid_records"]) == (
        7,
        2,
        5,
    )
    assert report["errors_csv_key"] == f"reports/ACME/{UPLOAD_ID}.csv"
    rejected = (await get_object(stack, f"reports/ACME/{UPLOAD_ID}.csv")).decode()
    lines = rejected.splitlines()
    assert lines[0] == "row_number,record_id,vendor_product_id,field,value,rule"
    assert "3,REC_00003,P-3,price,0,must be greater than 0" in lines
    assert (
        "7,REC_00007,'=HYPERLINK(1),stock_quantity,'-3,\"must be a whole number, 0 or more\""
        in lines
    )

    # And the vendor was notified
    (notice,) = await drain(stack, notices)
    document = json.loads(notice["Body"])
    assert (document["valid_records"], document["invalid_records"]) == (2, 5)
    assert document["report_key"] == f"reports/ACME/{UPLOAD_ID}.json"


async def test_validating_twice_changes_nothing(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    notices = await subscribe_to_notices(stack)
    await stage_and_validate(stack, csv_file(ROWS))
    before = (
        await products(stack),
        await stack.items(UPLOAD_ID),
        await get_object(stack, f"reports/ACME/{UPLOAD_ID}.csv"),
        len(await drain(stack, stack.settings.error_queue_url or "")),
        len(await drain(stack, notices)),
    )

    result = cli("validate", UPLOAD_ID, env=stack_env(stack))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{UPLOAD_ID}: 2 valid, 5 invalid of 7; report s3://")
    after = (
        await products(stack),
        await stack.items(UPLOAD_ID),
        await get_object(stack, f"reports/ACME/{UPLOAD_ID}.csv"),
        len(await drain(stack, stack.settings.error_queue_url or "")),
        len(await drain(stack, notices)),
    )
    assert before[:3] == after[:3]  # products (updated_at too), items, report
    assert (before[3], after[3]) == (5, 0)  # no second error message for a row
    assert (before[4], after[4]) == (1, 0)  # nor a second notice
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["valid_records"], history["invalid_records"]) == (2, 5)


async def test_a_reupload_with_new_prices_updates_the_products(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stage_and_validate(stack, csv_file(ROWS[:2]))

    await stage_and_validate(stack, csv_file([ROWS[0].replace("12.50", "13.75"), ROWS[1]]))

    stored = await products(stack)
    assert stored["P-1"]["price"] == Decimal("13.7500")
    assert stored["P-2"]["price"] == Decimal("39.9000")
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    # Two stagings and two validation runs each took the lease.
    assert (history["status"], history["valid_records"], history["attempts"]) == ("validated", 2, 4)


async def test_validate_refuses_an_upload_that_is_not_staged(stack: Stack) -> None:
    await stack.put_object("uploads/NOBODY/NOBODY_20240101_000000.csv", csv_file(ROWS[:1]))
    await stack.run_worker()

    result = cli("validate", "UPLOAD_NOBODY_20240101_000000", env=stack_env(stack))

    assert result.returncode == 1
    assert "error: upload UPLOAD_NOBODY_20240101_000000 is rejected, not staged" in result.stderr


async def test_a_malformed_validation_job_goes_to_the_validation_dlq(stack: Stack) -> None:
    async with stack.session_client("sqs") as sqs:
        await sqs.send_message(
            QueueUrl=stack.settings.validation_queue_url or "", MessageBody='{"upload": 1}'
        )

    await stack.run_validation()

    (dead,) = await stack.queue_messages(stack.settings.validation_dlq_url or "")
    assert dead["MessageAttributes"]["reason"]["StringValue"].startswith("not a validation job")
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []


async def test_the_ingest_loop_hands_a_validation_job_on_to_the_validation_queue(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS[:1]))
    await stack.run_worker()
    await drain(stack, stack.settings.validation_queue_url or "")  # the job staging queued

    # GIVEN a validation job on the ingest queue
    await stack.send_raw(json.dumps({"upload_id": UPLOAD_ID}))

    # WHEN the ingest loop runs: the job is not poison, it is handed on
    await stack.run_worker()

    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    (job,) = await stack.queue_messages(stack.settings.validation_queue_url or "")
    assert json.loads(job["Body"]) == {"upload_id": UPLOAD_ID}

    # AND the validation loop runs it
    await stack.run_validation()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["valid_records"]) == ("validated", 1)


async def test_a_validation_job_with_no_validation_queue_to_go_to_says_so_in_the_dlq(
    stack: Stack,
) -> None:
    await stack.send_raw(json.dumps({"upload_id": UPLOAD_ID}))

    await stack.run_worker(validation_queue_url=None)

    (dead,) = await stack.queue_messages(stack.settings.dlq_url or "")
    assert dead["MessageAttributes"]["reason"]["StringValue"] == (
        "a message for the validation stage, and VALIDATION_QUEUE_URL is not set"
    )


async def test_the_validation_loop_hands_an_s3_event_on_to_the_ingest_queue(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS[:1]))
    # the notification S3 sent is taken away: only the misplaced copy is left
    await drain(stack, stack.settings.ingest_queue_url or "")
    async with stack.session_client("sqs") as sqs:
        await sqs.send_message(
            QueueUrl=stack.settings.validation_queue_url or "",
            MessageBody=s3_event(stack.bucket, KEY),
        )

    await stack.run_validation()

    assert await stack.queue_messages(stack.settings.validation_dlq_url or "") == []
    assert await stack.queue_messages(stack.settings.validation_queue_url or "") == []
    (event,) = await stack.queue_messages(stack.settings.ingest_queue_url or "")
    assert event["Body"] == s3_event(stack.bucket, KEY)
    await stack.run_worker()
    await stack.run_validation()
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "validated"
