"""Who may say what on the bus: one NATS user per service, its permissions built from the subjects.

Every service (and each command-line tool that uses the bus) connects as its own NATS user.
:func:`permissions` gives the subjects a user may publish and subscribe to, built from
:mod:`phoneagent.runtime.subjects` and the JetStream names in :mod:`phoneagent.runtime.streams`;
:func:`server_authorization` turns them into the ``authorization`` block of a nats-server
configuration, for the local stack (:mod:`phoneagent.runtime.natsserver`) and for the Helm chart
(``phone-agent bus-config``). So the edge cannot publish what the caller is told (``say``), the
TTS can send no control event but its own errors, and only policy writes dial approvals.

A client names its user and the file holding its password with ``PA_NATS_USER`` and
``PA_NATS_PASSWORD_FILE`` (:class:`BusAuth`); ``PA_NATS_TLS_CA_FILE`` names the CA that signed
the server's certificate for ``tls://`` URLs.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phoneagent.runtime import subjects
from phoneagent.runtime.errors import InvalidArgument

# Services, then the command-line tools that use the bus.
SERVICE_ROLES = ("edge", "asr", "llm", "tts", "policy", "records")
TOOL_ROLES = (
    "harness",  # phone-agent call / demo / bench: watches a call's events
    "audit",  # phone-agent audit: reads the audit stream
    "campaign",  # phone-agent campaign: dial checks, dials, hang-ups of its calls
)
ROLES = SERVICE_ROLES + TOOL_ROLES
# Everything, everywhere: for an operator's own tools and the tests that play the operator.
OPERATOR = "operator"
# The one service that creates and updates the JetStream streams, buckets and work consumers
# (streams.ensure); every other service waits until they exist.
PROVISIONER = "policy"

# Key-value buckets not named in subjects (streams.py takes them from here).
DIAL_APPROVALS_BUCKET = "pa_dial_approvals"
DIAL_APPROVALS_USED_BUCKET = "pa_dial_approvals_used"
ASR_RESUME_BUCKET = "pa_asr_resume"

ENV_USER = "PA_NATS_USER"
ENV_PASSWORD_FILE = "PA_NATS_PASSWORD_FILE"
ENV_TLS_CA_FILE = "PA_NATS_TLS_CA_FILE"


@dataclass(frozen=True)
class Permissions:
    """Subject patterns a user may publish and subscribe to. Replies to requests it received
    are allowed besides (``allow_responses``), so no user may publish into others' inboxes."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def inbox_prefix(user: str) -> str:
    """The user's own reply subjects: nobody else can subscribe to them."""
    return f"_INBOX.{user}"


# --- JetStream API subjects ---------------------------------------------------------------------
def _api(*tail: str) -> str:
    return ".".join(("$JS.API", *tail))


def _stream_read(stream: str) -> list[str]:
    """Look a stream up and read single messages (by sequence or last per subject)."""
    return [
        _api("STREAM.INFO", stream),
        _api("STREAM.MSG.GET", stream),
        _api("DIRECT.GET", stream),
        _api("DIRECT.GET", stream, ">"),
    ]


def _consume(stream: str, consumer: str = "*") -> list[str]:
    """Create (or look up) a consumer of ``stream`` named ``consumer`` and read through it."""
    out = [
        _api("CONSUMER.INFO", stream, consumer),
        _api("CONSUMER.CREATE", stream, consumer),
        _api("CONSUMER.CREATE", stream, consumer, ">"),
        _api("CONSUMER.DURABLE.CREATE", stream, consumer),
        _api("CONSUMER.MSG.NEXT", stream, consumer),
        _api("CONSUMER.DELETE", stream, consumer),
        f"$JS.ACK.{stream}.{consumer}.>",
        f"$JS.FC.{stream}.>",
    ]
    if consumer == "*":
        out.append(_api("CONSUMER.CREATE", stream))  # an ephemeral consumer (older API form)
    return out


def _kv_stream(bucket: str) -> str:
    return f"KV_{bucket}"


def _kv_read(bucket: str) -> list[str]:
    return _stream_read(_kv_stream(bucket)) + _consume(_kv_stream(bucket))


def _kv_write(bucket: str) -> list[str]:
    return [f"$KV.{bucket}.>"]


def _kv(bucket: str) -> list[str]:
    return _kv_read(bucket) + _kv_write(bucket)


def _controls(*kinds: str) -> list[str]:
    return [subjects.any_call_control(k) for k in kinds]


def _stage(stage: str) -> tuple[list[str], list[str]]:
    """What every stage holding sessions needs: its claims, heartbeats, ownership bucket, the
    stored call lifecycle (has a call ended?) and every call's lifecycle and control events."""
    beat = subjects.session_heartbeat(stage)
    pub = [beat, *_kv(subjects.sessions_bucket(stage)), *_stream_read(subjects.CALLS_STREAM)]
    sub = [subjects.session_claim(stage), beat, subjects.ALL_LIFECYCLE, subjects.ALL_CONTROL]
    return pub, sub


def _edge_grants() -> tuple[list[str], list[str]]:
    pub = [
        subjects.ALL_LIFECYCLE,
        subjects.ALL_AUDIO,
        subjects.ALL_RECORDINGS,
        subjects.ALL_PLAYOUTS,  # what each reply's caller heard, for the call records
        *_controls("barge_in", "playback_done", "transfer_result", "dtmf", "directive"),
        subjects.ALL_SESSION_CLAIMS,  # asks each stage for a session
        subjects.tts_render(),  # the warm-transfer summary
        # reads dial approvals and marks them used; cannot write one
        *_kv_read(DIAL_APPROVALS_BUCKET),
        *_kv(DIAL_APPROVALS_USED_BUCKET),
    ]
    sub = [
        subjects.ALL_ASR,
        subjects.ALL_TRANSCRIPTS,
        subjects.ALL_SAY,  # the browser page shows what the agent says
        subjects.ALL_SPEECH,
        subjects.ALL_LIFECYCLE,
        subjects.ALL_CONTROL,
        subjects.ALL_AUDIT,  # recording consent decisions of its calls
        subjects.ALL_SESSION_HEARTBEATS,
        subjects.edge_dial(),
    ]
    return pub, sub


def _asr_grants() -> tuple[list[str], list[str]]:
    pub = [subjects.ALL_ASR, subjects.ALL_TRANSCRIPTS, *_kv(ASR_RESUME_BUCKET)]
    sub = [subjects.ALL_AUDIO]
    return pub, sub


def _llm_grants() -> tuple[list[str], list[str]]:
    pub = [
        subjects.ALL_REPLY,
        subjects.ALL_TOOLS,
        *_controls("cancel", "hangup", "transfer"),
        subjects.transfer_check(),  # policy's signed approval before a transfer
        *_kv(subjects.DIALOG_BUCKET),
        subjects.WORK_SUMMARY_RESULTS,
        *_consume(subjects.WORK_STREAM, subjects.LLM_SUMMARIES_CONSUMER),
    ]
    sub = [subjects.ALL_TRANSCRIPTS, subjects.ALL_ASR]
    return pub, sub


def _tts_grants() -> tuple[list[str], list[str]]:
    pub = [subjects.ALL_SPEECH, *_controls("error")]
    sub = [subjects.ALL_SAY, subjects.tts_render()]
    return pub, sub


def _policy_grants() -> tuple[list[str], list[str]]:
    pub = [
        subjects.ALL_SAY,
        subjects.ALL_RECORDS,
        subjects.ALL_AUDIT,
        *_controls("directive"),
        *_kv(DIAL_APPROVALS_BUCKET),
        *_kv(subjects.POLICY_CALLS_BUCKET),  # per-call gate state, for a takeover
        *_stream_read(subjects.REPLAY_STREAM),
        *_consume(subjects.REPLAY_STREAM),  # a takeover replays what the dead owner missed
        # provisioning (streams.ensure): streams, buckets and the work queue's consumers
        _api("STREAM.CREATE.*"),
        _api("STREAM.UPDATE.*"),
        *_consume(subjects.WORK_STREAM),
    ]
    sub = [
        subjects.ALL_REPLY,
        subjects.ALL_TRANSCRIPTS,
        subjects.ALL_TOOLS,
        subjects.dial_check(),
        subjects.transfer_check(),
    ]
    return pub, sub


def _records_grants() -> tuple[list[str], list[str]]:
    pub = [
        subjects.dial_check(),
        subjects.transfer_check(),  # the control API's TransferCall
        subjects.edge_dial(),
        *_controls("hangup", "transfer"),  # the control API and campaign time-outs
        subjects.ALL_AUDIT,  # the control API's audit of each call it serves (subject api)
        subjects.WORK_SUMMARIZE,
        *_stream_read(subjects.CALLS_STREAM),
        *_consume(subjects.CALLS_STREAM),
        *_consume(subjects.AUDIT_STREAM),
        *_consume(subjects.WORK_STREAM, subjects.RECORDS_SUMMARIES_CONSUMER),
    ]
    sub = [subjects.ALL_LIFECYCLE]
    return pub, sub


def _harness_grants() -> tuple[list[str], list[str]]:
    sub = [
        subjects.ALL_SESSION_CLAIMS,  # the caller's SIP user, which the stored lifecycle masks
        subjects.ALL_LIFECYCLE,
        subjects.ALL_TRANSCRIPTS,
        subjects.ALL_REPLY,
        subjects.ALL_SPEECH,
        subjects.ALL_CONTROL,
    ]
    return [], sub


def _audit_grants() -> tuple[list[str], list[str]]:
    pub = _consume(subjects.AUDIT_STREAM)
    return pub, []


def _campaign_grants() -> tuple[list[str], list[str]]:
    pub = [subjects.dial_check(), subjects.edge_dial(), *_controls("hangup")]
    sub = [subjects.ALL_LIFECYCLE]
    return pub, sub


_GRANTS: dict[str, Callable[[], tuple[list[str], list[str]]]] = {
    "edge": _edge_grants,
    "asr": _asr_grants,
    "llm": _llm_grants,
    "tts": _tts_grants,
    "policy": _policy_grants,
    "records": _records_grants,
    "harness": _harness_grants,
    "audit": _audit_grants,
    "campaign": _campaign_grants,
}


def permissions(role: str) -> Permissions:
    """The subjects ``role`` (one of :data:`ROLES`, or :data:`OPERATOR`) may publish and
    subscribe to. JetStream API requests count as publishes."""
    if role == OPERATOR:
        return Permissions((">",), (">",))
    pub: list[str] = [_api("INFO"), _api("STREAM.INFO.*")]  # account limits; streams exist?
    sub: list[str] = [f"{inbox_prefix(role)}.>"]
    if role in subjects.STAGES:
        spub, ssub = _stage(role)
        pub += spub
        sub += ssub
    grants = _GRANTS.get(role)
    if grants is None:
        raise InvalidArgument(f"unknown bus role {role!r}; one of {', '.join((*ROLES, OPERATOR))}")
    more_pub, more_sub = grants()
    pub += more_pub
    sub += more_sub
    return Permissions(tuple(dict.fromkeys(pub)), tuple(dict.fromkeys(sub)))


def server_authorization(passwords: Mapping[str, str]) -> dict[str, Any]:
    """The ``authorization`` block of a nats-server configuration: one user per entry of
    ``passwords`` (role -> password, or a ``<< $VAR >>`` reference for the Helm chart)."""
    users = []
    for role, password in passwords.items():
        perms = permissions(role)
        users.append(
            {
                "user": role,
                "password": password,
                "permissions": {
                    "publish": {"allow": list(perms.publish)},
                    "subscribe": {"allow": list(perms.subscribe)},
                    "allow_responses": True,
                },
            }
        )
    return {"users": users}


def server_config(passwords: Mapping[str, str]) -> str:
    """nats-server configuration text with the users of ``passwords`` (JSON values are valid
    in the server's configuration format)."""
    return "authorization: " + json.dumps(server_authorization(passwords), indent=2) + "\n"


def password_env(role: str) -> str:
    """The environment variable holding ``role``'s password in the NATS server container."""
    return f"PA_NATS_PASSWORD_{role.upper()}"


def helm_values(secret_name: str, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """Values for the chart's NATS subchart: the users and permissions (each password read by
    the server from its environment, ``<< $VAR >>``) and that environment, from ``secret_name``
    (one key per role, the Secret the chart's services read their own key from)."""
    return {
        "nats": {
            "config": {
                "merge": {
                    "authorization": server_authorization(
                        {role: f"<< ${password_env(role)} >>" for role in roles}
                    )
                }
            },
            "container": {
                "env": {
                    password_env(role): {"valueFrom": {"secretKeyRef": {"name": secret_name, "key": role}}}
                    for role in roles
                }
            },
        }
    }


# --- passwords on disk --------------------------------------------------------------------------
def new_password() -> str:
    return secrets.token_urlsafe(32)


def password_file(auth_dir: Path, role: str) -> Path:
    return Path(auth_dir) / f"{role}.password"


def ensure_passwords(auth_dir: Path, roles: tuple[str, ...]) -> dict[str, str]:
    """Each role's password, created once (a file readable by its owner only) and kept, so
    clients that were given a password file go on working across restarts."""
    auth_dir = Path(auth_dir)
    auth_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(auth_dir, 0o700)
    out = {}
    for role in roles:
        path = password_file(auth_dir, role)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(new_password() + "\n")
        out[role] = path.read_text().strip()
        if not out[role]:
            raise InvalidArgument(f"empty password file {path}")
    return out


# --- the client side ----------------------------------------------------------------------------
@dataclass(frozen=True)
class BusAuth:
    """How one client authenticates: its NATS user, its password file, the CA of a TLS server."""

    user: str = ""
    password_file: str = ""
    tls_ca_file: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BusAuth:
        env = os.environ if environ is None else environ
        return cls(env.get(ENV_USER, ""), env.get(ENV_PASSWORD_FILE, ""), env.get(ENV_TLS_CA_FILE, ""))

    @classmethod
    def for_role(cls, auth_dir: Path, role: str, tls_ca_file: str = "") -> BusAuth:
        return cls(role, str(password_file(auth_dir, role)), tls_ca_file)

    def env(self) -> dict[str, str]:
        """The environment variables that name this credential (for a child process)."""
        return {ENV_USER: self.user, ENV_PASSWORD_FILE: self.password_file, ENV_TLS_CA_FILE: self.tls_ca_file}

    def problems(self) -> list[str]:
        if bool(self.user) != bool(self.password_file):
            return [f"{ENV_USER} and {ENV_PASSWORD_FILE}: set both or neither"]
        return []

    def connect_options(self) -> dict[str, Any]:
        """nats-py ``connect`` options: user, password (read now), the user's inbox prefix, TLS."""
        bad = self.problems()
        if bad:
            raise InvalidArgument(bad[0])
        opts: dict[str, Any] = {}
        if self.user:
            try:
                password = Path(self.password_file).expanduser().read_text().strip()
            except OSError as exc:
                raise InvalidArgument(
                    f"{ENV_PASSWORD_FILE}: cannot read the password file ({exc.strerror})"
                ) from None
            opts.update(user=self.user, password=password, inbox_prefix=inbox_prefix(self.user))
        if self.tls_ca_file:
            ctx = ssl.create_default_context(cafile=str(Path(self.tls_ca_file).expanduser()))
            opts["tls"] = ctx
        return opts
