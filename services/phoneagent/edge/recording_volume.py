"""The edge's recording volume: a free-space guard and retention that deletes expired recordings
where they are (the local volume, and the S3-compatible store they were uploaded to).

Recordings are written on the edge's own volume, so the edge purges them itself: a periodic
owned task (:class:`RecordingRetention`) deletes ``<call id>.wav`` files older than
``PA_RECORDING_RETENTION_DAYS``, ``.part`` files a crash left behind, and, with
``PA_RECORDING_S3_URL``, the objects under that prefix last modified before the cutoff. Each
round runs in a worker thread with a timeout; a failed round is counted and logged and the next
one tries again.

:class:`VolumeGuard` keeps the volume from filling: below ``PA_RECORDING_MIN_FREE_MB`` free, no
new recording starts and a running one stops (what it holds is kept); the call itself goes on,
and the call's ``RecordingStored`` says why the recording is incomplete. A volume whose size
the filesystem does not show (a Kubernetes emptyDir's ``sizeLimit``, past which the pod is
evicted with its calls) is given as ``PA_RECORDING_VOLUME_LIMIT``: free space is then also the
limit less what the recording directory holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from phoneagent.runtime.errors import Unavailable
from phoneagent.runtime.metrics import (
    RECORDING_PURGE_FAILURES,
    RECORDING_VOLUME_FREE,
    RECORDING_VOLUME_MIN_FREE,
    RECORDINGS_PURGED,
)
from phoneagent.runtime.modelfiles import MissingModelError

log = logging.getLogger(__name__)
DAY = 86400.0
PART_STALE_S = DAY  # a .part file is written every 20 ms while its call lasts (at most hours)
PURGE_TIMEOUT_S = 300.0
LOW_DISK = "low_disk"


@dataclass(frozen=True)
class VolumeGuard:
    """Whether the recording volume has room for more; updates the free-space gauge."""

    directory: Path
    min_free_bytes: int
    limit_bytes: int = 0  # the volume's size where the filesystem does not show it; 0 = none

    def free_bytes(self) -> int | None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.directory).free
            if self.limit_bytes:
                free = min(free, self.limit_bytes - _used_bytes(self.directory))
        except OSError:
            return None
        RECORDING_VOLUME_FREE.set(free)
        RECORDING_VOLUME_MIN_FREE.set(self.min_free_bytes)
        return free

    def has_room(self) -> bool:
        """False below the threshold, or when the volume cannot be read (no recording then)."""
        free = self.free_bytes()
        return free is not None and free >= self.min_free_bytes


def _used_bytes(directory: Path) -> int:
    """Bytes of the files in ``directory`` (the recordings and their .part files: a few dozen)."""
    used = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False):
                    used += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return used


_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def parse_quantity(text: str) -> int:
    """Bytes of a Kubernetes-style quantity (``2Gi``, ``500M``, ``1073741824``); ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(Ki|Mi|Gi|Ti|k|M|G|T)?\s*", text or "")
    if m is None:
        raise ValueError("must be a size such as 2Gi, 500Mi or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def purge_local(directory: Path, cutoff_unix_s: float, now_unix_s: float | None = None) -> int:
    """Delete finished recordings last written before the cutoff, and ``.part`` files not
    written for a day (a crash's leftovers); returns how many files went."""
    now = time.time() if now_unix_s is None else now_unix_s
    deleted = 0
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return 0
    for path in entries:
        name = path.name
        if name.endswith(".wav"):
            limit = cutoff_unix_s
        elif name.startswith(".") and name.endswith(".wav.part"):
            limit = now - PART_STALE_S
        else:
            continue  # not a recording: never touched
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            continue
    if deleted:
        RECORDINGS_PURGED.labels(store="local").inc(deleted)
    return deleted


def s3_client() -> Any:
    """A boto3 S3 client (endpoint and credentials from the usual ``AWS_*`` variables)."""
    try:
        import boto3
    except ImportError:
        raise MissingModelError(
            "boto3 is needed for PA_RECORDING_S3_URL", extra="s3", package="boto3"
        ) from None
    return boto3.client("s3")


def purge_s3(url: str, cutoff_unix_s: float, client: Any = None) -> int:
    """Delete the objects under an ``s3://bucket/prefix`` URL last modified before the cutoff."""
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(url)
    bucket, prefix = parsed.netloc, parsed.path.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    s3 = client or s3_client()
    deleted = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            old = [
                {"Key": o["Key"]}
                for o in page.get("Contents", [])
                if o["Key"].endswith(".wav") and o["LastModified"].timestamp() < cutoff_unix_s
            ]
            for i in range(0, len(old), 1000):  # at most 1000 keys per request
                reply = s3.delete_objects(Bucket=bucket, Delete={"Objects": old[i : i + 1000], "Quiet": True})
                failed = len(reply.get("Errors", []))
                deleted += len(old[i : i + 1000]) - failed
                if failed:
                    log.warning("recordings not deleted from the object store", extra={"count": failed})
    except (BotoCoreError, ClientError):
        raise Unavailable("recording retention: the object store refused or is unreachable") from None
    finally:
        if deleted:
            RECORDINGS_PURGED.labels(store="s3").inc(deleted)
    return deleted


class RecordingRetention:
    """Deletes expired recordings now and every ``every_s`` (run by the edge service's owner)."""

    def __init__(
        self,
        guard: VolumeGuard,
        retention_days: float,
        s3_url: str = "",
        every_s: float = 3600.0,
        timeout_s: float = PURGE_TIMEOUT_S,
    ) -> None:
        self.guard = guard
        self.retention_days = retention_days
        self.s3_url = s3_url
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.rounds = 0

    async def run(self) -> None:
        while True:
            await self.purge_once()
            await asyncio.sleep(self.every_s)

    async def purge_once(self) -> None:
        self.guard.free_bytes()  # the gauge moves even when nothing is recorded
        if self.retention_days > 0:
            cutoff = time.time() - self.retention_days * DAY
            await self._round("local", purge_local, self.guard.directory, cutoff)
            if self.s3_url:
                await self._round("s3", purge_s3, self.s3_url, cutoff)
        else:  # kept forever: only a crash's leftovers go
            await self._round("local", purge_local, self.guard.directory, 0.0)
        self.rounds += 1

    async def _round(self, store: str, purge: Any, *args: Any) -> None:
        try:
            count = await asyncio.wait_for(asyncio.to_thread(purge, *args), self.timeout_s)
        except Exception as exc:  # the next round tries again
            RECORDING_PURGE_FAILURES.labels(store=store).inc()
            log.warning("recording retention failed", extra={"store": store, "error": type(exc).__name__})
            return
        if count:
            log.info("recordings purged", extra={"store": store, "count": count})
