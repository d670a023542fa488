"""A small OpenAI-compatible chat server on 127.0.0.1 (aiohttp), for client tests that need no
model: ``/v1/chat/completions`` streams a fixed reply as server-sent events with usage, or,
when the last message asks to count, one piece and then nothing until the client hangs up.
``fail_next`` answers that many requests with HTTP 503 first."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

REPLY = ["We open ", "at nine ", "on weekdays."]


class OpenAIStandIn:
    def __init__(self) -> None:
        self.fail_next = 0
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        hang = "count" in body["messages"][-1]["content"].lower()
        pieces = REPLY[:1] if hang else REPLY[: body["max_tokens"]]
        for piece in pieces:
            await self._event(response, {"choices": [{"delta": {"content": piece}, "finish_reason": None}]})
        if hang:
            await asyncio.Event().wait()  # until the client closes the connection (cancels us)
        finish = "stop" if len(pieces) == len(REPLY) else "length"
        await self._event(response, {"choices": [{"delta": {}, "finish_reason": finish}]})
        usage = {"prompt_tokens": 12, "completion_tokens": len(pieces)}
        await self._event(response, {"choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response

    @staticmethod
    async def _event(response: web.StreamResponse, event: dict[str, Any]) -> None:
        await response.write(f"data: {json.dumps(event)}\n\n".encode())
