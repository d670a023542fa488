"""Audit records live in JetStream, not in the policy process: they are still there, and still
found by ``phone-agent audit``, after the policy service is stopped and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.audit_query import AuditFilter, query_audit
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.stack import readyz
from phoneagent.v1 import policy_pb2
from support.common import wait_for

pytestmark = pytest.mark.slow


class PolicyProcess:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, status: Path) -> None:
        env = {**self.env, "PA_STATUS_FILE": str(status)}
        with (self.workdir / "policy.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "phoneagent.cli", "serve", "policy"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def start(self) -> None:
        status = self.workdir / "policy.port"
        status.unlink(missing_ok=True)
        self.spawn(status)

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "policy exited"
            return status.is_file() and bool(readyz(int(status.read_text().strip() or 0)).get("ready"))

        await wait_for(ready, timeout=30, interval=0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoneagent.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_audit_survives_policy_restart(
    bus: Bus, service_env: dict[str, str], tmp_path: Path, nats_url: str
) -> None:
    env = {
        **service_env,
        "PA_POLICY_DB": str(tmp_path / "policy.sqlite3"),
        "PA_GRPC_PORT": "0",
        "PA_CONSOLE_PORT": "0",
        "PA_CALLER_ID": "+14155550100",
        "PA_CALL_WINDOW_START": "00:00",
        "PA_CALL_WINDOW_END": "23:59",
        "PA_SERVICE_REPLICA_ID": "policy-restart-t",
    }
    campaign = f"restart-{uuid.uuid4().hex[:8]}"
    check = policy_pb2.DialCheck(
        number="+12125550123", purpose="reminder", campaign_id=campaign, time_zone="America/New_York"
    )
    policy = PolicyProcess(env, tmp_path)
    try:
        await policy.start()
        first = await bus.request(subjects.dial_check(), check, policy_pb2.PolicyDecision, timeout=5)
        assert first.decision == policy_pb2.DECISION_DENY and first.rule == "consent"  # nobody agreed
        policy.stop()
        await policy.start()
        second = await bus.request(subjects.dial_check(), check, policy_pb2.PolicyDecision, timeout=5)
    finally:
        policy.stop()

    records = await query_audit(bus.jetstream(), AuditFilter(campaign_id=campaign))
    assert [r.decision_id for r in records] == [first.decision_id, second.decision_id]
    assert all(r.subject == "dial" and r.number_hint.endswith("23") for r in records)
    assert not await query_audit(
        bus.jetstream(), AuditFilter(campaign_id=campaign, decision=policy_pb2.DECISION_ALLOW)
    )

    rc, out, err = await cli(
        service_env,
        "audit",
        "--since",
        "10m",
        "--decision",
        "deny",
        "--campaign",
        campaign,
        "--nats-url",
        nats_url,
    )
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all(" deny  dial  consent " in line for line in lines), out
    assert "+12125550123" not in out and "2 decision(s)" in err
    rc, _, err = await cli(service_env, "audit", "--since", "yesterday", "--nats-url", nats_url)
    assert rc == 2 and "--since" in err
