"""Debian's kamailio as a SIP registrar and proxy for the edge's registration tests: one user with
a plain-text password (digest, realm = the To domain), bindings in memory only (so a restart
forgets them), OPTIONS without a user answered as a keep-alive, and requests to a registered user
routed to its contact (record-routed). Listens on 127.0.0.1 (UDP and TCP, one port; TLS on another
when given a certificate, with kamailio-tls-modules); started and stopped by PID."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from phoneagent.devtools.harness.demo import free_udp_port, port_free

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
USER, PASSWORD = "1001", "reg-s3cret"


def available(tls: bool = False) -> bool:
    found = shutil.which("kamailio") is not None and MODULES.is_dir()
    return found and (not tls or (MODULES / "tls.so").is_file())


CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
{tls_listen}
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
{tls_modules}
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


TLS_LISTEN = """enable_tls=yes
listen=tls:127.0.0.1:{tls_port}"""
TLS_MODULES = """loadmodule "tls.so"
modparam("tls", "config", "{tls_config}")"""
TLS_CONFIG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = {cert}
private_key = {key}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


class Kamailio:
    def __init__(self, workdir: Path, tls: tuple[Path, Path] | None = None) -> None:
        """``tls``: the certificate and key files to serve SIP over TLS with (on :attr:`tls_port`)."""
        self.workdir = workdir
        self.port = free_udp_port()  # the number after it is free over TCP too: TLS goes there
        self.tls_port = self.port + 1 if tls else 0
        self.config = workdir / "kamailio.cfg"
        tls_listen = tls_modules = ""
        if tls is not None:
            tls_config = workdir / "kamailio-tls.cfg"
            tls_config.write_text(TLS_CONFIG.format(cert=tls[0], key=tls[1]))
            tls_listen = TLS_LISTEN.format(tls_port=self.tls_port)
            tls_modules = TLS_MODULES.format(tls_config=tls_config)
        self.config.write_text(
            CONFIG.format(
                port=self.port,
                modules=MODULES,
                user=USER,
                password=PASSWORD,
                tls_listen=tls_listen,
                tls_modules=tls_modules,
            )
        )
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
        while not port_free("127.0.0.1", self.port):
            if loop.time() > deadline:
                raise RuntimeError("kamailio's port still taken after it stopped")
            await asyncio.sleep(0.05)

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def running_kamailio(workdir: Path, tls: tuple[Path, Path] | None = None) -> AsyncIterator[Kamailio]:
    kam = Kamailio(workdir, tls)
    await kam.start()
    try:
        yield kam
    finally:
        await kam.stop()
