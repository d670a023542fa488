"""``phone-agent demo``: the local stack, one scripted call against it, the conversation printed."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phoneagent.devtools.harness.scenario import DEFAULT_SCENARIO, load_scenario
from phoneagent.devtools.harness.session import Outcome, run_scenario
from phoneagent.runtime.stack import Stack

# Ports handed out here for SIP listeners lie below the kernel's ephemeral range: an outgoing
# connection or a listener on port 0 anywhere on the machine can take an ephemeral port between
# the check here and the listener's own bind (a baresip peer once lost the TCP port after its
# SIP port, where it puts SIP over TLS, that way).
LISTEN_PORTS = (20000, 32000)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def port_free(host: str, port: int, kind: int = socket.SOCK_DGRAM) -> bool:
    """Whether ``port`` can be bound on ``host`` right now (``kind``: SOCK_DGRAM or SOCK_STREAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_port(host: str = "127.0.0.1", *, span: int = 2) -> int:
    """A port nothing listens on right now, over UDP or TCP (SIP listens on both with one number),
    and the ``span - 1`` numbers after it free over TCP too (a SIP peer may put TLS on the next
    one); below the ephemeral range where that leaves room, else any free ephemeral port."""
    low, high = LISTEN_PORTS[0], min(LISTEN_PORTS[1], _ephemeral_low())
    pick = random.SystemRandom()
    for attempt in range(200):
        if high - low > span and attempt < 150:
            port = pick.randrange(low, high - span)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, 0))
                port = int(u.getsockname()[1])
        if port_free(host, port, socket.SOCK_DGRAM) and all(
            port_free(host, port + i, socket.SOCK_STREAM) for i in range(span)
        ):
            return port
    raise OSError("no free port")


def demo_env(data_dir: Path, sip_port: int) -> dict[str, str]:
    return {
        "PA_SIP_PORT": str(sip_port),
        "PA_SIP_PORT_FALLBACK": "0",  # the caller dials this port: fail rather than move
        "PA_DATABASE_URL": f"sqlite:///{(data_dir / 'appointments.sqlite3').resolve()}",
        "PA_POLICY_DB": str((data_dir / "policy.sqlite3").resolve()),
        "PA_RECORDS_DB": str((data_dir / "records.sqlite3").resolve()),
        "PA_RECORDING_DIR": str((data_dir / "recordings").resolve()),
        "PA_GRPC_PORT": "0",
        "PA_WEB_PORT": "0",  # the browser page is not used; never clash with a running stack
        "PA_CONSOLE_PORT": "0",  # nor the operator console
        "PA_TTS_ENGINE": "piper",
        "PA_TTS_ENGINES": "piper",
    }


@contextmanager
def demo_stack(
    data_dir: Path, ready_timeout: float = 300.0, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Stack, str]]:
    """The local stack for scripted calls, its data in ``data_dir`` (``extra_env`` on top of
    :func:`demo_env`): started, with the databases the checks read set in this process's
    environment; yields it and the SIP URI to dial; stopped on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**demo_env(data_dir, free_udp_port()), **(extra_env or {})}
    stack = Stack(data_dir, env=env)
    try:
        stack.start(ready_timeout=ready_timeout)
        assert stack.nats is not None
        os.environ.update({k: env[k] for k in ("PA_DATABASE_URL", "PA_POLICY_DB")})
        yield stack, f"sip:agent@127.0.0.1:{env['PA_SIP_PORT']}"
    finally:
        stack.stop()


def run_demo(
    data_dir: Path,
    scenario_name: str = DEFAULT_SCENARIO,
    wav: Path | None = None,
    ready_timeout: float = 300.0,
) -> tuple[int, Outcome | None]:
    """Start the stack, play the scenario, stop the stack. Exit code 0 only when everything passed."""
    scenario = load_scenario(scenario_name)
    with demo_stack(data_dir, ready_timeout) as (stack, target):
        assert stack.nats is not None
        outcome = asyncio.run(
            run_scenario(
                scenario,
                target=target,
                nats_url=stack.nats.url,
                wav=wav or data_dir / f"{scenario.name}.wav",
                bus_auth=stack.nats.auth("harness"),
            )
        )
    return (0 if outcome.passed else 1), outcome
