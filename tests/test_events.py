import json

import pytest

from tests.conftest import s3_event
from worker.core.errors import PoisonMessageError
from worker.core.events import ObjectRef, parse_message_body


def test_keys_are_url_decoded_once() -> None:
    body = s3_event("bucket", "uploads/ACME/ACME price list+v2 (1).csv")

    (ref,) = parse_message_body(body)

    assert ref == ObjectRef("bucket", "uploads/ACME/ACME price list+v2 (1).csv", None, 1)


def test_a_message_may_carry_several_records() -> None:
    body = s3_event("b", "uploads/A/A_20240101_000000.csv", "uploads/B/B_20240101_000000.csv")

    refs = parse_message_body(body)

    assert [ref.key for ref in refs] == [
        "uploads/A/A_20240101_000000.csv",
        "uploads/B/B_20240101_000000.csv",
    ]


def test_a_test_event_names_no_objects() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})

    assert parse_message_body(body) == ()


def test_records_other_than_object_created_are_skipped() -> None:
    document = json.loads(s3_event("b", "uploads/A/A_20240101_000000.csv"))
    document["Records"][0]["eventName"] = "ObjectRemoved:Delete"

    assert parse_message_body(json.dumps(document)) == ()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"hello": "world"}', "no S3 'Records'"),
        ('{"Records": []}', "no S3 'Records'"),
        ('{"Records": [{"eventName": "ObjectCreated:Put"}]}', "not an S3 event record"),
        ('{"Records": [{"s3": {"bucket": {"name": "b"}}}]}', "no bucket name or object key"),
        ('{"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": ""}}}]}', "empty"),
    ],
)
def test_anything_else_is_a_poison_message_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(PoisonMessageError, match=reason):
        parse_message_body(body)
