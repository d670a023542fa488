"""HTTP side of browser calls: the page, signalling and live events (aiohttp).

Routes (mounted on their own application, PA_WEB_HOST:PA_WEB_PORT):

* ``GET /`` and ``GET /static/*``: the page.
* ``GET /api/config``: ``{"token_required": bool}``.
* ``POST /api/offer`` ``{"sdp": ..., "type": "offer"}`` -> ``{"call_id", "sdp", "type", "events_key"}``.
* ``POST /api/hangup`` ``{"call_id": ...}``.
* ``GET /api/events?call_id=..&key=..``: WebSocket of the call's live events (see ``events.py``).

When PA_WEB_TOKEN is set the two POST routes need ``Authorization: Bearer <token>`` (else
401). The events socket needs the per-call key that only the offer's answer carries.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.edge.webrtc.call import RecordingFactory, WebRtcCall
from phoneagent.edge.webrtc.ice import pin_host_addresses
from phoneagent.edge.webrtc.settings import WebRtcSettings
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
GATEWAY_KEY: web.AppKey[WebRtcGateway] = web.AppKey("webrtc_gateway")
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class WebRtcGateway:
    def __init__(
        self,
        bus: Bus,
        settings: WebRtcSettings,
        on_call_started: Callable[[EdgeCall], None] | None = None,
        call_config: EdgeCallConfig | None = None,
        recording: RecordingFactory | None = None,
    ) -> None:
        self.bus = bus
        self.recording = recording
        self.settings = settings
        self.on_call_started = on_call_started
        self.call_config = call_config or EdgeCallConfig(max_duration_s=settings.max_call_duration_s)
        self.calls: dict[str, WebRtcCall] = {}
        self.tasks = TaskOwner("webrtc-gateway")
        self.accepting = True  # False once draining or closing: new offers get a 503
        pin_host_addresses(settings.ice_addresses)

    @property
    def active_calls(self) -> int:
        return len(self.calls)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get("/", self._index),
            web.static("/static", STATIC, append_version=False),
            web.get("/api/config", self._config),
            web.post("/api/offer", self._offer),
            web.post("/api/hangup", self._hangup),
            web.get("/api/events", self._events),
        ]

    def attach(self, app: web.Application) -> None:
        """Add the routes to ``app`` and close every call when it shuts down."""
        app.add_routes(self.routes())
        app[GATEWAY_KEY] = self

        async def on_shutdown(_: web.Application) -> None:
            await self.close()

        app.on_shutdown.append(on_shutdown)

    async def drain(self, timeout_s: float) -> None:
        """Refuse new calls; give calls in progress ``timeout_s`` to end, then hang up the rest."""
        self.accepting = False
        waits = [asyncio.ensure_future(call.wait_ended()) for call in self.calls.values()]
        if waits:
            log.info("draining browser calls", extra={"calls": len(waits), "timeout_s": timeout_s})
            _, late = await asyncio.wait(waits, timeout=timeout_s)
            for w in late:
                w.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for call in list(self.calls.values()):
            await call.hang_up(call_pb2.END_REASON_AGENT_HANGUP, "edge shutting down")

    async def close(self) -> None:
        """Hang up every call and wait for them to be released."""
        self.accepting = False
        for call in list(self.calls.values()):
            await call.hang_up(call_pb2.END_REASON_CANCELLED, "edge shutting down")
        await self.tasks.close(timeout=5.0)
        for call in list(self.calls.values()):
            await call.close()
        self.calls.clear()

    # --- handlers ------------------------------------------------------------------------------
    async def _index(self, _: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers=_HEADERS)

    async def _config(self, _: web.Request) -> web.Response:
        return web.json_response({"token_required": bool(self.settings.token)}, headers=_HEADERS)

    async def _offer(self, request: web.Request) -> web.Response:
        self._authorize(request)
        if not self.accepting:
            return _error(503, "shutting down")
        if len(self.calls) >= self.settings.max_calls:
            return _error(503, "too many calls")
        body = await _json_body(request)
        if body.get("type", "offer") != "offer" or not isinstance(body.get("sdp"), str):
            return _error(400, 'expected {"type": "offer", "sdp": "..."}')
        call = WebRtcCall(self.bus, self.settings, self.call_config, recording=self.recording)
        try:
            answer = await call.accept(body["sdp"])
            await call.start()
        except PhoneAgentError as exc:
            await call.hang_up(call_pb2.END_REASON_FAILED, "call setup failed")
            await call.close()
            status = 400 if exc.kind is ErrorKind.INVALID_ARGUMENT else 503
            log.warning("browser call refused", extra={"error_kind": exc.kind.name})
            return _error(status, exc.message)
        except Exception:  # a bug of ours: release the call and keep serving
            log.exception("browser call setup failed")
            await call.hang_up(call_pb2.END_REASON_FAILED, "call setup failed")
            await call.close()
            return _error(500, "call setup failed")
        self.calls[call.call_id] = call
        self.tasks.spawn(self._watch(call), f"call:{call.call_id}")
        if self.on_call_started is not None and call.edge is not None:
            self.on_call_started(call.edge)
        return web.json_response(
            {"call_id": call.call_id, "sdp": answer, "type": "answer", "events_key": call.events_key},
            headers=_HEADERS,
        )

    async def _hangup(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await _json_body(request)
        call = self.calls.get(str(body.get("call_id", "")))
        if call is None:
            return _error(404, "no such call")
        await call.hang_up(call_pb2.END_REASON_CALLER_HANGUP, "caller hung up")
        return web.json_response({"ok": True}, headers=_HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        call = self.calls.get(request.query.get("call_id", ""))
        key = request.query.get("key", "")
        if call is None or call.feed is None or not hmac.compare_digest(key, call.events_key):
            return _error(403, "unknown call or key")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        feed = call.feed
        await feed.attach(ws)
        try:
            async for msg in ws:  # the page sends nothing we act on; reading keeps the socket alive
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            feed.detach(ws)
        return ws

    # --- helpers ---------------------------------------------------------------------------------
    def _authorize(self, request: web.Request) -> None:
        token = self.settings.token
        if not token:
            return
        given = request.headers.get("Authorization", "")
        if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip(), token)):
            raise web.HTTPUnauthorized(
                text='{"error": "unauthorized"}',
                content_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def _watch(self, call: WebRtcCall) -> None:
        """Release a call once it has ended, whoever ended it."""
        try:
            await call.wait_ended()
            await asyncio.sleep(0)  # let the feed push the "ended" event it is handling
        finally:
            self.calls.pop(call.call_id, None)
            await call.close()
            log.info("browser call released", extra={"call_id": call.call_id})


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > 128 * 1024:
        raise web.HTTPRequestEntityTooLarge(max_size=128 * 1024, actual_size=request.content_length)
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(
            text='{"error": "body must be JSON"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be an object"}', content_type="application/json")
    return body


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_HEADERS)


async def run_gateway(
    bus: Bus,
    host: str,
    port: int,
    settings: WebRtcSettings,
    call_config: EdgeCallConfig | None = None,
    recording: RecordingFactory | None = None,
) -> tuple[web.AppRunner, int]:
    """Serve the gateway on its own application; returns the runner (``await runner.cleanup()``
    stops it and hangs up every call) and the bound port. The gateway is ``app[GATEWAY_KEY]``."""
    app = web.Application(client_max_size=256 * 1024)
    WebRtcGateway(bus, settings, call_config=call_config, recording=recording).attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)
