"""Campaigns started through the gRPC control API, run inside the records service.

:class:`CampaignManager` owns one :class:`~.campaign_runner.CampaignRunner` task per campaign
(the same runner ``phone-agent campaign start`` uses): each dial is approved by policy over the
bus and audited. Campaigns live in this replica's memory: a restart of the replica ends its
running campaigns (calls in progress go on to their end; the audit stream keeps every
decision). At most :data:`MAX_CAMPAIGNS` are kept; the oldest finished ones make room.
"""

from __future__ import annotations

import asyncio
import io
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import time as dtime
from datetime import timedelta

from phoneagent.records.campaign import PacingConfig, parse_campaign_csv
from phoneagent.records.campaign_runner import AmdMode, CampaignRunner, RunnerConfig
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.csvrows import RowError
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import control_api_pb2

log = logging.getLogger(__name__)
MAX_CAMPAIGNS = 20
MAX_CSV_CHARS = 4 * 1024 * 1024
CANCEL_TIMEOUT_S = 5.0


@dataclass
class _Campaign:
    runner: CampaignRunner
    rejected: list[RowError]
    task: asyncio.Task[object] | None = None
    state: str = "running"  # running | finished | cancelled | failed
    outcomes: Counter[str] = field(default_factory=Counter)


class CampaignManager:
    def __init__(self, bus: Bus, window: tuple[dtime, dtime], default_agent: str = "") -> None:
        self.bus = bus
        self.window = window
        self.default_agent = default_agent
        self._tasks = TaskOwner("campaigns")
        self._campaigns: dict[str, _Campaign] = {}

    def start(self, req: control_api_pb2.StartCampaignRequest) -> control_api_pb2.CampaignStatus:
        """Validate the request, start the campaign, return its first status."""
        if len(req.contacts_csv) > MAX_CSV_CHARS:
            raise InvalidArgument(f"contacts_csv is larger than {MAX_CSV_CHARS} characters")
        if req.amd and req.amd not in {m.value for m in AmdMode}:
            raise InvalidArgument(f"amd must be one of {', '.join(m.value for m in AmdMode)}")
        campaign_id = req.campaign_id or f"camp-{uuid.uuid4().hex[:12]}"
        if campaign_id in self._campaigns:
            raise InvalidArgument("a campaign with this id already exists")
        # Never a path: the text is read as CSV content even when it has no newline.
        imported = parse_campaign_csv(io.StringIO(req.contacts_csv), default_purpose=req.purpose or None)
        if not imported.contacts:
            raise InvalidArgument("the CSV has no valid contact rows")
        retry = timedelta(seconds=req.retry_after_s or 300)
        config = RunnerConfig(
            campaign_id=campaign_id,
            purpose=req.purpose,
            pacing=PacingConfig(
                max_concurrent=req.max_concurrent or 2,
                calls_per_minute=req.calls_per_minute or 10,
                max_attempts=req.max_attempts or 3,
                retry_base=retry,
                retry_max=max(timedelta(hours=4), retry),
            ),
            amd=AmdMode(req.amd or AmdMode.HANGUP.value),
            voicemail_message=req.voicemail_message,
            agent=req.agent or self.default_agent,
            window_start=self.window[0],
            window_end=self.window[1],
        )
        self._make_room()
        campaign = _Campaign(CampaignRunner(self.bus, imported.contacts, config), imported.errors)
        self._campaigns[campaign_id] = campaign
        campaign.task = self._tasks.spawn(self._run(campaign_id, campaign), campaign_id)
        log.info(
            "campaign started",
            extra={
                "campaign_id": campaign_id,
                "contacts": len(imported.contacts),
                "rejected": len(imported.errors),
            },
        )
        return self.status(campaign_id)

    async def _run(self, campaign_id: str, campaign: _Campaign) -> object:
        try:
            await campaign.runner.run()
        except asyncio.CancelledError:
            campaign.state = "cancelled"
            raise
        except Exception:
            campaign.state = "failed"
            log.exception("campaign failed", extra={"campaign_id": campaign_id})
            return None
        campaign.state = "finished"
        log.info("campaign finished", extra={"campaign_id": campaign_id})
        return None

    def _make_room(self) -> None:
        if len(self._campaigns) < MAX_CAMPAIGNS:
            return
        done = [cid for cid, c in self._campaigns.items() if c.state != "running"]
        if not done:
            raise PhoneAgentError(ErrorKind.OVERLOADED, f"{MAX_CAMPAIGNS} campaigns are running already")
        del self._campaigns[done[0]]  # the oldest finished one (dicts keep insertion order)

    def _get(self, campaign_id: str) -> _Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise PhoneAgentError(ErrorKind.NOT_FOUND, "no such campaign on this replica")
        return campaign

    def status(self, campaign_id: str) -> control_api_pb2.CampaignStatus:
        campaign = self._get(campaign_id)
        results = campaign.runner.pacer.results()
        final = Counter(r.outcome.value for r in results if r.outcome is not None and r.state == "done")
        out = control_api_pb2.CampaignStatus(
            campaign_id=campaign_id,
            state=campaign.state,
            contacts=len(results),
            pending=len(results) - sum(final.values()),
            rejected_rows=[
                control_api_pb2.CampaignRowError(row=e.row, reason=e.reason) for e in campaign.rejected
            ],
        )
        out.outcomes.update(final)
        return out

    def export_csv(self, campaign_id: str) -> str:
        buf = io.StringIO()
        self._get(campaign_id).runner.pacer.export_csv(buf)
        return buf.getvalue()

    async def cancel(self, campaign_id: str) -> control_api_pb2.CampaignStatus:
        campaign = self._get(campaign_id)
        task = campaign.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=CANCEL_TIMEOUT_S)
            campaign.state = "cancelled"
        return self.status(campaign_id)

    async def close(self) -> None:
        await self._tasks.close(timeout=CANCEL_TIMEOUT_S)
