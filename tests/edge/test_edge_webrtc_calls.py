"""Browser calls behave like SIP calls: barge-in stops the agent's audio and publishes a
BargeIn, the agent hanging up ends the browser call, calls over PA_WEB_MAX_CALLS get a 503,
ICE offers only the configured host addresses, and a draining gateway refuses new calls and
gives the others a grace. Real aiortc browser, real gateway, real nats-server. (DTMF over the
data channel: test_edge_webrtc_gateway.py.)"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import aiohttp
from phoneagent.edge.webrtc.ice import pin_host_addresses
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.v1 import call_pb2, common_pb2, control_pb2
from support.common import wait_for
from support.webrtc_peer import AUTH, ToneTrack, agent_speech, browser_peer, gateway_on, offer


def kinds(events: list[control_pb2.ControlEvent], kind: str) -> list[Any]:
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


async def test_caller_speech_stops_the_agent_and_publishes_barge_in(bus: Bus) -> None:
    async with gateway_on(bus) as (gw, base):
        mic = ToneTrack(muted=True)
        pc, heard = browser_peer(mic)
        async with aiohttp.ClientSession() as http:
            answer = await offer(http, base, pc)
        call_id = answer["call_id"]
        control: list[control_pb2.ControlEvent] = []

        async def keep(ev: control_pb2.ControlEvent, _: Delivery) -> None:
            control.append(ev)

        answered: list[call_pb2.CallEvent] = []

        async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
            if ev.WhichOneof("event") == "answered":
                answered.append(ev)

        await bus.subscribe(subjects.control(call_id), control_pb2.ControlEvent, keep, lane=Lane.CONTROL)
        await bus.subscribe(subjects.lifecycle(call_id), call_pb2.CallEvent, on_life, lane=Lane.CONTROL)
        await wait_for(lambda: answered, timeout=10)
        await agent_speech(bus, call_id, seconds=5.0)  # five seconds of agent speech
        await wait_for(lambda: heard.loud() >= 10, timeout=10)
        talk_from = time.monotonic()
        mic.muted = False  # the caller starts talking over the agent
        barge = await wait_for(lambda: kinds(control, "barge_in"), timeout=5)
        barged_at = time.monotonic()
        assert barge[0].interrupted_generation_id == 1 and 0 < barge[0].played_ms < 5000
        # Playout stopped soon after the caller started (VAD confirmation plus the network) ...
        last = max(heard.loud_times())
        assert last - talk_from < 1.0, last - talk_from
        # ... and the cancelled generation never resumes.
        await asyncio.sleep(1.0)  # a window in which no agent audio may arrive
        assert not heard.loud_times(since=barged_at + 0.3)
        assert not kinds(control, "playback_done")
        await pc.close()
        await heard.close()
        await wait_for(lambda: gw.active_calls == 0, timeout=10)


async def test_calls_over_the_limit_get_503_until_one_ends(bus: Bus) -> None:
    async with gateway_on(bus, max_calls=1) as (gw, base):
        first, heard1 = browser_peer()
        async with aiohttp.ClientSession() as http:
            answer = await offer(http, base, first)
            second, heard2 = browser_peer()
            await second.setLocalDescription(await second.createOffer())
            body = {"type": "offer", "sdp": second.localDescription.sdp}
            async with http.post(f"{base}/api/offer", json=body, headers=AUTH) as r:
                assert r.status == 503 and (await r.json())["error"] == "too many calls"
            assert gw.active_calls == 1
            await hang_up(http, base, answer["call_id"])
            await wait_for(lambda: gw.active_calls == 0, timeout=10)
            third, heard3 = browser_peer()
            answer = await offer(http, base, third)  # a free place again
            assert gw.active_calls == 1
            await hang_up(http, base, answer["call_id"])
        for pc, h in ((first, heard1), (second, heard2), (third, heard3)):
            await pc.close()
            await h.close()
        await wait_for(lambda: gw.active_calls == 0, timeout=10)


async def hang_up(http: aiohttp.ClientSession, base: str, call_id: str) -> None:
    async with http.post(f"{base}/api/hangup", json={"call_id": call_id}, headers=AUTH) as r:
        assert r.status == 200


def candidate_addresses(sdp: str) -> set[str]:
    return set(re.findall(r"^a=candidate:\S+ \d+ udp \d+ (\S+) \d+ typ host", sdp, re.MULTILINE))


async def test_ice_offers_only_the_configured_addresses(bus: Bus) -> None:
    import aioice.ice

    pin_host_addresses([])
    everywhere = set(aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True))
    try:
        async with gateway_on(bus, ice_addresses=["127.0.0.1"]) as (gw, base):
            pc, heard = browser_peer()
            async with aiohttp.ClientSession() as http:
                answer = await offer(http, base, pc)
            assert candidate_addresses(answer["sdp"]) == {"127.0.0.1"}
            await wait_for(lambda: pc.connectionState == "connected", timeout=10)  # and it connects
            await pc.close()
            await heard.close()
            await wait_for(lambda: gw.active_calls == 0, timeout=10)
        if not everywhere:  # no interface but loopback: nothing else to leave out
            return
        chosen = sorted(everywhere)[0]
        async with gateway_on(bus, ice_addresses=[chosen]) as (gw, base):
            pc, heard = browser_peer()
            async with aiohttp.ClientSession() as http:
                answer = await offer(http, base, pc)
                # one interface of several: the others (and loopback) stay out of the answer
                assert candidate_addresses(answer["sdp"]) == {chosen}
                await hang_up(http, base, answer["call_id"])
            await pc.close()
            await heard.close()
            await wait_for(lambda: gw.active_calls == 0, timeout=10)
    finally:
        pin_host_addresses(["127.0.0.1"])


async def test_agent_hang_up_ends_the_browser_call(bus: Bus) -> None:
    async with gateway_on(bus) as (gw, base):
        pc, heard = browser_peer()
        channel = pc.createDataChannel("control")
        async with aiohttp.ClientSession() as http:
            answer = await offer(http, base, pc)
            call_id = answer["call_id"]
            ended: list[call_pb2.CallEnded] = []

            async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
                if ev.WhichOneof("event") == "ended":
                    ended.append(ev.ended)

            await bus.subscribe(subjects.lifecycle(call_id), call_pb2.CallEvent, on_life, lane=Lane.CONTROL)
            ws = await http.ws_connect(f"{base}/api/events?call_id={call_id}&key={answer['events_key']}")
            await wait_for(lambda: channel.readyState == "open", timeout=10)
            hangup = control_pb2.ControlEvent(
                meta=common_pb2.EventMeta(call_id=call_id),
                hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP, detail="goodbye"),
            )
            await bus.publish(subjects.control(call_id), hangup, lane=Lane.CONTROL)
            await wait_for(lambda: ended, timeout=5)
            assert ended[0].reason == call_pb2.END_REASON_AGENT_HANGUP
            # The page hears about it, the browser's connection is closed, the call is released.
            events: list[dict[str, Any]] = []
            while not any(e.get("type") == "ended" for e in events):
                events.append(await asyncio.wait_for(ws.receive_json(), 5))
            assert events[-1] == {"type": "ended", "reason": "agent_hangup"}
            await wait_for(lambda: channel.readyState == "closed", timeout=10)
            await wait_for(lambda: gw.active_calls == 0, timeout=5)
            await ws.close()
        await pc.close()
        await heard.close()


async def test_drain_refuses_new_calls_and_ends_the_rest_after_the_grace(bus: Bus) -> None:
    async with gateway_on(bus) as (gw, base):
        ended: list[call_pb2.CallEnded] = []

        async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
            if ev.WhichOneof("event") == "ended":
                ended.append(ev.ended)

        await bus.subscribe(subjects.ALL_LIFECYCLE, call_pb2.CallEvent, on_life, lane=Lane.CONTROL)
        peers = [browser_peer() for _ in range(2)]
        async with aiohttp.ClientSession() as http:
            quick, slow = [await offer(http, base, pc) for pc, _ in peers]
            started = time.monotonic()
            draining = asyncio.create_task(gw.drain(1.5))
            await wait_for(lambda: not gw.accepting, timeout=2)
            late, late_heard = browser_peer()
            await late.setLocalDescription(await late.createOffer())
            body = {"type": "offer", "sdp": late.localDescription.sdp}
            async with http.post(f"{base}/api/offer", json=body, headers=AUTH) as r:
                assert r.status == 503
            # A call that ends by itself during the grace ends as the caller ended it ...
            await hang_up(http, base, quick["call_id"])
            await wait_for(lambda: len(ended) == 1, timeout=5)
            assert ended[0].meta.call_id == quick["call_id"]
            assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
            assert not draining.done()
            # ... and the one still talking is hung up once the grace is over.
            await asyncio.wait_for(draining, 10)
            assert time.monotonic() - started >= 1.4
            # Published before drain() returned; delivered to this listener when the bus gets to it.
            await wait_for(lambda: len(ended) == 2, timeout=5)
            assert [e.meta.call_id for e in ended] == [quick["call_id"], slow["call_id"]]
            assert ended[1].reason == call_pb2.END_REASON_AGENT_HANGUP
            await wait_for(lambda: gw.active_calls == 0, timeout=5)
        for pc, heard in [*peers, (late, late_heard)]:
            await pc.close()
            await heard.close()
