"""Settings of the WebRTC gateway (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses
import ipaddress

from phoneagent.runtime.settings import env, port, positive, token_required

CODECS = ("opus", "PCMU")
CALL_RATES = (8000, 16000)  # rates TTS renders speech at


def _codecs(value: list[str]) -> str | None:
    names = {c.lower() for c in CODECS}
    if not value or any(c.lower() not in names for c in value):
        return "must list opus and/or PCMU"
    return None


def _addresses(value: list[str]) -> str | None:
    for item in value:
        try:
            ipaddress.ip_address(item)
        except ValueError:
            return f"{item!r} is not an IP address"
    return None


def _rate(value: int) -> str | None:
    return None if value in CALL_RATES else "must be 8000 or 16000"


@dataclasses.dataclass(frozen=True)
class WebRtcSettings:
    host: str = env("PA_WEB_HOST", "127.0.0.1", doc="Address the browser page and its API bind to")
    port: int = env("PA_WEB_PORT", 8088, check=port, doc="Port of the browser page; 0 = any free port")
    token: str = env(
        "PA_WEB_TOKEN", "", doc="Bearer token the page must send; required unless PA_WEB_HOST is loopback"
    )
    ice_addresses: list[str] = env(
        "PA_WEB_ICE_ADDRESSES",
        ["127.0.0.1"],
        check=_addresses,
        doc="Host addresses offered as ICE candidates (comma-separated); empty = every interface",
    )
    codecs: list[str] = env("PA_WEB_CODECS", list(CODECS), check=_codecs, doc="Audio codecs: opus,PCMU")
    call_rate: int = env(
        "PA_WEB_CALL_RATE", 16000, check=_rate, doc="Rate of call-flow frames and of the agent speech"
    )
    max_calls: int = env("PA_WEB_MAX_CALLS", 10, check=positive, doc="Concurrent browser calls")
    connect_timeout_s: float = env(
        "PA_WEB_CONNECT_TIMEOUT_S", 15.0, check=positive, doc="A call whose media does not connect ends"
    )
    max_call_duration_s: float = env(
        "PA_WEB_MAX_CALL_DURATION_S", 1800.0, check=positive, doc="Browser calls are hung up after this"
    )
    agent: str = env("PA_WEB_AGENT", "", doc="Agent name put on browser calls; empty = the default agent")

    def validate(self) -> list[str]:
        return token_required("PA_WEB_HOST", self.host, "PA_WEB_TOKEN", self.token, "call the agent")

    @property
    def codec_mimes(self) -> tuple[str, ...]:
        """``audio/opus``-style MIME types in preference order."""
        by_lower = {c.lower(): c for c in CODECS}
        return tuple(f"audio/{by_lower[c.lower()]}" for c in self.codecs)
