"""SDP parsing, building and offer/answer for audio."""

from __future__ import annotations

import pytest
from phoneagent.edge.sip.sdp import (
    NoCommonCodec,
    SdpError,
    answer,
    combine_direction,
    negotiated,
    offer,
    parse_sdp,
)

LINPHONE_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    "s=Talk\r\n"
    "c=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 96 8 0 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "m=video 51372 RTP/AVP 31\r\n"
    "c=IN IP4 198.51.100.8\r\n"
)


def test_parse_offer() -> None:
    sdp = parse_sdp(LINPHONE_OFFER)
    assert sdp.address == "198.51.100.7" and sdp.session_id == 2890844526
    audio = sdp.audio
    assert audio is not None and audio.port == 49170 and audio.formats == [96, 8, 0, 101]
    assert audio.codec(8) == ("PCMA", 8000) and audio.codec(96) == ("opus", 48000)
    assert audio.fmtp[101] == "0-15" and audio.ptime == 20 and audio.direction == "sendrecv"
    assert sdp.media[1].connection == "198.51.100.8"


def test_answer_picks_first_common_codec_in_offerer_order() -> None:
    ans = answer(parse_sdp(LINPHONE_OFFER), ("PCMU", "PCMA"), address="127.0.0.1", port=40000)
    audio = ans.media[0]
    assert audio.formats == [8, 101] and audio.port == 40000
    assert ans.media[1].kind == "video" and ans.media[1].port == 0  # declined, line kept
    again = parse_sdp(ans.encode())
    params = negotiated(again)
    assert (params.codec, params.payload_type, params.telephone_event_pt) == ("PCMA", 8, 101)
    assert (params.remote_address, params.remote_port, params.ptime) == ("127.0.0.1", 40000, 20)
    only_pcmu = answer(parse_sdp(LINPHONE_OFFER), ("PCMU",), address="127.0.0.1", port=40000)
    assert only_pcmu.media[0].formats[0] == 0


def test_no_common_codec() -> None:
    opus_only = LINPHONE_OFFER.replace("96 8 0 101", "96 101")
    with pytest.raises(NoCommonCodec) as err:
        answer(parse_sdp(opus_only), address="127.0.0.1", port=4000)
    assert err.value.status == 488


def test_offer_roundtrip_and_telephone_event() -> None:
    ours = offer("127.0.0.1", 30000, ("PCMA", "PCMU"), telephone_event_pt=110, session_id=7)
    text = ours.encode().decode()
    assert "m=audio 30000 RTP/AVP 8 0 110" in text and "a=fmtp:110 0-16" in text and "a=ptime:20" in text
    parsed = parse_sdp(text)
    ans = answer(parsed, ("PCMU", "PCMA"), address="127.0.0.2", port=30002)
    params = negotiated(parse_sdp(ans.encode()), ours)
    assert params.codec == "PCMA" and params.telephone_event_pt == 110
    assert not params.on_hold


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", "sendrecv"),
        ("sendonly", "recvonly"),
        ("recvonly", "sendonly"),
        ("inactive", "inactive"),
    ],
)
def test_hold_directions(offered: str, answered: str) -> None:
    text = offer("127.0.0.1", 30000, direction=offered).encode()
    held = parse_sdp(text)
    assert negotiated(held).on_hold == (offered in ("sendonly", "inactive"))
    ans = answer(held, address="127.0.0.1", port=1)
    assert ans.media[0].direction == answered
    assert combine_direction(offered, "recvonly") in ("recvonly", "inactive")


def test_session_level_direction_and_null_address_hold() -> None:
    text = LINPHONE_OFFER.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n")
    sdp = parse_sdp(text)
    assert sdp.audio is not None and sdp.audio.direction == "sendonly"
    old_style = parse_sdp(LINPHONE_OFFER.replace("c=IN IP4 198.51.100.7", "c=IN IP4 0.0.0.0"))
    assert negotiated(old_style).on_hold


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "o=x\r\n",
        "v=0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 999\r\n",
        "v=0\r\nc=IN IP4\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\nbogus\r\n",
    ],
)
def test_malformed_sdp(bad: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(bad)
