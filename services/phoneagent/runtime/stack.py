"""The local stack: nats-server plus each service as its own OS process.

``phone-agent up`` starts nats-server (JetStream, data under ``--data-dir``) on 127.0.0.1,
with one NATS user per service (passwords under ``<data dir>/nats/auth``, see
:mod:`phoneagent.runtime.bus_auth`), creates the JetStream streams as the operator's user,
makes policy's approval signing key under ``<data-dir>/keys`` on first start (owner-only; policy
gets the private key, the edge the public one), then starts every service, each given only its
own user's password file, waits until each reports ready on ``/readyz``, prints their status,
and on Ctrl-C (or SIGTERM) stops the services, then nats-server — no orphans: each child runs in
its own process group and is killed if it does not exit in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from phoneagent.runtime import bus_auth, streams
from phoneagent.runtime.approvals import ensure_key_pair
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import Unavailable
from phoneagent.runtime.natsserver import NatsServer

SERVICES = ("policy", "records", "asr", "llm", "tts", "edge")


def cpu_voice(env: dict[str, str]) -> None:
    """The local stack runs on CPU, where Piper reaches first audio in ~0.25 s and Kokoro in ~2 s
    (README, ``devtools.tts_bench``): it speaks with Piper unless ``PA_TTS_ENGINE`` says otherwise
    (``kokoro`` for the agent file's voice)."""
    if "PA_TTS_ENGINE" not in env:
        env["PA_TTS_ENGINE"] = "piper"
        env.setdefault("PA_TTS_ENGINES", "piper")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    status_file: Path
    log_path: Path
    port: int = 0
    ready: bool = False


@dataclass
class Stack:
    data_dir: Path
    services: tuple[str, ...] = SERVICES
    env: dict[str, str] = field(default_factory=dict)
    nats: NatsServer | None = None
    children: list[Child] = field(default_factory=list)

    def start(self, ready_timeout: float = 300.0, out: object = sys.stdout) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.nats = NatsServer(self.data_dir / "nats")
        url = self.nats.start()
        _say(out, f"nats-server      {url} (JetStream in {self.data_dir / 'nats'})")
        provision(url, self.nats.auth(bus_auth.OPERATOR))
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        for name in self.services:
            self.children.append(self._spawn(name, url, logs))
        self.wait_ready(ready_timeout)

    def _spawn(self, name: str, url: str, logs: Path) -> Child:
        status = self.data_dir / f"{name}.port"
        status.unlink(missing_ok=True)
        env = dict(os.environ)
        env.update(
            {
                "PA_NATS_URL": url,
                "PA_STATUS_FILE": str(status),
                "PA_HTTP_PORT": "0",
                "PA_SERVICE_REPLICA_ID": f"{name}-local",
                "PA_LOG_FORMAT": "text",
                "PA_DRAIN_TIMEOUT_S": env.get("PA_DRAIN_TIMEOUT_S", "3"),
            }
        )
        cpu_voice(env)
        env.update(self._keys(name))
        env.update(self.env)
        assert self.nats is not None
        env.update(self.nats.auth(name).env())  # this service's own NATS user, nobody else's
        log_path = logs / f"{name}.log"
        with log_path.open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "phoneagent.cli", "serve", name],
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Child(name, proc, status, log_path)

    def _keys(self, name: str) -> dict[str, str]:
        """Where policy finds its signing key and the edge policy's public key (unless set)."""
        private, public = ensure_key_pair(self.data_dir / "keys")
        if name == "policy" and not os.environ.get("PA_POLICY_SIGNING_KEY_FILE"):
            return {"PA_POLICY_SIGNING_KEY_FILE": str(private)}
        if name == "edge" and not os.environ.get("PA_APPROVAL_PUBLIC_KEY_FILES"):
            return {"PA_APPROVAL_PUBLIC_KEY_FILES": str(public)}
        return {}

    def restart(self, name: str, ready_timeout: float = 120.0, stop_timeout: float = 30.0) -> None:
        """Stop one service gracefully (SIGTERM; SIGKILL after ``stop_timeout``) and start a new
        process of it on the same NATS server and data, then wait until it is ready."""
        if self.nats is None or not self.nats.url:
            raise Unavailable("the stack is not running")
        old = next((c for c in self.children if c.name == name), None)
        if old is None:
            raise Unavailable(f"no service {name} in this stack")
        if old.proc.poll() is None:
            _signal_group(old.proc, signal.SIGTERM)
        _reap(old.proc, stop_timeout)
        self.children[self.children.index(old)] = self._spawn(name, self.nats.url, self.data_dir / "logs")
        self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [c for c in self.children if not c.ready]
        while pending and time.monotonic() < deadline:
            for c in pending:
                if c.proc.poll() is not None:
                    tail = c.log_path.read_text(errors="replace")[-1500:]
                    raise Unavailable(f"service {c.name} exited with code {c.proc.returncode}:\n{tail}")
                if not c.port and c.status_file.is_file():
                    c.port = int(c.status_file.read_text().strip() or 0)
                if c.port and readyz(c.port).get("ready"):
                    c.ready = True
            pending = [c for c in self.children if not c.ready]
            time.sleep(0.1)
        if pending:
            raise Unavailable("not ready in time: " + ", ".join(c.name for c in pending))

    def status(self) -> list[dict[str, object]]:
        return [
            {"service": c.name, "pid": c.proc.pid, "port": c.port, **readyz(c.port)} for c in self.children
        ]

    def stop(self, timeout: float = 15.0) -> None:
        for c in reversed(self.children):
            if c.proc.poll() is None:
                _signal_group(c.proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for c in self.children:
            _reap(c.proc, max(0.1, deadline - time.monotonic()))
        if self.nats is not None:
            self.nats.stop()


def provision(url: str, auth: bus_auth.BusAuth, timeout: float = 30.0) -> None:
    """Create the JetStream streams and buckets as ``auth``'s user before any service starts,
    so a stack of services none of which may create them (``--only records``) still starts."""

    async def run() -> None:
        bus = Bus("stack")
        try:
            await bus.connect(url, auth=auth, connect_deadline=timeout)
            await asyncio.wait_for(streams.ensure(bus.jetstream()), timeout)
        finally:
            await bus.close()

    failure: list[BaseException] = []

    def in_thread() -> None:  # its own event loop: the caller may be running one
        try:
            asyncio.run(run())
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=in_thread, name="stack-provision")
    worker.start()
    worker.join(timeout + 5.0)
    if worker.is_alive() or failure:
        raise Unavailable(
            f"could not create the JetStream streams ({type(failure[0]).__name__ if failure else 'timeout'})"
        )


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for a signalled child; kill its process group when it outlives ``timeout``."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def readyz(port: int) -> dict[str, object]:
    if not port:
        return {"ready": False}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as resp:
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        try:
            return dict(json.loads(exc.read()))
        except Exception:
            return {"ready": False}
    except Exception:
        return {"ready": False}


def _say(out: object, line: str) -> None:
    print(line, file=out, flush=True)  # type: ignore[call-overload]
