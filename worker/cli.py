"""The ``vendor-onboarding`` command: the worker, migrations, the local stack and the demo.

Exit codes: 0 ok, 1 the operation failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from worker import logs
from worker.errors import OnboardingError

log = logging.getLogger("worker.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _settings() -> Any:
    from worker.settings import Settings

    return Settings()


async def _run(args: argparse.Namespace) -> int:
    from worker.consumer import Consumer, check_queue
    from worker.runtime import Runtime

    settings = _settings()
    queue_url = settings.require_ingest_queue()
    async with Runtime.open(settings) as rt:
        await check_queue(rt, queue_url)
        consumer = Consumer(rt)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        log.info("worker started", extra={"queue": queue_url, "drain": args.drain})
        await consumer.run(drain=args.drain)
    log.info("worker stopped")
    return EXIT_OK


async def _migrate(args: argparse.Namespace) -> int:
    from worker import migrations
    from worker.runtime import Runtime

    async with Runtime.open(_settings()) as rt, rt.database.connection() as conn:
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
    expected = {"staged", "rejected"}
    return EXIT_OK if all(row.status in expected for row in rows) else EXIT_FAILED


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    handler: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.handler
    try:
        return asyncio.run(handler(args))
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
