from datetime import UTC, datetime

import pytest

from worker.core.errors import PermanentError, UploadKeyError
from worker.core.keys import folder_vendor, parse_upload_key, rejected_upload_id


def test_a_well_formed_key_gives_vendor_timestamp_and_upload_id() -> None:
    key = parse_upload_key("uploads/VEND-42/VEND-42_20241105_093015.csv")

    assert key.vendor_id == "VEND-42"
    assert key.uploaded_at == datetime(2024, 11, 5, 9, 30, 15, tzinfo=UTC)
    assert key.upload_id == "UPLOAD_VEND-42_20241105_093015"
    assert key.file_name == "VEND-42_20241105_093015.csv"


def test_upload_ids_of_two_vendors_at_the_same_second_differ() -> None:
    a = parse_upload_key("uploads/A/A_20240101_000000.csv")
    b = parse_upload_key("uploads/B/B_20240101_000000.csv")

    assert a.upload_id != b.upload_id


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("uploads/ACME/ACME_20240101_120000.txt", "does not match"),
        ("ACME/ACME_20240101_120000.csv", "does not match"),
        ("uploads/ACME/ACME_2024-01-01_120000.csv", "does not match"),
        ("uploads/AC ME/AC ME_20240101_120000.csv", "does not match"),
        ("uploads/ACME/OTHER_20240101_120000.csv", "name different vendors"),
        ("uploads/ACME/ACME_20240230_120000.csv", "not a real UTC date-time"),
        ("uploads/ACME/ACME_20240101_246000.csv", "not a real UTC date-time"),
        ("uploads/" + "A" * 65 + "/" + "A" * 65 + "_20240101_120000.csv", "does not match"),
    ],
)
def test_a_bad_key_is_a_permanent_error_naming_the_expected_pattern(key: str, problem: str) -> None:
    with pytest.raises(UploadKeyError) as caught:
        parse_upload_key(key)

    assert isinstance(caught.value, PermanentError)
    assert problem in str(caught.value)
    assert "uploads/{VENDOR_ID}/{VENDOR_ID}_{YYYYMMDD}_{HHMMSS}.csv" in str(caught.value)


def test_rejected_upload_id_is_stable_and_distinct_per_object() -> None:
    first = rejected_upload_id("bucket", "uploads/x.csv")

    assert first == rejected_upload_id("bucket", "uploads/x.csv")
    assert first != rejected_upload_id("other", "uploads/x.csv")
    assert first.startswith("REJECTED_")
    assert len(first) == len("REJECTED_") + 16


@pytest.mark.parametrize(
    ("key", "vendor"),
    [("uploads/ACME/whatever.csv", "ACME"), ("elsewhere/ACME/x.csv", ""), ("uploads/x.csv", "")],
)
def test_folder_vendor_of_an_unparsable_key(key: str, vendor: str) -> None:
    assert folder_vendor(key) == vendor
