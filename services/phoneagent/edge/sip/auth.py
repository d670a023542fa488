"""HTTP digest authentication for SIP (RFC 2617, RFC 8760): MD5 and SHA-256, qop=auth.

``DigestServer`` challenges requests and verifies ``Authorization`` headers (UAS side);
``authorization_header`` answers a 401/407 challenge (UAC side).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from phoneagent.edge.sip.headers import ParseError, split_outside_quotes

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b).hexdigest(),  # noqa: S324 - required by the protocol
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
}
# In a challenge qop is a quoted list; in a reply it is a bare token (RFC 2617 section 3.2).
_UNQUOTED_REPLY = frozenset({"algorithm", "qop", "nc", "stale"})
_UNQUOTED_CHALLENGE = frozenset({"algorithm", "stale"})


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    realm: str | None = None  # answer only challenges for this realm, when set


def parse_digest(value: str) -> dict[str, str]:
    """``Digest a="x", b=y`` into a dict with lower-cased names and unquoted values."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ParseError("not a Digest header")
    params: dict[str, str] = {}
    for item in split_outside_quotes(rest, ","):
        item = item.strip()
        if not item:
            continue
        name, sep, val = item.partition("=")
        if not sep:
            raise ParseError("bad digest parameter")
        val = val.strip()
        if len(val) >= 2 and val.startswith('"') and val.endswith('"'):
            val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        params[name.strip().lower()] = val
    return params


def format_digest(params: dict[str, str], *, challenge: bool = False) -> str:
    bare = _UNQUOTED_CHALLENGE if challenge else _UNQUOTED_REPLY
    parts = []
    for name, value in params.items():
        if name in bare:
            parts.append(f"{name}={value}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name}="{escaped}"')
    return "Digest " + ", ".join(parts)


def _hash(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm.upper().removesuffix("-SESS")
    if base not in _HASHES:
        raise ParseError("unsupported digest algorithm")
    return _HASHES[base]


def ha1(algorithm: str, username: str, realm: str, password: str, nonce: str = "", cnonce: str = "") -> str:
    h = _hash(algorithm)
    value = h(f"{username}:{realm}:{password}".encode())
    if algorithm.upper().endswith("-SESS"):
        value = h(f"{value}:{nonce}:{cnonce}".encode())
    return value


def digest_response(
    algorithm: str,
    ha1_value: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str = "",
    nc: str = "",
    cnonce: str = "",
) -> str:
    """The ``response`` value: KD(HA1, nonce[:nc:cnonce:qop]:HA2) with HA2 = H(method:uri)."""
    h = _hash(algorithm)
    ha2 = h(f"{method}:{uri}".encode())
    if qop:
        return h(f"{ha1_value}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1_value}:{nonce}:{ha2}".encode())


def authorization_header(
    challenge: str, method: str, uri: str, creds: Credentials, *, nc: int = 1, cnonce: str | None = None
) -> str:
    """An Authorization / Proxy-Authorization value answering a WWW-/Proxy-Authenticate challenge."""
    ch = parse_digest(challenge)
    realm, nonce = ch.get("realm", ""), ch.get("nonce", "")
    if not nonce:
        raise ParseError("challenge without nonce")
    algorithm = ch.get("algorithm", "MD5")
    qops = [q.strip() for q in ch.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        raise ParseError("no supported qop")
    qop = "auth" if qops else ""
    cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    key = ha1(algorithm, creds.username, realm, creds.password, nonce, cnonce)
    out = {
        "username": creds.username,
        "realm": realm,
        "nonce": nonce,
        "uri": uri,
        "response": digest_response(
            algorithm, key, nonce, method, uri, qop, nc_text if qop else "", cnonce if qop else ""
        ),
        "algorithm": algorithm,
    }
    if "opaque" in ch:
        out["opaque"] = ch["opaque"]
    if qop:
        out.update(qop=qop, nc=nc_text, cnonce=cnonce)
    return format_digest(out)


@dataclass(frozen=True)
class AuthResult:
    ok: bool
    stale: bool = False
    username: str = ""


_CLOCK_SKEW_S = 5.0  # a nonce stamped this far in the future (another replica's clock) still counts


class DigestServer:
    """UAS-side digest with qop=auth only: stateless nonces (issue time and random bytes, signed
    with HMAC-SHA256) that expire after ``nonce_lifetime_s``, and nc replay protection.

    Replicas given the same ``secret`` accept each other's nonces; without one a random secret
    is drawn (one process only). The nc counters seen are kept per process: a reply replayed to
    another replica is caught only by the nonce's expiry.
    """

    def __init__(
        self,
        realm: str,
        users: dict[str, str],
        *,
        algorithm: str = "MD5",
        nonce_lifetime_s: float = 300.0,
        secret: bytes | str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _hash(algorithm)
        self.realm = realm
        self.algorithm = algorithm
        self._users = dict(users)
        self._lifetime = nonce_lifetime_s
        self._clock = clock
        if isinstance(secret, str):
            secret = secret.encode()
        # Domain-separated: the configured secret signs nothing else.
        self._secret = hmac.new(
            secret or secrets.token_bytes(32), b"sip-digest-nonce", hashlib.sha256
        ).digest()
        self._seen_nc: OrderedDict[str, int] = OrderedDict()

    def make_nonce(self) -> str:
        stamp = struct.pack(">d", self._clock()) + secrets.token_bytes(8)
        mac = hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def challenge(self, *, stale: bool = False) -> str:
        params = {"realm": self.realm, "nonce": self.make_nonce(), "algorithm": self.algorithm, "qop": "auth"}
        if stale:
            params["stale"] = "true"
        return format_digest(params, challenge=True)

    def _nonce_state(self, nonce: str) -> str:
        """'ok', 'stale' or 'bad'."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return "bad"
        if len(raw) != 32:
            return "bad"
        stamp, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, hmac.new(self._secret, stamp, hashlib.sha256).digest()[:16]):
            return "bad"
        age = self._clock() - struct.unpack(">d", stamp[:8])[0]
        if age < -_CLOCK_SKEW_S:
            return "bad"
        return "stale" if age > self._lifetime else "ok"

    def verify(self, method: str, header: str) -> AuthResult:
        """Check an Authorization header for ``method``. Malformed headers fail, never raise."""
        try:
            p = parse_digest(header)
        except ParseError:
            return AuthResult(False)
        user, nonce = p.get("username", ""), p.get("nonce", "")
        password = self._users.get(user)
        algorithm = p.get("algorithm", "MD5")
        if password is None or p.get("realm") != self.realm or algorithm.upper() != self.algorithm.upper():
            return AuthResult(False, username=user)
        state = self._nonce_state(nonce)
        if state == "bad":
            return AuthResult(False, username=user)
        qop, nc, cnonce = p.get("qop", ""), p.get("nc", ""), p.get("cnonce", "")
        if qop != "auth" or not cnonce or len(nc) != 8:
            return AuthResult(False, username=user)  # RFC 2069 replies (no qop) can be replayed
        try:
            key = ha1(algorithm, user, self.realm, password, nonce, cnonce)
            expected = digest_response(algorithm, key, nonce, method, p.get("uri", ""), qop, nc, cnonce)
        except ParseError:
            return AuthResult(False, username=user)
        if not hmac.compare_digest(expected, p.get("response", "")):
            return AuthResult(False, username=user)
        if state == "stale":
            return AuthResult(False, stale=True, username=user)
        if not self._fresh_nc(nonce, nc):
            return AuthResult(False, username=user)
        return AuthResult(True, username=user)

    def _fresh_nc(self, nonce: str, nc: str) -> bool:
        try:
            count = int(nc, 16)
        except ValueError:
            return False
        if count <= self._seen_nc.get(nonce, 0):
            return False
        self._seen_nc[nonce] = count
        self._seen_nc.move_to_end(nonce)
        while len(self._seen_nc) > 10000:
            self._seen_nc.popitem(last=False)
        return True
