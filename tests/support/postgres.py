"""A throw-away PostgreSQL server for tests (Debian ``postgresql`` binaries, 127.0.0.1 only):
the ``pg_server`` fixture in conftest yields an admin URL, ``new_database`` makes an empty one."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import pytest

_names = count()


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a cluster (skipping the test when PostgreSQL or psycopg is missing); yields its URL."""
    initdb, postgres = _pg_binary("initdb"), _pg_binary("postgres")
    if not initdb or not postgres:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="pa-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        if (
            shutil.which("runuser") is None
            or subprocess.run(["id", "postgres"], capture_output=True).returncode
        ):
            pytest.skip("running as root and there is no postgres user to run the server")
        shutil.chown(base, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(base / "data"), "-A", "trust", "-U", "pa", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    cmd = [
        *prefix,
        postgres,
        "-D",
        str(base / "data"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-k",
        str(base),
        "-F",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://pa@127.0.0.1:{port}/postgres"
    deadline = clock.monotonic() + 30
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            break
        except psycopg.OperationalError:
            if proc.poll() is not None or clock.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("PostgreSQL did not start") from None
            clock.sleep(0.1)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def new_database(admin_url: str) -> str:
    """An empty database on the server of ``admin_url``; returns its URL."""
    import psycopg

    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return admin_url.rsplit("/", 1)[0] + "/" + name
