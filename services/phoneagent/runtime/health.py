"""Per-service HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

A tiny asyncio HTTP/1.1 server (GET only, no keep-alive): it has three fixed routes and
must not pull a web framework into every service.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)
MAX_REQUEST = 8192


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        live: Callable[[], bool],
        ready: Callable[[], bool],
        status: Callable[[], dict[str, object]],
    ) -> None:
        self.host = host
        self.port = port
        self._live = live
        self._ready = ready
        self._status = status
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            if len(head) > MAX_REQUEST:
                raise ValueError("request too large")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                raise ValueError("bad request line")
            method, target = parts[0], parts[1].split("?", 1)[0]
            if method != "GET":
                await self._send(writer, 405, b"method not allowed\n", "text/plain")
            elif target == "/metrics":
                await self._send(writer, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif target == "/healthz":
                ok = self._live()
                await self._send(writer, 200 if ok else 503, b"ok\n" if ok else b"not live\n", "text/plain")
            elif target == "/readyz":
                ok = self._ready()
                body = json.dumps({"ready": ok, **self._status()}).encode()
                await self._send(writer, 200 if ok else 503, body, "application/json")
            else:
                await self._send(writer, 404, b"not found\n", "text/plain")
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            ConnectionError,
        ):
            try:
                await self._send(writer, 400, b"bad request\n", "text/plain")
            except Exception:
                pass
        except Exception as exc:
            log.error("health endpoint failed", exc_info=exc)
        finally:
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, code: int, body: bytes, ctype: str) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            503: "Service Unavailable",
        }[code]
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
