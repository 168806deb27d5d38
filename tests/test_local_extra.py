"""The embedded stack is development tooling: without the ``local`` extra, ``local up`` says
which extra to install."""

from __future__ import annotations

import subprocess
import sys

# Runs the CLI in a process where moto cannot be found, as after a plain `pip install .`.
WITHOUT_MOTO = """
import sys
sys.modules["moto"] = None  # what an import system without the package reports
from worker.runtimes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_local_up_without_the_extra_names_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_MOTO, "local", "up"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "the local stack needs the 'local' extra (moto not installed)" in result.stderr
    assert "pip install 'vendor-onboarding[local]'" in result.stderr
