"""SRTP (RFC 3711) with keys exchanged in SDP (SDES, RFC 4568), through libsrtp (``pylibsrtp``).

An ``a=crypto`` line names a tag, a crypto suite and an inline master key + salt (30 bytes,
base64). Each side sends with its own key and receives with the peer's: our answer (or offer)
carries our key, the peer's carries its own. Supported suites: AES_CM_128_HMAC_SHA1_80 and
AES_CM_128_HMAC_SHA1_32. Key lifetimes are accepted and ignored (a call never nears 2^31
packets); keys with an MKI, or session parameters, are not supported, and such lines are skipped.

``pylibsrtp`` comes with aiortc, in the ``edge`` extra.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Any

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError

SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
KEY_SALT_BYTES = 30  # 128-bit master key + 112-bit master salt
SRTP_MODES = ("off", "optional", "required")


def _libsrtp() -> Any:
    try:
        import pylibsrtp
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise MissingModelError("SRTP needs pylibsrtp", extra="edge", package="pylibsrtp") from exc
    return pylibsrtp


class CryptoError(InvalidArgument):
    """A malformed or unsupported ``a=crypto`` attribute."""


@dataclass(frozen=True, slots=True)
class Crypto:
    """One ``a=crypto`` attribute with a key we can use."""

    tag: int
    suite: str
    key: bytes  # master key + salt, KEY_SALT_BYTES long

    @classmethod
    def new(cls, tag: int, suite: str = SUITES[0]) -> Crypto:
        """A fresh random key for ``suite``."""
        if suite not in SUITES:
            raise CryptoError(f"unsupported crypto suite {suite[:40]}")
        return cls(tag, suite, secrets.token_bytes(KEY_SALT_BYTES))

    @classmethod
    def parse(cls, value: str) -> Crypto:
        """Parse the value of an ``a=crypto:`` attribute (without the ``crypto:`` prefix)."""
        parts = value.split()
        if len(parts) < 3 or not parts[0].isdigit() or len(parts[0]) > 9:
            raise CryptoError("bad crypto attribute")
        if len(parts) > 3:
            raise CryptoError("crypto session parameters are not supported")
        suite = parts[1]
        if suite not in SUITES:
            raise CryptoError(f"unsupported crypto suite {suite[:40]}")
        keys = parts[2].split(";")
        if len(keys) != 1:
            raise CryptoError("more than one master key is not supported")
        method, _, params = keys[0].partition(":")
        if method != "inline":
            raise CryptoError("crypto key method must be inline")
        fields = params.split("|")
        if len(fields) > 2 or (len(fields) == 2 and ":" in fields[1]):
            raise CryptoError("crypto keys with an MKI are not supported")
        try:
            key = base64.b64decode(fields[0], validate=True)
        except (binascii.Error, ValueError):
            raise CryptoError("crypto key is not base64") from None
        if len(key) != KEY_SALT_BYTES:
            raise CryptoError("crypto key has the wrong length")
        return cls(int(parts[0]), suite, key)

    def encode(self) -> str:
        """The attribute value, as written after ``a=crypto:``."""
        return f"{self.tag} {self.suite} inline:{base64.b64encode(self.key).decode('ascii')}"

    def __repr__(self) -> str:  # never print key material
        return f"Crypto(tag={self.tag}, suite={self.suite})"


@dataclass(frozen=True, slots=True)
class SrtpKeys:
    """What a call negotiated: ``local`` protects what we send, ``remote`` what we receive."""

    local: Crypto
    remote: Crypto

    def __repr__(self) -> str:
        return f"SrtpKeys(suite={self.local.suite})"


class SrtpError(Exception):
    """A packet failed authentication or the replay check (or was not SRTP at all)."""


class SrtpContext:
    """The two libsrtp sessions of one call: outbound (our key) and inbound (the peer's key)."""

    def __init__(self, keys: SrtpKeys) -> None:
        lib = _libsrtp()
        self.keys = keys
        self._error = lib.Error
        self._tx = lib.Session(self._policy(lib, keys.local, lib.Policy.SSRC_ANY_OUTBOUND))
        self._rx = lib.Session(self._policy(lib, keys.remote, lib.Policy.SSRC_ANY_INBOUND))

    @staticmethod
    def _policy(lib: Any, crypto: Crypto, direction: int) -> Any:
        profile = {
            "AES_CM_128_HMAC_SHA1_80": lib.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            "AES_CM_128_HMAC_SHA1_32": lib.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
        }[crypto.suite]
        return lib.Policy(key=crypto.key, ssrc_type=direction, srtp_profile=profile)

    def protect(self, rtp: bytes) -> bytes:
        """``rtp`` encrypted and authenticated; :class:`SrtpError` if libsrtp refuses (an index
        sent twice)."""
        try:
            return bytes(self._tx.protect(rtp))
        except self._error as exc:
            raise SrtpError(str(exc)) from None

    def unprotect(self, srtp: bytes) -> bytes:
        """The RTP packet inside ``srtp``; :class:`SrtpError` when it fails authentication or replay."""
        try:
            return bytes(self._rx.unprotect(srtp))
        except self._error as exc:
            raise SrtpError(str(exc)) from None
