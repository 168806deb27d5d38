"""Mutations of a valid file, end to end: whatever a vendor's export does to it, the upload ends
``validated`` or ``rejected`` within one drain (never ``failed``), and the staging table holds
exactly the rows its history reports.

``FUZZ_EXAMPLES`` sets the number of files (default 12, enough for CI); run it longer with e.g.
``FUZZ_EXAMPLES=300 .venv/bin/python -m pytest tests/test_fuzz_files.py``.
"""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))
VALID = (
    "vendor_product_id,product_name,category,sku,price,stock_quantity,description\r\n"
    + "".join(
        f'P-{n},"Cup, size {n}",Kitchen,SKU-{n},{n}.50,{n},"say ""hi""\nok"\r\n'
        for n in range(1, 7)
    )
).encode()
_keys = itertools.count()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = VALID
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        kind = draw(
            st.sampled_from(
                ["truncate", "bytes", "quote", "nul", "extra", "missing", "cr", "huge", "drop"]
            )
        )
        if kind == "truncate":
            data = data[:at]
        elif kind == "bytes":
            data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
        elif kind == "quote":
            data = data[:at] + b'"' + data[at:]
        elif kind == "nul":
            data = data[:at] + b"\x00" + data[at:]
        elif kind == "extra":
            data = data.replace(b"\r\n", b",surplus\r\n", 1)
        elif kind == "missing":
            data = data.replace(b",Kitchen", b"", 1)
        elif kind == "cr":
            data = data.replace(b"\r\n", b"\r")
        elif kind == "huge":
            data = data[:at] + b"w" * draw(st.sampled_from([70_000, 140_000])) + data[at:]
        else:
            data = data[:at] + data[at + draw(st.integers(1, 40)) :]
    return data


@pytest.mark.timeout(600)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=mutated())
async def test_a_mutated_file_ends_validated_or_rejected_with_every_row_accounted_for(
    stack: Stack, body: bytes
) -> None:
    await stack.add_vendor("ACME")
    n = next(_keys)  # a new upload per example
    stamp = f"20241105_{n // 3600:02d}{n // 60 % 60:02d}{n % 60:02d}"
    key, upload_id = f"uploads/ACME/ACME_{stamp}.csv", f"UPLOAD_ACME_{stamp}"
    await stack.put_object(key, body)

    await stack.run_worker()
    await stack.run_validation()

    history = await stack.history(upload_id)
    assert history is not None
    assert history["status"] in ("validated", "rejected"), history["error_message"]
    items = await stack.items(upload_id)
    assert len(items) == history["total_records"]
    if history["status"] == "validated":
        assert history["valid_records"] + history["invalid_records"] == len(items)
        assert {i["status"] for i in items} <= {"validated", "invalid"}
    assert await stack.queue_messages(stack.settings.dlq_url or "") == []
