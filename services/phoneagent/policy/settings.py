"""Policy service settings (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses

from phoneagent.policy.recording import DEFAULT_ALL_PARTY_STATES, check_states
from phoneagent.runtime.settings import env


@dataclasses.dataclass(frozen=True)
class PolicySettings:
    db_path: str = env(
        "PA_POLICY_DB",
        "var/policy.sqlite3",
        doc="DNC, consent and attempts: a SQLite file (one replica) or a postgresql:// URL that "
        "every policy replica shares",
    )
    caller_id: str = env(
        "PA_CALLER_ID", "", doc="Caller id for outbound calls (E.164); empty denies all dials"
    )
    window_start: str = env("PA_CALL_WINDOW_START", "08:00", doc="Earliest outbound call, callee local time")
    window_end: str = env("PA_CALL_WINDOW_END", "21:00", doc="Latest outbound call, callee local time")
    max_attempts_per_day: int = env(
        "PA_MAX_ATTEMPTS_PER_DAY", 3, doc="Dial attempts per number per local day"
    )
    max_attempts_total: int = env("PA_MAX_ATTEMPTS_TOTAL", 10, doc="Dial attempts per number in all")
    disclosure_addition: str = env(
        "PA_DISCLOSURE_ADDITION", "", doc="Text added after the fixed AI disclosure (cannot replace it)"
    )
    all_party_states: str = env(
        "PA_ALL_PARTY_STATES",
        ",".join(sorted(DEFAULT_ALL_PARTY_STATES)),
        check=check_states,
        doc="US states where every party must consent to recording (codes, comma-separated, or none)",
    )
    signing_key_file: str = env(
        "PA_POLICY_SIGNING_KEY_FILE",
        "",
        doc="Ed25519 private key (PEM) that signs dial, transfer and recording approvals; only policy "
        "holds it. Empty: nothing is signed, so the edge dials, transfers and records nothing",
    )
