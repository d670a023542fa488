"""Settings validation, redaction in logs, health endpoints, task ownership, retries."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import time
import urllib.request

import pytest
from phoneagent.runtime import logs
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError, Unavailable
from phoneagent.runtime.health import HealthServer
from phoneagent.runtime.redact import mask_number, redact_text
from phoneagent.runtime.settings import CommonSettings, SettingsError, env, load, positive
from phoneagent.runtime.tasks import TaskOwner, retry, with_timeout


def test_settings_defaults_and_parsing() -> None:
    s = load(CommonSettings, {})
    assert s.nats_url == "nats://127.0.0.1:4222" and s.http_host == "127.0.0.1"
    s = load(CommonSettings, {"PA_HTTP_PORT": "9100", "PA_LOG_SENSITIVE": "yes", "PA_LOG_FORMAT": "text"})
    assert s.http_port == 9100 and s.log_sensitive is True and s.log_format.value == "text"


def test_settings_errors_name_every_wrong_variable() -> None:
    with pytest.raises(SettingsError) as e:
        load(
            CommonSettings,
            {
                "PA_HTTP_PORT": "eighty",
                "PA_NATS_URL": "localhost:4222",
                "PA_LOG_FORMAT": "xml",
                "PA_HEARTBEAT_S": "-1",
            },
        )
    text = str(e.value)
    for var in ("PA_HTTP_PORT", "PA_NATS_URL", "PA_LOG_FORMAT", "PA_HEARTBEAT_S"):
        assert var in text
    with pytest.raises(SettingsError, match="PA_DEAD_AFTER_S"):
        load(CommonSettings, {"PA_HEARTBEAT_S": "1", "PA_DEAD_AFTER_S": "1.5"})

    @dataclasses.dataclass(frozen=True)
    class Needs:
        token: str = env("PA_TEST_TOKEN")
        n: int = env("PA_TEST_N", 3, check=positive)

    with pytest.raises(SettingsError, match="PA_TEST_TOKEN: required"):
        load(Needs, {})
    assert load(Needs, {"PA_TEST_TOKEN": "x"}).n == 3


def test_redaction_of_personal_data() -> None:
    text = (
        "call me on +1 (415) 555-0134, card 4111 1111 1111 1111, ssn 123-45-6789, "
        "mail jo@example.com, sip:+14155550134@trunk.example"
    )
    out = redact_text(text)
    for secret in ("555-0134", "4111 1111", "123-45-6789", "jo@example.com", "+14155550134"):
        assert secret not in out
    assert "[CARD]" in out and "[SSN]" in out and "[EMAIL]" in out
    # Not personal data: times, dates, short numbers, a non-Luhn 16-digit group is still masked.
    assert redact_text("at 3:30 pm on 2026-11-23, room 12") == "at 3:30 pm on 2026-11-23, room 12"
    assert "4111111111111112" not in redact_text("ref 4111111111111112")
    assert mask_number("+14155550134") == "…34"


@pytest.mark.parametrize(
    "hostile",
    ["x" * 200_000, "sip:" * 50_000, "sips:a" * 40_000, "a@" * 100_000, "1 " * 100_000, "hello " * 33_000],
    ids=["word", "sip-prefixes", "sip-users", "at-signs", "digit-groups", "words"],
)
def test_redaction_is_linear_on_hostile_text(hostile: str) -> None:
    """A caller (or a bad peer) controls transcript text: redacting 200 KB must not block a
    service. The e-mail and SIP patterns used to backtrack quadratically (minutes for these)."""
    t0 = time.perf_counter()
    redact_text(hostile)
    assert time.perf_counter() - t0 < 2.0
    assert redact_text("x" * 5000 + " jo@example.com") == "x" * 5000 + " [EMAIL]"


def test_logs_carry_call_id_and_never_show_numbers_or_transcripts() -> None:
    stream = io.StringIO()
    logs.setup("asr", "asr-1", "INFO", "json")
    handler = logging.getLogger().handlers[0]
    handler.stream = stream  # type: ignore[attr-defined]
    log = logging.getLogger("test.logs")
    token = logs.call_id_var.set("c1a20a6caa0123456789f9e2")
    try:
        log.info(
            "final transcript",
            extra={
                "text": "my card is 4111 1111 1111 1111",
                "number": "+14155550134",
                "note": "reach me at 415-555-0134",
                "latency_ms": 412,
            },
        )
    finally:
        logs.call_id_var.reset(token)
    record = json.loads(stream.getvalue().strip().splitlines()[-1])
    # Call ids are ours, never personal data: kept whole even with long digit runs.
    assert record["call_id"] == "c1a20a6caa0123456789f9e2" and record["service"] == "asr"
    assert record["latency_ms"] == 412
    assert record["text"] == "[REDACTED]" and record["number"] == "[REDACTED]"
    assert "555-0134" not in record["note"]


async def test_health_endpoints() -> None:
    state = {"ready": False}
    server = HealthServer(
        "127.0.0.1", 0, live=lambda: True, ready=lambda: state["ready"], status=lambda: {"sessions": 3}
    )
    port = await server.start()

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    try:
        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200
        code, body = await asyncio.to_thread(get, "/readyz")
        assert code == 503 and json.loads(body) == {"ready": False, "sessions": 3}
        state["ready"] = True
        assert (await asyncio.to_thread(get, "/readyz"))[0] == 200
        code, body = await asyncio.to_thread(get, "/metrics")
        assert code == 200 and b"pa_queue_depth" in body
        assert (await asyncio.to_thread(get, "/nope"))[0] == 404
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x01garbage\r\n\r\n")
        await writer.drain()
        assert (await reader.read())[:12] == b"HTTP/1.1 400"
        writer.close()
        assert (await asyncio.to_thread(get, "/healthz"))[0] == 200  # still serving
    finally:
        await server.close()


async def test_task_owner_cancels_with_a_timeout_and_logs_failures(caplog: pytest.LogCaptureFixture) -> None:
    owner = TaskOwner("t")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def boom() -> None:
        raise ValueError("x")

    owner.spawn(forever(), "forever")
    owner.spawn(boom(), "boom")
    await started.wait()
    await asyncio.sleep(0)
    await owner.close(timeout=1.0)
    assert len(owner) == 0
    assert any("task failed" in r.message for r in caplog.records)
    with pytest.raises(RuntimeError):
        owner.spawn(forever(), "late")


async def test_retry_only_retries_retryable_errors_and_timeouts_are_typed() -> None:
    calls = {"n": 0}

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise Unavailable("not yet")
        return "ok"

    assert await retry(flaky, what="t", base_delay=0.001) == "ok" and calls["n"] == 3

    async def bad() -> None:
        raise PhoneAgentError(ErrorKind.INVALID_ARGUMENT, "no")

    calls["n"] = 0
    with pytest.raises(PhoneAgentError):
        await retry(bad, what="t", base_delay=0.001)
    with pytest.raises(PhoneAgentError) as e:
        await with_timeout(asyncio.sleep(1), 0.01, "sleep")
    assert e.value.kind is ErrorKind.TIMEOUT


async def test_retry_waits_out_the_kinds_it_is_told_to_until_its_deadline_and_no_other() -> None:
    failures = {"n": 0}

    def failing(kind: ErrorKind, times: int):  # type: ignore[no-untyped-def]
        async def op() -> str:
            failures["n"] += 1
            if failures["n"] <= times:
                raise PhoneAgentError(kind, "not yet")
            return "ok"

        return op

    async def patient(kind: ErrorKind, times: int, within: float) -> str:
        failures["n"] = 0
        op = failing(kind, times)
        return await retry(
            op,
            what="t",
            attempts=3,
            base_delay=0.01,
            max_delay=0.02,
            wait_out=(ErrorKind.UNAVAILABLE,),
            within=within,
        )

    # Twelve unavailable answers, far past three attempts, are waited out within the deadline.
    assert await patient(ErrorKind.UNAVAILABLE, 12, within=5) == "ok" and failures["n"] == 13
    # Another retryable kind still gets only its attempts.
    with pytest.raises(PhoneAgentError) as e:
        await patient(ErrorKind.OVERLOADED, 12, within=5)
    assert e.value.kind is ErrorKind.OVERLOADED and failures["n"] == 3
    # And the waited-out kind gives up once the deadline has passed.
    began = time.monotonic()
    with pytest.raises(PhoneAgentError) as e:
        await patient(ErrorKind.UNAVAILABLE, 10_000, within=0.3)
    assert e.value.kind is ErrorKind.UNAVAILABLE and failures["n"] > 3
    assert 0.25 <= time.monotonic() - began < 2.0
