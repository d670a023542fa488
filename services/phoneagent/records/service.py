"""Records service: what a call leaves behind, and the operators' API.

* The records worker folds the ``PA_CALLS`` and ``PA_AUDIT`` streams into one durable record
  per call (:mod:`.worker`); webhook deliveries (:mod:`.webhooks`) and the post-call summary
  bookkeeping (:mod:`.summary`: jobs to ``PA_WORK`` for the LLM workers, results back into
  the record) listen to it.
* The CallControl gRPC API (:mod:`.control_api`): ListCalls and GetCall read the records;
  HangUp goes to the call's control lane; PlaceCall asks policy for a dial decision over the
  bus (``dial_check``, which policy audits) and then an edge to dial; TransferCall asks policy
  to approve the target (``transfer_check``) before the Transfer goes out. Every API call is
  audited (method, the caller's token id, outcome).
* The operator console (:mod:`.console`): calls, transcripts, recordings, per-turn latency and
  the audit trail in the browser, behind the API's token; hang up and transfer go through the
  API's own code.
* Outbound campaigns started through the API (:mod:`.campaign_api`): every dial is approved
  by policy over the bus, the same way.

Nothing here is on the speech path: the service can restart or scale without a live call
noticing. Policy and the edge are reached over the bus only.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from phoneagent.agents.agent import load_agent
from phoneagent.records.campaign_api import CampaignManager
from phoneagent.records.control_api import CallControl, serve
from phoneagent.records.settings import RecordsServiceSettings
from phoneagent.records.store import RecordStore
from phoneagent.records.summary import SummaryRequester
from phoneagent.records.webhooks import WebhookDispatcher, WebhookSettings
from phoneagent.records.worker import RecordsSettings, RecordsWorker, fan_out
from phoneagent.runtime import redact, subjects
from phoneagent.runtime.dial_approvals import CALL_ID_HEADER
from phoneagent.runtime.service import Service
from phoneagent.runtime.settings import CommonSettings, parse_hhmm
from phoneagent.runtime.settings import load as load_settings
from phoneagent.v1 import policy_pb2

log = logging.getLogger(__name__)
SETTINGS = RecordsServiceSettings
DIAL_CHECK_TIMEOUT_S = 5.0  # policy's answer to a PlaceCall dial check


class RecordsService(Service):
    name = "records"

    def __init__(self, common: CommonSettings, settings: RecordsServiceSettings) -> None:
        super().__init__(common)
        self.settings = settings
        self.window = (
            parse_hhmm(settings.window_start, "PA_CALL_WINDOW_START"),
            parse_hhmm(settings.window_end, "PA_CALL_WINDOW_END"),
        )
        self.records_settings = load_settings(RecordsSettings)
        self.webhook_settings = load_settings(WebhookSettings)
        self.agent = load_agent(common.agent_path)
        self.records: RecordStore | None = None
        self.records_worker: RecordsWorker | None = None
        self.webhooks: WebhookDispatcher | None = None
        self.summaries: SummaryRequester | None = None
        self.campaigns: CampaignManager | None = None
        self.grpc_server: Any = None
        self.grpc_port = 0
        self.console: Any = None  # console.app.Console when PA_CONSOLE_ENABLED
        self.console_url = ""

    async def setup(self) -> None:
        # The builder redacts every stored text again: load the analyzer now, off the loop.
        await asyncio.to_thread(redact.warm)
        self.records = RecordStore(self.records_settings.db)
        await self._start_records(self.records)
        self.campaigns = CampaignManager(self.bus, self.window)
        api = CallControl(
            self.bus,
            self.records,
            self.dial_check,
            token=self.settings.api_token,
            campaigns=self.campaigns,
            producer=f"records/{self.replica}",
        )
        tls = self.settings.tls()
        self.grpc_server, self.grpc_port = await serve(
            api, self.settings.grpc_host, self.settings.grpc_port, tls
        )
        log.info("control api listening", extra={"grpc_port": self.grpc_port, "tls": tls is not None})
        if self.settings.console_enabled:
            await self._start_console(api)

    async def _start_console(self, api: CallControl) -> None:
        from phoneagent.records.console.app import Console, ConsoleConfig  # aiohttp, Jinja2 (extra records)
        from phoneagent.records.console.auth import TokenAuth

        assert self.records is not None
        config = ConsoleConfig(TokenAuth(self.settings.api_token), self.settings.console_secure_cookie)
        self.console = Console(self.records, api, self.bus.jetstream, config)
        self.console_url = await self.console.start(self.settings.console_host, self.settings.console_port)
        log.info("operator console listening", extra={"url": self.console_url})

    async def _start_records(self, store: RecordStore) -> None:
        """Records worker, with webhook deliveries and post-call summaries as its listeners."""
        self.webhooks = WebhookDispatcher(store, self.agent.webhooks, self.webhook_settings)
        await self.webhooks.start()
        self.summaries = SummaryRequester(self.bus, store)  # jobs to PA_WORK, results back from it
        await self.summaries.start()
        listener = fan_out(self.webhooks.on_events, self.summaries.on_events)
        self.records_worker = RecordsWorker(
            self.bus.jetstream(),
            store,
            self.records_settings,
            listener=listener,
            public=(
                *self.agent.public_words,
                *await asyncio.to_thread(redact.public_phrases, self.agent.own_texts()),
            ),
        )
        await self.records_worker.start()
        self.add_health_check("records", lambda: self.records_worker is None or self.records_worker.healthy)
        self.add_health_check("summaries", lambda: self.summaries is None or self.summaries.healthy)

    async def dial_check(self, check: policy_pb2.DialCheck, call_id: str) -> policy_pb2.PolicyDecision:
        """Policy's decision on a dial (it audits it under ``call_id`` and stores the approval)."""
        decision: policy_pb2.PolicyDecision = await self.bus.request(
            subjects.dial_check(),
            check,
            policy_pb2.PolicyDecision,
            timeout=DIAL_CHECK_TIMEOUT_S,
            headers={CALL_ID_HEADER: call_id},
        )
        return decision

    async def teardown(self) -> None:
        if self.console is not None:
            await self.console.stop()
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        if self.campaigns is not None:
            await self.campaigns.close()
        if self.records_worker is not None:
            await self.records_worker.stop()
        if self.summaries is not None:
            await self.summaries.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self.records is not None:
            self.records.close()

    def status(self) -> dict[str, object]:
        return {
            "grpc_port": self.grpc_port,
            "console": self.console_url,
            "records_applied": self.records_worker.applied if self.records_worker is not None else 0,
            "webhooks_delivered": self.webhooks.delivered if self.webhooks is not None else 0,
            "webhooks_failed": self.webhooks.failed if self.webhooks is not None else 0,
            "summaries_stored": self.summaries.stored if self.summaries is not None else 0,
        }
