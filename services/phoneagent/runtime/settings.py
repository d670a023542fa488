"""Typed settings from environment variables, validated at start-up.

A settings class is a frozen dataclass whose fields carry their environment variable
name, type and default. :func:`load` parses and validates every field and raises a
:class:`SettingsError` listing each wrong variable by name.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import ipaddress
import os
import re
import socket
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from phoneagent.runtime.bus_auth import BusAuth
from phoneagent.runtime.errors import InvalidArgument

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """One or more environment variables are invalid."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))
        self.problems = problems


def env(
    name: str,
    default: Any = dataclasses.MISSING,
    *,
    check: Callable[[Any], str | None] | None = None,
    doc: str = "",
) -> Any:
    """Declare a settings field read from environment variable ``name``.

    ``check`` returns an error text for a bad value, or None.
    """
    meta = {"env": name, "check": check, "doc": doc}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def positive(value: Any) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be >= 0"


def port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number 0-65535"


def token_required(host_var: str, host: str, token_var: str, token: str, what: str) -> list[str]:
    """Problems with a server that listens on ``host``: an address other than loopback needs a
    token, or anyone who can reach it can ``what``."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        return [f"{host_var}={host!r}: must be an IP address"]
    if not loopback and not token.strip():
        return [
            f"{token_var}: required when {host_var} ({host}) is not a loopback address, "
            f"or anyone who can reach it can {what}"
        ]
    return []


def parse_hhmm(value: str, var: str) -> datetime.time:
    """A time of day from a setting (``HH:MM``); the error names the variable."""
    try:
        h, m = value.split(":")
        return datetime.time(int(h), int(m))
    except ValueError:
        raise InvalidArgument(f"{var}={value!r}: must be HH:MM") from None


def nats_url(value: str) -> str | None:
    for part in value.split(","):
        if not re.match(r"^(nats|tls|ws|wss)://[^\s/]+$", part.strip()):
            return "must be nats://host:port (comma-separated for a cluster)"
    return None


def _parse(raw: str, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw == "":
            return None
        return _parse(raw, args[0])
    if typ is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError("must be true or false")
    if typ is int:
        return int(raw.strip())
    if typ is float:
        return float(raw.strip())
    if typ is str:
        return raw
    if typ is Path:
        return Path(raw).expanduser()
    if isinstance(typ, type) and issubclass(typ, enum.Enum):
        try:
            return typ(raw.strip().lower())
        except ValueError:
            choices = ", ".join(str(m.value) for m in typ)
            raise ValueError(f"must be one of: {choices}") from None
    if origin is list or typ is list:
        (inner,) = typing.get_args(typ) or (str,)
        return [_parse(p.strip(), inner) for p in raw.split(",") if p.strip()]
    raise TypeError(f"unsupported settings type {typ!r}")


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from the environment; ``overrides`` win over the environment."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = f.metadata.get("env", f.name.upper())
        if f.name in overrides:
            values[f.name] = overrides[f.name]
        elif name in environ:
            try:
                values[f.name] = _parse(environ[name], hints[f.name])
            except (ValueError, TypeError) as exc:
                problems.append(f"{name}={environ[name]!r}: {exc}")
                continue
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.append(f"{name}: required but not set")
            continue
        check = f.metadata.get("check")
        if check is not None and f.name in values:
            err = check(values[f.name])
            if err:
                problems.append(f"{name}={values[f.name]!r}: {err}")
    if problems:
        raise SettingsError(problems)
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        extra = validate()
        if extra:
            raise SettingsError(list(extra))
    return obj


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, doc) for every field: used by ``phone-agent config``."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = str(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = str(f.default_factory())
        else:
            default = "(required)"
        rows.append((f.metadata.get("env", f.name.upper()), default, f.metadata.get("doc", "")))
    return rows


class LogFormat(enum.Enum):
    JSON = "json"
    TEXT = "text"


def _default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclasses.dataclass(frozen=True)
class CommonSettings:
    """Settings every service shares."""

    nats_url: str = env("PA_NATS_URL", "nats://127.0.0.1:4222", check=nats_url, doc="NATS server URL(s)")
    nats_user: str = env("PA_NATS_USER", "", doc="NATS user this process connects as; empty = none")
    nats_password_file: str = env(
        "PA_NATS_PASSWORD_FILE", "", doc="File holding the password of PA_NATS_USER"
    )
    nats_tls_ca_file: str = env(
        "PA_NATS_TLS_CA_FILE", "", doc="CA certificate that signed the NATS server's (tls:// URLs)"
    )
    replica_id: str = env("PA_SERVICE_REPLICA_ID", "", doc="Replica id (pod name); default host-pid")
    http_host: str = env("PA_HTTP_HOST", "127.0.0.1", doc="Address for /metrics, /healthz, /readyz")
    http_port: int = env("PA_HTTP_PORT", 0, check=port, doc="Port for /metrics etc.; 0 = any free port")
    log_level: str = env("PA_LOG_LEVEL", "INFO", doc="DEBUG, INFO, WARNING or ERROR")
    log_format: LogFormat = env("PA_LOG_FORMAT", LogFormat.JSON, doc="json or text")
    log_sensitive: bool = env("PA_LOG_SENSITIVE", False, doc="Show transcripts/numbers in DEBUG logs")
    otlp_endpoint: str = env("PA_OTLP_ENDPOINT", "", doc="OTLP/gRPC endpoint for traces; empty = off")
    drain_timeout_s: float = env(
        "PA_DRAIN_TIMEOUT_S",
        30.0,
        check=non_negative,
        doc="On SIGTERM, how long calls in progress may finish",
    )
    nats_connect_deadline_s: float = env(
        "PA_NATS_CONNECT_DEADLINE_S",
        60.0,
        check=non_negative,
        doc="At start, keep retrying NATS this long (not ready meanwhile) before exiting",
    )
    heartbeat_s: float = env("PA_HEARTBEAT_S", 0.5, check=positive, doc="Session heartbeat interval")
    dead_after_s: float = env(
        "PA_DEAD_AFTER_S", 1.5, check=positive, doc="A replica silent this long loses its sessions"
    )
    adopt_after_reconnect_s: float = env(
        "PA_ADOPT_AFTER_RECONNECT_S",
        -1.0,
        doc="After the bus reconnects, wait this long (hearing the other replicas' heartbeats again) "
        "before taking over calls that look orphaned; negative = PA_DEAD_AFTER_S",
    )
    nats_stream_replicas: int = env(
        "PA_NATS_STREAM_REPLICAS",
        1,
        doc="Copies of every JetStream stream and key-value bucket (1-5; 3 on a three-node NATS "
        "cluster, so losing one server loses no stream); applied by the process that creates them",
    )
    max_sessions: int = env("PA_MAX_SESSIONS", 50, check=positive, doc="Sessions one replica accepts")
    call_state_ttl_s: float = env(
        "PA_CALL_STATE_TTL_S",
        7200.0,
        check=positive,
        doc="Per-call bus state (dialog, ASR resume point) left unpurged at call end ages out after this",
    )
    status_file: str = env("PA_STATUS_FILE", "", doc="Write the bound HTTP port here once ready")
    agent_file: str = env("PA_AGENT_FILE", "", doc="Agent definition YAML; empty = the bundled demo agent")

    def validate(self) -> list[str]:
        problems = []
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            problems.append(f"PA_LOG_LEVEL={self.log_level!r}: must be DEBUG, INFO, WARNING or ERROR")
        if self.dead_after_s <= self.heartbeat_s * 2:
            problems.append("PA_DEAD_AFTER_S: must be more than twice PA_HEARTBEAT_S")
        if not 1 <= self.nats_stream_replicas <= 5:
            problems.append(f"PA_NATS_STREAM_REPLICAS={self.nats_stream_replicas}: must be 1 to 5")
        problems += self.bus_auth.problems()
        if self.nats_password_file and not Path(self.nats_password_file).expanduser().is_file():
            problems.append(f"PA_NATS_PASSWORD_FILE={self.nats_password_file!r}: no such file")
        if self.nats_tls_ca_file and not Path(self.nats_tls_ca_file).expanduser().is_file():
            problems.append(f"PA_NATS_TLS_CA_FILE={self.nats_tls_ca_file!r}: no such file")
        return problems

    @property
    def bus_auth(self) -> BusAuth:
        return BusAuth(self.nats_user, self.nats_password_file, self.nats_tls_ca_file)

    @property
    def agent_path(self) -> Path:
        if self.agent_file:
            return Path(self.agent_file).expanduser()
        return Path(__file__).resolve().parent.parent / "agents" / "dental_clinic.yaml"

    @property
    def adopt_grace_s(self) -> float:
        """How long sessions wait after a reconnect before adopting orphaned calls."""
        return self.dead_after_s if self.adopt_after_reconnect_s < 0 else self.adopt_after_reconnect_s

    @property
    def replica(self) -> str:
        return self.replica_id or _default_replica()
