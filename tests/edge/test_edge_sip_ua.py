"""Loopback calls: our UAC calls our UAS over UDP and TCP on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from phoneagent.edge.sip import (
    CallFailed,
    CallOutcome,
    Credentials,
    Dialog,
    DialogHandlers,
    DigestServer,
    IncomingCall,
    SipURI,
    Timers,
    UAConfig,
    UserAgent,
    answer,
    negotiated,
    offer,
)

TIMERS = Timers(t1=0.05, t2=0.4, t4=0.5)
WAIT = 3.0


@dataclass
class Callee:
    """The UAS side's behaviour, set per test."""

    action: str = "answer"  # answer | ring | reject
    code: int = 486
    srtp: str = "off"
    handlers: DialogHandlers = field(default_factory=DialogHandlers)
    calls: asyncio.Queue[IncomingCall] = field(default_factory=asyncio.Queue)
    dialogs: asyncio.Queue[Dialog] = field(default_factory=asyncio.Queue)

    async def __call__(self, call: IncomingCall) -> None:
        self.calls.put_nowait(call)
        await call.ring()
        if self.action == "answer":
            assert call.remote_sdp is not None
            local = answer(call.remote_sdp, ("PCMU", "PCMA"), address="127.0.0.1", port=40002, srtp=self.srtp)
            self.dialogs.put_nowait(await call.answer(local, self.handlers))
        elif self.action == "reject":
            await call.reject(self.code)


async def make_pair(transport: str, **uas_kwargs: Any) -> tuple[UserAgent, UserAgent, Callee]:
    callee = Callee()
    uas = UserAgent(UAConfig(transports=(transport,), timers=TIMERS, **uas_kwargs), callee)
    uac = UserAgent(UAConfig(transports=(transport,), timers=TIMERS, user="caller"))
    await uas.start()
    await uac.start()
    return uas, uac, callee


def target(uas: UserAgent, transport: str) -> str:
    host, port = uas.local_address()
    suffix = ";transport=tcp" if transport == "tcp" else ""
    return f"sip:agent@{host}:{port}{suffix}"


@pytest.fixture(params=["udp", "tcp"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[UserAgent, UserAgent, Callee, str]]:
    uas, uac, callee = await make_pair(request.param)
    yield uas, uac, callee, request.param
    await uac.close()
    await uas.close()


def local_offer(codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> Any:
    return offer("127.0.0.1", 40000, codecs)


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT)


async def test_answer_then_caller_hangs_up(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    progress: list[int] = []
    remote_bye = asyncio.Event()
    callee.handlers.on_bye = lambda d: remote_bye.set()
    dialog = await asyncio.wait_for(
        uac.call(target(uas, transport), local_offer(), on_progress=lambda s, sdp: progress.append(s)), WAIT
    )
    assert progress == [180]
    assert dialog.remote_sdp is not None
    params = negotiated(dialog.remote_sdp, dialog.local_sdp)
    assert (params.codec, params.remote_port, params.telephone_event_pt) == ("PCMU", 40002, 101)
    incoming = callee.calls.get_nowait()
    assert incoming.caller.uri.user == "caller" and incoming.callee.uri.user == "agent"
    uas_dialog = await asyncio.wait_for(callee.dialogs.get(), WAIT)
    await wait_for(uas_dialog.confirmed)  # the ACK arrived
    assert uas.active_calls == 1 and uac.active_calls == 1
    await dialog.bye()
    await wait_for(remote_bye)
    assert uas_dialog.end_reason == "remote_bye" and dialog.end_reason == "local_bye"
    assert uas.active_calls == 0 and uac.active_calls == 0


async def test_callee_hangs_up(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    ended = asyncio.Event()
    handlers = DialogHandlers(on_bye=lambda d: ended.set())
    dialog = await asyncio.wait_for(uac.call(target(uas, transport), local_offer(), handlers=handlers), WAIT)
    uas_dialog = await asyncio.wait_for(callee.dialogs.get(), WAIT)
    await uas_dialog.bye()
    await wait_for(ended)
    assert dialog.end_reason == "remote_bye"


async def test_cancel_before_answer(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    callee.action = "ring"
    ringing = asyncio.Event()
    oc = await uac.start_call(target(uas, transport), local_offer(), on_progress=lambda s, sdp: ringing.set())
    task = asyncio.ensure_future(oc.run())
    await wait_for(ringing)
    oc.cancel()
    with pytest.raises(CallFailed) as err:
        await asyncio.wait_for(task, WAIT)
    assert err.value.outcome is CallOutcome.CANCELLED and err.value.status == 487
    incoming = callee.calls.get_nowait()
    await wait_for(incoming.cancelled)
    assert uas.active_calls == 0
    with pytest.raises(CallFailed):
        await incoming.answer(local_offer())


async def test_no_answer_timeout_sends_cancel(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    callee.action = "ring"
    with pytest.raises(CallFailed) as err:
        await asyncio.wait_for(uac.call(target(uas, transport), local_offer(), timeout_s=0.3), WAIT)
    assert err.value.outcome is CallOutcome.NO_ANSWER
    await wait_for(callee.calls.get_nowait().cancelled)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (486, CallOutcome.BUSY),
        (600, CallOutcome.BUSY),
        (480, CallOutcome.NO_ANSWER),
        (603, CallOutcome.FAILED),
        (404, CallOutcome.FAILED),
    ],
)
async def test_rejections_map_to_outcomes(code: int, outcome: CallOutcome) -> None:
    uas, uac, callee = await make_pair("udp")
    callee.action, callee.code = "reject", code
    try:
        with pytest.raises(CallFailed) as err:
            await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer()), WAIT)
        assert err.value.outcome is outcome and err.value.status == code
    finally:
        await uac.close()
        await uas.close()


async def test_no_common_codec_gets_488(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    sdp = local_offer(("PCMA",))
    uas.config = UAConfig(transports=(transport,), timers=TIMERS, codecs=("PCMU",))
    with pytest.raises(CallFailed) as err:
        await asyncio.wait_for(uac.call(target(uas, transport), sdp), WAIT)
    assert err.value.status == 488 and err.value.outcome is CallOutcome.FAILED
    assert callee.calls.empty()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_digest_authenticated_invite(transport: str, algorithm: str) -> None:
    auth = DigestServer("agent.test", {"trunk": "s3cret"}, algorithm=algorithm)
    uas, uac, callee = await make_pair(transport, auth=auth)
    try:
        dialog = await asyncio.wait_for(
            uac.call(target(uas, transport), local_offer(), Credentials("trunk", "s3cret")), WAIT
        )
        await dialog.bye()
        for creds in (None, Credentials("trunk", "wrong")):
            with pytest.raises(CallFailed) as err:
                await asyncio.wait_for(uac.call(target(uas, transport), local_offer(), creds), WAIT)
            assert err.value.status == 401
        assert callee.calls.qsize() == 1
    finally:
        await uac.close()
        await uas.close()


async def test_blind_transfer_with_notify(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    asked: list[SipURI] = []

    async def transfer(d: Dialog, to: SipURI) -> int:
        asked.append(to)
        return 200

    callee.handlers.on_refer = transfer
    dialog = await asyncio.wait_for(uac.call(target(uas, transport), local_offer()), WAIT)
    status = await asyncio.wait_for(dialog.refer("sip:human@127.0.0.1:5999"), WAIT)
    assert status == 200 and asked and asked[0].user == "human" and asked[0].port == 5999
    uas_dialog = await asyncio.wait_for(callee.dialogs.get(), WAIT)
    # The other direction: the caller has no transfer handler, so the REFER is declined.
    assert await asyncio.wait_for(uas_dialog.refer("sip:x@127.0.0.1"), WAIT) == 603
    await dialog.bye()


async def test_hold_and_unhold_reach_callback(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    holds: asyncio.Queue[bool] = asyncio.Queue()
    callee.handlers.on_hold = lambda d, held: holds.put_nowait(held)
    dialog = await asyncio.wait_for(uac.call(target(uas, transport), local_offer()), WAIT)
    resp = await asyncio.wait_for(dialog.hold(True), WAIT)
    assert resp.status == 200 and await asyncio.wait_for(holds.get(), WAIT) is True
    assert dialog.remote_sdp is not None and dialog.remote_sdp.media[0].direction == "recvonly"
    await asyncio.wait_for(dialog.hold(False), WAIT)
    assert await asyncio.wait_for(holds.get(), WAIT) is False
    await dialog.bye()


async def test_options(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, _, transport = pair
    resp = await asyncio.wait_for(uac.options(target(uas, transport)), WAIT)
    assert resp.status == 200
    assert "INVITE" in resp.headers.get_all("Allow") and resp.headers.get("Accept") == "application/sdp"


@pytest.mark.parametrize(("overload", "outcome"), [(486, CallOutcome.BUSY), (503, CallOutcome.FAILED)])
async def test_max_concurrent_calls(overload: int, outcome: CallOutcome) -> None:
    uas, uac, callee = await make_pair("udp", max_calls=1, overload_status=overload)
    try:
        first = await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer()), WAIT)
        with pytest.raises(CallFailed) as err:
            await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer()), WAIT)
        assert err.value.status == overload and err.value.outcome is outcome
        await first.bye()
        second = await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer()), WAIT)
        await second.bye()
    finally:
        await uac.close()
        await uas.close()


async def test_callback_failure_answers_500_and_ua_keeps_serving() -> None:
    calls = 0

    def broken(call: IncomingCall) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("application bug")

    uas = UserAgent(UAConfig(timers=TIMERS), broken)
    uac = UserAgent(UAConfig(timers=TIMERS))
    await uas.start()
    await uac.start()
    try:
        for _ in range(2):
            with pytest.raises(CallFailed) as err:
                await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer()), WAIT)
            assert err.value.status == 500
        assert calls == 2
    finally:
        await uac.close()
        await uas.close()


async def test_early_media_183_reaches_progress_callback() -> None:
    uas, uac, _ = await make_pair("udp")

    async def early(call: IncomingCall) -> None:
        assert call.remote_sdp is not None
        local = answer(call.remote_sdp, address="127.0.0.1", port=40004)
        await call.ring(early_sdp=local)
        await call.answer(local)

    uas.on_incoming_call = early
    progress: list[tuple[int, int | None]] = []
    try:
        dialog = await asyncio.wait_for(
            uac.call(
                target(uas, "udp"),
                local_offer(),
                on_progress=lambda s, sdp: progress.append(
                    (s, sdp.audio.port if sdp and sdp.audio else None)
                ),
            ),
            WAIT,
        )
        assert progress == [(183, 40004)]
        await dialog.bye()
    finally:
        await uac.close()
        await uas.close()


class CountingServer(DigestServer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stale_challenges = 0

    def challenge(self, *, stale: bool = False) -> str:
        self.stale_challenges += stale
        return super().challenge(stale=stale)


async def test_stale_nonce_is_rechallenged_and_retried() -> None:
    times = iter([0.0, 1000.0])  # the first nonce is issued at 0 and checked at 1000: stale
    auth = CountingServer(
        "agent.test", {"trunk": "pw"}, nonce_lifetime_s=300, clock=lambda: next(times, 1000.0)
    )
    uas, uac, _ = await make_pair("udp", auth=auth)
    try:
        creds = Credentials("trunk", "pw")
        dialog = await asyncio.wait_for(uac.call(target(uas, "udp"), local_offer(), creds), WAIT)
        assert auth.stale_challenges == 1
        await dialog.bye()
    finally:
        await uac.close()
        await uas.close()


async def test_sip_info_dtmf_reaches_callback(pair) -> None:  # type: ignore[no-untyped-def]
    uas, uac, callee, transport = pair
    digits: asyncio.Queue[str] = asyncio.Queue()
    callee.handlers.on_dtmf = lambda d, digit: digits.put_nowait(digit)
    dialog = await asyncio.wait_for(uac.call(target(uas, transport), local_offer()), WAIT)
    for ctype, body in (
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
        ("application/dtmf", b"#"),
        ("application/dtmf-relay", b"Duration=160\r\n"),
    ):
        resp = await asyncio.wait_for(dialog.send(dialog.make_request("INFO", body, ctype)), WAIT)
        assert resp.status == 200
    assert await asyncio.wait_for(digits.get(), WAIT) == "5"
    assert await asyncio.wait_for(digits.get(), WAIT) == "#"
    resp = await asyncio.wait_for(dialog.send(dialog.make_request("INFO", b"x", "text/plain")), WAIT)
    assert resp.status == 415 and digits.empty()
    await dialog.bye()


async def test_in_dialog_requests_answer_a_digest_challenge() -> None:
    """The UAS challenges BYE, REFER and re-INVITE too: the caller's dialog answers each 401 with
    the credentials its INVITE used."""
    auth = DigestServer("agent.test", {"trunk": "s3cret"})
    uas, uac, callee = await make_pair("udp", auth=auth, challenge_in_dialog=True)
    holds: asyncio.Queue[bool] = asyncio.Queue()
    referred: list[SipURI] = []
    remote_bye = asyncio.Event()

    async def transfer(d: Dialog, to: SipURI) -> int:
        referred.append(to)
        return 200

    callee.handlers.on_hold = lambda d, held: holds.put_nowait(held)
    callee.handlers.on_refer = transfer
    callee.handlers.on_bye = lambda d: remote_bye.set()
    try:
        dialog = await asyncio.wait_for(
            uac.call(target(uas, "udp"), local_offer(), Credentials("trunk", "s3cret")), WAIT
        )
        resp = await asyncio.wait_for(dialog.hold(True), WAIT)
        assert resp.status == 200 and await asyncio.wait_for(holds.get(), WAIT) is True
        assert await asyncio.wait_for(dialog.refer("sip:human@127.0.0.1:5999"), WAIT) == 200
        assert referred and referred[0].user == "human"
        # Without credentials the same request stays refused: the UAS really challenges it.
        dialog.credentials = None
        assert (await asyncio.wait_for(dialog.hold(False), WAIT)).status == 401
        assert holds.empty()
        dialog.credentials = Credentials("trunk", "s3cret")
        await dialog.bye()
        await wait_for(remote_bye)
    finally:
        await uac.close()
        await uas.close()


async def test_srtp_call_keeps_its_key_on_hold_and_refuses_a_reoffer_without_keys() -> None:
    uas, uac, callee = await make_pair("udp")
    callee.srtp = "optional"
    media: asyncio.Queue[Any] = asyncio.Queue()
    callee.handlers.on_media = lambda d, params: media.put_nowait(params)
    try:
        ours = offer("127.0.0.1", 40000, ("PCMU",), srtp="optional")  # best effort: keys on RTP/AVP
        dialog = await asyncio.wait_for(uac.call(target(uas, "udp"), ours), WAIT)
        assert dialog.remote_sdp is not None
        first = negotiated(dialog.remote_sdp, ours).srtp
        assert first is not None
        resp = await asyncio.wait_for(dialog.hold(True), WAIT)
        assert resp.status == 200
        held = await asyncio.wait_for(media.get(), WAIT)
        assert held.srtp is not None and held.srtp.local.key == first.remote.key  # the callee kept its key
        resp = await asyncio.wait_for(dialog.reinvite(offer("127.0.0.1", 40000, ("PCMU",))), WAIT)
        assert resp.status == 488  # an SRTP call is never downgraded to plain RTP
        await dialog.bye()
    finally:
        await uac.close()
        await uas.close()
