"""The validation stage under concurrency and faults: one holder per upload, the newest upload
wins, every failure classified, the notice sent once. Real moto server and PostgreSQL; pauses
and failures come from the fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

from tests.conftest import Stack, eventually
from tests.fault_proxy import FaultPlan, fault_proxy
from tests.test_validation import (
    HEADER,
    KEY,
    ROWS,
    UPLOAD_ID,
    csv_file,
    drain,
    get_object,
    products,
    subscribe_to_notices,
)
from worker.core.items import record_id, row_order_ranges
from worker.core.rules import UploadRules
from worker.postgres.database import DatabaseCredentials
from worker.validation.jobs import job_body

LEASE = 3  # seconds: the validation runs' lease here, so a busy job comes back soon


async def staged_again(stack: Stack, upload_id: str, etag_before: str) -> bool:
    """Run the ingest loop once; True once the upload is staged from a new object version."""
    await stack.run_worker()
    history = await stack.history(upload_id)
    return (
        history is not None
        and history["status"] == "staged"
        and (history["s3_etag"] != etag_before)
    )


async def notification_visible(stack: Stack) -> bool:
    """The ingest queue has a message to receive (without receiving it)."""
    async with stack.session_client("sqs") as sqs:
        attributes = await sqs.get_queue_attributes(
            QueueUrl=stack.settings.ingest_queue_url or "",
            AttributeNames=["ApproximateNumberOfMessages"],
        )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"]) > 0


async def validated(stack: Stack, upload_id: str, **overrides: object) -> bool:
    await stack.run_validation(visibility_timeout_seconds=LEASE, **overrides)
    history = await stack.history(upload_id)
    return history is not None and history["status"] == "validated"


async def test_a_reupload_while_a_run_is_paused_half_way_ends_with_the_new_version(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS[:2]))
    await stack.run_worker()
    first = await stack.history(UPLOAD_ID)
    assert first is not None
    plan = FaultPlan(query_gate=asyncio.Event())
    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        run = asyncio.create_task(
            stack.run_validation(aws_endpoint_url=proxy, visibility_timeout_seconds=LEASE)
        )

        async def paused() -> bool:
            return plan.queries_held > 0

        await eventually(paused, within=20, what="the validation run to read its rows")
        # The vendor uploads a new version (P-1 at 13.75) while the old one is being validated:
        # its notification waits, as a delayed copy, for longer than the queue's
        # maxReceiveCount (3) allows retries, and never reaches the DLQ.
        await stack.put_object(KEY, csv_file([ROWS[0].replace("12.50", "13.75"), ROWS[1]]))
        for _ in range(stack.names.max_receive_count + 1):
            await eventually(
                lambda: notification_visible(stack), within=20, what="the waiting copy"
            )
            await stack.run_worker()
        during = await stack.history(UPLOAD_ID)
        assert during is not None
        assert (during["status"], during["s3_etag"]) == ("staged", first["s3_etag"]), (
            "a new version was staged while the old one was held"
        )
        assert await stack.queue_messages(stack.settings.dlq_url or "") == []
        plan.query_gate.set()
        await run
    await eventually(
        lambda: staged_again(stack, UPLOAD_ID, first["s3_etag"]),
        within=30,
        what="the new version staged once the run let go",
    )
    await eventually(lambda: validated(stack, UPLOAD_ID), within=30, what="validation")

    stored = await products(stack)
    assert stored["P-1"]["price"] == Decimal("13.7500")
    items = await stack.items(UPLOAD_ID)
    assert [(i["status"], i["product_data"]["price"]) for i in items] == [
        ("validated", Decimal("13.75")),
        ("validated", Decimal("39.9")),
    ]
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["valid_records"], history["invalid_records"]) == (2, 0)


async def test_two_jobs_for_one_upload_at_once_send_each_invalid_row_once(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS))
    await stack.run_worker()  # queues the first job
    async with stack.session_client("sqs") as sqs:  # a duplicate job, as a redelivery would
        await sqs.send_message(
            QueueUrl=stack.settings.validation_queue_url or "", MessageBody=job_body(UPLOAD_ID)
        )
    plan = FaultPlan(query_gate=asyncio.Event())
    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        run = asyncio.create_task(
            stack.run_validation(
                aws_endpoint_url=proxy, visibility_timeout_seconds=LEASE, validations_in_flight=2
            )
        )

        async def one_held_one_busy() -> bool:
            history = await stack.history(UPLOAD_ID)
            # Each job took a claim attempt or found the upload busy: staging (1) + one run.
            return plan.queries_held == 1 and history is not None and history["attempts"] == 2

        await eventually(one_held_one_busy, within=20, what="one run holding the upload")
        plan.query_gate.set()
        await run

    async def jobs_done() -> bool:
        await stack.run_validation(visibility_timeout_seconds=LEASE)
        return not await stack.queue_messages(stack.settings.validation_queue_url or "")

    await eventually(jobs_done, within=30, what="both jobs done")
    errors = await drain(stack, stack.settings.error_queue_url or "")
    rows = sorted(json.loads(m["Body"])["row_number"] for m in errors)
    assert rows == [3, 4, 5, 6, 7], "one error message per invalid row"


async def test_an_older_upload_validated_after_a_newer_one_leaves_the_newer_products(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    newer, older = "uploads/ACME/ACME_20241105_180000.csv", "uploads/ACME/ACME_20241105_170000.csv"
    rows = ["P100,Cup,Kitchen,SKU-100,{},,5,,,,", "P101,Mug,Kitchen,SKU-101,{},,5,,,,"]
    await stack.put_object(newer, HEADER + "\n".join(r.format("20.00") for r in rows) + "\n")
    await stack.run_worker()
    await stack.run_validation()
    await stack.put_object(older, HEADER + "\n".join(r.format("5.00") for r in rows) + "\n")
    await stack.run_worker()
    await stack.run_validation()

    stored = await products(stack)
    assert {k: (v["price"], v["upload_id"]) for k, v in stored.items()} == {
        "P100": (Decimal("20.0000"), "UPLOAD_ACME_20241105_180000"),
        "P101": (Decimal("20.0000"), "UPLOAD_ACME_20241105_180000"),
    }
    history = await stack.history("UPLOAD_ACME_20241105_170000")
    assert history is not None
    assert (history["status"], history["valid_records"], history["superseded_records"]) == (
        "validated",
        2,
        2,
    )
    report = json.loads(await get_object(stack, "reports/ACME/UPLOAD_ACME_20241105_170000.json"))
    assert report["superseded_records"] == 2
    assert report["sample_superseded"][0] == {
        "row_number": 1,
        "vendor_product_id": "P100",
        "superseded_by": "UPLOAD_ACME_20241105_180000",
    }


async def test_rows_that_cannot_be_stored_are_invalid_and_the_upload_validated(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    body = csv_file(
        [
            ROWS[0],
            "P-8,Pricey,Kitchen,SKU-8,5000.00,,5,,,,",  # over the catalogue's own price cap
            "P-9,Broken URL,Kitchen,SKU-9,5.00,,5,,,https://[x,",
            "P-10,Nul\x00byte,Kitchen,SKU-10,5.00,,5,,,,",
        ]
    )
    await stack.put_object(KEY, body)
    await stack.run_worker()
    # A constraint of the catalogue's that the rules do not know: PostgreSQL refuses the row.
    await stack.db.execute(
        "ALTER TABLE products ADD CONSTRAINT price_cap CHECK (price < 1000) NOT VALID"
    )
    try:
        await stack.run_validation()
    finally:
        await stack.db.execute("ALTER TABLE products DROP CONSTRAINT price_cap")

    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["valid_records"], history["invalid_records"]) == (
        "validated",
        1,
        3,
    )
    assert set(await products(stack)) == {"P-1"}
    errors = {
        json.loads(m["Body"])["row_number"]: json.loads(m["Body"])["errors"]
        for m in await drain(stack, stack.settings.error_queue_url or "")
    }
    assert sorted(errors) == [2, 3, 4]
    assert "refused by the database" in errors[2][0]["rule"]
    assert "price_cap" in errors[2][0]["rule"]
    assert errors[3][0]["field"] == "image_url"


async def test_sns_failing_then_recovering_sends_exactly_one_notice(stack: Stack) -> None:
    await stack.add_vendor("ACME")
    inbox = await subscribe_to_notices(stack)
    await stack.put_object(KEY, csv_file(ROWS[:2]))
    await stack.run_worker()
    plan = FaultPlan(fail_matching=b"Action=Publish")
    async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
        await stack.run_validation(aws_endpoint_url=proxy, visibility_timeout_seconds=LEASE)
    assert plan.failed > 0
    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["notice_sent_at"]) == ("validated", None)
    assert await drain(stack, inbox) == []

    async def notice_recorded() -> bool:
        await stack.run_validation(visibility_timeout_seconds=LEASE)
        history = await stack.history(UPLOAD_ID)
        return history is not None and history["notice_sent_at"] is not None

    await eventually(notice_recorded, within=30, what="the retried job to send the notice")
    await stack.run_validation()  # nothing left to send
    notices = await drain(stack, inbox)
    assert [json.loads(n["Body"])["upload_id"] for n in notices] == [UPLOAD_ID]


def test_past_row_99999_rows_are_read_in_row_order() -> None:
    ranges = row_order_ranges(100_001)
    assert ranges == [(1, 99_999), (100_000, 100_001)]
    # Within a range the record ids sort as the rows do; across them they would not.
    for first, last in ranges:
        ids = [record_id(n) for n in range(first, last + 1)]
        assert ids == sorted(ids)
    assert record_id(100_000) < record_id(10_001)
    assert row_order_ranges(0) == []
    assert row_order_ranges(99_999) == [(1, 99_999)]


def test_the_first_valid_occurrence_claims_a_sku() -> None:
    rules = UploadRules()
    row = {"product_name": "Cup", "category": "Kitchen", "stock_quantity": 1}
    invalid = rules.check(99_999, {**row, "sku": "X", "vendor_product_id": "A", "price": "0"})
    valid = rules.check(100_000, {**row, "sku": "X", "vendor_product_id": "B", "price": "1"})
    later = rules.check(100_001, {**row, "sku": "X", "vendor_product_id": "C", "price": "1"})
    assert [v.field for v in invalid] == ["price"]
    assert valid == []
    assert [(v.field, v.rule) for v in later] == [
        ("sku", "must be unique in the file (row 100000)")
    ]


class DatabaseCut:
    """A TCP forwarder to the test database that can be cut: every connection through it is
    closed and no new one is let through (a worker losing PostgreSQL)."""

    def __init__(self, upstream: DatabaseCredentials) -> None:
        self._upstream = upstream
        self._cut = False
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *_: object) -> None:
        self.cut()
        self._server.close()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self._upstream.host, self._upstream.port
        if host.startswith("/"):  # the embedded server: a Unix socket
            return await asyncio.open_unix_connection(f"{host}/.s.PGSQL.{port}")
        return await asyncio.open_connection(host, port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        up_reader, up_writer = await self._open_upstream()
        self._writers += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self._cut = True
        for writer in self._writers:
            writer.close()


async def test_a_run_cut_off_from_the_database_writes_nothing_over_a_new_version(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS[:2]))
    await stack.run_worker()
    cut = DatabaseCut(stack.credentials)
    async with cut as port, stack.session_client("secretsmanager") as secrets:
        secret = json.loads(
            (await secrets.get_secret_value(SecretId=stack.names.secret))["SecretString"]
        )
        await secrets.create_secret(
            Name="through-the-cut",
            SecretString=json.dumps(secret | {"host": "127.0.0.1", "port": port}),
        )
        # GIVEN a validation run whose status writes DynamoDB keeps turning back
        plan = FaultPlan(throttle_matching='"validated"')
        async with fault_proxy(stack.settings.aws_endpoint_url or "", plan) as proxy:
            run = asyncio.create_task(
                stack.run_validation(
                    aws_endpoint_url=proxy,
                    rds_secret_name="through-the-cut",
                    visibility_timeout_seconds=LEASE,
                )
            )

            async def throttled() -> bool:
                return plan.throttled > 0

            await eventually(throttled, within=20, what="status writes throttled")
            # WHEN it loses PostgreSQL, its lease runs out, and a new version is staged
            cut.cut()

            async def lease_over() -> bool:
                return bool(
                    await stack.db.fetchval(
                        "SELECT lease_expires_at < now() FROM upload_history WHERE upload_id = $1",
                        UPLOAD_ID,
                    )
                )

            await eventually(lease_over, within=20, what="the run's lease to run out")
            await stack.put_object(KEY, csv_file([ROWS[0].replace("12.50", "13.75"), ROWS[1]]))
            await stack.run_worker()
            assert [
                (i["status"], i["product_data"]["price"]) for i in await stack.items(UPLOAD_ID)
            ] == [("pending_validation", Decimal("13.75")), ("pending_validation", Decimal("39.9"))]
            plan.throttle_matching = None  # DynamoDB takes writes again
            await run

    # THEN the old run wrote none of its statuses over the new version's items
    assert [(i["status"], i["product_data"]["price"]) for i in await stack.items(UPLOAD_ID)] == [
        ("pending_validation", Decimal("13.75")),
        ("pending_validation", Decimal("39.9")),
    ]
    await eventually(lambda: validated(stack, UPLOAD_ID), within=30, what="validation")
    assert (await products(stack))["P-1"]["price"] == Decimal("13.7500")


async def test_a_table_that_refuses_every_row_fails_the_run_instead_of_judging_the_rows(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, csv_file(ROWS[:2]))
    await stack.run_worker()
    # The table changed under the service (a column it does not fill is now required).
    await stack.db.execute("ALTER TABLE products ADD COLUMN gtin text NOT NULL DEFAULT 'x'")
    await stack.db.execute("ALTER TABLE products ALTER COLUMN gtin DROP DEFAULT")
    try:
        await stack.run_validation(visibility_timeout_seconds=LEASE)
    finally:
        await stack.db.execute("ALTER TABLE products DROP COLUMN gtin")

    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert (history["status"], history["lease_expires_at"]) == ("staged", None)
    assert await drain(stack, stack.settings.error_queue_url or "") == []
    assert [i["status"] for i in await stack.items(UPLOAD_ID)] == ["pending_validation"] * 2
    await eventually(lambda: validated(stack, UPLOAD_ID), within=30, what="the retried job")
