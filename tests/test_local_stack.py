"""``local up`` and ``local down`` as an operator runs them: the database the URL names, an
env file a shell can source, and a moto server that is gone when ``down`` says it stopped."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import psutil

from tests.test_cli import cli, database_url
from worker.local.provision import connect
from worker.local.servers import MotoServer
from worker.local.stack import write_env
from worker.postgres.database import DatabaseCredentials


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_local_up_uses_the_database_the_url_names_and_down_waits_for_moto(
    tmp_path: Path, pg_server: DatabaseCredentials, scratch_database: str
) -> None:
    home = tmp_path / "stack"
    env = {"VENDOR_ONBOARDING_HOME": str(home)}

    up = cli("local", "up", "--database-url", database_url(pg_server, scratch_database), env=env)

    assert up.returncode == 0, up.stderr
    # The database the URL names was created, migrated and seeded.
    conn = await connect(dataclasses.replace(pg_server, dbname=scratch_database))
    try:
        vendors = await conn.fetch("SELECT vendor_id FROM vendors ORDER BY vendor_id")
    finally:
        await conn.close()
    assert [v["vendor_id"] for v in vendors] == ["ACME", "GLOBEX", "INITECH"]
    # The env file: one line per variable, each once, ending with a newline.
    text = (home / "env").read_text()
    assert text.endswith("\n")
    names = [line.removeprefix("export ").split("=", 1)[0] for line in text.splitlines()]
    assert all(line.startswith("export ") for line in text.splitlines())
    assert len(names) == len(set(names))
    assert {
        "AWS_ENDPOINT_URL",
        "INGEST_QUEUE_URL",
        "DLQ_URL",
        "VALIDATION_QUEUE_URL",
        "VALIDATION_DLQ_URL",
        "DATABASE_SSL_MODE",
    } <= set(names)
    assert "export AWS_SECRET_ACCESS_KEY=testing\n" in text
    moto_pid = int((home / "moto.pid").read_text())
    assert running(moto_pid)

    down = cli("local", "down", env=env)

    assert down.returncode == 0, down.stderr
    assert down.stdout == "stopped: moto server\n"
    assert not running(moto_pid)  # gone when down returns: no waiting here
    assert not (home / "moto.pid").exists()
    assert cli("local", "down", env=env).stdout == "nothing was running\n"


# A process that ignores SIGTERM, named like a moto server; says "ready" once it does.
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(60)
"""


def test_down_kills_a_moto_server_that_ignores_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STUBBORN, "moto.server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        (tmp_path / "moto.pid").write_text(str(process.pid))
        (tmp_path / "moto.port").write_text("1")

        assert MotoServer(tmp_path).stop(timeout=0.5) is True

        assert not running(process.pid)
        assert not (tmp_path / "moto.pid").exists()
    finally:
        process.kill()
        process.wait()


def test_down_leaves_a_process_that_is_not_moto_alone(tmp_path: Path) -> None:
    # A stale pid file whose number now belongs to another program.
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "moto.pid").write_text(str(process.pid))

        assert MotoServer(tmp_path).stop(timeout=0.5) is False

        assert running(process.pid)
        assert not (tmp_path / "moto.pid").exists()
    finally:
        process.kill()
        process.wait()


def test_the_env_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "env"
    write_env(path, {"A": "1", "B": "two words", "C": "3"})
    write_env(path, {"A": "1", "B": "it's"})

    assert path.read_text() == "export A=1\nexport B='it'\"'\"'s'\n"
