"""Policy's signatures (runtime/approvals.py): what a grant covers, every way a forged or stale one
is refused, key rotation, and the local stack's key pair."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from phoneagent.edge.service import EdgeService
from phoneagent.edge.settings import EdgeSettings
from phoneagent.runtime import approvals
from phoneagent.runtime.approvals import Grant, NotApproved, Signer, Verifier, ensure_key_pair
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.runtime.stack import Stack

CALL = "c0ffee0123456789abcdef01"
TARGET = "tel:+1 (212) 555-0123"


def grant(**changes: object) -> Grant:
    fields: dict[str, object] = {
        "action": approvals.TRANSFER,
        "decision_id": "d1",
        "call_id": CALL,
        "target": TARGET,
        "decision": "allow",
        "expires_unix_ms": approvals.now_ms() + 60_000,
    }
    fields.update(changes)
    return Grant(**fields)  # type: ignore[arg-type]


def refusal(verifier: Verifier, approval: object, **expect: str) -> str:
    with pytest.raises(NotApproved) as err:
        verifier.check(
            approval,  # type: ignore[arg-type]
            action=expect.get("action", approvals.TRANSFER),
            call_id=expect.get("call_id", CALL),
            target=expect.get("target", TARGET),
        )
    assert err.value.message.startswith(f"{expect.get('action', approvals.TRANSFER)} not approved by policy")
    return err.value.reason


def test_a_signed_grant_verifies_for_its_call_and_target_only() -> None:
    signer = Signer.generate()
    verifier = Verifier([signer.public_key()])
    approval = signer.sign(grant())
    assert approval.target == "+12125550123" and approval.key_id == signer.key_id
    got = verifier.check(approval, action=approvals.TRANSFER, call_id=CALL, target="+12125550123")
    assert got.decision_id == "d1"
    assert refusal(verifier, approval, call_id="c0ffee0123456789abcdef02") == "wrong_call"
    assert refusal(verifier, approval, target="+12125550124") == "mismatch"
    assert refusal(verifier, approval, action=approvals.DIAL) == "mismatch"
    assert refusal(verifier, None) == "unsigned"
    assert refusal(Verifier(), approval) == "no_key"
    assert refusal(Verifier([Signer.generate().public_key()]), approval) == "unknown_key"
    expired = signer.sign(grant(expires_unix_ms=approvals.now_ms() - 1))
    assert refusal(verifier, expired) == "expired"


@pytest.mark.parametrize(
    "field,value",
    [
        ("call_id", "c0ffee0123456789abcdef02"),
        ("target", "+19005550100"),
        ("decision", "deny"),
        ("decision_id", "d2"),
        ("expires_unix_ms", 2**62),
        ("action", approvals.DIAL),
    ],
)
def test_any_field_changed_after_signing_breaks_the_signature(field: str, value: object) -> None:
    signer = Signer.generate()
    verifier = Verifier([signer.public_key()])
    approval = signer.sign(grant())
    setattr(approval, field, value)
    with pytest.raises(NotApproved) as err:
        verifier.check(approval, action=approval.action, call_id=approval.call_id, target=approval.target)
    assert err.value.reason == "bad_signature"


def test_rotation_trusts_both_keys(tmp_path: Path) -> None:
    old_priv, old_pub = ensure_key_pair(tmp_path / "old")
    new_priv, new_pub = ensure_key_pair(tmp_path / "new")
    verifier = Verifier.from_files([old_pub, new_pub])
    for key in (old_priv, new_priv):
        approval = Signer.from_file(key).sign(grant())
        verifier.check(approval, action=approvals.TRANSFER, call_id=CALL, target=TARGET)
    only_new = Verifier.from_files([new_pub])
    assert refusal(only_new, Signer.from_file(old_priv).sign(grant())) == "unknown_key"


def test_the_local_key_pair_is_private_and_kept(tmp_path: Path) -> None:
    private, public = ensure_key_pair(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    again = ensure_key_pair(tmp_path / "keys")
    assert (
        again == (private, public) and Signer.from_file(private).key_id == Signer.from_file(again[0]).key_id
    )
    # The stack gives policy the private key and the edge the public one, nobody else either.
    stack = Stack(tmp_path)
    assert stack._keys("policy") == {"PA_POLICY_SIGNING_KEY_FILE": str(private)}  # noqa: SLF001
    assert stack._keys("edge") == {"PA_APPROVAL_PUBLIC_KEY_FILES": str(public)}  # noqa: SLF001
    assert stack._keys("llm") == {}  # noqa: SLF001


def test_bad_key_files_are_refused_naming_the_setting(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidArgument, match="PA_APPROVAL_PUBLIC_KEY_FILES"):
        EdgeService(load(CommonSettings), load(EdgeSettings, approval_public_key_files=[str(junk)]))
    private, _ = ensure_key_pair(tmp_path / "keys")
    with pytest.raises(InvalidArgument, match="not readable as a PEM public key"):
        Verifier.from_files([private])  # the private key where the public one belongs
    with pytest.raises(InvalidArgument, match="not readable as a PEM private key"):
        Signer.from_file(junk)
