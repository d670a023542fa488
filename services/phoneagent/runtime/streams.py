"""JetStream streams and key-value buckets, declared in one place and created idempotently.

* ``PA_CALLS``: call lifecycle, recordings stored, playouts (what each reply's caller heard), and
  the redacted copies of final caller transcripts, spoken text and tool records that policy
  publishes on the ``record.*`` subjects (:func:`subjects.record`) — the source of call records;
  survives restarts of every service.
  The live ``transcript``/``say``/``tool`` subjects carry raw text (the model must hear a
  callback number) and are not stored. ``ensure`` updates the subjects of a stream created by
  an older release; the raw messages it already holds age out with ``max_age``.
* ``PA_AUDIT``: every policy decision (allow and deny) with its reason.
* ``PA_WORK``: deferrable stage work (post-call summary jobs and their results), a work queue:
  a job stays until a worker acknowledges it, and its consumers' lag is the backlog KEDA sees.
* ``PA_REPLAY``: each call's replies and playback/barge-in/cancel reports, in memory for
  ``REPLAY_MAX_AGE_S``: what a policy replica taking a call over replays, so a sentence the
  dead owner never passed on is still said (raw text: memory only, minutes, never on disk).
* ``pa_sessions_<stage>``: which replica owns each call's session in that stage.
* ``pa_policy_calls``: per call, policy's gate state (disclosure heard or pending, the last
  reply passed on, recording notice given), so a replica taking the call over goes on from it.
* ``pa_dialog``: per-call conversation state (survives an LLM replica restart).
* ``pa_asr_resume``: per call, the turn id and speech end of the last final transcript (a
  taken-over ASR session goes on from there).

  Both hold a live call's words: the stage that owns the call purges its key when the call
  ends (:func:`forget_call`), and a key nobody purged (its owner died as the call ended) ages
  out ``call_state_ttl_s`` after its last write (``PA_CALL_STATE_TTL_S``).
* ``pa_dial_approvals``: one-time approvals of outbound dials, keyed by policy decision id; the
  edge consumes one before it dials (:mod:`phoneagent.runtime.dial_approvals`).
* ``pa_dial_approvals_used``: the approvals the edge has used (it may write only these).

Every stream and bucket is kept in ``replicas`` copies (``PA_NATS_STREAM_REPLICAS``; 3 on a
three-node cluster, so one server lost loses nothing and the others elect a new leader);
``ensure`` also changes the copies of a stream or bucket created with another number.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from phoneagent.runtime import bus_auth, subjects
from phoneagent.runtime.errors import Unavailable

log = logging.getLogger(__name__)
DAY = 24 * 3600.0
DIAL_APPROVALS_BUCKET = bus_auth.DIAL_APPROVALS_BUCKET
DIAL_APPROVALS_USED_BUCKET = bus_auth.DIAL_APPROVALS_USED_BUCKET
ASR_RESUME_BUCKET = bus_auth.ASR_RESUME_BUCKET
# An approval is used within seconds of the decision; one not used in this time is void.
DIAL_APPROVAL_TTL_S = 15 * 60.0
# Per-call state is rewritten every turn and purged at call end; this only catches keys whose
# owner died as the call ended. Longer than the longest call's silence (calls last <= 1 h).
CALL_STATE_TTL_S = 2 * 3600.0
FORGET_TIMEOUT_S = 2.0
REPLAY_MAX_AGE_S = 120.0


def stream_configs(
    calls_days: float = 30, audit_days: float = 365 * 2, replicas: int = 1
) -> list[StreamConfig]:
    configs = [
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
        StreamConfig(
            name=subjects.WORK_STREAM,
            subjects=list(subjects.WORK_SUBJECTS),
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            max_age=DAY,
            max_msg_size=64 * 1024,
            duplicate_window=120.0,  # Nats-Msg-Id dedup of a call's job published twice
        ),
        StreamConfig(
            name=subjects.REPLAY_STREAM,
            subjects=list(subjects.REPLAY_STREAM_SUBJECTS),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.MEMORY,
            max_age=REPLAY_MAX_AGE_S,
            max_msg_size=64 * 1024,
            max_bytes=256 * 1024 * 1024,
        ),
    ]
    for cfg in configs:
        cfg.num_replicas = replicas
    return configs


# A summary job is held while the worker waits for a quiet engine (up to 45 s) and generates:
# the ack wait covers both; a job nak'ed while the engine is busy counts as a delivery.
SUMMARY_JOB_ACK_WAIT_S = 180.0
SUMMARY_JOB_MAX_DELIVER = 8
SUMMARY_RESULT_ACK_WAIT_S = 30.0


def work_consumers() -> list[ConsumerConfig]:
    """The durable pull consumers of PA_WORK (one per subject: a work queue allows no overlap)."""

    def consumer(name: str, subject: str, ack_wait: float, max_deliver: int) -> ConsumerConfig:
        return ConsumerConfig(
            name=name,
            durable_name=name,
            filter_subject=subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=1024,
        )

    return [
        consumer(
            subjects.LLM_SUMMARIES_CONSUMER,
            subjects.WORK_SUMMARIZE,
            SUMMARY_JOB_ACK_WAIT_S,
            SUMMARY_JOB_MAX_DELIVER,
        ),
        consumer(
            subjects.RECORDS_SUMMARIES_CONSUMER, subjects.WORK_SUMMARY_RESULTS, SUMMARY_RESULT_ACK_WAIT_S, -1
        ),
    ]


async def ensure(
    js: Any,
    calls_days: float = 30,
    audit_days: float = 365 * 2,
    call_state_ttl_s: float = CALL_STATE_TTL_S,
    *,
    replicas: int = 1,
) -> None:
    """Create or update the streams and buckets (safe to call from every replica), each kept in
    ``replicas`` copies."""
    for cfg in stream_configs(calls_days, audit_days, replicas):
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
    for ccfg in work_consumers():
        try:  # create, or update to this configuration (the server keeps the consumer's state)
            await js.add_consumer(subjects.WORK_STREAM, config=ccfg)
        except (BadRequestError, NotFoundError) as exc:
            log.warning("consumer update refused", extra={"consumer": ccfg.name, "error": str(exc)[:120]})
    for stage in subjects.STAGES:
        await sessions_kv(js, stage, replicas)
    await dialog_kv(js, replicas, call_state_ttl_s)
    await dial_approvals_kv(js, replicas)
    await dial_approvals_used_kv(js, replicas)
    await asr_resume_kv(js, replicas, call_state_ttl_s)
    await policy_calls_kv(js, replicas, call_state_ttl_s)
    for bucket in bucket_names():
        await _scale(js, f"KV_{bucket}", replicas)
    for bucket in CALL_STATE_BUCKETS:  # a bucket an older release created keeps its day otherwise
        await _set_ttl(js, bucket, call_state_ttl_s)


async def _scale(js: Any, stream: str, replicas: int) -> None:
    """Give an existing stream (a bucket's own, created by an older release) ``replicas`` copies."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return
    if info.config.num_replicas == replicas:
        return
    info.config.num_replicas = replicas
    try:
        await js.update_stream(info.config)
    except BadRequestError as exc:
        log.warning("stream copies not changed", extra={"stream": stream, "error": str(exc)[:120]})


def bucket_names() -> list[str]:
    """Every key-value bucket ``ensure`` creates."""
    buckets = [subjects.sessions_bucket(stage) for stage in subjects.STAGES]
    return buckets + [
        subjects.DIALOG_BUCKET,
        DIAL_APPROVALS_BUCKET,
        DIAL_APPROVALS_USED_BUCKET,
        ASR_RESUME_BUCKET,
    ]


def stream_names() -> list[str]:
    """Every stream ``ensure`` creates, the key-value buckets' own streams included."""
    return [cfg.name for cfg in stream_configs() if cfg.name] + [f"KV_{b}" for b in bucket_names()]


async def wait_provisioned(js: Any, timeout: float) -> None:
    """Wait until every stream and bucket exists (a service whose bus user may not create them
    waits for the one that may, see bus_auth.PROVISIONER); Unavailable after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.1
    missing = stream_names()
    while True:
        still = []
        for name in missing:
            try:
                await js.stream_info(name)
            except Exception:  # not found yet, or the server is busy: ask again
                still.append(name)
        missing = still
        if not missing:
            return
        left = deadline - loop.time()
        if left <= 0:
            raise Unavailable(f"JetStream streams not created in time: {', '.join(missing)}")
        log.info("waiting for streams", extra={"missing": len(missing)})
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)


async def _kv(js: Any, bucket: str, replicas: int = 1, **cfg: Any) -> Any:
    try:
        return await js.key_value(bucket)
    except (NotFoundError, Exception):  # nats-py raises BucketNotFoundError (a NotFoundError subclass)
        try:
            return await js.create_key_value(KeyValueConfig(bucket=bucket, replicas=replicas, **cfg))
        except BadRequestError:
            return await js.key_value(bucket)


async def sessions_kv(js: Any, stage: str, replicas: int = 1) -> Any:
    """Ownership records of one stage's sessions, keyed by call id."""
    return await _kv(
        js, subjects.sessions_bucket(stage), replicas, history=1, storage=StorageType.FILE, ttl=DAY
    )


async def _set_ttl(js: Any, bucket: str, ttl_s: float) -> None:
    """Make an existing bucket's entries age out after ``ttl_s`` (a no-op when they do)."""
    name = f"KV_{bucket}"
    try:
        info = await js.stream_info(name)
        if info.config.max_age is not None and abs(info.config.max_age - ttl_s) < 1.0:
            return
        info.config.max_age = ttl_s
        await js.update_stream(info.config)
    except Exception as exc:  # refused or unreachable: the bucket keeps its TTL until next start
        log.warning("bucket ttl not updated", extra={"bucket": bucket, "error": type(exc).__name__})


async def dialog_kv(js: Any, replicas: int = 1, ttl_s: float = CALL_STATE_TTL_S) -> Any:
    """Each live call's conversation (history, pending tool state), kept by the owning LLM
    replica; purged at call end (:func:`forget_call`)."""
    return await _kv(js, subjects.DIALOG_BUCKET, replicas, history=1, storage=StorageType.FILE, ttl=ttl_s)


async def asr_resume_kv(js: Any, replicas: int = 1, ttl_s: float = CALL_STATE_TTL_S) -> Any:
    """Where each call's speech recognition left off (last final's turn id and speech end), kept
    by the owning ASR replica so a replica taking the call over goes on from there; purged at
    call end (:func:`forget_call`)."""
    return await _kv(js, ASR_RESUME_BUCKET, replicas, history=1, storage=StorageType.FILE, ttl=ttl_s)


CALL_STATE_BUCKETS = (subjects.DIALOG_BUCKET, ASR_RESUME_BUCKET, subjects.POLICY_CALLS_BUCKET)


async def forget_call(kv: Any, call_id: str, timeout: float = FORGET_TIMEOUT_S) -> bool:
    """Purge ``call_id``'s entry from a per-call bucket: its value and history leave the server
    (a purge marker without data stays until the TTL). False when it could not be purged now;
    the TTL removes it then."""
    try:
        await asyncio.wait_for(kv.purge(subjects.check_id(call_id)), timeout)
    except Exception as exc:
        log.warning("call state not purged", extra={"call_id": call_id, "error": type(exc).__name__})
        return False
    return True


async def policy_calls_kv(js: Any, replicas: int = 1, ttl_s: float = CALL_STATE_TTL_S) -> Any:
    """Policy's per-call gate state, kept by the owning replica (deleted when the call ends)."""
    return await _kv(
        js, subjects.POLICY_CALLS_BUCKET, replicas, history=1, storage=StorageType.FILE, ttl=ttl_s
    )


async def dial_approvals_kv(js: Any, replicas: int = 1) -> Any:
    """One-time dial approvals written by policy and consumed by the edge (see dial_approvals)."""
    return await _kv(
        js, DIAL_APPROVALS_BUCKET, replicas, history=1, storage=StorageType.FILE, ttl=DIAL_APPROVAL_TTL_S
    )


async def dial_approvals_used_kv(js: Any, replicas: int = 1) -> Any:
    """The dial approvals already used, keyed by decision id (written by the edge, create-only)."""
    return await _kv(
        js, DIAL_APPROVALS_USED_BUCKET, replicas, history=1, storage=StorageType.FILE, ttl=DIAL_APPROVAL_TTL_S
    )


async def work_subscription(js: Any, consumer: str) -> Any:
    """A pull subscription bound to one of PA_WORK's durable consumers (created when missing,
    e.g. against a server that ``ensure`` has not seen since the consumer was added)."""
    cfg = next((c for c in work_consumers() if c.name == consumer), None)
    if cfg is None:
        raise ValueError(f"unknown work consumer {consumer!r}")
    assert cfg.filter_subject is not None
    return await js.pull_subscribe(
        cfg.filter_subject, durable=consumer, stream=subjects.WORK_STREAM, config=cfg
    )
