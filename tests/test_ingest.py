"""The ingest path end to end: S3 PutObject → notification → SQS → worker → DynamoDB and
PostgreSQL, against the moto server and a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from tests.conftest import Stack, s3_event
from worker.core.keys import rejected_upload_id

HEADER = (
    "vendor_product_id,product_name,category,subcategory,description,sku,brand,price,"
    "compare_at_price,stock_quantity,unit,weight_kg,dimensions_cm,image_url"
)
KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"


def csv_file(rows: int, *, price: str = "12.50", start: int = 1) -> str:
    lines = [HEADER] + [
        f"P-{n},Product {n},Kitchen,Cups,,SKU-{n},Acme,{price},,{n},piece,0.25,8x8x7,"
        for n in range(start, start + rows)
    ]
    return "\n".join(lines) + "\n"


async def test_a_clean_file_lands_as_typed_items_and_a_staged_history_row(stack: Stack) -> None:
    # GIVEN an active vendor
    await stack.add_vendor("ACME")
    # WHEN it uploads a file of 60 rows (three batches of 25)
    await stack.put_object(KEY, csv_file(60))
    await stack.run_worker()

    # THEN every row is one pending item with typed values
    items = await stack.items(UPLOAD_ID)
    assert [item["record_id"] for item in items] == [f"REC_{n:05d}" for n in range(1, 61)]
    first = items[0]
    assert first["status"] == "pending_validation"
    assert first["vendor_id"] == "ACME"
    assert first["s3_key"] == KEY
    assert first["row_number"] == 1
    assert first["created_at"].endswith("Z")
    assert first["product_data"] == {
        "vendor_product_id": "P-1",
        "product_name": "Product 1",
        "category": "Kitchen",
        "subcategory": "Cups",
        "sku": "SKU-1",
        "brand": "Acme",
        "price": Decimal("12.50"),
        "stock_quantity": Decimal(1),
        "unit": "piece",
        "weight_kg": Decimal("0.25"),
        "dimensions_cm": "8x8x7",
    }
    # AND the history row says staged with the counts
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "staged"
    assert (history["total_records"], history["successful_records"]) == (60, 60)
    assert history["failed_records"] == 0
    assert history["vendor_id"] == "ACME"
    assert history["s3_bucket"] == stack.bucket
    assert history["file_name"] == "ACME_20241105_093015.csv"
    assert history["s3_etag"]
    assert history["file_size_bytes"] == len(csv_file(60))
    assert history["lease_expires_at"] is None
    assert history["processing_completed_at"] is not None
    # AND the message is gone from the queue
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []


async def test_bad_rows_are_kept_as_parse_errors_with_their_field_errors(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    body = (
        csv_file(2) + "P-3,Broken,Kitchen,,,SKU-3,,abc,,ten,,,,\nP-4,,Kitchen,,,SKU-4,,1,,1,,,,\n"
    )
    await stack.put_object(KEY, body)

    await stack.run_worker()

    items = await stack.items(UPLOAD_ID)
    assert [item["status"] for item in items] == [
        "pending_validation",
        "pending_validation",
        "parse_error",
        "parse_error",
    ]
    third = items[2]
    assert "product_data" not in third
    assert third["raw_data"]["price"] == "abc"
    assert third["raw_data"]["stock_quantity"] == "ten"
    assert {error["field"] for error in third["errors"]} == {"price", "stock_quantity"}
    assert items[3]["errors"] == [{"field": "product_name", "message": "is required"}]
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["total_records"]) == ("staged", 4)
    assert (history["successful_records"], history["failed_records"]) == (2, 2)


async def test_quoted_newlines_crlf_and_a_bom_parse_through_the_whole_path(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    body = (
        "\ufeff" + HEADER + "\r\n"
        'P-1,"Cup, ""large""",Kitchen,,"line one\r\nline two",SKU-1,,1.00,,1,,,,\r\n'
    ).encode()
    await stack.put_object(KEY, body)

    await stack.run_worker()

    (item,) = await stack.items(UPLOAD_ID)
    assert item["product_data"]["vendor_product_id"] == "P-1"
    assert item["product_data"]["product_name"] == 'Cup, "large"'
    assert item["product_data"]["description"] == "line one\r\nline two"


async def test_a_duplicate_delivery_does_no_second_write(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(3))
    await stack.run_worker()
    # An item changed after staging shows whether the duplicate rewrites it.
    async with stack.session_client("dynamodb") as dynamodb:
        await dynamodb.update_item(
            TableName=stack.settings.dynamodb_table,
            Key={"upload_id": {"S": UPLOAD_ID}, "record_id": {"S": "REC_00001"}},
            UpdateExpression="SET #s = :v",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":v": {"S": "validated"}},
        )

    # WHEN the same notification arrives again (at-least-once delivery)
    await stack.send_raw(s3_event(stack.bucket, KEY))
    await stack.run_worker()

    items = await stack.items(UPLOAD_ID)
    assert items[0]["status"] == "validated"
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["attempts"]) == ("staged", 1)
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []


async def test_a_new_version_of_the_same_key_replaces_the_old_items(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(30, price="10.00"))
    await stack.run_worker()

    await stack.put_object(KEY, csv_file(4, price="11.00"))
    await stack.run_worker()

    items = await stack.items(UPLOAD_ID)
    assert [item["record_id"] for item in items] == [
        "REC_00001",
        "REC_00002",
        "REC_00003",
        "REC_00004",
    ]
    assert {item["product_data"]["price"] for item in items} == {Decimal("11.00")}
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["total_records"], history["attempts"]) == ("staged", 4, 2)


async def test_a_rejected_new_version_leaves_no_stale_items(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(5))
    await stack.run_worker()

    await stack.put_object(KEY, "vendor_product_id,sku\nP-1,S\n")
    await stack.run_worker()

    assert await stack.items(UPLOAD_ID) == []
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "rejected"
    assert "missing required column(s)" in history["error_message"]


async def rejected(stack: Stack, upload_id: str) -> str:
    history = await stack.history(upload_id)
    assert history is not None, f"no upload_history row for {upload_id}"
    assert history["status"] == "rejected"
    assert history["total_records"] == 0
    assert await stack.items(upload_id) == []
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    message: str = history["error_message"]
    return message


async def test_an_unknown_vendor_is_rejected(stack: Stack) -> None:
    await stack.put_object("uploads/NOBODY/NOBODY_20240101_120000.csv", csv_file(2))

    await stack.run_worker()

    assert await rejected(stack, "UPLOAD_NOBODY_20240101_120000") == (
        "vendor 'NOBODY' is not registered"
    )


async def test_a_suspended_vendor_is_rejected(stack: Stack) -> None:
    await stack.add_vendor("ACME", "suspended")
    await stack.put_object(KEY, csv_file(2))

    await stack.run_worker()

    assert await rejected(stack, UPLOAD_ID) == "vendor 'ACME' is suspended, not active"


async def test_a_missing_required_column_is_rejected_naming_it(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(2).replace("stock_quantity", "stock"))

    await stack.run_worker()

    message = await rejected(stack, UPLOAD_ID)
    assert message.startswith("line 1: missing required column(s): stock_quantity")


async def test_a_file_that_is_not_utf8_is_rejected_naming_the_line(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, (csv_file(40) + "P-41,Café,K,,,S,,1,,1,,,,\n").encode("latin-1"))

    await stack.run_worker()

    message = await rejected(stack, UPLOAD_ID)
    assert message.startswith("line 42: the file is not valid UTF-8")


async def test_an_empty_file_is_rejected(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, b"")

    await stack.run_worker()

    assert await rejected(stack, UPLOAD_ID) == "the file is empty"


async def test_a_header_only_file_is_rejected(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, HEADER + "\r\n")

    await stack.run_worker()

    assert await rejected(stack, UPLOAD_ID) == "the file has a header but no data rows"


async def test_a_bad_key_name_is_recorded_as_rejected(stack: Stack) -> None:
    key = "uploads/ACME/products-final.csv"
    await stack.put_object(key, csv_file(1))

    await stack.run_worker()

    upload_id = rejected_upload_id(stack.bucket, key)
    message = await rejected(stack, upload_id)
    assert "does not match uploads/{VENDOR_ID}/{VENDOR_ID}_{YYYYMMDD}_{HHMMSS}.csv" in message
    history = await stack.history(upload_id)
    assert history is not None
    assert (history["vendor_id"], history["s3_key"]) == ("ACME", key)


async def test_a_url_encoded_key_with_spaces_is_decoded_once(stack: Stack) -> None:
    key = "uploads/ACME/ACME price list+v2.csv"
    await stack.put_object(key, csv_file(1))

    await stack.run_worker()

    history = await stack.history(rejected_upload_id(stack.bucket, key))
    assert history is not None
    assert history["s3_key"] == key  # not "ACME+price+list%2Bv2.csv"
    assert history["status"] == "rejected"


async def test_an_object_deleted_before_processing_is_rejected(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.send_raw(s3_event(stack.bucket, KEY))

    await stack.run_worker()

    message = await rejected(stack, UPLOAD_ID)
    assert message == f"s3://{stack.bucket}/{KEY} no longer exists (NoSuchKey)"


async def test_the_s3_test_event_is_acknowledged_and_dropped(stack: Stack) -> None:
    await stack.send_raw(
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": stack.bucket})
    )

    await stack.run_worker()

    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    assert await stack.db.fetchval("SELECT count(*) FROM upload_history") == 0


async def test_a_poison_message_goes_to_the_dlq_and_does_not_stop_the_worker(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.send_raw("this is not an S3 event")
    await stack.put_object(KEY, csv_file(2))

    await stack.run_worker()

    (dead,) = await stack.queue_messages(stack.settings.dlq_url or "")
    assert dead["Body"] == "this is not an S3 event"
    assert dead["MessageAttributes"]["reason"]["StringValue"] == "message body is not JSON"
    assert await stack.queue_messages(stack.settings.ingest_queue_url or "") == []
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "staged"


async def test_several_records_in_one_message_are_each_processed(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.add_vendor("GLOBEX")
    other = "uploads/GLOBEX/GLOBEX_20241105_093015.csv"
    async with stack.session_client("s3") as s3:  # this test sends its own notification
        await s3.put_bucket_notification_configuration(
            Bucket=stack.bucket, NotificationConfiguration={}
        )
    await stack.put_object(KEY, csv_file(2))
    await stack.put_object(other, csv_file(3))
    await stack.send_raw(s3_event(stack.bucket, KEY, other))

    await stack.run_worker()

    assert len(await stack.items(UPLOAD_ID)) == 2
    assert len(await stack.items("UPLOAD_GLOBEX_20241105_093015")) == 3


async def test_metrics_are_published_per_vendor(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(2) + "P-3,X,K,,,S,,bad,,1,,,,\n")

    await stack.run_worker()

    async with stack.session_client("cloudwatch") as cloudwatch:
        listed = await cloudwatch.list_metrics(Namespace="EcommerceProductOnboarding")
        names = {metric["MetricName"] for metric in listed["Metrics"]}
        dimensions = {
            (d["Name"], d["Value"]) for metric in listed["Metrics"] for d in metric["Dimensions"]
        }
        data = await cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": name.lower(),
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "EcommerceProductOnboarding",
                            "MetricName": name,
                            "Dimensions": [{"Name": "VendorId", "Value": "ACME"}],
                        },
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
                for name in (
                    "CSVRecordsProcessed",
                    "CSVRecordsSuccessful",
                    "CSVRecordsFailed",
                    "StagingItemsThrottled",
                )
            ],
            StartTime=datetime.now(UTC) - timedelta(hours=1),
            EndTime=datetime.now(UTC) + timedelta(hours=1),
        )
    assert names == {
        "CSVRecordsProcessed",
        "CSVRecordsSuccessful",
        "CSVRecordsFailed",
        "CSVProcessingTime",
        "StagingItemsThrottled",
    }
    assert dimensions == {("VendorId", "ACME")}
    sums = {result["Id"]: sum(result["Values"]) for result in data["MetricDataResults"]}
    assert sums == {
        "csvrecordsprocessed": 3,
        "csvrecordssuccessful": 2,
        "csvrecordsfailed": 1,
        "stagingitemsthrottled": 0,
    }
