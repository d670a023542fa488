"""JetStream streams and key-value buckets, declared in one place and created idempotently.

* ``PA_CALLS``: call lifecycle, final transcripts, spoken text, tool records — the source of
  call records; survives restarts of every service.
* ``PA_AUDIT``: every policy decision (allow and deny) with its reason.
* ``pa_sessions_<stage>``: which replica owns each call's session in that stage.
* ``pa_dialog``: per-call conversation state (survives an LLM replica restart).
"""

from __future__ import annotations

import logging
from typing import Any

from nats.js.api import KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from phoneagent.runtime import subjects

log = logging.getLogger(__name__)
DAY = 24 * 3600.0


def stream_configs(calls_days: float = 30, audit_days: float = 365 * 2) -> list[StreamConfig]:
    return [
        StreamConfig(
            name=subjects.CALLS_STREAM,
            subjects=list(subjects.CALLS_STREAM_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=calls_days * DAY,
            max_msg_size=256 * 1024,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=subjects.AUDIT_STREAM,
            subjects=[subjects.ALL_AUDIT],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=audit_days * DAY,
            max_msg_size=64 * 1024,
            deny_delete=True,
            deny_purge=True,
            duplicate_window=120.0,
        ),
    ]


async def ensure(js: Any, calls_days: float = 30, audit_days: float = 365 * 2) -> None:
    """Create or update the streams and buckets (safe to call from every replica)."""
    for cfg in stream_configs(calls_days, audit_days):
        try:
            await js.stream_info(cfg.name)
        except NotFoundError:
            try:
                await js.add_stream(cfg)
            except BadRequestError:
                pass  # another replica created it between our check and add
        else:
            try:
                await js.update_stream(cfg)
            except BadRequestError as exc:
                log.warning("stream update refused", extra={"stream": cfg.name, "error": str(exc)[:120]})
    for stage in subjects.STAGES:
        await sessions_kv(js, stage)
    await dialog_kv(js)


async def _kv(js: Any, bucket: str, **cfg: Any) -> Any:
    try:
        return await js.key_value(bucket)
    except (NotFoundError, Exception):  # nats-py raises BucketNotFoundError (a NotFoundError subclass)
        try:
            return await js.create_key_value(KeyValueConfig(bucket=bucket, **cfg))
        except BadRequestError:
            return await js.key_value(bucket)


async def sessions_kv(js: Any, stage: str) -> Any:
    """Ownership records of one stage's sessions, keyed by call id."""
    return await _kv(js, subjects.sessions_bucket(stage), history=1, storage=StorageType.FILE, ttl=DAY)


async def dialog_kv(js: Any) -> Any:
    return await _kv(js, subjects.DIALOG_BUCKET, history=1, storage=StorageType.FILE, ttl=DAY)
