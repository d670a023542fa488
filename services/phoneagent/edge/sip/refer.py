"""Call transfer inside a dialog (RFC 3515): REFER the peer elsewhere and wait for the final
status its NOTIFY sipfrag reports, or take the peer's REFER, run the transfer through the
``on_refer`` handler and report progress by NOTIFY. :class:`DialogTransfer` is a base of
:class:`~phoneagent.edge.sip.dialog.Dialog`, which owns the state it uses."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from phoneagent.edge.sip.headers import NameAddr, ParseError, SipURI
from phoneagent.edge.sip.message import REASONS, SipRequest, SipResponse, make_response
from phoneagent.edge.sip.sockets import TransportError
from phoneagent.edge.sip.transaction import ServerTransaction

if TYPE_CHECKING:
    from phoneagent.edge.sip.dialog import Dialog, DialogHandlers
    from phoneagent.edge.sip.ua import UserAgent

log = logging.getLogger(__name__)


class DialogTransfer:
    """The REFER/NOTIFY half of a dialog (its state lives in Dialog)."""

    ua: UserAgent
    call_id: str
    local: NameAddr
    handlers: DialogHandlers
    ended: asyncio.Event
    _refer_waiters: list[asyncio.Future[int]]

    if TYPE_CHECKING:

        def make_request(self, method: str, body: bytes = b"", content_type: str = "") -> SipRequest: ...

        async def send(self, req: SipRequest, timeout_s: float | None = None) -> SipResponse: ...

    async def refer(self, target: SipURI | str, timeout_s: float = 32.0) -> int:
        """Blind transfer: REFER the peer to ``target`` and wait for the NOTIFY sipfrag's final status.

        Returns the final SIP status of the transfer (the REFER's own status when it is rejected,
        408 when no final NOTIFY arrives in ``timeout_s``).
        """
        req = self.make_request("REFER")
        req.headers.add("Refer-To", f"<{target}>")
        req.headers.add("Referred-By", f"<{self.local.uri}>")
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._refer_waiters.append(waiter)
        try:
            resp = await self.send(req)
            if resp.status >= 300:
                return resp.status
            return await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return 408
        finally:
            if waiter in self._refer_waiters:
                self._refer_waiters.remove(waiter)

    def _on_refer(self, req: SipRequest, txn: ServerTransaction) -> None:
        refer_to = req.headers.get("Refer-To")
        if not refer_to:
            txn.respond(make_response(req, 400, "Missing Refer-To"))
            return
        try:
            target = NameAddr.parse(refer_to).uri
        except ParseError:
            txn.respond(make_response(req, 400, "Bad Refer-To"))
            return
        if self.handlers.on_refer is None:
            txn.respond(make_response(req, 603))
            return
        txn.respond(make_response(req, 202))
        self.ua.spawn(self._run_transfer(target))

    async def _run_transfer(self, target: SipURI) -> None:
        await self._notify_sipfrag(100, active=True)
        status = 500
        try:
            assert self.handlers.on_refer is not None
            status = int(await self.handlers.on_refer(cast("Dialog", self), target))
        except Exception:  # noqa: BLE001 - report the failure to the peer instead
            log.exception("sip refer handler failed", extra={"call_id": self.call_id})
        await self._notify_sipfrag(status, active=False)

    async def _notify_sipfrag(self, status: int, *, active: bool) -> None:
        if self.ended.is_set():
            return
        body = f"SIP/2.0 {status} {REASONS.get(status, 'Unknown')}\r\n".encode()
        req = self.make_request("NOTIFY", body, "message/sipfrag;version=2.0")
        req.headers.add("Event", "refer")
        state = "active;expires=60" if active else "terminated;reason=noresource"
        req.headers.add("Subscription-State", state)
        try:
            await self.send(req)
        except TransportError:
            log.info("sip notify not sent: transport error", extra={"call_id": self.call_id})

    def _on_notify(self, req: SipRequest, txn: ServerTransaction) -> None:
        if (req.headers.get("Event") or "").split(";")[0].strip().lower() != "refer":
            txn.respond(make_response(req, 489, "Bad Event"))
            return
        txn.respond(make_response(req, 200))
        status = _sipfrag_status(req.body)
        terminated = (req.headers.get("Subscription-State") or "").lower().startswith("terminated")
        if status is None and terminated:
            status = 500
        if status is not None and (status >= 200 or terminated):
            for waiter in self._refer_waiters:
                if not waiter.done():
                    waiter.set_result(status)


def _sipfrag_status(body: bytes) -> int | None:
    first = body.decode("utf-8", "replace").split("\n", 1)[0].strip().split()
    if len(first) >= 2 and first[0] == "SIP/2.0" and first[1].isdigit() and len(first[1]) == 3:
        return int(first[1])
    return None
