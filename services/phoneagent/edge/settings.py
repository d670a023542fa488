"""Edge service settings (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import os

from phoneagent.edge.media.srtp import SRTP_MODES
from phoneagent.edge.recording_volume import parse_quantity
from phoneagent.edge.sip.headers import ParseError, SipURI
from phoneagent.edge.sip.sockets import TlsConfig
from phoneagent.edge.sip.trunks import Trunk, parse_trunks
from phoneagent.runtime.settings import env, non_negative, port, positive

LOCAL_TRUNKS = '[{"name": "local", "sources": ["127.0.0.0/8"]}]'

_CODECS = ("G722", "OPUS", "PCMU", "PCMA")


def _codecs(value: list[str]) -> str | None:
    if not value or any(c.upper() not in _CODECS for c in value):
        return "must list G722, OPUS, PCMU and/or PCMA"
    if len({c.upper() for c in value}) != len(value):
        return "must not list a codec twice"
    return None


def _srtp(value: str) -> str | None:
    return None if value in SRTP_MODES else f"must be one of {', '.join(SRTP_MODES)}"


def _transports(value: list[str]) -> str | None:
    if not value or any(t.lower() not in ("udp", "tcp", "tls") for t in value):
        return "must list udp, tcp and/or tls"
    return None


def _denoise(value: list[str]) -> str | None:
    if any(t.lower() not in ("sip", "webrtc") for t in value):
        return "must list sip and/or webrtc (empty: off)"
    return None


def _vad_ms(value: int) -> str | None:
    """Speech durations the barge-in VAD counts in whole 20 ms frames (at least one)."""
    if value < 20 or value % 20:
        return "must be a multiple of 20 ms (the audio frame), at least 20"
    return None


def _verdict_wait_ms(value: int) -> str | None:
    if not 100 <= value <= 10000:
        return "must be 100-10000 ms"
    return None


def _quantity(value: str) -> str | None:
    if not value:
        return None
    try:
        parse_quantity(value)
    except ValueError as exc:
        return str(exc)
    return None


def _s3_url(value: str) -> str | None:
    if value and not (value.startswith("s3://") and len(value) > 5):
        return "must be an s3://bucket/prefix URL"
    return None


def _trunks(value: str) -> str | None:
    try:
        parse_trunks(value)
    except ValueError as exc:
        return str(exc)
    return None


def _passwords(value: str) -> str | None:
    if not value:
        return None
    try:
        raw = json.loads(value)
    except json.JSONDecodeError:
        raw = None
    if not isinstance(raw, dict) or not all(isinstance(v, str) and v for v in raw.values()):
        return 'must be a JSON object of trunk name to password, e.g. {"carrier": "..."}'
    return None


def _digest_secret(value: str) -> str | None:
    if value and len(value) < 32:
        return "must be at least 32 characters (random, the same on every edge replica)"
    return None


def _sip_uri(value: str) -> str | None:
    if value and not value.lower().startswith(("sip:", "sips:")):
        return "must be a sip: URI, e.g. sip:trunk.example.com:5060"
    return None


@dataclasses.dataclass(frozen=True)
class EdgeSettings:
    sip_host: str = env("PA_SIP_HOST", "127.0.0.1", doc="Address SIP and RTP bind to")
    sip_port: int = env("PA_SIP_PORT", 5060, check=port, doc="SIP port (UDP and TCP); 0 = any free port")
    sip_port_fallback: bool = env(
        "PA_SIP_PORT_FALLBACK", True, doc="When the SIP or web port is busy, bind a free one (see /readyz)"
    )
    web_enabled: bool = env("PA_WEB_ENABLED", True, doc="Serve the browser page and WebRTC calls (PA_WEB_*)")
    sip_transports: list[str] = env(
        "PA_SIP_TRANSPORTS", ["udp", "tcp"], check=_transports, doc="SIP transports: udp,tcp,tls"
    )
    tls_port: int = env("PA_SIP_TLS_PORT", 5061, check=port, doc="SIP over TLS port (with tls in transports)")
    tls_cert_file: str = env("PA_SIP_TLS_CERT_FILE", "", doc="PEM certificate chain the TLS listener shows")
    tls_key_file: str = env("PA_SIP_TLS_KEY_FILE", "", doc="PEM private key of that certificate")
    tls_ca_file: str = env(
        "PA_SIP_TLS_CA_FILE",
        "",
        doc="PEM CA bundle peers' certificates are checked against; empty: the system's",
    )
    tls_verify_server: bool = env(
        "PA_SIP_TLS_VERIFY_SERVER",
        True,
        doc="Check the certificate (name or IP) of a TLS peer the edge connects to",
    )
    tls_verify_client: bool = env(
        "PA_SIP_TLS_VERIFY_CLIENT",
        False,
        doc="Ask TLS peers calling in for a certificate from PA_SIP_TLS_CA_FILE",
    )
    public_address: str = env(
        "PA_SIP_PUBLIC_ADDRESS", "", doc="Address advertised in SDP and Contact; default PA_SIP_HOST"
    )
    rtp_port_min: int = env("PA_RTP_PORT_MIN", 20000, check=port, doc="Lowest RTP port")
    rtp_port_max: int = env("PA_RTP_PORT_MAX", 20999, check=port, doc="Highest RTP port")
    rtp_latch: bool = env(
        "PA_RTP_LATCH", False, doc="Accept RTP from the first source (NAT); off = only the SDP address"
    )
    trunk_uri: str = env("PA_SIP_TRUNK_URI", "", check=_sip_uri, doc="Outbound trunk, e.g. sip:pbx:5060")
    trunk_username: str = env("PA_SIP_TRUNK_USERNAME", "", doc="Digest user for the trunk")
    trunk_password: str = env("PA_SIP_TRUNK_PASSWORD", "", doc="Digest password for the trunk")
    trunk_srtp: str = env(
        "PA_SIP_TRUNK_SRTP",
        "off",
        check=_srtp,
        doc="SRTP on outbound calls: off, optional (keys offered on RTP/AVP), required (RTP/SAVP only)",
    )
    inbound_trunks: str = env(
        "PA_SIP_INBOUND_TRUNKS",
        LOCAL_TRUNKS,
        check=_trunks,
        doc="Who may call in: JSON list of trunks, each with sources (CIDRs), a digest username, or both, "
        'and "srtp": off, optional (the default: SRTP when the caller offers it) or required',
    )
    inbound_passwords: str = env(
        "PA_SIP_INBOUND_PASSWORDS", "", check=_passwords, doc="JSON object: trunk name -> digest password"
    )
    register_passwords: str = env(
        "PA_SIP_REGISTER_PASSWORDS",
        "",
        check=_passwords,
        doc="JSON object: trunk name -> password the edge registers with (trunks with register)",
    )
    digest_secret: str = env(
        "PA_SIP_DIGEST_SECRET",
        "",
        check=_digest_secret,
        doc="Signs digest nonces; the same on every edge replica (required when a trunk has a username)",
    )
    nonce_lifetime_s: float = env(
        "PA_SIP_NONCE_LIFETIME_S", 300.0, check=positive, doc="A digest nonce is stale after this long"
    )
    invite_rate: float = env(
        "PA_SIP_INVITE_RATE", 10.0, check=positive, doc="INVITEs a second one source may send (sustained)"
    )
    invite_burst: int = env(
        "PA_SIP_INVITE_BURST", 40, check=positive, doc="INVITEs one source may send at once"
    )
    tcp_max_connections: int = env(
        "PA_SIP_TCP_MAX_CONNECTIONS", 512, check=positive, doc="Inbound SIP TCP connections in all"
    )
    tcp_max_per_source: int = env(
        "PA_SIP_TCP_MAX_PER_SOURCE", 32, check=positive, doc="Inbound SIP TCP connections from one address"
    )
    tcp_idle_timeout_s: float = env(
        "PA_SIP_TCP_IDLE_TIMEOUT_S",
        300.0,
        check=positive,
        doc="A SIP TCP connection silent this long is closed",
    )
    max_transactions: int = env(
        "PA_SIP_MAX_TRANSACTIONS", 2048, check=positive, doc="SIP server transactions in flight; more get 503"
    )
    rtp_timeout_s: float = env(
        "PA_RTP_TIMEOUT_S", 45.0, check=positive, doc="Hang up a call whose peer sends no RTP this long"
    )
    max_calls: int = env("PA_MAX_CALLS", 50, check=positive, doc="Concurrent calls; more get 503")
    max_call_duration_s: float = env(
        "PA_MAX_CALL_DURATION_S", 3600.0, check=positive, doc="Calls are hung up after this long"
    )
    barge_in_min_speech_ms: int = env(
        "PA_BARGE_IN_MIN_SPEECH_MS", 200, check=_vad_ms, doc="Caller speech that pauses playout (20 ms steps)"
    )
    barge_in_long_ms: int = env(
        "PA_BARGE_IN_LONG_MS",
        1600,
        check=_vad_ms,
        doc="Caller speech this long interrupts the agent without waiting for ASR (20 ms steps)",
    )
    backchannel_wait_ms: int = env(
        "PA_BARGE_IN_BACKCHANNEL_WAIT_MS",
        1200,
        check=_verdict_wait_ms,
        doc="After short caller speech, how long playout waits for ASR's backchannel verdict",
    )
    noise_suppression: list[str] = env(
        "PA_NOISE_SUPPRESSION",
        [],
        check=_denoise,
        doc="Calls whose caller audio RNNoise cleans before barge-in VAD and ASR: sip and/or webrtc; "
        "empty (the default: it did not lower WER or false barge-ins in noise_bench, at ~1 ms CPU a frame)",
    )
    codecs: list[str] = env(
        "PA_CODECS",
        ["G722", "OPUS", "PCMU", "PCMA"],
        check=_codecs,
        doc="SIP codecs in preference order (G722 and OPUS are wideband: 16 kHz to ASR and from TTS)",
    )
    require_dial_approval: bool = env(
        "PA_EDGE_REQUIRE_DIAL_APPROVAL",
        True,
        doc="Dial only with a one-time policy approval (pa_dial_approvals); false is for labs only",
    )
    approval_public_key_files: list[str] = env(
        "PA_APPROVAL_PUBLIC_KEY_FILES",
        [],
        doc="Policy's Ed25519 public keys (PEM files, comma-separated; two while rotating); the edge "
        "dials, transfers and records only with approvals they verify. Empty: it does none of these",
    )
    no_answer_timeout_s: float = env(
        "PA_DIAL_TIMEOUT_S", 45.0, check=positive, doc="Outbound calls ring this long before no-answer"
    )
    recording_enabled: bool = env(
        "PA_RECORDING_ENABLED", True, doc="Record calls (stereo WAV) when policy allows it for the call"
    )
    recording_dir: str = env("PA_RECORDING_DIR", "var/recordings", doc="Recording volume (local disk)")
    recording_s3_url: str = env(
        "PA_RECORDING_S3_URL", "", check=_s3_url, doc="Upload recordings to s3://bucket/prefix (extra s3)"
    )
    recording_retention_days: float = env(
        "PA_RECORDING_RETENTION_DAYS",
        30.0,
        check=non_negative,
        doc="The edge deletes recordings (its volume and the S3 prefix) this many days old; 0 keeps them",
    )
    recording_min_free_mb: int = env(
        "PA_RECORDING_MIN_FREE_MB",
        1024,
        check=non_negative,
        doc="Below this free space on the recording volume no recording starts and running ones stop",
    )
    recording_volume_limit: str = env(
        "PA_RECORDING_VOLUME_LIMIT",
        "",
        check=_quantity,
        doc="Size of the recording volume where the filesystem does not show it (an emptyDir's sizeLimit, "
        "e.g. 2Gi); empty = the filesystem's free space only",
    )
    recording_purge_every_s: float = env(
        "PA_RECORDING_PURGE_EVERY_S", 3600.0, check=positive, doc="How often expired recordings are deleted"
    )

    def validate(self) -> list[str]:
        problems = []
        if self.recording_s3_url and importlib.util.find_spec("boto3") is None:
            problems.append("PA_RECORDING_S3_URL: needs boto3; install with pip install 'phone-agent[s3]'")
        if self.rtp_port_min > self.rtp_port_max or self.rtp_port_min < 1024:
            problems.append("PA_RTP_PORT_MIN/PA_RTP_PORT_MAX: need 1024 <= min <= max")
        problems.extend(self._trunk_problems())
        problems.extend(self._tls_problems())
        if bool(self.trunk_username) != bool(self.trunk_password):
            problems.append("PA_SIP_TRUNK_USERNAME/PASSWORD: set both or neither")
        for name, value in (("PA_SIP_HOST", self.sip_host), ("PA_SIP_PUBLIC_ADDRESS", self.public_address)):
            if value and not _is_ip(value):
                problems.append(f"{name}={value!r}: must be an IPv4 address")
        if self.sip_host == "0.0.0.0" and not self.public_address:
            problems.append("PA_SIP_PUBLIC_ADDRESS: required when PA_SIP_HOST is 0.0.0.0")
        return problems

    def _trunk_problems(self) -> list[str]:
        try:
            trunks = self.trunks
        except ValueError:
            return []  # reported by the field's own check
        passwords = self.trunk_passwords
        problems = [
            f"PA_SIP_INBOUND_PASSWORDS: no password for trunk {t.name} (it has a username)"
            for t in trunks
            if t.username and not passwords.get(t.name)
        ]
        if any(t.username for t in trunks) and not self.digest_secret:
            problems.append("PA_SIP_DIGEST_SECRET: required when a trunk authenticates with a username")
        transports = {t.lower() for t in self.sip_transports}
        for t in trunks:
            if t.register is None:
                continue
            needed = _transport_of(t.register.uri)
            if needed not in transports:
                problems.append(
                    f"PA_SIP_TRANSPORTS: trunk {t.name} registers over {needed}, which is not listed"
                )
        if self.trunk_uri:
            try:
                needed = _transport_of(SipURI.parse(self.trunk_uri))
            except ParseError:
                problems.append("PA_SIP_TRUNK_URI: not a valid SIP URI")
            else:
                if needed not in transports:
                    problems.append(
                        f"PA_SIP_TRANSPORTS: PA_SIP_TRUNK_URI is reached over {needed}, which is not listed"
                    )
        return problems

    def _tls_problems(self) -> list[str]:
        if "tls" not in {t.lower() for t in self.sip_transports}:
            return []
        problems = []
        for name, path in (
            ("PA_SIP_TLS_CERT_FILE", self.tls_cert_file),
            ("PA_SIP_TLS_KEY_FILE", self.tls_key_file),
        ):
            if not path:
                problems.append(f"{name}: required when PA_SIP_TRANSPORTS lists tls")
            elif not os.path.isfile(path):
                problems.append(f"{name}: no such file {path!r}")
        if self.tls_ca_file and not os.path.isfile(self.tls_ca_file):
            problems.append(f"PA_SIP_TLS_CA_FILE: no such file {self.tls_ca_file!r}")
        if self.tls_verify_client and not self.tls_ca_file:
            problems.append("PA_SIP_TLS_CA_FILE: required when PA_SIP_TLS_VERIFY_CLIENT is true")
        return problems

    @property
    def trunks(self) -> tuple[Trunk, ...]:
        return parse_trunks(self.inbound_trunks)

    @property
    def trunk_passwords(self) -> dict[str, str]:
        return _json_map(self.inbound_passwords)

    @property
    def register_password_map(self) -> dict[str, str]:
        return _json_map(self.register_passwords)

    @property
    def tls(self) -> TlsConfig | None:
        if "tls" not in {t.lower() for t in self.sip_transports}:
            return None
        return TlsConfig(
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_ca_file,
            verify_server=self.tls_verify_server,
            verify_client=self.tls_verify_client,
        )

    @property
    def advertised(self) -> str:
        return self.public_address or self.sip_host

    def denoise(self, transport: str) -> bool:
        return transport in {t.lower() for t in self.noise_suppression}

    @property
    def codec_names(self) -> tuple[str, ...]:
        return tuple(c.upper() for c in self.codecs)


def _transport_of(uri: SipURI) -> str:
    """The transport a request to ``uri`` goes over (TLS for sips:, UDP by default)."""
    return "tls" if uri.scheme == "sips" else uri.params.get("transport", "udp").lower()


def _json_map(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def _is_ip(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 4
    except ValueError:
        return False
