"""Debian's kamailio as a SIP registrar and proxy for the edge's registration tests: one user with
a plain-text password (digest, realm = the To domain), bindings in memory only (so a restart
forgets them), OPTIONS without a user answered as a keep-alive, and requests to a registered user
routed to its contact (record-routed). Listens on 127.0.0.1 (UDP and TCP, one port); started and
stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from phoneagent.devtools.harness.demo import free_udp_port

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
USER, PASSWORD = "1001", "reg-s3cret"


def available() -> bool:
    return shutil.which("kamailio") is not None and MODULES.is_dir()


CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
auto_aliases=no
alias="127.0.0.1:{port}"
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "textops.so"
loadmodule "siputils.so"
modparam("usrloc", "db_mode", 0)
modparam("registrar", "min_expires", 1)
modparam("registrar", "max_expires", 3600)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (is_method("OPTIONS") && $rU == $null) {{ sl_send_reply("200", "Keepalive"); exit; }}
    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
        if ($au != "{user}") {{ sl_send_reply("403", "Forbidden"); exit; }}
        if (!save("location")) {{ sl_reply_error(); }}
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK") && t_check_trans()) {{ t_relay(); }}
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


class Kamailio:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_udp_port()
        self.config = workdir / "kamailio.cfg"
        self.config.write_text(CONFIG.format(port=self.port, modules=MODULES, user=USER, password=PASSWORD))
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    async def start(self) -> None:
        log = self._log_file()
        self.starts += 1
        self.proc = await asyncio.create_subprocess_exec(
            "kamailio",
            "-f",
            str(self.config),
            "-DD",  # stay in the foreground: the PID we hold is the main process
            "-E",
            "-Y",
            str(self.workdir),
            "-w",
            str(self.workdir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not await self._listening():
            if self.proc.returncode is not None:
                raise RuntimeError(f"kamailio exited ({self.proc.returncode}); see {self.workdir}")
            if loop.time() > deadline:
                raise RuntimeError("kamailio did not start listening")
            await asyncio.sleep(0.05)

    def _log_file(self) -> BinaryIO:
        return (self.workdir / f"kamailio-{self.starts}.log").open("wb")

    async def _listening(self) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        writer.close()
        return True

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
        # its children share the ports; wait until they are free again
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not _port_free(self.port):
            if loop.time() > deadline:
                raise RuntimeError("kamailio's port still taken after it stopped")
            await asyncio.sleep(0.05)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.asynccontextmanager
async def running_kamailio(workdir: Path) -> AsyncIterator[Kamailio]:
    kam = Kamailio(workdir)
    await kam.start()
    try:
        yield kam
    finally:
        await kam.stop()
