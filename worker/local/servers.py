"""Start and stop the local servers: a moto server (AWS APIs over HTTP) and an embedded
PostgreSQL (pgserver), each running in the background with its state in one directory."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from worker.core.errors import ConfigurationError
from worker.postgres.database import DatabaseCredentials


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: object, *, timeout: float, what: str) -> None:
    """Poll ``condition()`` until it is true or ``timeout`` seconds have passed."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ConfigurationError(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.05)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has exited: it is reaped if it is ours)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False  # our child (started by this process), now reaped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: it answers signals, so it runs
    return state != "Z"


def _runs_moto(pid: int) -> bool:
    """Whether ``pid`` is a moto server (a pid file may outlive its process, and the number be
    reused by another): its command line names moto.server, where /proc tells."""
    if not _pid_alive(pid):
        return False
    try:
        return b"moto.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc on this system: trust the pid file
    except OSError:
        return False


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclass(frozen=True)
class MotoServer:
    """A moto server in its own process (and session, so it outlives the command)."""

    state_dir: Path

    @property
    def _pid_file(self) -> Path:
        return self.state_dir / "moto.pid"

    @property
    def _port_file(self) -> Path:
        return self.state_dir / "moto.port"

    def endpoint(self) -> str | None:
        """The URL of the running server, or None."""
        try:
            pid = int(self._pid_file.read_text())
            port = int(self._port_file.read_text())
        except (OSError, ValueError):
            return None
        url = f"http://127.0.0.1:{port}"
        return url if _pid_alive(pid) and _answers(f"{url}/moto-api/data.json") else None

    def start(self, port: int | None = None) -> str:
        if (running := self.endpoint()) is not None:
            return running
        self.state_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        with open(self.state_dir / "moto.log", "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._pid_file.write_text(str(process.pid))
        self._port_file.write_text(str(port))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                raise ConfigurationError(
                    f"moto server exited with {process.returncode}; see {self.state_dir}/moto.log"
                )
            return _answers(f"{url}/moto-api/data.json")

        wait_until(ready, timeout=30, what="moto server")
        return url

    def stop(self, *, timeout: float = 10.0) -> bool:
        """Stop the server and return once it has exited: SIGTERM, then SIGKILL after
        ``timeout`` seconds. False when no server was running (a stale pid file is removed)."""
        try:
            pid = int(self._pid_file.read_text())
        except (OSError, ValueError):
            return False
        running = _runs_moto(pid)
        if running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not _wait_for_exit(pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if not _wait_for_exit(pid, 10):
                    raise ConfigurationError(f"moto server (pid {pid}) did not exit")
        self._pid_file.unlink(missing_ok=True)
        self._port_file.unlink(missing_ok=True)
        return running


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A PostgreSQL started from the ``pgserver`` package; it listens on a Unix socket only."""

    state_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    def start(self) -> DatabaseCredentials:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            try:
                from pgserver.postgres_server import get_server
            except ImportError:
                raise ConfigurationError(
                    "the embedded PostgreSQL needs the 'local' extra "
                    "(pip install 'vendor-onboarding[local]'), or pass --database-url"
                ) from None
            server = get_server(str(self.data_dir.resolve()), cleanup_mode=None)
            server.ensure_postgres_running()  # the handle is cached: start it if it was stopped
        return DatabaseCredentials(
            username="postgres",
            password="",
            host=str(self.data_dir.resolve()),
            port=5432,
            dbname="postgres",
        )

    def stop(self) -> bool:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
        wait_until(lambda: not _pid_alive(pid), timeout=30, what="PostgreSQL shutdown")
        return True


def database_named_in(url: str) -> str | None:
    """The database a ``postgresql://`` URL names, or None when its path is empty."""
    return unquote(urlsplit(url).path.lstrip("/")) or None


def credentials_from_url(url: str) -> DatabaseCredentials:
    """``postgresql://user:password@host:port/dbname`` (``?host=/socket/dir`` allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigurationError("the database URL must start with postgresql://")
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    return DatabaseCredentials(
        username=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        host=unquote(query.get("host") or parts.hostname or "127.0.0.1"),
        port=parts.port or 5432,
        dbname=database_named_in(url) or "postgres",
    )
