"""Digest authentication: known answers computed from the RFC formulas, UAS verification, UAC answers."""

from __future__ import annotations

import hashlib

import pytest
from phoneagent.edge.sip.auth import (
    Credentials,
    DigestServer,
    authorization_header,
    digest_response,
    ha1,
    parse_digest,
)


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_rfc2617_example_vector() -> None:
    # RFC 2617 section 3.5 (HTTP example; the SIP formulas are the same).
    key = ha1("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life")
    got = digest_response(
        "MD5",
        key,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        "auth",
        "00000001",
        "0a4f113b",
    )
    assert got == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(("algorithm", "h"), [("MD5", md5), ("SHA-256", sha256)])
def test_uac_authorization_matches_hand_computed(algorithm: str, h) -> None:  # type: ignore[no-untyped-def]
    challenge = (
        f'Digest realm="example.org", nonce="abc123", qop="auth,auth-int", algorithm={algorithm}, opaque="op"'
    )
    value = authorization_header(
        challenge, "INVITE", "sip:bob@example.org", Credentials("alice", "pw"), nc=1, cnonce="c0ffee"
    )
    p = parse_digest(value)
    ha1_ = h("alice:example.org:pw")
    ha2 = h("INVITE:sip:bob@example.org")
    assert p["response"] == h(f"{ha1_}:abc123:00000001:c0ffee:auth:{ha2}")
    assert (p["qop"], p["nc"], p["opaque"], p["algorithm"]) == ("auth", "00000001", "op", algorithm)


def test_uac_without_qop_uses_rfc2069_form() -> None:
    value = authorization_header('Digest realm="r", nonce="n"', "BYE", "sip:x@y", Credentials("u", "p"))
    p = parse_digest(value)
    assert p["response"] == md5(f"{md5('u:r:p')}:n:{md5('BYE:sip:x@y')}")
    assert "qop" not in p


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_server_accepts_valid_and_rejects_replay_and_wrong_password(algorithm: str) -> None:
    server = DigestServer("pbx", {"alice": "secret"}, algorithm=algorithm)
    challenge = server.challenge()
    assert parse_digest(challenge)["algorithm"] == algorithm
    good = authorization_header(challenge, "INVITE", "sip:agent@pbx", Credentials("alice", "secret"), nc=1)
    assert server.verify("INVITE", good).ok
    assert not server.verify("INVITE", good).ok  # same nc again: replay
    second = authorization_header(challenge, "INVITE", "sip:agent@pbx", Credentials("alice", "secret"), nc=2)
    assert server.verify("INVITE", second).ok
    wrong = authorization_header(challenge, "INVITE", "sip:agent@pbx", Credentials("alice", "nope"), nc=3)
    assert not server.verify("INVITE", wrong).ok
    assert not server.verify(
        "BYE",
        authorization_header(challenge, "INVITE", "sip:agent@pbx", Credentials("alice", "secret"), nc=4),
    ).ok  # method bound


def test_server_stale_and_forged_nonces() -> None:
    now = [1000.0]
    server = DigestServer("pbx", {"alice": "secret"}, nonce_lifetime_s=30, clock=lambda: now[0])
    challenge = server.challenge()
    now[0] += 31
    late = authorization_header(challenge, "INVITE", "sip:a@pbx", Credentials("alice", "secret"))
    result = server.verify("INVITE", late)
    assert not result.ok and result.stale
    assert "stale=true" in server.challenge(stale=True)
    forged = challenge.replace(parse_digest(challenge)["nonce"], "AAAA" * 8)
    forged_auth = authorization_header(forged, "INVITE", "sip:a@pbx", Credentials("alice", "secret"))
    assert not server.verify("INVITE", forged_auth).ok
    other = DigestServer("pbx", {"alice": "secret"})  # different secret: nonce not ours
    assert not other.verify(
        "INVITE",
        authorization_header(server.challenge(), "INVITE", "sip:a@pbx", Credentials("alice", "secret")),
    ).ok


@pytest.mark.parametrize("header", ["", "Basic abc", "Digest", 'Digest username="x"', "Digest a", 'Digest "'])
def test_server_never_raises_on_garbage(header: str) -> None:
    assert not DigestServer("pbx", {"x": "y"}).verify("INVITE", header).ok


def test_server_refuses_replies_without_qop() -> None:
    """An RFC 2069 reply (no qop, nc or cnonce) is computed right but can be replayed: refused."""
    server = DigestServer("pbx", {"alice": "secret"})
    challenge = server.challenge().replace(', qop="auth"', "")
    assert "qop" not in challenge
    bare = authorization_header(challenge, "INVITE", "sip:agent@pbx", Credentials("alice", "secret"))
    assert "qop" not in parse_digest(bare)
    assert not server.verify("INVITE", bare).ok
    with_qop = authorization_header(
        server.challenge(), "INVITE", "sip:agent@pbx", Credentials("alice", "secret")
    )
    assert server.verify("INVITE", with_qop).ok


def test_replicas_sharing_the_secret_accept_each_others_nonces() -> None:
    secret = "s" * 40
    a = DigestServer("pbx", {"alice": "secret"}, secret=secret)
    b = DigestServer("pbx", {"alice": "secret"}, secret=secret)
    other = DigestServer("pbx", {"alice": "secret"}, secret="t" * 40)
    reply = authorization_header(a.challenge(), "INVITE", "sip:agent@pbx", Credentials("alice", "secret"))
    assert b.verify("INVITE", reply).ok
    result = other.verify("INVITE", reply)
    assert not result.ok and not result.stale


def test_server_refuses_nonces_from_the_future() -> None:
    now = [1000.0]
    server = DigestServer("pbx", {"alice": "secret"}, secret="s" * 40, clock=lambda: now[0])
    challenge = server.challenge()
    now[0] -= 60  # a nonce stamped a minute ahead of this clock is not one we issued sensibly
    reply = authorization_header(challenge, "INVITE", "sip:a@pbx", Credentials("alice", "secret"))
    assert not server.verify("INVITE", reply).ok
    now[0] += 58  # within the allowed clock skew between replicas
    assert server.verify("INVITE", reply).ok
