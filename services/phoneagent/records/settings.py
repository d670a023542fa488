"""Records service settings (environment variables, validated at start).

The records store and worker read theirs from :class:`~phoneagent.records.worker.RecordsSettings`
(``PA_RECORDS_*``) and the webhook deliveries from
:class:`~phoneagent.records.webhooks.WebhookSettings` (``PA_WEBHOOK_*``); these are the
service's own: the CallControl API and the calling window campaigns are paced by (read as
``HH:MM`` when the service starts, like policy's, with an error naming the variable).
"""

from __future__ import annotations

import dataclasses

from phoneagent.runtime.settings import env, port


@dataclasses.dataclass(frozen=True)
class RecordsServiceSettings:
    grpc_host: str = env("PA_GRPC_HOST", "127.0.0.1", doc="Address of the CallControl gRPC API")
    grpc_port: int = env("PA_GRPC_PORT", 50051, check=port, doc="Port of the CallControl gRPC API; 0 = any")
    api_token: str = env("PA_API_TOKEN", "", doc="Bearer token required by the gRPC API; empty = none")
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
