"""SIP message parsing, serialisation and TCP framing."""

from __future__ import annotations

import random

import pytest
from phoneagent.edge.sip.headers import CSeq, Headers, NameAddr, ParseError, SipURI, Via
from phoneagent.edge.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    make_response,
    parse_message,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com:5070;branch=z9hG4bKa1, SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKb2\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob, the builder" <sip:bob@biloxi.example.com>\r\n'
    b"From: Alice <sip:alice@atlanta.example.com;transport=tcp>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Subject: long\r\n"
    b"  folded subject\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_request_fields_and_multi_value_headers() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE" and msg.uri.user == "bob" and msg.uri.host == "biloxi.example.com"
    vias = msg.vias
    assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]
    assert vias[0].branch == "z9hG4bK776asdhds" and "rport" in vias[0].params
    assert vias[1].sent_by == ("proxy.example.com", 5070)
    assert vias[2].sent_by == ("10.0.0.1", 5060)
    assert msg.to.display == "Bob, the builder" and msg.to.tag == ""
    assert msg.from_.tag == "1928301774" and msg.from_.uri.transport == "tcp"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.headers.get("subject") == "long folded subject"
    assert msg.body == b"v=0\n"
    assert msg.content_type == "application/sdp"


def test_compact_forms_are_expanded() -> None:
    raw = (
        b"BYE sip:a@127.0.0.1:5099 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bKx\r\n"
        b"f: <sip:b@127.0.0.1>;tag=1\r\nt: <sip:a@127.0.0.1>;tag=2\r\ni: abc\r\n"
        b"CSeq: 2 BYE\r\nm: <sip:b@127.0.0.1>\r\nl: 0\r\nk: replaces, timer\r\n\r\n"
    )
    msg = parse_message(raw)
    assert msg.call_id == "abc"
    assert msg.headers.get_all("Supported") == ["replaces", "timer"]
    assert msg.contact is not None and msg.contact.uri.host == "127.0.0.1"
    # Serialisation uses the full names and a correct Content-Length.
    out = msg.encode().decode()
    assert "Call-ID: abc\r\n" in out and "Supported: replaces, timer" in out
    assert out.endswith("Content-Length: 0\r\n\r\n")


def test_udp_content_length_truncates_extra_and_rejects_short_body() -> None:
    longer = INVITE + b"garbage"
    assert parse_message(longer).body == b"v=0\n"
    short = INVITE.replace(b"Content-Length: 4", b"Content-Length: 40")
    with pytest.raises(ParseError) as err:
        parse_message(short)
    assert err.value.can_reply  # headers are complete: a 400 can be sent


def test_missing_content_length_on_udp_takes_whole_body() -> None:
    raw = INVITE.replace(b"Content-Length: 4\r\n", b"")
    assert parse_message(raw).body == b"v=0\n"
    assert parse_message(raw, stream=True).body == b""


def test_response_roundtrip() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, SipRequest)
    resp = make_response(req, 180, to_tag="abc")
    again = parse_message(resp.encode())
    assert isinstance(again, SipResponse) and again.status == 180 and again.reason == "Ringing"
    assert again.to.tag == "abc" and again.to.display == "Bob, the builder"
    assert [v.branch for v in again.vias] == [v.branch for v in req.vias]
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag == ""


def test_uri_and_name_addr_forms() -> None:
    uri = SipURI.parse("sips:alice:secret@[2001:db8::1]:5061;transport=tls;lr?subject=x")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", "alice", "2001:db8::1", 5061)
    assert uri.params == {"transport": "tls", "lr": ""} and uri.headers == "subject=x"
    assert str(uri) == "sips:alice@[2001:db8::1]:5061;transport=tls;lr?subject=x"
    bare = NameAddr.parse("sip:bob@example.com;tag=88")
    assert bare.tag == "88" and bare.uri.params == {}
    quoted = NameAddr.parse('"A \\"quoted\\" name" <tel:+15551234567;phone-context=x>;tag=9')
    assert quoted.display == 'A "quoted" name' and quoted.uri.user == "+15551234567"
    assert NameAddr.parse(str(quoted)) == quoted
    via = Via.parse("SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKq;received=10.1.1.1;rport=4000")
    assert via.params["received"] == "10.1.1.1" and via.params["rport"] == "4000"
    assert Via.parse(str(via)) == via


def test_headers_case_insensitive_and_repeated() -> None:
    h = Headers(
        [
            ("route", "<sip:p1;lr>"),
            ("ROUTE", "<sip:p2;lr>, <sip:p3;lr>"),
            ("www-authenticate", 'Digest realm="a,b", nonce="n"'),
        ]
    )
    assert h.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a,b", nonce="n"']
    assert "rOuTe" in h


def test_stream_framer_splits_and_waits_for_body() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + INVITE + INVITE
    got = []
    for i in range(0, len(stream), 7):
        got += framer.feed(stream[i : i + 7])
    assert len(got) == 2 and all(parse_message(g, stream=True).body == b"v=0\n" for g in got)
    assert framer.feed(INVITE[:-2]) == []
    assert len(framer.feed(INVITE[-2:])) == 1


def test_stream_framer_rejects_oversized_and_bad_length() -> None:
    with pytest.raises(ParseError):
        StreamFramer(max_bytes=100).feed(b"X" * 200)
    with pytest.raises(ParseError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n")
    with pytest.raises(ParseError):
        StreamFramer(max_bytes=1000).feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 5000\r\n\r\n")


def test_can_reply_flag() -> None:
    no_via = INVITE.replace(b"Via: SIP", b"X-Via: SIP")
    with pytest.raises(ParseError) as err:
        parse_message(no_via)
    assert not err.value.can_reply
    bad_cseq_method = INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE")
    with pytest.raises(ParseError) as err:
        parse_message(bad_cseq_method)
    assert err.value.can_reply and isinstance(err.value.partial, SipRequest)


BROKEN = [
    b"",
    b"\r\n\r\n",
    b"INVITE",
    b"INVITE sip:a SIP/2.0",
    b"SIP/2.0 99 Weird\r\n\r\n",
    b"SIP/3.0 200 OK\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n",
    b"INVITE http://x SIP/2.0\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nCSeq: x INVITE\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n",
    b"\xff\xfe\x00garbage\r\n\r\n",
    b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n",
    b'INVITE sip:a@b SIP/2.0\r\nFrom: "unterminated <sip:x>\r\n\r\n',
    b"INVITE sip:a@[::1 SIP/2.0\r\n\r\n",
    b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
]


def test_broken_corpus_only_raises_parse_error() -> None:
    for raw in BROKEN:
        with pytest.raises(ParseError):
            parse_message(raw)


def test_mutated_messages_only_raise_parse_error() -> None:
    rng = random.Random(1234)
    alphabet = b' :;,<>"@=\r\n\x00\xffz9SIP/2.0'
    for _ in range(1500):
        data = bytearray(INVITE)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            pos = rng.randrange(len(data))
            if op < 0.4:
                data[pos] = rng.choice(alphabet)
            elif op < 0.7:
                del data[pos : pos + rng.randint(1, 20)]
            else:
                data[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        try:
            msg = parse_message(bytes(data))
        except ParseError:
            continue
        # Whatever parsed must serialise and parse back.
        parse_message(msg.encode())
        framer = StreamFramer()
        try:
            framer.feed(bytes(data))
        except ParseError:
            pass
