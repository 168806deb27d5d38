"""The health endpoint and the `healthcheck` command a container HEALTHCHECK calls."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import Stack, eventually
from tests.test_cli import cli
from tests.test_worker_process import worker_process
from worker.local.servers import free_port
from worker.resources import Resources
from worker.runtimes.health import health_server


async def test_healthcheck_reports_a_running_worker_live_and_ready(
    stack: Stack, tmp_path: Path
) -> None:
    port = free_port()
    with worker_process(stack, tmp_path / "worker.log", HEALTH_PORT=str(port)) as worker:

        async def live() -> bool:
            return cli("healthcheck", "--port", str(port)).returncode == 0

        await eventually(live, within=30, what="the health endpoint")
        ready = cli("healthcheck", "ready", "--port", str(port))
        assert ready.returncode == 0, ready.stderr
        assert json.loads(ready.stdout) == {"status": "ok", "database": "ok", "queue": "ok"}

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

    gone = cli("healthcheck", "--port", str(port))
    assert gone.returncode == 1
    assert f"error: http://127.0.0.1:{port}/healthz/live" in gone.stderr


async def test_readiness_fails_when_the_queue_is_gone_and_liveness_when_the_loop_stalls(
    stack: Stack,
) -> None:
    last_turn = time.monotonic()
    async with (
        Resources.open(stack.settings) as res,
        health_server(
            res,
            f"{stack.settings.aws_endpoint_url}/123456789012/no-such-queue",
            lambda: last_turn,
            port=0,
            stale_after=60,
        ) as port,
    ):
        ready = await _get(port, "ready")
        live = await _get(port, "live")
        last_turn -= 120  # the receive loop has not turned for two minutes
        stalled = await _get(port, "live")

    assert ready[0] == 503
    assert ready[1]["database"] == "ok"
    assert ready[1]["queue"] != "ok"
    assert live == (200, {"status": "ok", "loop_seconds_ago": live[1]["loop_seconds_ago"]})
    assert stalled[0] == 503
    assert stalled[1]["status"] == "stalled"


async def _get(port: int, check: str) -> tuple[int, dict[str, object]]:
    def fetch() -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz/{check}") as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    return await asyncio.to_thread(fetch)
