"""The ``vendor-onboarding`` command: the worker, migrations, the local stack and the demo.

Exit codes: 0 ok; 1 the operation failed or the configuration is wrong (a setting missing or
invalid, no AWS credentials, a secret that does not exist), with one ``error: ...`` line on
stderr; 2 usage error (an unknown command, option or value on the command line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import signal
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from worker import logs
from worker.core.errors import OnboardingError

log = logging.getLogger("worker.runtimes.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATUSES = ("processing", "staged", "validated", "rejected", "failed")


def _settings() -> Any:
    from worker.settings import Settings

    return Settings.from_environment()


async def _run(args: argparse.Namespace) -> int:
    from worker.aws.task_protection import TaskProtection
    from worker.resources import Resources
    from worker.runtimes.consumer import Consumer, check_resources
    from worker.runtimes.health import health_server

    settings = _settings()
    queue_url = settings.require_ingest_queue()
    async with (
        Resources.open(settings) as res,
        TaskProtection.open(
            settings.ecs_agent_uri, minutes=settings.task_protection_minutes
        ) as protection,
    ):
        validation_queue = settings.validation_queue_url
        await check_resources(res, queue_url, *([validation_queue] if validation_queue else []))
        consumers = [Consumer(res, protection=protection)]
        if validation_queue:
            consumers.append(Consumer(res, stage="validation", protection=protection))

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
    from worker.resources import open_sqs
    from worker.runtimes import dlq
    from worker.runtimes.text_table import render_table
    from worker.settings import STAGES

    settings = _settings()
    home = args.queue
    dlq_url = settings.require_dlq(home)
    if args.action == "peek" or args.dry_run:
        async with open_sqs(settings) as sqs:
            letters = await dlq.peek(sqs, dlq_url, args.limit)
        last = await _last_errors(settings, [d.upload_id for d in letters])
        print(
            render_table(
                ("upload_id", "key", "back to", "receives", "age", "last error"),
                [
                    (
                        d.upload_id or "-",
                        d.key or ("(validation job)" if d.stage == "validation" else "-"),
                        d.stage or home,
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
    queues = {home: settings.require_queue(home)}
    queues |= {
        stage: url
        for stage in STAGES
        if stage != home and (url := settings.queue_url_of(stage)) is not None
    }

    def progress(moved: int) -> None:
        print(f"\rredriven {moved} message(s)", end="", file=sys.stderr, flush=True)

    async with open_sqs(settings) as sqs:
        moved, errors = await dlq.redrive(
            sqs, dlq_url, queues, home=home, limit=args.limit, progress=progress
        )
    print(file=sys.stderr)
    for url, count in moved.items() or [(queues[home], 0)]:
        print(f"redriven {count} message(s) to {url}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


async def _last_errors(settings: Any, upload_ids: list[str]) -> dict[str, str]:
    """Each upload's last error from upload_history, when the database can be reached; a DLQ
    can be looked at without it (the messages' own reasons are shown then)."""
    from worker.postgres.uploads import UploadHistory
    from worker.resources import open_database

    if not any(upload_ids):
        return {}
    try:
        async with open_database(settings) as database, database.connection() as conn:
            return await UploadHistory(conn).last_errors(upload_ids)
    except OnboardingError as exc:
        print(
            f"note: upload_history not consulted ({exc}); showing the messages' own reasons",
            file=sys.stderr,
        )
        return {}


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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# What each command needs from the environment, for its --help.
_AWS = "AWS credentials and region, found as by any AWS tool (AWS_ENDPOINT_URL: a local stack)"
_DATABASE = "RDS_SECRET_NAME, DATABASE_SSL_MODE, DATABASE_SSL_ROOT_CERT (the database)"


def _needs(*lines: str) -> str:
    return "settings (environment variables; README.md, Configuration):\n" + "\n".join(
        f"  {line}" for line in lines
    )


def _version() -> str:
    try:
        return importlib.metadata.version("vendor-onboarding")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    # --log-level is accepted before and after the command; SUPPRESS keeps a command's parser
    # from resetting a level given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING or ERROR (default INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="vendor-onboarding",
        description="Turn vendors' product CSV uploads in S3 into catalogue data.",
        epilog="Exit codes: 0 ok, 1 the operation failed or the configuration is wrong, "
        "2 usage error. 'vendor-onboarding COMMAND --help' says what a command needs.",
        parents=[common],
    )
    parser.set_defaults(log_level="INFO")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str, *needs: str) -> Any:
        return commands.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, 79),
            epilog=_needs(*needs) if needs else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )

    run = command(
        "run",
        "consume the ingest queue (the worker)",
        "Run the worker: receive S3 notifications from the ingest queue and stage each file "
        "in DynamoDB (and, with VALIDATION_QUEUE_URL, run the validation stage too), until "
        "SIGTERM or SIGINT. Serves /healthz/live and /healthz/ready on HEALTH_PORT.",
        "required: INGEST_QUEUE_URL",
        _DATABASE,
        _AWS,
        "DYNAMODB_TABLE, DLQ_URL, METRICS_NAMESPACE",
        "VALIDATION_QUEUE_URL with ERROR_QUEUE_URL (and NOTICE_TOPIC_ARN, VALIDATION_DLQ_URL): "
        "the validation stage",
        "FILES_IN_FLIGHT, BATCHES_IN_FLIGHT, VISIBILITY_TIMEOUT_SECONDS, SHUTDOWN_GRACE_SECONDS",
        "HEALTH_PORT; ECS_AGENT_URI (set by ECS: scale-in protection while files are in flight)",
    )
    run.add_argument(
        "--drain", action="store_true", help="exit once the queue is empty and no work is left"
    )
    run.set_defaults(handler=_run)

    migrate = command(
        "migrate",
        "apply database migrations",
        "Apply the schema migrations (worker/postgres/migrations/*.sql) that the database "
        "has not seen yet, in order.",
        _DATABASE,
        _AWS,
    )
    migrate.set_defaults(handler=_migrate)

    uploads = command(
        "uploads",
        "list recent uploads from upload_history",
        "List the most recent uploads recorded in upload_history, newest first, with their "
        "counts and last error.",
        _DATABASE,
        _AWS,
    )
    uploads.add_argument("--status", choices=STATUSES, help="only uploads in this status")
    uploads.add_argument("--vendor", help="only this vendor's uploads")
    uploads.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="at most N rows (50)"
    )
    uploads.set_defaults(handler=_uploads)

    health = command(
        "healthcheck",
        "ask the running worker's health endpoint (for HEALTHCHECK)",
        "Ask the worker running on this host whether it is live (its receive loop turns) or "
        "ready (the database and the queue answer); exit 0 or 1.",
        "HEALTH_PORT (unless --port is given)",
    )
    health.add_argument(
        "check", nargs="?", choices=("live", "ready"), default="live", help="(live)"
    )
    health.add_argument("--port", type=_port, help="default: HEALTH_PORT (8080)")
    health.add_argument(
        "--timeout", type=_seconds, default=5.0, metavar="SECONDS", help="(5 seconds)"
    )
    health.set_defaults(handler=_healthcheck)

    dlq = command(
        "dlq",
        "look at or redrive a dead-letter queue",
        "peek: list a DLQ's messages (upload, key, the queue a redrive returns each to, "
        "receives, age, last error) and consume nothing. redrive: move them back, sending "
        "each before deleting it: an S3 event to the ingest queue, a validation job to the "
        "validation queue, anything else to the queue whose DLQ it is in. --queue chooses "
        "the DLQ: the ingest queue's (DLQ_URL) or the validation queue's (VALIDATION_DLQ_URL). "
        "Needs AWS access only; the last errors come from upload_history when the database "
        "can be reached.",
        "required: DLQ_URL (--queue validation: VALIDATION_DLQ_URL)",
        "redrive also: INGEST_QUEUE_URL (--queue validation: VALIDATION_QUEUE_URL),",
        "  and the other stage's queue URL, if set, for that stage's messages",
        _AWS,
        "optional: " + _DATABASE,
    )
    dlq.add_argument("action", choices=("peek", "redrive"), help="peek or redrive")
    dlq.add_argument(
        "--queue",
        choices=("ingest", "validation"),
        default="ingest",
        metavar="QUEUE",
        help="ingest or validation: the DLQ of which queue (ingest)",
    )
    dlq.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="at most N messages (100)"
    )
    dlq.add_argument(
        "--dry-run", action="store_true", help="redrive: show what would move, move nothing"
    )
    dlq.set_defaults(handler=_dlq)

    validate = command(
        "validate",
        "run the validation stage for one staged upload now",
        "Run the validation stage for one staged (or validated) upload now: products, error "
        "queue, report and notice. Running it twice changes nothing.",
        "required: VALIDATION_QUEUE_URL, ERROR_QUEUE_URL",
        _DATABASE,
        _AWS,
        "DYNAMODB_TABLE; NOTICE_TOPIC_ARN (the vendor notice)",
    )
    validate.add_argument("upload_id", metavar="UPLOAD_ID", help="e.g. UPLOAD_ACME_20241105_093015")
    validate.set_defaults(handler=_validate)

    reprocess = command(
        "reprocess",
        "process one object now, even if it was staged before",
        "Stage one S3 object now, even if the same version was staged before.",
        _DATABASE,
        _AWS,
        "DYNAMODB_TABLE; VALIDATION_QUEUE_URL (queues its validation job)",
    )
    reprocess.add_argument("uri", metavar="s3://bucket/key", help="the object to stage")
    reprocess.set_defaults(handler=_reprocess)

    local = command(
        "local",
        "start or stop the embedded local stack",
        "up: start a moto server and an embedded PostgreSQL (or use --database-url), "
        "provision them like production and write the settings to point at them to "
        "$VENDOR_ONBOARDING_HOME/env. down: stop what 'up' started. Needs the 'local' extra "
        "and no settings.",
        "VENDOR_ONBOARDING_HOME: where the stack keeps its state (.local-stack)",
    )
    local.add_argument("action", choices=("up", "down"), help="up or down")
    local.add_argument(
        "--database-url",
        metavar="URL",
        help="use this PostgreSQL (postgresql://user:pass@host:port/db) instead of an "
        "embedded one; the stack works in db (vendor_onboarding when the URL names none)",
    )
    local.add_argument("--port", type=_port, help="moto server port (default: a free one)")
    local.set_defaults(handler=_local)

    demo = command(
        "demo",
        "run the whole flow locally on sample files and print a summary",
        "Start the local stack, upload four sample files, run the worker until its queues are "
        "drained and print what became of each upload; then stop the stack. Needs the "
        "'local' extra and no settings.",
        "VENDOR_ONBOARDING_HOME: where the stack keeps its state (.local-stack)",
    )
    demo.add_argument("--database-url", metavar="URL", help="as for 'local up'")
    demo.add_argument("--keep", action="store_true", help="leave the local stack running")
    demo.set_defaults(handler=_demo)
    return parser


def _checked(
    convert: Callable[[str], float], accept: Callable[[float], bool], expected: str
) -> Callable[[str], Any]:
    """An argparse ``type`` that says what it expected (never an internal name)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive = _checked(int, lambda n: n >= 1, "a whole number of at least 1")
_port = _checked(int, lambda n: 0 <= n <= 65535, "a port number (0-65535)")
_seconds = _checked(float, lambda n: n > 0, "a number of seconds above 0")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int] | int] = args.handler
    try:
        outcome = handler(args)
        return outcome if isinstance(outcome, int) else asyncio.run(outcome)
    except OnboardingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
