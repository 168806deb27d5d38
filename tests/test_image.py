"""The container image without a Docker engine: the Dockerfile passes hadolint, and its entry
point runs both ways — the ECS worker's command, and the Lambda runtime interface client
talking to a Runtime API on this machine."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Stack, eventually, s3_event
from tests.test_cli import stack_env
from tests.test_lambda import sqs_record
from worker.runtimes.entrypoint import LAMBDA_HANDLER, command
from worker.settings import Settings

ROOT = Path(__file__).parent.parent
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_ships_the_rds_ca_bundle_where_the_settings_look_for_it() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bundle = str(Settings.model_fields["database_ssl_root_cert"].default)

    assert "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in dockerfile
    assert f"COPY --from=builder /opt/rds-global-bundle.pem {bundle}\n" in dockerfile
    assert Settings.model_fields["database_ssl_mode"].default == "verify-full"


@pytest.mark.parametrize(
    ("environ", "args", "expected"),
    [
        ({}, [], ["-m", "worker.runtimes.cli", "run"]),
        ({}, ["dlq", "peek"], ["-m", "worker.runtimes.cli", "dlq", "peek"]),
        (
            {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"},
            ["run"],
            ["-m", "awslambdaric", LAMBDA_HANDLER],
        ),
        ({"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}, [], ["-m", "awslambdaric", LAMBDA_HANDLER]),
        (
            {"AWS_LAMBDA_RUNTIME_API": "x"},
            ["my.module.handler"],
            ["-m", "awslambdaric", "my.module.handler"],
        ),
    ],
)
def test_the_entry_point_picks_the_runtime(
    environ: dict[str, str], args: list[str], expected: list[str]
) -> None:
    assert command(environ, args) == [sys.executable, *expected]


def test_the_entry_point_runs_the_worker_cli_by_default() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.runtimes.entrypoint", "--help"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_RUNTIME_API"},
        check=False,
    )

    assert result.returncode == 0
    assert "usage: vendor-onboarding" in result.stdout


@dataclass
class RuntimeApi:
    """The part of the Lambda Runtime API a function's runtime client talks to."""

    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    responses: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)


@asynccontextmanager
async def runtime_api() -> AsyncIterator[tuple[RuntimeApi, str]]:
    api = RuntimeApi()

    waiting: set[asyncio.Task[Any]] = set()

    async def next_invocation(_request: web.Request) -> web.Response:
        task = asyncio.current_task()
        assert task is not None
        waiting.add(task)  # a long poll: cancelled when the test is over
        try:
            event = await api.events.get()
        finally:
            waiting.discard(task)
        request_id = event.pop("__request_id")
        return web.Response(
            body=json.dumps(event).encode(),
            headers={
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                "Lambda-Runtime-Invoked-Function-Arn": (
                    "arn:aws:lambda:us-east-1:123456789012:function:vendor-onboarding"
                ),
                "Lambda-Runtime-Trace-Id": "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Sampled=0",
            },
        )

    async def response(request: web.Request) -> web.Response:
        api.responses[request.match_info["id"]] = json.loads(await request.read())
        return web.json_response({"status": "OK"}, status=202)

    async def error(request: web.Request) -> web.Response:
        api.errors.append(json.loads(await request.read() or b"{}"))
        return web.json_response({"status": "OK"}, status=202)

    app = web.Application()
    app.router.add_get("/2018-06-01/runtime/invocation/next", next_invocation)
    app.router.add_post("/2018-06-01/runtime/invocation/{id}/response", response)
    app.router.add_post("/2018-06-01/runtime/invocation/{id}/error", error)
    app.router.add_post("/2018-06-01/runtime/init/error", error)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield api, f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        for task in list(waiting):
            task.cancel()
        await runner.cleanup()


def start_function(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """The image's entry point with its default command, as Lambda starts it."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.runtimes.entrypoint", "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_on_lambda_the_entry_point_serves_invocations_with_the_handler(
    stack: Stack, tmp_path: Path
) -> None:
    await stack.add_vendor("ACME")
    key = "uploads/ACME/ACME_20240101_000001.csv"
    await stack.put_object(key, BODY)

    async with runtime_api() as (api, address):
        await api.events.put(
            {
                "__request_id": "req-1",
                "Records": [
                    sqs_record("m-1", s3_event(stack.bucket, key)),
                    sqs_record("m-2", "poison"),
                ],
            }
        )
        process = start_function(
            {**os.environ, **stack_env(stack), "AWS_LAMBDA_RUNTIME_API": address},
            tmp_path / "lambda.log",
        )
        try:

            async def answered() -> bool:
                return "req-1" in api.responses or bool(api.errors)

            await eventually(answered, within=60, what="the function's response")
        finally:
            process.kill()
            process.wait(timeout=30)

    assert api.errors == [], (tmp_path / "lambda.log").read_text()
    assert api.responses["req-1"] == {"batchItemFailures": []}
    assert (await stack.history("UPLOAD_ACME_20240101_000001") or {})["status"] == "staged"


def test_tmp_is_a_volume_so_a_read_only_task_can_spill_to_it() -> None:
    # ECS mounts an ephemeral volume at /tmp (deploy/compute.yaml); declared in the image, it
    # starts as the image's world-writable /tmp rather than a root-owned 0755 directory.
    assert 'VOLUME ["/tmp"]' in (ROOT / "Dockerfile").read_text()
