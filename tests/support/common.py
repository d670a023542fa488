"""Helpers shared by the tests: waiting on conditions, quiet stand-in stage sessions, word errors,
replica subprocesses, the CPU stack environment, policy's signing key and signed approvals."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from phoneagent.runtime import approvals, dial_approvals
from phoneagent.runtime.approvals import Grant, Signer
from phoneagent.runtime.stack import readyz
from phoneagent.v1 import policy_pb2

# The tests' policy key pair (made once per test process, removed at its exit): test policy
# services sign with it and test edges trust its public key.
_KEYS = tempfile.TemporaryDirectory(prefix="pa-test-keys-")
SIGNING_KEY_FILE, PUBLIC_KEY_FILE = (str(p) for p in approvals.ensure_key_pair(Path(_KEYS.name)))
SIGNER = Signer.from_file(SIGNING_KEY_FILE)
REPLICA_ENV = {"PA_HEARTBEAT_S": "0.25", "PA_DEAD_AFTER_S": "1.0", "PA_DRAIN_TIMEOUT_S": "0.5"}


class QuietSession:
    """A stage session that does nothing (stands in for ASR, LLM, TTS or policy in a test)."""

    async def start(self) -> None:
        return None

    async def close(self, reason: str) -> None:
        return None


async def quiet_session(claim: Any, taken_over: bool) -> QuietSession:
    """A :class:`~phoneagent.runtime.sessions.SessionHost` factory of quiet sessions."""
    return QuietSession()


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def repeat_until_seen(send: Callable[[], Awaitable[None]], seen: Callable[[], Any], what: str) -> None:
    """Send again (up to 50 times, 0.1 s apart) until ``seen()`` holds: a subscription that has
    just been made may miss the first message."""
    for _ in range(50):
        await send()
        try:
            await wait_for(seen, timeout=0.1)
            return
        except AssertionError:
            continue
    raise AssertionError(f"{what} never seen")


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference word count) after lower-casing and removing punctuation."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)


def spawn_replica(
    cmd: list[str], env: dict[str, str], url: str, replica: str, tmp: Path, **extra: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a service replica process (fast heartbeats) that writes its HTTP port to a file."""
    status = tmp / f"{replica}.port"
    full = dict(env, PA_NATS_URL=url, PA_SERVICE_REPLICA_ID=replica, PA_STATUS_FILE=str(status))
    full.update(REPLICA_ENV)
    full.update(extra)  # may override REPLICA_ENV (e.g. the production heartbeat defaults)
    with (tmp / f"{replica}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *cmd], env=full, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc, status


async def wait_replica_ready(status: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """The replica's HTTP port once its /readyz says ready."""

    def ready() -> int:
        assert proc.poll() is None, f"replica exited with {proc.returncode}"
        if status.is_file() and status.read_text().strip():
            port = int(status.read_text())
            return port if readyz(port).get("ready") else 0
        return 0

    return int(await wait_for(ready, timeout, 0.05))


def cpu_stack_env(data: Path, **extra: str) -> dict[str, str]:
    """Environment for a local stack in tests: files under ``data``, Piper voice, any gRPC port."""
    return {
        "PA_POLICY_DB": str(data / "policy.sqlite3"),
        "PA_DATABASE_URL": f"sqlite:///{data / 'appts.sqlite3'}",
        "PA_RECORDS_DB": str(data / "records.sqlite3"),
        "PA_RECORDING_DIR": str(data / "recordings"),
        "PA_GRPC_PORT": "0",
        "PA_CONSOLE_PORT": "0",
        "PA_TTS_ENGINE": "piper",
        "PA_TTS_ENGINES": "piper",
        **extra,
    }


async def approve_dial(
    bus: Any, call_id: str, number: str, campaign_id: str = "", signer: Signer | None = SIGNER
) -> str:
    """Store the signed one-time dial approval policy writes after allowing a dial (call
    ``call_id`` to ``number``), for tests that ask the edge to dial a SIP URI the real dial check
    would refuse; returns the decision id. ``signer``: another key, to forge one."""
    decision_id = uuid.uuid4().hex
    await dial_approvals.approve(bus.jetstream(), signer, decision_id, call_id, number, campaign_id)
    return decision_id


def signed(
    action: str,
    call_id: str,
    target: str = "",
    decision: str = "allow",
    *,
    ttl_s: float = 60.0,
    decision_id: str = "",
    signer: Signer = SIGNER,
) -> policy_pb2.Approval:
    """An approval as policy signs it (``ttl_s`` < 0: one that has expired)."""
    expires = approvals.now_ms() + int(ttl_s * 1000)
    return signer.sign(Grant(action, decision_id or uuid.uuid4().hex, call_id, target, decision, expires))
