"""Our worker, exactly as ``vendor-onboarding run --drain`` runs it (``worker.runtimes.cli.main``):
settings from the environment, everything opened by ``Resources.open``, the SQS consumer draining
the queue that the uploads' S3 notifications filled, JSON logs on stderr.

The work window is read from the worker's own log records: it starts at "worker started" (after
start-up and the resource checks, just before the first receive) and ends at the last "upload …"
record (the last file finished), so it leaves out interpreter start-up and the empty receive
that ends a drain; both are in the process's wall time.

``python -m bench.worker_drain CONFIG_JSON REPORT_JSON`` (the settings come from the
environment the benchmark sets).
"""

from __future__ import annotations

import logging
import sys
import time

from bench.measure import Window, cpu_seconds
from worker.runtimes import cli


class _Milestones(logging.Handler):
    """Remembers when the worker started consuming and when each upload finished."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started: float | None = None
        self.cpu_at_start = 0.0
        self.finished: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.name == "worker.runtimes.cli" and message == "worker started":
            self.started = time.perf_counter()
            self.cpu_at_start = cpu_seconds()
        elif record.name == "worker.ingest.stage" and message.startswith("upload "):
            self.finished.append((time.perf_counter(), message.removeprefix("upload ")))


def main(argv: list[str]) -> int:
    milestones = _Milestones()
    for name in ("worker.runtimes.cli", "worker.ingest.stage"):
        logging.getLogger(name).addHandler(milestones)
    with Window() as window:
        code = cli.main(["run", "--drain"])
    if code != 0:
        return code
    outcomes = [outcome for _, outcome in milestones.finished]
    tail = 0.0
    if milestones.started is not None and milestones.finished:
        end = max(at for at, _ in milestones.finished)
        tail = window.started + window.seconds - end
        window.seconds = end - milestones.started
        window.cpu_seconds = cpu_seconds() - milestones.cpu_at_start  # the tail is idle
    window.write(
        argv[1],
        files=len(outcomes),
        outcomes={o: outcomes.count(o) for o in sorted(set(outcomes))},
        drain_tail_seconds=tail,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
