"""The container image's entry point: one image, two runtimes.

On Lambda (``AWS_LAMBDA_RUNTIME_API`` is set) it starts the Lambda runtime interface client
with the handler (``worker.runtimes.lambda_handler.handler`` unless the function's image command
names another); elsewhere (ECS) it runs the ``vendor-onboarding`` command given (default: ``run``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

LAMBDA_HANDLER = "worker.runtimes.lambda_handler.handler"


def command(environ: Mapping[str, str], args: Sequence[str]) -> list[str]:
    """The command line this container runs, for its environment and arguments."""
    if environ.get("AWS_LAMBDA_RUNTIME_API"):
        named = args[0] if len(args) == 1 and "." in args[0] else None
        return [sys.executable, "-m", "awslambdaric", named or LAMBDA_HANDLER]
    return [sys.executable, "-m", "worker.runtimes.cli", *(args or ["run"])]


def main() -> None:
    argv = command(os.environ, sys.argv[1:])
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
