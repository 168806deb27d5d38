"""The BatchWriteItem shortcut (``worker.aws.wire``) relies on botocore's private serializer
attribute and request-dict layout. These tests fail if a botocore upgrade changes either."""

from __future__ import annotations

import json

import botocore.session
import pytest
from botocore.exceptions import ParamValidationError
from botocore.serialize import create_serializer

from tests.conftest import Stack
from worker.aws.wire import WireFormatSerializer, send_wire_format
from worker.core.items import ItemFactory
from worker.core.rows import Header
from worker.resources import Resources


def batch_parameters() -> dict[str, object]:
    header = Header.parse(
        ["vendor_product_id", "product_name", "category", "sku", "price", "stock_quantity", "x"]
    )
    factory = ItemFactory("UPLOAD_ACME_20241105_093015", "ACME", "uploads/k.csv", "2024-11-05Z")
    rows = [
        header.type_row(["P-1", "Cup ☕", "Kitchen", "S-1", "12.50", "3", "extra"]),
        header.type_row(["P-2", "Bad", "Kitchen", "S-2", "abc", "3", ""]),
    ]
    items = [factory.item(n, row) for n, row in enumerate(rows, start=1)]
    return {"RequestItems": {"UploadRecords": [{"PutRequest": {"Item": i}} for i in items]}}


def test_the_request_is_what_botocores_own_serializer_makes() -> None:
    model = botocore.session.get_session().get_service_model("dynamodb")
    operation = model.operation_model("BatchWriteItem")
    parameters = batch_parameters()

    ours = WireFormatSerializer().serialize_to_request(parameters, operation)
    theirs = create_serializer("json", include_validation=True).serialize_to_request(
        parameters, operation
    )

    assert json.loads(ours["body"]) == json.loads(theirs["body"])
    for field in ("url_path", "query_string", "method"):
        assert ours[field] == theirs[field], field
    for header in ("X-Amz-Target", "Content-Type"):
        assert ours["headers"][header] == theirs["headers"][header], header
    assert type(theirs) is dict
    assert set(ours) <= set(theirs)


def test_it_refuses_a_client_whose_serializer_it_does_not_know() -> None:
    client = botocore.session.get_session().create_client(
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with pytest.raises(TypeError, match="unexpected DynamoDB serializer"):
        send_wire_format(client)  # parameter validation is on: not the serializer it expects


async def test_only_the_item_writes_client_takes_the_shortcut(stack: Stack) -> None:
    async with Resources.open(stack.settings) as res:
        await res.item_writes.batch_write_item(**batch_parameters())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="BatchWriteItem only, not Query"):
            await res.item_writes.query(
                TableName="UploadRecords",
                KeyConditionExpression="upload_id = :u",
                ExpressionAttributeValues={":u": {"S": "x"}},
            )
        # The shared client still validates what it sends.
        with pytest.raises(ParamValidationError):
            await res.dynamodb.query(TableName="UploadRecords", Limit="many")  # type: ignore[arg-type]
    items = await stack.items("UPLOAD_ACME_20241105_093015")
    assert [i["status"] for i in items] == ["pending_validation", "parse_error"]
    assert items[0]["product_data"]["product_name"] == "Cup ☕"
