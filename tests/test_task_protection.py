"""ECS task scale-in protection through a stand-in for the ECS agent's endpoint (an aiohttp
server speaking ``PUT /task-protection/v1/state``): on while a file is in flight, off when the
task is idle, renewed while work goes on; an agent that fails never stops the worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import Stack, eventually
from worker.aws.task_protection import TaskProtection
from worker.local.servers import free_port
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.runtimes.handlers import Disposition, handle_ingest

KEY = "uploads/ACME/ACME_20241105_093015.csv"
UPLOAD_ID = "UPLOAD_ACME_20241105_093015"
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/onboarding/0123456789abcdef"


@dataclass
class Agent:
    """What the stand-in was asked, and how it answers (``ok``, ``error`` or ``failure``)."""

    uri: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    answer: str = "ok"
    protected: bool = False

    def enabled_requests(self) -> int:
        return sum(1 for request in self.requests if request["ProtectionEnabled"])


@asynccontextmanager
async def ecs_agent() -> AsyncIterator[Agent]:
    app = web.Application()
    port = free_port()
    agent = Agent(f"http://127.0.0.1:{port}/api/task-id")

    async def state(request: web.Request) -> web.Response:
        body = await request.json()
        agent.requests.append(body)
        if agent.answer == "error":
            error = {"Code": "ServerException", "Message": "the agent is unwell"}
            return web.json_response({"error": error}, status=500)
        if agent.answer == "failure":
            failure = {"Arn": TASK_ARN, "Reason": "TASK_NOT_VALID", "Detail": "stopping"}
            return web.json_response({"failure": failure})
        agent.protected = body["ProtectionEnabled"]
        protection = {"ProtectionEnabled": agent.protected, "TaskArn": TASK_ARN}
        return web.json_response({"protection": protection})

    app.router.add_put("/api/task-id/task-protection/v1/state", state)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield agent
    finally:
        await runner.cleanup()


async def test_the_task_is_protected_while_a_file_is_in_flight_and_released_when_idle(
    stack: Stack,
) -> None:
    await stack.add_vendor("ACME")
    in_flight, finish = asyncio.Event(), asyncio.Event()

    async def held_open(res: Resources, body: str, **deadline: Any) -> Disposition:
        in_flight.set()
        await finish.wait()  # the file stays in flight until the test lets it go
        return await handle_ingest(res, body, **deadline)

    async with (
        ecs_agent() as agent,
        Resources.open(stack.settings) as res,
        TaskProtection.open(agent.uri, minutes=30, linger_seconds=0.5) as protection,
    ):
        consumer = Consumer(res, handler=held_open, protection=protection)
        worker = asyncio.create_task(consumer.run())
        try:
            # WHEN a file arrives THEN the task is protected while it is in flight
            await stack.put_object(KEY, BODY)
            await asyncio.wait_for(in_flight.wait(), timeout=30)
            await eventually(lambda: _true(agent.protected), within=10, what="protection on")
            assert protection.in_flight == 1

            # WHEN the file is done THEN protection is lifted
            finish.set()
            await eventually(lambda: _true(not agent.protected), within=30, what="protection off")
            history = await stack.history(UPLOAD_ID)
            assert history is not None
            assert history["status"] == "staged"
            # (an idle worker asks nothing: one request to protect, one to lift)
            assert agent.requests == [
                {"ProtectionEnabled": True, "ExpiresInMinutes": 30},
                {"ProtectionEnabled": False},
            ]
        finally:
            consumer.stop()
            await asyncio.wait_for(worker, timeout=30)


async def _true(value: bool) -> bool:
    return value


async def test_protection_is_renewed_while_work_goes_on() -> None:
    async with (
        ecs_agent() as agent,
        TaskProtection.open(
            agent.uri, minutes=1, renew_seconds=0.1, linger_seconds=0.2
        ) as protection,
    ):
        protection.hold()
        await eventually(
            lambda: _true(agent.enabled_requests() >= 3), within=10, what="three renewals"
        )
        protection.release()
        await eventually(lambda: _true(not agent.protected), within=10, what="protection off")

    assert all(r == {"ProtectionEnabled": True, "ExpiresInMinutes": 1} for r in agent.requests[:3])


async def test_protection_still_on_when_the_task_stops_is_lifted() -> None:
    async with ecs_agent() as agent:
        async with TaskProtection.open(agent.uri, minutes=5) as protection:
            protection.hold()
            await eventually(lambda: _true(agent.protected), within=10, what="protection on")

        assert agent.protected is False
        assert agent.requests[-1] == {"ProtectionEnabled": False}


@pytest.mark.parametrize("answer", ["error", "failure", "unreachable"])
async def test_an_agent_that_fails_does_not_stop_the_worker(
    stack: Stack, caplog: pytest.LogCaptureFixture, answer: str
) -> None:
    caplog.set_level(logging.WARNING, logger="worker.aws.task_protection")
    await stack.add_vendor("ACME")
    await stack.put_object(KEY, BODY)

    async with ecs_agent() as agent:
        agent.answer = answer
        uri = f"http://127.0.0.1:{free_port()}" if answer == "unreachable" else agent.uri
        async with (
            Resources.open(stack.settings) as res,
            TaskProtection.open(uri, minutes=30) as protection,
        ):
            consumer = Consumer(res, protection=protection)
            await asyncio.wait_for(consumer.run(drain=True), timeout=60)
            await eventually(
                lambda: _true(bool(caplog.records)), within=10, what="the failure logged"
            )

    history = await stack.history(UPLOAD_ID)
    assert history is not None
    assert history["status"] == "staged"
    warning = caplog.records[0]
    assert warning.getMessage() == (
        "could not set task scale-in protection; the worker goes on without it"
    )
    expected = {
        "error": "HTTP 500: ServerException: the agent is unwell",
        "failure": "HTTP 200: TASK_NOT_VALID: stopping",
        "unreachable": "ClientConnectorError",
    }[answer]
    assert expected in warning.__dict__["error"]


async def test_without_an_agent_nothing_is_asked() -> None:
    async with TaskProtection.open(None, minutes=30) as protection:
        protection.hold()
        assert protection.in_flight == 1
        protection.release()

    assert protection.protected is False


async def test_short_gaps_between_files_do_not_lift_protection() -> None:
    async with (
        ecs_agent() as agent,
        TaskProtection.open(agent.uri, minutes=30, linger_seconds=2) as protection,
    ):
        for _ in range(20):  # small files one after the other, 20 ms apart
            protection.hold()
            await asyncio.sleep(0.02)  # the work itself, not synchronisation
            protection.release()
        await eventually(lambda: _true(not agent.protected), within=10, what="protection off")
        assert agent.requests == [
            {"ProtectionEnabled": True, "ExpiresInMinutes": 30},
            {"ProtectionEnabled": False},
        ]


async def test_protection_is_not_renewed_for_ever_on_a_steady_backlog() -> None:
    async with (
        ecs_agent() as agent,
        TaskProtection.open(
            agent.uri, minutes=1, renew_seconds=0.1, renew_for_seconds=0.35
        ) as protection,
    ):
        protection.hold()  # busy for good
        # Ten renewal periods pass: uncapped, that would be about ten requests.
        await asyncio.sleep(1.0)  # the time itself is what is tested
        assert 3 <= len(agent.requests) <= 5, agent.requests
        assert all(r["ProtectionEnabled"] for r in agent.requests)
