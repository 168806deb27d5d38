"""The worker's health endpoint for the ECS/container health check.

``GET /healthz/live``: 200 while the receive loop keeps turning. ``GET /healthz/ready``: 200
when the database and the ingest queue answer. Both return a small JSON document.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from worker.aws.errors import error_code
from worker.core.errors import TransientError
from worker.resources import Resources

CHECK_TIMEOUT_SECONDS = 5.0


async def readiness(res: Resources, queue_url: str) -> dict[str, str]:
    """``{"database": "ok" | problem, "queue": "ok" | problem}``."""

    async def database() -> str:
        async with res.database.connection() as conn:
            await conn.fetchval("SELECT 1")
        return "ok"

    async def queue() -> str:
        await res.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
        return "ok"

    results: dict[str, str] = {}
    for name, check in (("database", database), ("queue", queue)):
        try:
            results[name] = await asyncio.wait_for(check(), CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            results[name] = "timed out"
        except TransientError as exc:
            results[name] = str(exc)
        except (ClientError, BotoCoreError) as exc:
            results[name] = error_code(exc)
    return results


@asynccontextmanager
async def health_server(
    res: Resources,
    queue_url: str,
    last_turn: Callable[[], float],
    *,
    port: int,
    stale_after: float,
) -> AsyncIterator[int]:
    """Serve the endpoints on ``port`` (0: a free one) while the block runs; yield the port."""

    async def live(_request: web.Request) -> web.Response:
        age = time.monotonic() - last_turn()
        healthy = age <= stale_after
        return web.json_response(
            {"status": "ok" if healthy else "stalled", "loop_seconds_ago": round(age, 1)},
            status=200 if healthy else 503,
        )

    async def ready(_request: web.Request) -> web.Response:
        checks = await readiness(res, queue_url)
        healthy = all(value == "ok" for value in checks.values())
        return web.json_response(
            {"status": "ok" if healthy else "unavailable", **checks},
            status=200 if healthy else 503,
        )

    app = web.Application()
    app.router.add_get("/healthz/live", live)
    app.router.add_get("/healthz/ready", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        # All interfaces: the health check may come from outside the container.
        site = web.TCPSite(runner, "0.0.0.0", port)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
