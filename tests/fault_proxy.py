"""A small HTTP proxy in front of the moto server that answers a share of DynamoDB
BatchWriteItem calls with throttling errors or ``UnprocessedItems``, as DynamoDB does under
load. Everything else is forwarded unchanged."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

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
    calls: int = 0
    throttled: int = 0
    partial: int = 0
    items_forwarded: list[str] = field(default_factory=list)


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
            if not request.headers.get("X-Amz-Target", "").endswith(".BatchWriteItem"):
                return await forward(request, body)
            plan.calls += 1
            if (
                plan.throttle_all
                or (plan.throttle_every and plan.calls % plan.throttle_every == 0)
                or (plan.throttle_matching and plan.throttle_matching.encode() in body)
            ):
                plan.throttled += 1
                return web.json_response(
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#"
                        "ProvisionedThroughputExceededException",
                        "message": "The level of configured provisioned throughput was exceeded",
                    },
                    status=400,
                    content_type="application/x-amz-json-1.0",
                )
            document = json.loads(body)
            if plan.unprocessed_every and plan.calls % plan.unprocessed_every == 0:
                ((table, requests),) = document["RequestItems"].items()
                if len(requests) > 1:
                    plan.partial += 1
                    half = len(requests) // 2
                    document["RequestItems"][table] = requests[:half]
                    response = await forward(request, json.dumps(document).encode())
                    if response.status != 200:
                        return response
                    _record(plan, requests[:half])
                    return web.json_response(
                        {"UnprocessedItems": {table: requests[half:]}},
                        content_type="application/x-amz-json-1.0",
                    )
            response = await forward(request, body)
            if response.status == 200:
                for requests in document["RequestItems"].values():
                    _record(plan, requests)
            return response

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


def _record(plan: FaultPlan, requests: list[dict[str, object]]) -> None:
    for request in requests:
        put = request.get("PutRequest")
        if isinstance(put, dict):
            plan.items_forwarded.append(put["Item"]["record_id"]["S"])
