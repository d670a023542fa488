"""``phone-agent serve edge`` as its own process: comes up (also when its SIP port is taken),
answers SIP, reports its SIP address, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from phoneagent.edge.sip import UAConfig, UserAgent

pytestmark = pytest.mark.slow


def _wait_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        assert proc.poll() is None, "edge exited early"
        time.sleep(0.05)
    raise AssertionError("edge did not become ready")


async def _options(port: str) -> int:
    ua = UserAgent(UAConfig(host="127.0.0.1", port=0))
    await ua.start()
    try:
        return (await ua.options(f"sip:agent@127.0.0.1:{port}")).status
    finally:
        await ua.close()


def test_serve_edge_process(service_env: dict[str, str], tmp_path: Path) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    busy_port = taken.getsockname()[1]
    status = tmp_path / "edge.port"
    env = dict(
        service_env,
        PA_STATUS_FILE=str(status),
        PA_SIP_PORT=str(busy_port),
        PA_DRAIN_TIMEOUT_S="1",
        PA_RTP_PORT_MIN="43000",
        PA_RTP_PORT_MAX="43999",
    )
    log = (tmp_path / "edge.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "phoneagent.cli", "serve", "edge"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        http_port = int(_wait_file(status, proc, 30))
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as resp:
            info = json.loads(resp.read())
        assert info["ready"] and info["service"] == "edge" and info["active_calls"] == 0
        host, _, sip_port = info["sip"].rpartition(":")
        assert host == "127.0.0.1" and int(sip_port) not in (0, busy_port)
        assert asyncio.run(_options(sip_port)) == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        taken.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert "sip port taken" in (tmp_path / "edge.log").read_text()
