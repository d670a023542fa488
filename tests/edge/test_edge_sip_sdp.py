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


def test_answer_picks_first_common_codec_in_our_order_of_preference() -> None:
    ans = answer(parse_sdp(LINPHONE_OFFER), ("PCMA", "PCMU"), address="127.0.0.1", port=40000)
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
    ans = answer(parsed, ("PCMA", "PCMU"), address="127.0.0.2", port=30002)
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


# --- SRTP (SDES) and G.722 ---------------------------------------------------------------------------

KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"  # 30 bytes, base64
SAVP_OFFER = (
    "v=0\r\n"
    "o=bob 1 1 IN IP4 198.51.100.9\r\n"
    "s=-\r\n"
    "c=IN IP4 198.51.100.9\r\n"
    "t=0 0\r\n"
    "m=audio 49172 RTP/SAVP 9 0 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=crypto:1 AES_CM_256_HMAC_SHA1_80 inline:" + KEY + KEY + "\r\n"
    "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:" + KEY + "|2^20|1:4\r\n"
    "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" + KEY + "|2^31\r\n"
)


def test_srtp_offer_is_answered_with_our_own_key_for_the_first_usable_suite() -> None:
    remote = parse_sdp(SAVP_OFFER)
    audio = remote.audio
    assert audio is not None and [c.tag for c in audio.crypto] == [3]  # 256-bit suite and MKI line skipped
    ans = answer(remote, ("PCMU",), address="127.0.0.1", port=40000, srtp="optional")
    text = ans.encode().decode()
    assert "m=audio 40000 RTP/SAVP 0 101" in text and "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:" in text
    assert KEY not in text  # our own key, never the peer's echoed back
    params = negotiated(remote, parse_sdp(text))
    assert params.srtp is not None and params.srtp.remote.key == audio.crypto[0].key
    assert params.srtp.local.key != params.srtp.remote.key and "inline" not in repr(params.srtp)


@pytest.mark.parametrize(
    ("proto", "mode"), [("RTP/SAVP", "off"), ("RTP/AVP", "required"), ("RTP/SAVP", "required")]
)
def test_srtp_policy_refuses_the_offers_it_does_not_allow(proto: str, mode: str) -> None:
    text = SAVP_OFFER.replace("RTP/SAVP", proto)
    if proto == "RTP/SAVP" and mode == "required":
        text = "".join(line + "\r\n" for line in text.split("\r\n") if line and "crypto" not in line)
    with pytest.raises(NoCommonCodec) as err:
        answer(parse_sdp(text), ("PCMU",), address="127.0.0.1", port=4000, srtp=mode)
    assert err.value.status == 488


def test_best_effort_srtp_on_rtp_avp_follows_the_policy() -> None:
    avp_with_keys = parse_sdp(SAVP_OFFER.replace("RTP/SAVP", "RTP/AVP"))
    optional = answer(avp_with_keys, ("PCMU",), address="127.0.0.1", port=4000, srtp="optional")
    assert negotiated(avp_with_keys, optional).srtp is not None
    off = answer(avp_with_keys, ("PCMU",), address="127.0.0.1", port=4000, srtp="off")
    assert "crypto" not in off.encode().decode() and negotiated(avp_with_keys, off).srtp is None


def test_our_srtp_offer_and_the_answer_agree_on_keys() -> None:
    ours = offer("127.0.0.1", 30000, ("PCMU",), srtp="required", session_id=1)
    text = ours.encode().decode()
    assert "m=audio 30000 RTP/SAVP 0 101" in text and text.count("a=crypto:") == 2
    theirs = answer(parse_sdp(text), ("PCMU",), address="127.0.0.2", port=30002, srtp="required")
    mine = negotiated(parse_sdp(theirs.encode()), ours)
    peer = negotiated(parse_sdp(text), theirs)
    assert mine.srtp is not None and peer.srtp is not None
    assert (mine.srtp.local, mine.srtp.remote) == (peer.srtp.remote, peer.srtp.local)
    plain = answer(parse_sdp(text.replace("RTP/SAVP", "RTP/AVP")), ("PCMU",), address="h", port=2, srtp="off")
    with pytest.raises(NoCommonCodec):
        negotiated(parse_sdp(plain.encode().decode().replace("RTP/AVP", "RTP/SAVP")), ours)
    assert "crypto" not in offer("127.0.0.1", 30000, srtp="off").encode().decode()


def test_g722_is_picked_by_preference_and_keeps_its_8000_hz_rtp_clock() -> None:
    remote = parse_sdp(SAVP_OFFER.replace("RTP/SAVP", "RTP/AVP"))
    ans = answer(remote, ("G722", "PCMU"), address="127.0.0.1", port=4000)
    assert "a=rtpmap:9 G722/8000" in ans.encode().decode()
    params = negotiated(remote, ans)
    assert (params.codec, params.payload_type, params.clock_rate) == ("G722", 9, 8000)
    assert negotiated(remote, answer(remote, ("PCMU", "G722"), address="h", port=2)).codec == "PCMU"
    mislabelled = parse_sdp(SAVP_OFFER.replace("RTP/SAVP", "RTP/AVP").replace("G722/8000", "G722/16000"))
    assert negotiated(mislabelled, answer(mislabelled, ("G722",), address="h", port=2)).clock_rate == 8000
    ours = offer("127.0.0.1", 30000, ("G722", "PCMA"))
    assert "m=audio 30000 RTP/AVP 9 8 101" in ours.encode().decode()


def test_opus_is_picked_by_preference_on_the_peers_dynamic_payload_type() -> None:
    remote = parse_sdp(LINPHONE_OFFER)
    ans = answer(remote, ("G722", "OPUS", "PCMU"), address="127.0.0.1", port=4000)
    text = ans.encode().decode()
    assert "m=audio 4000 RTP/AVP 96 101" in text
    assert "a=rtpmap:96 opus/48000/2" in text  # RFC 7587: always two channels in SDP
    assert "a=fmtp:96 maxplaybackrate=16000;sprop-maxcapturerate=16000" in text
    params = negotiated(remote, parse_sdp(text))
    assert (params.codec, params.payload_type, params.clock_rate) == ("OPUS", 96, 48000)
    assert params.telephone_event_pt == 101
    assert negotiated(remote, answer(remote, ("PCMU", "OPUS"), address="h", port=2)).codec == "PCMU"
    at_8k = parse_sdp(LINPHONE_OFFER.replace("opus/48000/2", "opus/8000").replace("96 8 0 101", "96 101"))
    with pytest.raises(NoCommonCodec):  # Opus's RTP clock is 48000 whatever it carries
        answer(at_8k, ("OPUS",), address="h", port=2)
    relabelled = parse_sdp(
        LINPHONE_OFFER.replace("96 8 0 101", "0 101").replace("a=ptime:20", "a=rtpmap:0 PCMA/8000")
    )
    with pytest.raises(NoCommonCodec):  # a static payload type named as another codec is not taken
        answer(relabelled, ("PCMU", "PCMA"), address="h", port=2)


def test_our_opus_offer_and_the_answer_agree() -> None:
    ours = offer("127.0.0.1", 30000, ("OPUS", "PCMU"))
    text = ours.encode().decode()
    assert "m=audio 30000 RTP/AVP 111 0 101" in text and "a=rtpmap:111 opus/48000/2" in text
    theirs = answer(parse_sdp(text), ("OPUS", "PCMU"), address="127.0.0.2", port=5000)
    params = negotiated(parse_sdp(theirs.encode()), ours)
    assert (params.codec, params.payload_type, params.remote_port) == ("OPUS", 111, 5000)
    assert params.local_payload_type is None
    # an answer that maps Opus to another payload type: we send with its, it sends with ours
    renumbered = parse_sdp(theirs.encode().decode().replace("111", "120"))
    params = negotiated(renumbered, ours)
    assert (params.codec, params.payload_type, params.local_payload_type) == ("OPUS", 120, 111)
