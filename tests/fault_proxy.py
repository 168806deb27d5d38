"""A small HTTP proxy in front of the moto server that answers DynamoDB BatchWriteItem calls
with throttling errors or ``UnprocessedItems``, as DynamoDB does under load: a share of the
calls, or every write over a per-partition limit; and SQS SendMessageBatch calls with entries
that failed (``Failed``, with ``SenderFault`` true or false), as SQS answers a batch partly
sent. Everything else is forwarded unchanged.

The partition limit is a token bucket per key value, for the table (``upload_id``) and for each
GSI (``VendorIndex``: ``vendor_id``; ``StatusIndex``: ``upload_id``), refilled at
``wcu_per_second`` with one second of burst; a write costs one unit per KB. A write whose
buckets are short comes back in ``UnprocessedItems``; a call none of whose writes fit is a
``ProvisionedThroughputExceededException``, as DynamoDB answers.

With ``answer_writes`` the proxy stands in for DynamoDB's write path under a partition limit:
the writes it admits are answered here, after ``answer_latency`` seconds, instead of being
passed on. The benchmarks use it where the limit measured is above what the moto server
writes a second on a small machine."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class FaultPlan:
    """Call ``n`` (1-based) of BatchWriteItem is throttled when ``n % throttle_every == 0`` and
    half-processed when ``n % unprocessed_every == 0``; ``throttle_all`` throttles every call,
    ``throttle_matching`` those that carry the given text (an upload id)."""

    throttle_every: int = 0
    unprocessed_every: int = 0
    throttle_all: bool = False
    throttle_matching: str | None = None  # throttle the calls whose body contains this text
    wcu_per_second: float = 0.0  # a per-partition limit (0: none)
    # DynamoDB Query calls wait until this is set (a run paused half-way); ``queries_held``
    # counts the calls that waited.
    query_gate: asyncio.Event | None = None
    queries_held: int = 0
    # Any request whose body contains this text is answered 500 InternalFailure (an AWS
    # service failing); ``failed`` counts them.
    fail_matching: bytes | None = None
    failed: int = 0
    answer_writes: bool = False  # answer admitted writes here (with wcu_per_second only)
    answer_latency: float = 0.0  # seconds, before each answer
    calls: int = 0
    throttled: int = 0
    partial: int = 0
    items_forwarded: list[str] = field(default_factory=list)  # record ids written, in order
    written: set[tuple[str, str]] = field(default_factory=set)  # (upload id, record id)
    # Every PutRequest received, by upload and record id: above 1, an item sent again.
    items_received: Counter[str] = field(default_factory=Counter)
    # time.monotonic() of the first and the last write passed on to DynamoDB.
    first_write_at: float = 0.0
    last_write_at: float = 0.0
    _buckets: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    # SQS SendMessageBatch: entries whose body contains this text are refused for good
    # (SenderFault true, InvalidMessageContents) ...
    sqs_refuse_matching: str | None = None
    # ... or fail on SQS's side (SenderFault false, InternalError): the first N such entries,
    # or every entry whose body contains the text.
    sqs_fail_first: int = 0
    sqs_fail_matching: str | None = None
    # Each SendMessageBatch call received: (entries, bytes of bodies and attributes).
    sqs_batches: list[tuple[int, int]] = field(default_factory=list)
    # Each entry's body received, with how often (above 1: sent again).
    sqs_bodies_received: Counter[str] = field(default_factory=Counter)

    def admit(self, request: dict[str, Any]) -> bool:
        """Take the write's units from its partitions' buckets, if they all have them."""
        put = request.get("PutRequest")
        item = put["Item"] if isinstance(put, dict) else request["DeleteRequest"]["Key"]
        cost = max(1, math.ceil(len(json.dumps(item)) / 1024))
        keys = [("table", item["upload_id"]["S"]), ("StatusIndex", item["upload_id"]["S"])]
        if "vendor_id" in item:
            keys.append(("VendorIndex", item["vendor_id"]["S"]))
        now = time.monotonic()
        rate = self.wcu_per_second
        levels = {}
        for key in keys:
            tokens, at = self._buckets.get(key, (rate, now))
            levels[key] = min(rate, tokens + (now - at) * rate)
        if any(level < cost for level in levels.values()):
            for key, level in levels.items():
                self._buckets[key] = (level, now)
            return False
        for key, level in levels.items():
            self._buckets[key] = (level - cost, now)
        return True

    @property
    def sent_again(self) -> int:
        """Items received more than once (each extra time counts)."""
        return sum(count - 1 for count in self.items_received.values())


@asynccontextmanager
async def fault_proxy(upstream: str, plan: FaultPlan) -> AsyncIterator[str]:
    """Serve the proxy on a free local port; yield its URL."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:

        async def forward(request: web.Request, body: bytes) -> web.Response:
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
            async with session.request(
                request.method, upstream + request.path_qs, headers=headers, data=body
            ) as response:
                payload = await response.read()
                out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_HEADERS}
                return web.Response(status=response.status, body=payload, headers=out)

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            target = request.headers.get("X-Amz-Target", "")
            if plan.fail_matching is not None and plan.fail_matching in body:
                plan.failed += 1
                return web.Response(
                    status=500,
                    text="<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure"
                    "</Code><Message>failing</Message></Error></ErrorResponse>",
                    content_type="text/xml",
                )
            if target.endswith(".Query") and plan.query_gate is not None:
                plan.queries_held += 1
                await plan.query_gate.wait()
            if target == "AmazonSQS.SendMessageBatch":
                return await send_message_batch(request, body)
            if not target.endswith(".BatchWriteItem"):
                return await forward(request, body)
            plan.calls += 1
            if (
                plan.throttle_all
                or (plan.throttle_every and plan.calls % plan.throttle_every == 0)
                or (plan.throttle_matching and plan.throttle_matching.encode() in body)
            ):
                plan.throttled += 1
                return _throttled()
            document = json.loads(body)
            ((table, requests),) = document["RequestItems"].items()
            for write in requests:
                put = write.get("PutRequest")
                if isinstance(put, dict):
                    item = put["Item"]
                    plan.items_received[f"{item['upload_id']['S']}/{item['record_id']['S']}"] += 1
            if plan.wcu_per_second:
                admitted = [write for write in requests if plan.admit(write)]
                refused = [write for write in requests if write not in admitted]
                if not admitted:
                    plan.throttled += 1
                    return _throttled()
                if refused:
                    plan.partial += 1
                if plan.answer_writes:
                    await asyncio.sleep(plan.answer_latency)
                    _record(plan, admitted)
                    return _unprocessed(table, refused)
                if refused:
                    document["RequestItems"][table] = admitted
                    response = await forward(request, json.dumps(document).encode())
                    if response.status != 200:
                        return response
                    _record(plan, admitted)
                    return _unprocessed(table, refused)
            if (
                plan.unprocessed_every
                and plan.calls % plan.unprocessed_every == 0
                and len(requests) > 1
            ):
                plan.partial += 1
                half = len(requests) // 2
                document["RequestItems"][table] = requests[:half]
                response = await forward(request, json.dumps(document).encode())
                if response.status != 200:
                    return response
                _record(plan, requests[:half])
                return _unprocessed(table, requests[half:])
            response = await forward(request, body)
            if response.status == 200:
                for requests in document["RequestItems"].values():
                    _record(plan, requests)
            return response

        async def send_message_batch(request: web.Request, body: bytes) -> web.Response:
            document = json.loads(body)
            entries: list[dict[str, Any]] = document["Entries"]
            plan.sqs_batches.append((len(entries), sum(map(_sqs_entry_bytes, entries))))
            sent, failed = [], []
            for entry in entries:
                text = entry["MessageBody"]
                plan.sqs_bodies_received[text] += 1
                if plan.sqs_refuse_matching and plan.sqs_refuse_matching in text:
                    failed.append(_sqs_failure(entry, sender_fault=True))
                elif plan.sqs_fail_first or (
                    plan.sqs_fail_matching and plan.sqs_fail_matching in text
                ):
                    plan.sqs_fail_first = max(0, plan.sqs_fail_first - 1)
                    failed.append(_sqs_failure(entry, sender_fault=False))
                else:
                    sent.append(entry)
            result: dict[str, Any] = {"Successful": [], "Failed": failed}
            if sent:
                document["Entries"] = sent
                response = await forward(request, json.dumps(document).encode())
                if response.status != 200:
                    return response
                assert isinstance(response.body, bytes)
                result["Successful"] = json.loads(response.body).get("Successful", [])
            return web.json_response(result, content_type="application/x-amz-json-1.0")

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


def _throttled() -> web.Response:
    return web.json_response(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput was exceeded",
        },
        status=400,
        content_type="application/x-amz-json-1.0",
    )


def _unprocessed(table: str, requests: list[dict[str, Any]]) -> web.Response:
    return web.json_response(
        {"UnprocessedItems": {table: requests} if requests else {}},
        content_type="application/x-amz-json-1.0",
    )


def _sqs_entry_bytes(entry: dict[str, Any]) -> int:
    """An entry's size as SQS counts it: its body, and each attribute's name, type and value."""
    size = len(entry["MessageBody"].encode())
    for name, attribute in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(attribute["DataType"].encode())
        size += len(attribute.get("StringValue", "").encode())
    return size


def _sqs_failure(entry: dict[str, Any], *, sender_fault: bool) -> dict[str, Any]:
    if sender_fault:
        return {
            "Id": entry["Id"],
            "SenderFault": True,
            "Code": "InvalidMessageContents",
            "Message": "Invalid characters found.",
        }
    return {
        "Id": entry["Id"],
        "SenderFault": False,
        "Code": "InternalError",
        "Message": "We encountered an internal error. Please try again.",
    }


def _record(plan: FaultPlan, requests: list[dict[str, Any]]) -> None:
    now = time.monotonic()
    plan.first_write_at = plan.first_write_at or now
    plan.last_write_at = now
    for request in requests:
        put = request.get("PutRequest")
        if isinstance(put, dict):
            item = put["Item"]
            plan.items_forwarded.append(item["record_id"]["S"])
            plan.written.add((item["upload_id"]["S"], item["record_id"]["S"]))
