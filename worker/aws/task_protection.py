"""ECS task scale-in protection, through the ECS agent's endpoint.

While this task has work in flight (a file or a validation job, counted across both receive
loops), it asks the agent to protect it from scale-in
(``PUT ${ECS_AGENT_URI}/task-protection/v1/state`` with ``{"ProtectionEnabled": true,
"ExpiresInMinutes": N}``), renews that every N/2 minutes while work goes on, and lifts it
(``{"ProtectionEnabled": false}``) once the task has been idle for ``linger_seconds`` (not at
every gap between two small files), so that the service can scale in on a backlog that has
gone without killing a task in the middle of a long file.

Protection also holds off deployments, and a task with a steady backlog is never idle: so it
is renewed for at most N minutes in a row. After that it runs out while the task works on,
and ECS may then stop the task (SIGTERM: its files are checkpointed and finished elsewhere);
the next protection starts after the task was idle.

Only on ECS (the agent sets ``ECS_AGENT_URI``); elsewhere the object counts and asks nothing.
The agent is a convenience, not a dependency: a request that fails is logged and tried again
later, and never stops or slows the worker (requests are made by a background task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from worker.core.background import Background

log = logging.getLogger(__name__)

STATE_PATH = "/task-protection/v1/state"
# A failed request is tried again after this long, doubling up to RETRY_MAX_SECONDS.
RETRY_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 5.0


class TaskProtection(Background):
    """``hold()`` when a piece of work starts and ``release()`` when it ends (both return at
    once); the background task brings the agent's state in line with "any work in flight"."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        agent_uri: str | None,
        *,
        minutes: int,
        renew_seconds: float | None = None,
        linger_seconds: float = 30.0,
        renew_for_seconds: float | None = None,
    ) -> None:
        self._session = session
        self._linger = linger_seconds
        self._renew_for = minutes * 60 if renew_for_seconds is None else renew_for_seconds
        self._idle_since = time.monotonic()
        self._protected_since = 0.0
        self._url = f"{agent_uri.rstrip('/')}{STATE_PATH}" if agent_uri else None
        self._minutes = minutes
        self._renew_seconds = minutes * 60 / 2 if renew_seconds is None else renew_seconds
        self._holders = 0
        self._changed = asyncio.Event()
        # What the agent last confirmed; the next renewal; when to try again after a failure.
        self.protected = False
        self._renew_at = float("inf")
        self._retry_at = float("inf")
        self._failures = 0

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        agent_uri: str | None,
        *,
        minutes: int,
        renew_seconds: float | None = None,
        linger_seconds: float = 30.0,
        renew_for_seconds: float | None = None,
    ) -> AsyncIterator[TaskProtection]:
        """Protection for this task's life; lifted on exit if it is on."""
        if not agent_uri:
            async with cls(None, None, minutes=minutes) as idle:
                yield idle
            return
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            cls(
                session,
                agent_uri,
                minutes=minutes,
                renew_seconds=renew_seconds,
                linger_seconds=linger_seconds,
                renew_for_seconds=renew_for_seconds,
            ) as protection,
        ):
            log.info("task scale-in protection while work is in flight", extra={"minutes": minutes})
            yield protection

    @property
    def in_flight(self) -> int:
        return self._holders

    def hold(self) -> None:
        self._holders += 1
        self._changed.set()

    def release(self) -> None:
        self._holders = max(0, self._holders - 1)
        if self._holders == 0:
            self._idle_since = time.monotonic()
        self._changed.set()

    async def _background(self) -> None:
        if self._url is None:
            return
        while True:
            lift_at = (
                self._idle_since + self._linger
                if self.protected and self._holders == 0
                else float("inf")
            )
            wake_at = min(self._renew_at, self._retry_at, lift_at)
            timeout = None if wake_at == float("inf") else max(0.0, wake_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
            self._changed.clear()
            now = time.monotonic()
            lingering = self._holders == 0 and now - self._idle_since < self._linger
            wanted = self._holders > 0 or (self.protected and lingering)
            # Renewed for at most ``minutes`` in a row (deployments wait for protection).
            within_cap = now - self._protected_since < self._renew_for
            renewal_due = wanted and self.protected and now >= self._renew_at
            if renewal_due and not within_cap:
                log.info("task scale-in protection left to run out (renewed for long enough)")
                self._renew_at, renewal_due = float("inf"), False
            if wanted == self.protected and not renewal_due:
                self._failures, self._retry_at = 0, float("inf")  # a failed change undone
                continue
            if self._failures and now < self._retry_at:
                continue  # backing off after a failure; woken early by a change
            await self._set(wanted)

    async def _set(self, wanted: bool) -> None:
        if await self._put(wanted):
            if wanted != self.protected:
                log.info("task scale-in protection %s", "on" if wanted else "off")
                self._protected_since = time.monotonic()
            self.protected = wanted
            self._failures = 0
            self._retry_at = float("inf")
            self._renew_at = time.monotonic() + self._renew_seconds if wanted else float("inf")
            return
        self._failures += 1
        delay = min(RETRY_SECONDS * 2 ** (self._failures - 1), RETRY_MAX_SECONDS)
        self._retry_at = time.monotonic() + delay

    async def _put(self, enabled: bool) -> bool:
        """One request; True when the agent confirmed it. Failures are logged, never raised."""
        if self._session is None or self._url is None:
            return False
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self._minutes
        try:
            async with self._session.put(self._url, json=body) as response:
                answer = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if status == 200 and isinstance(answer, dict) and "protection" in answer:
                return True
            problem = f"HTTP {status}: {_reason(answer)}"
        log.warning(
            "could not set task scale-in protection; the worker goes on without it",
            extra={"protection_enabled": enabled, "error": problem},
        )
        return False

    async def __aexit__(self, *exc_info: Any) -> None:
        await super().__aexit__(*exc_info)
        if self.protected:  # the task is stopping: nothing of it is left to protect
            await self._put(False)
            self.protected = False


def _reason(answer: Any) -> str:
    """The agent's ``failure`` (``{Arn, Reason, Detail}``) or ``error`` (``{Code, Message}``)."""
    if isinstance(answer, dict):
        failure = answer.get("failure") or answer.get("error")
        if isinstance(failure, dict):
            parts = [failure.get(k) for k in ("Reason", "Code", "Detail", "Message")]
            return ": ".join(str(part) for part in parts if part) or "no reason given"
    return "unexpected answer"
