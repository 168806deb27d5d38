"""Measuring one variant's process alone.

``python -m bench.measure USAGE_JSON -- COMMAND...`` runs COMMAND as its own child, waits for
it with ``os.wait4`` and writes that child's wall time, user+sys CPU and peak RSS to USAGE_JSON.

Why a launcher: on Linux a child's ``ru_maxrss`` starts from the RSS of the process that
spawned it (``exec`` carries the old address space's high-water mark over). The benchmark's
own process holds clients and CSV bytes, so its children would all report at least its RSS;
this launcher is a bare interpreter of a few MB, so the figure is the variant's own.

The variants call :class:`Window` around their work to report what happened inside the process
(work time without interpreter start-up and imports, CPU in that window, VmHWM).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def vm_hwm_kb() -> int:
    """This process's peak RSS (``VmHWM``) in KiB, from /proc; 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Window:
    """Times a block of work inside a variant (wall and CPU) and writes a report as JSON."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._cpu_started = 0.0

    def __enter__(self) -> Window:
        self.started = time.perf_counter()
        self._cpu_started = cpu_seconds()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.seconds = time.perf_counter() - self.started
        self.cpu_seconds = cpu_seconds() - self._cpu_started

    def write(self, path: str | Path, **extra: Any) -> None:
        report = {
            "window_seconds": self.seconds,
            "window_cpu_seconds": self.cpu_seconds,
            "vm_hwm_kb": vm_hwm_kb(),
            **extra,
        }
        Path(path).write_text(json.dumps(report))


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m bench.measure USAGE_JSON -- COMMAND...", file=sys.stderr)
        return 2
    usage_path, command = Path(argv[0]), argv[2:]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    usage_path.write_text(
        json.dumps(
            {
                "returncode": process.returncode,
                "wall_seconds": wall,
                "user_seconds": usage.ru_utime,
                "system_seconds": usage.ru_stime,
                "max_rss_kb": usage.ru_maxrss,  # KiB on Linux
            }
        )
    )
    return process.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
