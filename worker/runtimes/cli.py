"""The ``vendor-onboarding`` command: the worker, migrations, the local stack and the demo.

Exit codes: 0 ok, 1 the operation failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from worker import logs
from worker.core.errors import OnboardingError

log = logging.getLogger("worker.runtimes.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATUSES = ("processing", "staged", "validated", "rejected", "failed")


def _settings() -> Any:
    from worker.settings import Settings

    return Settings()


async def _run(args: argparse.Namespace) -> int:
    from worker.resources import Resources
    from worker.runtimes.consumer import Consumer, check_resources
    from worker.runtimes.handlers import handle_validation
    from worker.runtimes.health import health_server

    settings = _settings()
    queue_url = settings.require_ingest_queue()
    async with Resources.open(settings) as res:
        validation_queue = settings.validation_queue_url
        await check_resources(res, queue_url, *([validation_queue] if validation_queue else []))
        consumers = [Consumer(res)]
        if validation_queue:
            consumers.append(
                Consumer(
                    res,
                    queue_url=validation_queue,
                    handler=handle_validation,
                    capacity=settings.validations_in_flight,
                )
            )

        def on_signal() -> None:
            if consumers[0].stopping:  # a second signal: leave at once
                log.warning("second signal: exiting now")
                os._exit(EXIT_FAILED)
            for consumer in consumers:
                consumer.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        log.info("worker started", extra={"queue": queue_url, "drain": args.drain})
        async with contextlib.AsyncExitStack() as stack:
            if settings.health_port:
                port = await stack.enter_async_context(
                    health_server(
                        res,
                        queue_url,
                        # The stalest loop: a dead ingest loop is not hidden by a live one.
                        lambda: min(consumer.last_turn for consumer in consumers),
                        port=settings.health_port,
                        stale_after=settings.receive_wait_seconds + 60,
                    )
                )
                log.info("health endpoint listening", extra={"port": port})
            if args.drain:  # staging first: it is what queues the validation jobs
                for consumer in consumers:
                    await consumer.run(drain=True)
            else:
                await asyncio.gather(*(consumer.run() for consumer in consumers))
    log.info("worker stopped")
    return EXIT_OK


async def _validate(args: argparse.Namespace) -> int:
    from worker.resources import Resources
    from worker.validation.run import validate_upload

    async with Resources.open(_settings()) as res:
        result = await validate_upload(res, args.upload_id)
    print(
        f"{result.upload_id}: {result.valid} valid, {result.invalid} invalid of {result.total}; "
        f"report s3://{result.bucket}/{result.report_key}, "
        f"rejected rows s3://{result.bucket}/{result.errors_key}"
    )
    return EXIT_OK


async def _migrate(args: argparse.Namespace) -> int:
    from worker.postgres import migrations
    from worker.resources import Resources

    async with Resources.open(_settings()) as res, res.database.connection() as conn:
        applied = await migrations.apply(conn)
    print(f"applied: {', '.join(applied)}" if applied else "schema is up to date")
    return EXIT_OK


async def _local(args: argparse.Namespace) -> int:
    from worker.local import stack

    if args.action == "down":
        stopped = stack.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return EXIT_OK
    await stack.up(args.database_url, port=args.port)
    env_file = stack.state_dir() / "env"
    print(f"local stack is up. To point the CLI at it:\n\n    source {env_file}\n")
    print(env_file.read_text(), end="")
    return EXIT_OK


async def _demo(args: argparse.Namespace) -> int:
    from worker.local.demo import render, run_demo

    rows = await run_demo(args.database_url, keep=args.keep)
    print()
    print(render(rows))
    expected = {"validated", "rejected"}
    return EXIT_OK if all(row.status in expected for row in rows) else EXIT_FAILED


def _healthcheck(args: argparse.Namespace) -> int:
    url = f"http://127.0.0.1:{args.port or _settings().health_port}/healthz/{args.check}"
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as response:
            print(response.read().decode())
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(), file=sys.stderr)
    except OSError as exc:
        print(f"error: {url}: {exc}", file=sys.stderr)
    return EXIT_FAILED


async def _uploads(args: argparse.Namespace) -> int:
    from worker.postgres.uploads import UploadHistory
    from worker.resources import Resources
    from worker.runtimes.text_table import render_table

    async with Resources.open(_settings()) as res, res.database.connection() as conn:
        rows = await UploadHistory(conn).recent(
            status=args.status, vendor=args.vendor, limit=args.limit
        )
    print(
        render_table(
            (
                "upload_id",
                "vendor",
                "status",
                "rows",
                "typed",
                "untyped",
                "valid",
                "invalid",
                "tries",
                "updated (UTC)",
            ),
            [
                (
                    r.upload_id,
                    r.vendor_id,
                    r.status,
                    str(r.total),
                    str(r.successful),
                    str(r.failed),
                    "-" if r.valid is None else str(r.valid),
                    "-" if r.invalid is None else str(r.invalid),
                    str(r.attempts),
                    f"{r.updated_at:%Y-%m-%d %H:%M:%S}",
                )
                for r in rows
            ],
            [(r.error or "",) for r in rows],
        )
    )
    return EXIT_OK


async def _dlq(args: argparse.Namespace) -> int:
    from worker.postgres.uploads import UploadHistory
    from worker.resources import Resources
    from worker.runtimes import dlq
    from worker.runtimes.text_table import render_table

    settings = _settings()
    dlq_url = settings.require_dlq()
    async with Resources.open(settings) as res:
        if args.action == "peek" or args.dry_run:
            letters = await dlq.peek(res, dlq_url, args.limit)
            async with res.database.connection() as conn:
                last = await UploadHistory(conn).last_errors([d.upload_id for d in letters])
            print(
                render_table(
                    ("upload_id", "key", "receives", "age", "last error"),
                    [
                        (
                            d.upload_id or "-",
                            d.key or "-",
                            str(d.receive_count),
                            _age(d.age_seconds),
                            last.get(d.upload_id) or d.reason or "-",
                        )
                        for d in letters
                    ],
                )
            )
            if args.action == "redrive":
                print(f"dry run: {len(letters)} message(s) would be redriven")
            return EXIT_OK
        ingest_url = settings.require_ingest_queue()

        def progress(moved: int) -> None:
            print(f"\rredriven {moved} message(s)", end="", file=sys.stderr, flush=True)

        moved, errors = await dlq.redrive(
            res, dlq_url, ingest_url, limit=args.limit, progress=progress
        )
        print(file=sys.stderr)
    print(f"redriven {moved} message(s) to {ingest_url}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def _age(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes:02d}m"


async def _reprocess(args: argparse.Namespace) -> int:
    from worker.core.events import ObjectRef
    from worker.ingest.stage import Outcome, process_object
    from worker.resources import Resources

    uri: str = args.uri
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not uri.startswith("s3://") or not bucket or not key:
        print("error: expected s3://bucket/key", file=sys.stderr)
        return EXIT_USAGE
    async with Resources.open(_settings()) as res:
        result = await process_object(res, ObjectRef(bucket, key), force=True)
    print(
        f"{result.upload_id}: {result.outcome.value} "
        f"({result.total} rows, {result.successful} ok, {result.failed} bad)"
        + (f": {result.error}" if result.error else "")
    )
    return EXIT_OK if result.outcome in (Outcome.STAGED, Outcome.REJECTED) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vendor-onboarding",
        description="Turn vendors' product CSV uploads in S3 into catalogue data.",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="consume the ingest queue (the worker)")
    run.add_argument(
        "--drain", action="store_true", help="exit once the queue is empty and no work is left"
    )
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)

    uploads = commands.add_parser("uploads", help="list recent uploads from upload_history")
    uploads.add_argument("--status", choices=STATUSES)
    uploads.add_argument("--vendor", help="only this vendor's uploads")
    uploads.add_argument("--limit", type=_positive, default=50, help="at most N rows (50)")
    uploads.set_defaults(handler=_uploads)

    health = commands.add_parser(
        "healthcheck", help="ask the running worker's health endpoint (for HEALTHCHECK)"
    )
    health.add_argument("check", nargs="?", choices=("live", "ready"), default="live")
    health.add_argument("--port", type=int, help="default: HEALTH_PORT (8080)")
    health.add_argument("--timeout", type=float, default=5.0)
    health.set_defaults(handler=_healthcheck)

    dlq = commands.add_parser("dlq", help="look at or redrive the dead-letter queue")
    dlq.add_argument("action", choices=("peek", "redrive"))
    dlq.add_argument("--limit", type=_positive, default=100, help="at most N messages (100)")
    dlq.add_argument(
        "--dry-run", action="store_true", help="redrive: show what would move, move nothing"
    )
    dlq.set_defaults(handler=_dlq)

    validate = commands.add_parser(
        "validate", help="run the validation stage for one staged upload now"
    )
    validate.add_argument("upload_id", metavar="UPLOAD_ID")
    validate.set_defaults(handler=_validate)

    reprocess = commands.add_parser(
        "reprocess", help="process one object now, even if it was staged before"
    )
    reprocess.add_argument("uri", metavar="s3://bucket/key")
    reprocess.set_defaults(handler=_reprocess)

    local = commands.add_parser("local", help="start or stop the embedded local stack")
    local.add_argument("action", choices=("up", "down"))
    local.add_argument(
        "--database-url",
        help="use this PostgreSQL (postgresql://user:pass@host:port/db) instead of an embedded one",
    )
    local.add_argument("--port", type=int, help="moto server port (default: a free one)")
    local.set_defaults(handler=_local)

    demo = commands.add_parser(
        "demo", help="run the whole flow locally on sample files and print a summary"
    )
    demo.add_argument("--database-url", help="as for 'local up'")
    demo.add_argument("--keep", action="store_true", help="leave the local stack running")
    demo.set_defaults(handler=_demo)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int] = args.handler
    try:
        outcome = handler(args)
        return outcome if isinstance(outcome, int) else asyncio.run(outcome)
    except ValidationError as exc:
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OnboardingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
