"""Records service settings (environment variables, validated at start).

The API refuses to start on an address other than loopback without ``PA_API_TOKEN`` (like the
browser page without ``PA_WEB_TOKEN``), and serves TLS when given a certificate and key. The
operator console (``PA_CONSOLE_*``) asks for the same token, and refuses to start on an address
other than loopback without one too.

The records store and worker read theirs from :class:`~phoneagent.records.worker.RecordsSettings`
(``PA_RECORDS_*``) and the webhook deliveries from
:class:`~phoneagent.records.webhooks.WebhookSettings` (``PA_WEBHOOK_*``); these are the
service's own: the CallControl API and the calling window campaigns are paced by (read as
``HH:MM`` when the service starts, like policy's, with an error naming the variable).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

from phoneagent.runtime.settings import env, port, token_required


@dataclasses.dataclass(frozen=True)
class RecordsServiceSettings:
    grpc_host: str = env("PA_GRPC_HOST", "127.0.0.1", doc="Address of the CallControl gRPC API")
    grpc_port: int = env("PA_GRPC_PORT", 50051, check=port, doc="Port of the CallControl gRPC API; 0 = any")
    api_token: str = env(
        "PA_API_TOKEN",
        "",
        doc="Bearer token required by the gRPC API; required unless PA_GRPC_HOST is loopback",
    )
    tls_cert_file: str = env(
        "PA_GRPC_TLS_CERT_FILE", "", doc="Server certificate chain (PEM) for the gRPC API; empty = plaintext"
    )
    tls_key_file: str = env("PA_GRPC_TLS_KEY_FILE", "", doc="Private key (PEM) of PA_GRPC_TLS_CERT_FILE")
    console_host: str = env("PA_CONSOLE_HOST", "127.0.0.1", doc="Address of the operator console (HTTP)")
    console_port: int = env("PA_CONSOLE_PORT", 8470, check=port, doc="Port of the operator console; 0 = any")
    console_enabled: bool = env("PA_CONSOLE_ENABLED", True, doc="Serve the operator console")
    console_secure_cookie: bool = env(
        "PA_CONSOLE_SECURE_COOKIE",
        False,
        doc="Mark the console's session cookie Secure (set when it is reached over HTTPS)",
    )
    window_start: str = env(
        "PA_CALL_WINDOW_START",
        "08:00",
        doc="Earliest outbound call, callee local time (campaigns pace by it; policy enforces it)",
    )
    window_end: str = env(
        "PA_CALL_WINDOW_END",
        "21:00",
        doc="Latest outbound call, callee local time (campaigns pace by it; policy enforces it)",
    )

    def validate(self) -> list[str]:
        problems = token_required(
            "PA_GRPC_HOST", self.grpc_host, "PA_API_TOKEN", self.api_token, "place and transfer calls"
        )
        if self.console_enabled:
            problems += token_required(
                "PA_CONSOLE_HOST", self.console_host, "PA_API_TOKEN", self.api_token, "read call records"
            )
            missing = [m for m in ("aiohttp", "jinja2") if importlib.util.find_spec(m) is None]
            if missing:
                problems.append(
                    f"PA_CONSOLE_ENABLED: the operator console needs {', '.join(missing)}; install "
                    "pip install 'phone-agent[records]' or set PA_CONSOLE_ENABLED=false"
                )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("PA_GRPC_TLS_CERT_FILE/PA_GRPC_TLS_KEY_FILE: set both or neither")
        for name, path in (
            ("PA_GRPC_TLS_CERT_FILE", self.tls_cert_file),
            ("PA_GRPC_TLS_KEY_FILE", self.tls_key_file),
        ):
            if path and not Path(path).expanduser().is_file():
                problems.append(f"{name}={path!r}: no such file")
        return problems

    def tls(self) -> tuple[bytes, bytes] | None:
        """(certificate chain, private key) in PEM when TLS is configured."""
        if not self.tls_cert_file:
            return None
        return Path(self.tls_cert_file).expanduser().read_bytes(), Path(
            self.tls_key_file
        ).expanduser().read_bytes()
