"""Ingest benchmark: our worker against the tutorial's Lambda and the server's own ceiling.

``python -m bench.ingest [--quick] [--database-url URL]`` prepares a database (``vo_bench``)
and, for every measurement, starts a fresh moto server, provisions the stack, uploads the files
(their S3 notifications fill the ingest queue) and runs one variant in a process of its own:

- ``ceiling``: pre-built items sent with BatchWriteItem and nothing else (``bench/ceiling.py``);
- ``tutorial``: sync boto3, whole object read, DictReader, batch_writer (``bench/tutorial.py``);
- ``worker``: ``vendor-onboarding run --drain`` (``bench/worker_drain.py``).

Every run is checked (each file's rows are items; the worker's uploads are ``staged``), then
the figures are printed and written to ``bench/results/latest.json``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import aioboto3
import psutil

from bench.data import KeyClock, upload_id, write_csv
from worker.local.provision import (
    QueueUrls,
    StackNames,
    connect,
    prepare_database,
    provision_aws,
)
from worker.local.servers import MotoServer, credentials_from_url
from worker.postgres.database import DatabaseCredentials

REGION = "us-east-1"
DATABASE = "vo_bench"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
VARIANTS = ("ceiling", "tutorial", "worker")
SPEED_SCENARIOS = ("rows", "files")
MODULES = {"ceiling": "bench.ceiling", "tutorial": "bench.tutorial", "worker": "bench.worker_drain"}
BATCHES_IN_FLIGHT = 16  # the worker's default; the ceiling uses the same

# The project's targets (see bench/README.md), against the ceiling measured in the same run.
TARGET_ROWS_VS_CEILING = 0.90
TARGET_CPU_VS_CEILING = 1.2  # client CPU per 100k rows, work window
TARGET_FILES_VS_CEILING = 0.6
TARGET_RSS_GROWTH = 0.10  # "flat": at most +10 % from the small file to the large one
# Above this many cores used by other processes during a run, its figures are flagged.
FOREIGN_LOAD_WARNING = 0.2

# werkzeug's access log line: 127.0.0.1 - - [25/Nov/2026 02:19:16] "POST / HTTP/1.1" 200 -
_REQUEST_LINE = re.compile(r'\[(\d\d/\w{3}/\d{4} [\d:]{8})\] "[A-Z]+ \S+ HTTP/[\d.]+" (\d{3}) ')
# A server that answers nothing for this long while a variant runs has stalled (the log has a
# one-second resolution); the run's figures are then flagged.
SERVER_SILENCE_WARNING = 3


class BenchError(Exception):
    """A run failed or wrote the wrong data: its figures would mean nothing."""


@dataclass(frozen=True)
class Sizes:
    big_rows: int  # rows/s and CPU per 100k rows
    files: int  # files/s ...
    file_rows: int  # ... on files this size
    small_rows: int  # peak RSS, small file ...
    large_rows: int  # ... against large file


FULL = Sizes(big_rows=100_000, files=200, file_rows=31, small_rows=10_000, large_rows=200_000)
QUICK = Sizes(big_rows=5_000, files=20, file_rows=31, small_rows=1_000, large_rows=10_000)


@dataclass
class Scenario:
    name: str
    rows_per_file: int
    files: int
    variants: tuple[str, ...]
    paths: list[Path] = field(default_factory=list)


@dataclass
class Run:
    """One variant on one scenario, measured."""

    scenario: str
    variant: str
    files: int
    rows: int
    wall_seconds: float  # the process, start to exit
    cpu_seconds: float  # user + sys of the process
    max_rss_kb: int  # ru_maxrss of the process
    window_seconds: float  # the work itself, timed inside the process
    window_cpu_seconds: float
    server_cpu_seconds: float  # the moto server's CPU during the run
    server_requests: int  # HTTP requests the moto server answered during the run
    server_errors: int  # ... with a status >= 400 (throttles and faults would show here)
    server_silence_seconds: float  # the longest time the server answered nothing
    database_cpu_seconds: float  # PostgreSQL's CPU during the run
    foreign_cpu_seconds: float  # every other process on the machine during the run
    foreign_top: list[str]  # the busiest of them
    setup_seconds: float  # reset, provision, upload (not measured)
    verify_seconds: float
    report: dict[str, Any] = field(default_factory=dict)  # what the variant said of itself

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.window_seconds

    @property
    def files_per_second(self) -> float:
        return self.files / self.window_seconds

    @property
    def foreign_cores(self) -> float:
        return self.foreign_cpu_seconds / self.wall_seconds


class CpuLedger:
    """Where the machine's CPU went during a run: this process and its reaped children (the
    launcher and the variant), the moto server, PostgreSQL, and everything else ("foreign":
    other people's work on a shared machine, which disturbs the figures)."""

    def __init__(self, moto_pid: int) -> None:
        self._moto_pid = moto_pid  # the server of this measurement

    def snapshot(self) -> dict[str, Any]:
        machine = psutil.cpu_times()
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        processes: dict[int, tuple[str, str, float]] = {}
        for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            info = process.info
            if info["cpu_times"] is None:
                continue
            times = info["cpu_times"]
            label = " ".join((info["cmdline"] or [info["name"] or "?"])[:4])[:80]
            cpu = times.user + times.system
            if info["name"] == "postgres":  # backends that exited: reaped by the postmaster
                cpu += times.children_user + times.children_system
            processes[process.pid] = (info["name"] or "?", label, cpu)
        return {
            "busy": machine.user + machine.nice + machine.system + machine.irq + machine.softirq,
            "bench": own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime,
            "processes": processes,
        }

    def spent(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        """CPU seconds per party, and the busiest foreign processes."""
        deltas: dict[int, tuple[str, str, float]] = {}
        for pid, (name, label, cpu) in after["processes"].items():
            earlier = before["processes"].get(pid)
            same = earlier is not None and earlier[1] == label
            deltas[pid] = (name, label, cpu - (earlier[2] if same else 0.0))
        me = os.getpid()
        moto = deltas.get(self._moto_pid, ("", "", 0.0))[2]
        postgres = sum(cpu for name, _, cpu in deltas.values() if name == "postgres")
        bench = after["bench"] - before["bench"]
        foreign = max(0.0, after["busy"] - before["busy"] - bench - moto - postgres)
        others = sorted(
            (
                (cpu, label)
                for pid, (name, label, cpu) in deltas.items()
                if pid not in (me, self._moto_pid) and name != "postgres"
            ),
            reverse=True,
        )
        return {
            "moto": moto,
            "postgres": postgres,
            "foreign": foreign,
            "foreign_top": [f"{label} ({cpu:.1f} s)" for cpu, label in others[:3] if cpu >= 0.1],
        }


class Bench:
    def __init__(self, work: Path, db: DatabaseCredentials) -> None:
        self.work = work
        self.server = MotoServer(work / "moto")
        self.server_log = work / "moto" / "moto.log"
        self.endpoint = ""
        self.db = db
        self.names = StackNames(
            bucket="vo-bench-uploads",
            ingest_queue="vo-bench-ingest",
            dlq="vo-bench-ingest-dlq",
            table="UploadRecords",
            secret="vo-bench/rds/credentials",
        )
        self.clock = KeyClock()
        self.session = aioboto3.Session()
        self._queues: QueueUrls | None = None
        self.sample_items: dict[str, dict[str, Any]] = {}

    def _client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint, region_name=REGION)

    # -- the stack --------------------------------------------------------------------------

    async def fresh_stack(self) -> CpuLedger:
        """A fresh moto server for each measurement, provisioned from scratch.

        Not ``POST /moto-api/reset``: moto's models hold reference cycles, so a reset leaves
        the previous run's items (~35 objects each) as garbage that only a full collection
        frees, and that collection comes during the *next* run: 3-9 s in which the server
        answers nothing, after a 100k-row run. A new process starts every variant equal.
        """
        self.stop_server()
        self.endpoint = await asyncio.to_thread(self.server.start)
        self._queues = await provision_aws(self.endpoint, REGION, self.names, self.db)
        async with self._client("cloudwatch") as cloudwatch:
            await cloudwatch.list_metrics()  # moto imports a backend on its first request
        return CpuLedger(int((self.work / "moto" / "moto.pid").read_text()))

    def stop_server(self) -> None:
        """Stop this benchmark's moto server, at once: it holds nothing worth a clean exit,
        and freeing a large heap on the way out would take seconds of CPU."""
        try:
            pid = int((self.work / "moto" / "moto.pid").read_text())
        except (OSError, ValueError):
            return
        self.server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    @property
    def queues(self) -> QueueUrls:
        if self._queues is None:
            raise BenchError("the stack is not provisioned yet")
        return self._queues

    async def upload(self, paths: list[Path]) -> list[str]:
        """Put the files under fresh keys; wait until their notifications are queued."""
        keys = [self.clock.key() for _ in paths]
        async with self._client("s3") as s3, self._client("sqs") as sqs:
            before = await self._queued(sqs, self.queues.ingest)  # the s3:TestEvent
            for key, path in zip(keys, paths, strict=True):
                await s3.put_object(Bucket=self.names.bucket, Key=key, Body=path.read_bytes())
            deadline = time.monotonic() + 60
            while (queued := await self._queued(sqs, self.queues.ingest) - before) < len(keys):
                if time.monotonic() > deadline:
                    raise BenchError(f"only {queued} of {len(keys)} S3 notifications queued")
                await asyncio.sleep(0.1)
        return keys

    @staticmethod
    async def _queued(sqs: Any, queue_url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        response = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)
        return sum(int(response["Attributes"][name]) for name in names)

    # -- one measurement --------------------------------------------------------------------

    async def measure(self, scenario: Scenario, variant: str) -> Run:
        started = time.monotonic()
        ledger = await self.fresh_stack()
        keys = await self.upload(scenario.paths)
        tag = f"{scenario.name}-{variant}"
        paths = {part: self.work / f"{tag}.{part}" for part in ("config.json", "report.json")}
        usage_path, log_path = self.work / f"{tag}.usage.json", self.work / f"{tag}.log"
        config, env = self._config(scenario, variant, keys)
        paths["config.json"].write_text(json.dumps(config))
        command = [
            *(sys.executable, "-m", "bench.measure", str(usage_path), "--"),
            *(sys.executable, "-m", MODULES[variant]),
            *(str(paths["config.json"]), str(paths["report.json"])),
        ]
        log_offset = self.server_log.stat().st_size
        setup_seconds = time.monotonic() - started
        before = ledger.snapshot()
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=log,
                stderr=log,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=REPO,
            )
            await process.wait()
        spent = ledger.spent(before, ledger.snapshot())
        statuses, silence = self._server_log_since(log_offset)
        if process.returncode != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise BenchError(f"{tag} exited with {process.returncode}; its output ends:\n{tail}")
        usage = json.loads(usage_path.read_text())
        report = json.loads(paths["report.json"].read_text())
        verify_started = time.monotonic()
        await self.verify(scenario, variant, keys)
        return Run(
            scenario=scenario.name,
            variant=variant,
            files=len(keys),
            rows=scenario.rows_per_file * len(keys),
            wall_seconds=usage["wall_seconds"],
            cpu_seconds=usage["user_seconds"] + usage["system_seconds"],
            max_rss_kb=usage["max_rss_kb"],
            window_seconds=report.pop("window_seconds"),
            window_cpu_seconds=report.pop("window_cpu_seconds"),
            server_cpu_seconds=spent["moto"],
            server_requests=len(statuses),
            server_errors=sum(status >= 400 for status in statuses),
            server_silence_seconds=silence,
            database_cpu_seconds=spent["postgres"],
            foreign_cpu_seconds=spent["foreign"],
            foreign_top=spent["foreign_top"],
            setup_seconds=setup_seconds,
            verify_seconds=time.monotonic() - verify_started,
            report=report,
        )

    def _server_log_since(self, offset: int) -> tuple[list[int], float]:
        """The status of every request the moto server logged since ``offset``, and the
        longest time between two of them."""
        with self.server_log.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        lines = _REQUEST_LINE.findall(text)
        times = [datetime.strptime(at, "%d/%b/%Y %H:%M:%S") for at, _ in lines]
        silence = max(
            ((later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)),
            default=0.0,
        )
        return [int(status) for _, status in lines], silence

    def _config(
        self, scenario: Scenario, variant: str, keys: list[str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The variant's config file and environment."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": REGION,
            "DYNAMODB_TABLE": self.names.table,
        }
        if variant == "ceiling":
            files = [{"key": k, "path": str(p)} for k, p in zip(keys, scenario.paths, strict=True)]
            config = {
                "endpoint": self.endpoint,
                "region": REGION,
                "table": self.names.table,
                "batches_in_flight": BATCHES_IN_FLIGHT,
                "files": files,
            }
            return config, env
        if variant == "tutorial":
            return {"bucket": self.names.bucket, "keys": keys}, env
        env |= {  # the worker's settings, as a deployment would set them
            "AWS_REGION": REGION,
            "INGEST_QUEUE_URL": self.queues.ingest,
            "DLQ_URL": self.queues.dlq,
            "RDS_SECRET_NAME": self.names.secret,
            "DATABASE_SSL_MODE": "prefer",  # the local PostgreSQL, as the local stack sets it
            "RECEIVE_WAIT_SECONDS": "1",
            # Files of a few rows: a deployment for them would take more at once.
            "FILES_IN_FLIGHT": "16" if scenario.files > 1 else "4",
            "BATCHES_IN_FLIGHT": str(BATCHES_IN_FLIGHT),
            "VISIBILITY_TIMEOUT_SECONDS": str(self.names.visibility_timeout),
            "HEALTH_PORT": "0",
        }
        return {"keys": keys}, env

    # -- checks -----------------------------------------------------------------------------

    async def verify(self, scenario: Scenario, variant: str, keys: list[str]) -> None:
        """Every row of every file is an item, and nothing else is; fail loudly if not.

        The table was empty before the run, so its exact item count plus, for every upload,
        its first and last record present and the one after the last absent, proves it.
        (Query/Scan with Select=COUNT would say the same per upload, but moto answers them
        by walking every item of the table: minutes for the large files.)
        """
        tag = f"{scenario.name}/{variant}"
        rows = scenario.rows_per_file
        async with self._client("dynamodb") as dynamodb:
            table = (await dynamodb.describe_table(TableName=self.names.table))["Table"]
            expected = rows * len(keys)
            if table["ItemCount"] != expected:
                raise BenchError(f"{tag}: {table['ItemCount']} items staged, expected {expected}")
            probes = [(upload_id(key), number) for key in keys for number in (1, rows, rows + 1)]
            found = await self._existing(dynamodb, probes)
            wrong = [
                (upload, number)
                for upload, number in probes
                if ((upload, number) in found) != (number <= rows)
            ]
            if wrong:
                raise BenchError(f"{tag}: records missing or extra: {wrong[:5]} …")
            if scenario.name == "rows":
                sample = await dynamodb.get_item(
                    TableName=self.names.table,
                    Key={"upload_id": {"S": upload_id(keys[0])}, "record_id": {"S": "REC_00002"}},
                )
                self.sample_items[variant] = sample["Item"]
        if variant == "worker":
            await self.verify_worker(tag, keys, rows)

    async def _existing(self, dynamodb: Any, probes: list[tuple[str, int]]) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for start in range(0, len(probes), 100):
            keys = [
                {"upload_id": {"S": upload}, "record_id": {"S": f"REC_{number:05d}"}}
                for upload, number in probes[start : start + 100]
            ]
            request: dict[str, Any] = {self.names.table: {"Keys": keys}}
            while request:
                response = await dynamodb.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(self.names.table, []):
                    found.add((item["upload_id"]["S"], int(item["row_number"]["N"])))
                request = response.get("UnprocessedKeys") or {}
        return found

    async def verify_worker(self, tag: str, keys: list[str], rows: int) -> None:
        async with self._client("sqs") as sqs:
            for name, url in (("ingest queue", self.queues.ingest), ("DLQ", self.queues.dlq)):
                if (left := await self._queued(sqs, url)) != 0:
                    raise BenchError(f"{tag}: {left} message(s) left in the {name}")
        conn = await connect(self.db)
        try:
            records = await conn.fetch(
                "SELECT s3_key, status, total_records FROM upload_history "
                "WHERE s3_key = ANY($1::text[])",
                keys,
            )
        finally:
            await conn.close()
        bad = [
            (r["s3_key"], r["status"], r["total_records"])
            for r in records
            if r["status"] != "staged" or r["total_records"] != rows
        ]
        if len(records) != len(keys) or bad:
            raise BenchError(f"{tag}: {len(records)}/{len(keys)} uploads recorded; wrong: {bad}")

    def check_same_items(self) -> None:
        """The variants staged the same data for the same row (keys and timestamps aside)."""
        ignored = {"upload_id", "s3_key", "created_at"}
        shapes = {
            variant: {k: v for k, v in item.items() if k not in ignored}
            for variant, item in self.sample_items.items()
        }
        reference = shapes.get("worker")
        for variant, shape in shapes.items():
            if shape != reference:
                raise BenchError(
                    f"{variant} staged another item for row 2 than the worker:\n"
                    f"  {variant}: {shape}\n  worker: {reference}"
                )


# -- the report ------------------------------------------------------------------------------

Figures = dict[str, dict[str, float | None]]

FIGURE_NAMES = (
    "rows_per_second",
    "rows_window_seconds",
    "rows_wall_seconds",
    "rows_server_requests",
    "rows_server_cores",
    "cpu_seconds_per_100k_rows",
    "window_cpu_seconds_per_100k_rows",
    "peak_rss_mb_rows_file",
    "files_per_second",
    "files_window_seconds",
    "files_wall_seconds",
    "files_server_requests_per_file",
    "files_server_cpu_ms_per_file",
    "files_server_cores",
    "peak_rss_mb_small",
    "peak_rss_mb_large",
    "rss_growth",
)


def _mb(kb: float) -> float:
    return kb / 1024


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _medians(runs: list[Run]) -> dict[tuple[str, str], Run]:
    """Per scenario and variant, the run of median speed (of the rounds measured)."""
    grouped: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.scenario, run.variant), []).append(run)
    return {
        key: sorted(group, key=lambda r: r.window_seconds)[len(group) // 2]
        for key, group in grouped.items()
    }


def figures(runs: list[Run], sizes: Sizes) -> Figures:
    """The figures of each variant; ``None`` where a variant does not run a scenario."""
    by = _medians(runs)
    per_100k = 100_000 / sizes.big_rows
    result: Figures = {}
    for variant in VARIANTS:
        big, many = by.get(("rows", variant)), by.get(("files", variant))
        small, large = by.get(("rss_small", variant)), by.get(("rss_large", variant))
        fig: dict[str, float | None] = dict.fromkeys(FIGURE_NAMES)
        if big:
            fig |= {
                "rows_per_second": big.rows_per_second,
                "rows_window_seconds": big.window_seconds,
                "rows_wall_seconds": big.wall_seconds,
                "rows_server_requests": big.server_requests,
                "rows_server_cores": big.server_cpu_seconds / big.wall_seconds,
                "cpu_seconds_per_100k_rows": big.cpu_seconds * per_100k,
                "window_cpu_seconds_per_100k_rows": big.window_cpu_seconds * per_100k,
                "peak_rss_mb_rows_file": _mb(big.max_rss_kb),
            }
        if many:
            fig |= {
                "files_per_second": many.files_per_second,
                "files_window_seconds": many.window_seconds,
                "files_wall_seconds": many.wall_seconds,
                "files_server_requests_per_file": many.server_requests / many.files,
                "files_server_cpu_ms_per_file": 1000 * many.server_cpu_seconds / many.files,
                "files_server_cores": many.server_cpu_seconds / many.wall_seconds,
            }
        if small and large:
            fig |= {
                "peak_rss_mb_small": _mb(small.max_rss_kb),
                "peak_rss_mb_large": _mb(large.max_rss_kb),
                "rss_growth": large.max_rss_kb / small.max_rss_kb - 1,
            }
        result[variant] = fig
    return result


def targets(fig: Figures) -> list[dict[str, Any]]:
    """The project's targets, then context (``met`` is None for context lines)."""
    worker, tutorial, ceiling = fig["worker"], fig["tutorial"], fig["ceiling"]
    rows = _ratio(worker["rows_per_second"], ceiling["rows_per_second"])
    cpu = _ratio(
        worker["window_cpu_seconds_per_100k_rows"], ceiling["window_cpu_seconds_per_100k_rows"]
    )
    files = _ratio(worker["files_per_second"], ceiling["files_per_second"])
    growth = worker["rss_growth"]

    def window_cpu(variant: dict[str, float | None]) -> float | None:
        return _ratio(
            variant["window_cpu_seconds_per_100k_rows"],
            tutorial["window_cpu_seconds_per_100k_rows"],
        )

    return [
        _target(
            "worker rows/s ÷ ceiling rows/s",
            rows,
            f">= {TARGET_ROWS_VS_CEILING:.2f}",
            rows is not None and rows >= TARGET_ROWS_VS_CEILING,
        ),
        _target(
            "worker CPU ÷ ceiling CPU, per 100k rows, window",
            cpu,
            f"<= {TARGET_CPU_VS_CEILING:.2f}",
            cpu is not None and cpu <= TARGET_CPU_VS_CEILING,
        ),
        _target(
            "worker files/s ÷ ceiling files/s",
            files,
            f">= {TARGET_FILES_VS_CEILING:.2f}",
            files is not None and files >= TARGET_FILES_VS_CEILING,
        ),
        _target(
            "worker RSS growth, small → large file",
            growth,
            f"<= +{TARGET_RSS_GROWTH:.0%}",
            growth is not None and growth <= TARGET_RSS_GROWTH,
            percent=True,
        ),
        _target("tutorial RSS growth, small → large file", tutorial["rss_growth"], percent=True),
        _target(
            "tutorial rows/s ÷ ceiling rows/s",
            _ratio(tutorial["rows_per_second"], ceiling["rows_per_second"]),
        ),
        _target("ceiling CPU ÷ tutorial CPU, per 100k rows, window", window_cpu(ceiling)),
        _target("worker CPU ÷ tutorial CPU, per 100k rows, window", window_cpu(worker)),
        _target(
            "worker CPU ÷ tutorial CPU, per 100k rows",
            _ratio(worker["cpu_seconds_per_100k_rows"], tutorial["cpu_seconds_per_100k_rows"]),
        ),
        _target(
            "worker files/s ÷ tutorial files/s",
            _ratio(worker["files_per_second"], tutorial["files_per_second"]),
        ),
    ]


def _target(
    name: str,
    value: float | None,
    goal: str = "(context)",
    met: bool | None = None,
    *,
    percent: bool = False,
) -> dict[str, Any]:
    return {"target": name, "value": value, "goal": goal, "met": met, "percent": percent}


def render(fig: Figures, goals: list[dict[str, Any]], sizes: Sizes) -> str:
    def cell(value: float | None, fmt: str) -> str:
        if value is None:
            return "-"
        return f"{value:+.0%}" if fmt == "%" else format(value, fmt)

    spec = [
        (f"rows/s, one {sizes.big_rows:,}-row file", "rows_per_second", ",.0f"),
        ("  work window s", "rows_window_seconds", ".1f"),
        ("  process wall s", "rows_wall_seconds", ".1f"),
        ("  moto requests", "rows_server_requests", ",.0f"),
        ("  moto server CPU, cores busy", "rows_server_cores", ".2f"),
        ("client CPU s per 100k rows, process", "cpu_seconds_per_100k_rows", ".2f"),
        ("client CPU s per 100k rows, window", "window_cpu_seconds_per_100k_rows", ".2f"),
        (f"files/s, {sizes.files} files x {sizes.file_rows} rows", "files_per_second", ".1f"),
        ("  work window s", "files_window_seconds", ".1f"),
        ("  process wall s", "files_wall_seconds", ".1f"),
        ("  moto requests per file", "files_server_requests_per_file", ".1f"),
        ("  moto CPU ms per file", "files_server_cpu_ms_per_file", ".1f"),
        ("  moto server CPU, cores busy", "files_server_cores", ".2f"),
        (f"peak RSS MB, {sizes.big_rows:,}-row file", "peak_rss_mb_rows_file", ".0f"),
        (f"peak RSS MB, {sizes.small_rows:,}-row file", "peak_rss_mb_small", ".0f"),
        (f"peak RSS MB, {sizes.large_rows:,}-row file", "peak_rss_mb_large", ".0f"),
        (f"RSS growth {sizes.small_rows:,} → {sizes.large_rows:,} rows", "rss_growth", "%"),
    ]
    table = [("figure", *VARIANTS)]
    table += [(label, *(cell(fig[v][key], fmt) for v in VARIANTS)) for label, key, fmt in spec]
    goal_table = [("ratio", "value", "target", "met")]
    for goal in goals:
        shown = cell(goal["value"], "%" if goal["percent"] else ".2f")
        met = {True: "yes", False: "NO", None: ""}[goal["met"]]
        goal_table.append((goal["target"], shown, goal["goal"], met))
    return _table(table) + "\n\n" + _table(goal_table)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: tuple[str, ...]) -> str:
        first, *rest = cells
        padded = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join([first.ljust(widths[0]), *padded]).rstrip()

    rule = tuple("-" * w for w in widths)
    return "\n".join(line(row) for row in [rows[0], rule, *rows[1:]])


def _progress(run: Run) -> str:
    line = (
        f" {run.window_seconds:6.1f} s work, {run.wall_seconds:6.1f} s process, "
        f"{run.cpu_seconds:5.1f} s CPU, {_mb(run.max_rss_kb):4.0f} MB, "
        f"{run.server_requests:5,} requests (setup {run.setup_seconds:.0f} s, "
        f"check {run.verify_seconds:.0f} s)"
    )
    if run.server_errors:
        line += f"\n    warning: moto answered {run.server_errors} request(s) with an error"
    if run.server_silence_seconds >= SERVER_SILENCE_WARNING:
        line += (
            f"\n    warning: the moto server answered nothing for {run.server_silence_seconds:.0f}"
            " s during this run (a stall); its figures are disturbed"
        )
    if run.foreign_cores > FOREIGN_LOAD_WARNING:
        line += (
            f"\n    warning: other processes kept {run.foreign_cores:.2f} cores busy during "
            f"this run; its figures are disturbed: {', '.join(run.foreign_top) or '?'}"
        )
    return line


def _disturbed(run: Run) -> bool:
    return (
        run.foreign_cores > FOREIGN_LOAD_WARNING
        or run.server_silence_seconds >= SERVER_SILENCE_WARNING
    )


def _environment() -> dict[str, Any]:
    """What was measured on what: versions, machine, and the state of the worker's code."""
    versions = {name: metadata.version(name) for name in ("moto", "botocore", "aiobotocore")}
    git: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        head = ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]
        status = ["git", "-C", str(REPO), "status", "--porcelain", "--", "worker"]
        git["head"] = subprocess.run(head, capture_output=True, text=True, check=True).stdout
        changed = subprocess.run(status, capture_output=True, text=True, check=True).stdout
        git = {"head": git["head"].strip(), "worker_changes": changed.splitlines()}
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git": git,
    }


# -- main ------------------------------------------------------------------------------------


def scenarios(sizes: Sizes, data: Path, only: list[str] | None = None) -> list[Scenario]:
    plan = [
        Scenario("rows", sizes.big_rows, 1, VARIANTS),
        Scenario("files", sizes.file_rows, sizes.files, VARIANTS),
        Scenario("rss_small", sizes.small_rows, 1, ("tutorial", "worker")),
        Scenario("rss_large", sizes.large_rows, 1, ("tutorial", "worker")),
    ]
    plan = [scenario for scenario in plan if not only or scenario.name in only]
    for number, scenario in enumerate(plan):
        for index in range(scenario.files):
            path = data / f"{scenario.name}_{index:04d}.csv"
            seed = number * 10_000 + index
            scenario.paths.append(write_csv(path, scenario.rows_per_file, seed=seed))
    return plan


@contextlib.contextmanager
def _work_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="vo-bench-") as tmp:
        yield Path(tmp)


async def run(args: argparse.Namespace) -> int:
    # Everything talks to the moto server; never sign with real credentials.
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    runs: list[Run] = []
    with _work_dir(args.work_dir) as work:
        bench: Bench | None = None
        try:
            db = await prepare_database(credentials_from_url(args.database_url), DATABASE)
            conn = await connect(db)
            try:  # keys repeat across bench runs: start from an empty history
                await conn.execute("TRUNCATE upload_history")
            finally:
                await conn.close()
            bench = Bench(work, db)
            print(f"work directory {work}; writing the CSV files …", file=sys.stderr)
            for scenario in scenarios(sizes, work / "data", args.only):
                # The ratios compare variants on a server whose speed drifts between runs: the
                # speed scenarios are measured in rounds, the variants interleaved, and each
                # figure is its median round.
                rounds = args.rounds or (1 if args.quick else 3)
                rounds = rounds if scenario.name in SPEED_SCENARIOS else 1
                for _ in range(rounds):
                    for variant in scenario.variants:
                        print(
                            f"  {scenario.name:<9} {variant:<8}",
                            end="",
                            file=sys.stderr,
                            flush=True,
                        )
                        runs.append(await bench.measure(scenario, variant))
                        print(_progress(runs[-1]), file=sys.stderr)
            bench.check_same_items()
        finally:
            if bench is not None:
                bench.stop_server()
    fig = figures(runs, sizes)
    goals = targets(fig)
    print()
    print(render(fig, goals, sizes))
    disturbed = [f"{r.scenario}/{r.variant}" for r in runs if _disturbed(r)]
    if disturbed:
        print(f"\ndisturbed (other load on the machine, or a server stall): {', '.join(disturbed)}")
    document = {
        "quick": args.quick,
        "sizes": asdict(sizes),
        "environment": _environment(),
        "seconds": time.monotonic() - started,
        "figures": fig,
        "targets": goals,
        "runs": [asdict(r) | {"foreign_cores": r.foreign_cores} for r in runs],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nfigures written to {args.output} ({document['seconds']:.0f} s in all)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small files: a smoke run")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL server to create the {DATABASE!r} database on (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="rounds of the speed scenarios (rows, files); each figure is the median round "
        "(default: 3, or 1 with --quick)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("rows", "files", "rss_small", "rss_large"),
        help="run these scenarios only (the targets of the others show as not measured)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the figures as JSON (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep the CSV files, configs and each run's log here (default: a temporary "
        "directory, removed at the end)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except BenchError as exc:
        print(f"\nbenchmark FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
