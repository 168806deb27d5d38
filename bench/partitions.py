"""Large uploads under DynamoDB's per-partition write limit: ``python -m bench.partitions``.

Every item of an upload shares one partition (``upload_id``), and through ``VendorIndex`` every
item of a vendor shares ``vendor_id``. The moto server accepts whatever it is sent, so each
measurement puts the fault proxy of the tests (``tests/fault_proxy.py``) in front of it, with a
token bucket per key value for the table and each GSI, and runs ``vendor-onboarding run
--drain`` through it:

- one 20,000-row upload at 1,000 and at 200 WCU/s;
- three concurrent 10,000-row uploads of one vendor at 1,000 WCU/s (the shared ``VendorIndex``
  partition: together they can have 1,000 a second);
- a 40,000-row upload at 1,000 WCU/s whose worker is killed (SIGKILL) half-way, then a fresh
  worker finishes it.

At 1,000 WCU/s the moto server is not the measure: on a small machine it writes fewer items a
second than that. There the proxy stands in for DynamoDB's write path (``answer_writes``): it
answers the writes it admits itself, after ``LATENCY`` seconds, a BatchWriteItem's usual time,
and the check reads what it admitted instead of the table. The 200 WCU/s case and the kill
are written to the moto server.

Throughput is the rows written over the time from the first to the last write the proxy passed
on, against the limit. "Sent again" counts the writes the worker sent more than once
(``UnprocessedItems`` it re-sent); "writes per row" counts what reached DynamoDB (above 1 only
where an interrupted attempt's rows were written again).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.data import upload_id, write_csv
from bench.ingest import (
    DEFAULT_DATABASE_URL,
    REGION,
    REPO,
    Bench,
    BenchError,
    Scenario,
    _work_dir,
)
from tests.fault_proxy import FaultPlan, fault_proxy
from worker.local.provision import connect, prepare_database
from worker.local.servers import credentials_from_url

DATABASE = "vo_bench"

TARGET_AT_1000 = 0.95
TARGET_AT_200 = 0.90
TARGET_SENT_AGAIN = 0.10
TARGET_WRITES_AFTER_KILL = 1.10
LATENCY = 0.02  # seconds: the proxy's answer to an admitted BatchWriteItem


@dataclass(frozen=True)
class Case:
    name: str
    rows: int  # per upload
    uploads: int
    wcu: int
    kill_at: float | None = None  # the share of the rows written when the worker is killed
    answered: bool = False  # the proxy answers the writes it admits (see above)


FULL = (
    Case("20k rows, 1,000 WCU/s", 20_000, 1, 1_000, answered=True),
    Case("20k rows, 200 WCU/s", 20_000, 1, 200),
    Case("3 x 10k rows, one vendor, 1,000 WCU/s", 10_000, 3, 1_000, answered=True),
    Case("40k rows, 1,000 WCU/s, kill -9 at 50 %", 40_000, 1, 1_000, kill_at=0.5),
)
QUICK = (
    Case("2k rows, 1,000 WCU/s", 2_000, 1, 1_000, answered=True),
    Case("2k rows, 200 WCU/s", 2_000, 1, 200),
    Case("3 x 1k rows, one vendor, 1,000 WCU/s", 1_000, 3, 1_000, answered=True),
    Case("4k rows, 1,000 WCU/s, kill -9 at 50 %", 4_000, 1, 1_000, kill_at=0.5),
)


@dataclass(frozen=True)
class Result:
    case: Case
    seconds: float
    rows_per_second: float
    share_of_limit: float
    sent_again: float  # share of the rows
    writes_per_row: float
    attempts: list[int]

    @property
    def first_attempt(self) -> bool:
        return all(a == 1 for a in self.attempts)


async def measure(bench: Bench, case: Case, data: Path) -> Result:
    scenario = Scenario(case.name, case.rows, case.uploads, ("worker",))
    scenario.paths = [
        write_csv(data / f"partition-{case.rows}-{n}.csv", case.rows, seed=n)
        for n in range(case.uploads)
    ]
    await bench.fresh_stack()
    keys = await bench.upload(scenario.paths)
    plan = FaultPlan(wcu_per_second=case.wcu, answer_writes=case.answered, answer_latency=LATENCY)
    async with fault_proxy(bench.endpoint, plan) as proxy:
        _, env = bench._config(scenario, "worker", keys)
        env |= {"AWS_ENDPOINT_URL": proxy, "FILES_IN_FLIGHT": str(max(4, case.uploads))}
        if case.kill_at is None:
            await _drain(env, bench.work / f"{case.rows}-{case.uploads}.log")
        else:
            env["VISIBILITY_TIMEOUT_SECONDS"] = "10"  # the killed worker's lease runs out soon
            await _kill_then_finish(bench, env, plan, case, keys)
    if case.answered:
        _verify_admitted(plan, case, keys)
        await bench.verify_worker(case.name, keys, case.rows)
    else:
        await bench.verify(scenario, "worker", keys)
    attempts = [attempts for _, attempts in await _history(bench, keys)]
    rows = case.rows * case.uploads
    seconds = plan.last_write_at - plan.first_write_at
    rate = rows / seconds if seconds else 0.0
    return Result(
        case=case,
        seconds=seconds,
        rows_per_second=rate,
        share_of_limit=rate / case.wcu,
        sent_again=plan.sent_again / rows,
        writes_per_row=len(plan.items_forwarded) / rows,
        attempts=attempts,
    )


def _verify_admitted(plan: FaultPlan, case: Case, keys: list[str]) -> None:
    """Every row of every upload was admitted, and nothing else."""
    expected = {
        (upload_id(key), f"REC_{number:05d}") for key in keys for number in range(1, case.rows + 1)
    }
    if plan.written != expected:
        missing, extra = len(expected - plan.written), len(plan.written - expected)
        raise BenchError(f"{case.name}: {missing} rows never written, {extra} writes not rows")


async def _worker(env: dict[str, str], log_path: Path, *args: str) -> asyncio.subprocess.Process:
    """``vendor-onboarding run ARGS`` in a process of its own, logging to ``log_path``."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "worker.runtimes.cli", "run", *args),
            stdout=log,
            stderr=log,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **env},
            cwd=REPO,
        )


async def _drain(env: dict[str, str], log_path: Path) -> int:
    return await (await _worker(env, log_path, "--drain")).wait()


async def _kill_then_finish(
    bench: Bench, env: dict[str, str], plan: FaultPlan, case: Case, keys: list[str]
) -> None:
    log_path = bench.work / "kill.log"
    process = await _worker(env, log_path)
    deadline = time.monotonic() + 600
    while len(plan.items_forwarded) < case.rows * (case.kill_at or 0):
        if process.returncode is not None or time.monotonic() > deadline:
            raise BenchError("the worker ended before the kill point")
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    # The message and the lease come back after 10 s; drain until the upload is staged.
    while {status for status, _ in await _history(bench, keys)} != {"staged"}:
        if time.monotonic() > deadline:
            raise BenchError("the upload was not finished after the kill")
        await _drain(env, log_path)


async def _history(bench: Bench, keys: list[str]) -> list[tuple[str, int]]:
    """(status, attempts) of each upload."""
    conn = await connect(bench.db)
    try:
        rows = await conn.fetch(
            "SELECT status, attempts FROM upload_history WHERE upload_id = ANY($1::text[])",
            [upload_id(key) for key in keys],
        )
    finally:
        await conn.close()
    return [(row["status"], row["attempts"]) for row in rows]


def render(results: list[Result]) -> str:
    header = ("case", "s", "rows/s", "of limit", "sent again", "writes/row", "attempts")
    lines = [
        (
            r.case.name,
            f"{r.seconds:.1f}",
            f"{r.rows_per_second:,.0f}",
            f"{r.share_of_limit:.2f}",
            f"{r.sent_again:.1%}",
            f"{r.writes_per_row:.3f}",
            ",".join(map(str, r.attempts)),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    table = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *lines]
    ]
    return "\n".join(table)


def targets(results: list[Result]) -> list[tuple[str, str, bool]]:
    at_1000, at_200, shared, killed = results
    return [
        (
            "one upload at 1,000 WCU/s: share of the limit",
            f"{at_1000.share_of_limit:.2f} >= {TARGET_AT_1000}",
            at_1000.share_of_limit >= TARGET_AT_1000,
        ),
        (
            "one upload at 200 WCU/s: share of the limit",
            f"{at_200.share_of_limit:.2f} >= {TARGET_AT_200}",
            at_200.share_of_limit >= TARGET_AT_200,
        ),
        (
            "three uploads of one vendor: share of the shared limit",
            f"{shared.share_of_limit:.2f} >= {TARGET_AT_1000}",
            shared.share_of_limit >= TARGET_AT_1000,
        ),
        (
            "items sent more than once, worst case",
            f"{max(r.sent_again for r in results):.1%} <= {TARGET_SENT_AGAIN:.0%}",
            max(r.sent_again for r in results) <= TARGET_SENT_AGAIN,
        ),
        (
            "every upload staged on its first attempt (the killed one aside)",
            ", ".join(str(r.attempts) for r in results[:3]),
            all(r.first_attempt for r in results[:3]),
        ),
        (
            "item writes after a kill at 50 %, per row",
            f"{killed.writes_per_row:.3f} <= {TARGET_WRITES_AFTER_KILL}",
            killed.writes_per_row <= TARGET_WRITES_AFTER_KILL,
        ),
    ]


async def run(args: argparse.Namespace) -> int:
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    results: list[Result] = []
    with _work_dir(args.work_dir) as work:
        db = await prepare_database(credentials_from_url(args.database_url), DATABASE)
        conn = await connect(db)
        try:
            await conn.execute("TRUNCATE upload_history")
        finally:
            await conn.close()
        bench = Bench(work, db)
        try:
            for case in QUICK if args.quick else FULL:
                if args.only and args.only not in case.name:
                    continue
                print(f"  {case.name} …", file=sys.stderr, flush=True)
                results.append(await measure(bench, case, work))
        finally:
            bench.stop_server()
    print(render(results))
    if len(results) < len(FULL):
        return 0
    print()
    goals = targets(results)
    width = max(len(name) for name, _, _ in goals)
    for name, value, met in goals:
        print(f"{name:<{width}}  {value:<18}  {'yes' if met else 'NO'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.partitions", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small files: a smoke run")
    parser.add_argument("--only", help="the cases whose name contains this text (no targets)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--work-dir", type=Path, help="keep the files and logs here")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
