"""A three-node NATS cluster (three nats-server processes on loopback, routed, JetStream on, the
bus users and their permissions in force) loses the server that leads the audit stream in the
middle of a call. With the streams and buckets kept in three copies (PA_NATS_STREAM_REPLICAS=3),
the policy service (connected as its own bus user) goes on: every sentence of the running call
and of calls started after the loss is let through for speech, and every decision it took is
in PA_AUDIT afterwards, once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from phoneagent.agents.disclosure import DISCLOSURE_CORE
from phoneagent.policy.service import PolicyService
from phoneagent.policy.settings import PolicySettings
from phoneagent.runtime import bus_auth, streams, subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.natsserver import NatsCluster
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.v1 import policy_pb2
from support.common import SIGNING_KEY_FILE, wait_for
from support.policy_stack import Call, start_call

COPIES = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = NatsCluster(tmp_path / "nats", COPIES)
    c.start()
    yield c
    c.stop()


@contextlib.asynccontextmanager
async def running_policy(url: str, cluster: NatsCluster, tmp_path: Path) -> AsyncIterator[PolicyService]:
    """The real policy service process body (its run()), as the policy bus user."""
    auth = cluster.auth(bus_auth.PROVISIONER)
    common = load(
        CommonSettings,
        nats_url=url,
        nats_user=auth.user,
        nats_password_file=auth.password_file,
        nats_stream_replicas=COPIES,
        replica_id="policy-cluster-t",
        drain_timeout_s=1.0,
    )
    settings = load(
        PolicySettings, db_path=str(tmp_path / "policy.sqlite3"), signing_key_file=SIGNING_KEY_FILE
    )
    svc = PolicyService(common, settings)
    task = asyncio.create_task(svc.run())
    try:
        await wait_for(lambda: svc.ready or task.done(), timeout=30)
        assert svc.ready, "policy did not start"
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 30)


async def audited(js: Any) -> list[str]:
    """The decision ids in PA_AUDIT, message by message."""
    state = (await js.stream_info(subjects.AUDIT_STREAM)).state
    out: list[str] = []
    for seq in range(state.first_seq, state.last_seq + 1):
        msg = await js.get_msg(subjects.AUDIT_STREAM, seq)
        record = policy_pb2.PolicyDecision()
        record.ParseFromString(msg.data)
        out.append(record.decision_id)
    return out


async def first_sentence(call: Call, text: str) -> None:
    await call.agent(1, text)
    await wait_for(lambda: any(text in t for t in call.texts()), timeout=40, interval=0.05)


async def test_losing_the_audit_leader_mid_call_loses_no_sentence_and_no_audit_record(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    # The streams in three copies, created by the provisioner's rules (as the chart's policy does).
    admin = Bus("cluster-admin")
    await admin.connect(cluster.url, auth=cluster.auth(bus_auth.OPERATOR))
    await streams.ensure(admin.jetstream(), replicas=COPIES)
    for name in streams.stream_names():
        info = await admin.jetstream().stream_info(name)
        assert info.config.num_replicas == COPIES, name
    leader = (await admin.jetstream().stream_info(subjects.AUDIT_STREAM)).cluster.leader
    doomed = cluster.server(leader)
    survivors = ",".join(s.url for s in cluster.servers if s is not doomed)
    await admin.close()

    # The service and the call's other side reach the cluster through the servers that stay.
    probe = Bus("cluster-probe")
    await probe.connect(survivors, auth=cluster.auth(bus_auth.OPERATOR))
    try:
        async with running_policy(survivors, cluster, tmp_path) as svc:
            decided: list[policy_pb2.PolicyDecision] = []
            audit = svc.audit

            async def audit_kept(*args: Any, **kwargs: Any) -> policy_pb2.PolicyDecision:
                decided.append(await audit(*args, **kwargs))
                return decided[-1]

            svc.audit = audit_kept  # type: ignore[method-assign]
            before = await start_call(probe, "+14155550101")
            await first_sentence(before, "Hello, how can I help you today?")
            await before.played(1)  # the caller heard the disclosure: the recording notice follows
            await wait_for(before.directives, timeout=10)

            doomed.kill()  # mid-call: the audit stream's leader is gone

            # The running call goes on, and new calls are taken, disclosed and audited.
            await before.agent(2, "Let me check that for you.")
            after = [await start_call(probe, f"+1415555020{i}") for i in range(3)]
            for call in after:
                await first_sentence(call, "Hello, this is the clinic.")
            # Said as it is: the disclosure the caller heard before the loss is not repeated.
            await wait_for(lambda: "Let me check that for you." in before.texts(), timeout=40)
            for call in [before, *after]:
                assert call.texts()[0].startswith(DISCLOSURE_CORE), call.texts()

            js = probe.jetstream()
            info = await js.stream_info(subjects.AUDIT_STREAM)
            assert info.cluster.leader != leader
            stored = await audited(js)
            assert sorted(stored) == sorted(d.decision_id for d in decided), "lost or doubled"
            assert {d.meta.call_id for d in decided} == {c.call_id for c in [before, *after]}
    finally:
        await probe.close()
