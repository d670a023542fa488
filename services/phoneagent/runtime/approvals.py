"""Policy's signatures on what the edge acts on: dials, transfers and recording decisions.

Anything on the bus can write a KV entry or publish a control event, so the edge does not act
on a policy decision because it arrived: policy signs each one with an Ed25519 key that only it
holds (``PA_POLICY_SIGNING_KEY_FILE``), and the edge checks the signature with the public key
(``PA_APPROVAL_PUBLIC_KEY_FILES``) before it dials, transfers or records.

A :class:`Grant` is what is signed: the action (``dial``, ``transfer``, ``recording``), policy's
decision id, the call id, the target in its :func:`dial_key` form (empty for recording), the
decision (``allow``, or for recording the decision and rule) and when it expires. Its canonical
form (:meth:`Grant.canonical`) is compact JSON with sorted keys, prefixed by a version, and the
key id (16 hex digits of the SHA-256 of the public key) is part of what is signed, so a
signature cannot be moved to another key. Several public keys may be trusted at once: that is
how a key is rotated (trust the new one at the edge, then sign with it, then drop the old).

:meth:`Verifier.check` refuses (:class:`NotApproved`, ``reason`` a metric label) a grant that is
unsigned, signed by an unknown key or badly, expired, for another call, another target or
another action: the edge fails closed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.v1 import policy_pb2

DIAL = "dial"
TRANSFER = "transfer"
RECORDING = "recording"
ACTIONS = (DIAL, TRANSFER, RECORDING)
_VERSION = b"pa-approval-v1\n"
TRANSFER_TTL_S = 60.0  # policy's approval of a transfer is used at once
RECORDING_TTL_S = 120.0  # a recording decision reaches the edge live, on the call's audit subject


class NotApproved(PhoneAgentError):
    """The edge refuses to act; ``reason`` is a metric label (no personal data)."""

    def __init__(self, action: str, reason: str, detail: str) -> None:
        super().__init__(ErrorKind.POLICY_DENIED, f"{action} not approved by policy ({detail})")
        self.action = action
        self.reason = reason
        self.detail = detail


def dial_key(target: str) -> str:
    """The form in which an approved target and a dial or transfer target are compared.

    A number keeps its digits and a leading ``+`` (``tel:+1 (212) 555-0123`` ->
    ``+12125550123``); a SIP URI (``sip:``/``sips:``) is compared as written.
    """
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        return target
    digits = "".join(ch for ch in target.removeprefix("tel:") if ch.isdigit())
    return ("+" if target.removeprefix("tel:").startswith("+") else "") + digits


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Grant:
    action: str
    decision_id: str
    call_id: str
    target: str  # dial_key form; empty for recording
    decision: str
    expires_unix_ms: int

    def canonical(self, key_id: str) -> bytes:
        fields = {
            "action": self.action,
            "call_id": self.call_id,
            "decision": self.decision,
            "decision_id": self.decision_id,
            "expires_unix_ms": int(self.expires_unix_ms),
            "key_id": key_id,
            "target": self.target,
        }
        return _VERSION + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def of(cls, approval: policy_pb2.Approval) -> Grant:
        return cls(
            approval.action,
            approval.decision_id,
            approval.call_id,
            approval.target,
            approval.decision,
            approval.expires_unix_ms,
        )


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """Policy's half: signs grants with its private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.key_id = key_id(private.public_key())

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_file(cls, path: str | Path) -> Signer:
        try:
            key = serialization.load_pem_private_key(Path(path).expanduser().read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise InvalidArgument(f"signing key {path} is not readable as a PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidArgument(f"signing key {path} is not an Ed25519 key")
        return cls(key)

    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_pem(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, grant: Grant) -> policy_pb2.Approval:
        if grant.action not in ACTIONS:
            raise InvalidArgument(f"unknown approval action {grant.action!r}")
        grant = dataclasses.replace(grant, target=dial_key(grant.target) if grant.target else "")
        return policy_pb2.Approval(
            action=grant.action,
            decision_id=grant.decision_id,
            call_id=grant.call_id,
            target=grant.target,
            decision=grant.decision,
            expires_unix_ms=grant.expires_unix_ms,
            key_id=self.key_id,
            signature=self._private.sign(grant.canonical(self.key_id)),
        )


class Verifier:
    """The edge's half: checks grants against the trusted public keys (empty: refuses all)."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self.keys = {key_id(k): k for k in keys}

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> Verifier:
        keys = []
        for path in paths:
            try:
                key = serialization.load_pem_public_key(Path(path).expanduser().read_bytes())
            except (OSError, ValueError, TypeError) as exc:
                raise InvalidArgument(f"public key {path} is not readable as a PEM public key") from exc
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidArgument(f"public key {path} is not an Ed25519 key")
            keys.append(key)
        return cls(keys)

    def check(
        self,
        approval: policy_pb2.Approval | None,
        *,
        action: str,
        call_id: str,
        target: str = "",
        decision: str = "allow",
        now_unix_ms: int | None = None,
    ) -> Grant:
        """The grant ``approval`` signs for this action, call, target and decision, or NotApproved."""
        if approval is None or not approval.signature:
            raise NotApproved(action, "unsigned", "no signed approval")
        if not self.keys:
            raise NotApproved(action, "no_key", "no policy public key configured")
        public = self.keys.get(approval.key_id)
        if public is None:
            raise NotApproved(action, "unknown_key", "signed with an unknown key")
        grant = Grant.of(approval)
        try:
            public.verify(approval.signature, grant.canonical(approval.key_id))
        except InvalidSignature:
            raise NotApproved(action, "bad_signature", "bad signature") from None
        if grant.action != action:
            raise NotApproved(action, "mismatch", f"approval is for a {grant.action or 'different action'}")
        if grant.call_id != call_id:
            raise NotApproved(action, "wrong_call", "approval is for another call")
        if grant.target != (dial_key(target) if target else ""):
            raise NotApproved(action, "mismatch", "approval is for another target")
        if grant.decision != decision:
            raise NotApproved(action, "mismatch", "approval is for another decision")
        if grant.expires_unix_ms <= (now_ms() if now_unix_ms is None else now_unix_ms):
            raise NotApproved(action, "expired", "approval expired")
        return grant


def encode_approval(approval: policy_pb2.Approval) -> str:
    """The text form of an approval (how a dial approval is kept in the KV bucket)."""
    return base64.b64encode(approval.SerializeToString()).decode()


def decode_approval(text: str) -> policy_pb2.Approval:
    """An approval from :func:`encode_approval`'s form; ValueError when it is not one."""
    try:
        return policy_pb2.Approval.FromString(base64.b64decode(text, validate=True))
    except Exception as exc:  # binascii.Error, DecodeError
        raise ValueError("unreadable approval") from exc


def recording_decision(d: policy_pb2.PolicyDecision) -> str:
    """What a recording decision's signature covers besides the call: its decision and rule."""
    return f"{policy_pb2.Decision.Name(d.decision).removeprefix('DECISION_').lower()}/{d.rule}"


def ensure_key_pair(directory: Path) -> tuple[Path, Path]:
    """The signing key pair kept in ``directory`` (``policy-signing.pem``, owner-only, and
    ``policy-public.pem``), made on first use and reused after (the local stack's keys)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private, public = directory / "policy-signing.pem", directory / "policy-public.pem"
    if private.exists():
        signer = Signer.from_file(private)
    else:
        signer = Signer.generate()
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(signer.private_pem())
    tmp = public.with_suffix(".tmp")
    tmp.write_bytes(signer.public_pem())
    os.replace(tmp, public)
    return private, public
