"""Speech rendered whole on request (``pa.v1.tts.render``), on a real nats-server with the real
TTS service and Piper: what the edge's warm transfer asks for instead of loading an engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from phoneagent.edge.transfer import SummaryVoice
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Lane
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.meta import new_meta
from phoneagent.tts import render
from phoneagent.tts.service import TtsService
from phoneagent.v1 import media_pb2

pytestmark = pytest.mark.slow
SUMMARY = "Caller Ann would like to move her cleaning to next Tuesday morning."


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    b = Bus("render-test")
    await b.connect(nats_url)
    yield b
    await b.close()


async def ask(bus: Bus, text: str, rate: int = 8000, max_s: float = 0.0) -> media_pb2.RenderReply:
    req = media_pb2.RenderRequest(meta=new_meta("c1", "test"), text=text, sample_rate=rate, max_seconds=max_s)
    return await bus.request(
        subjects.tts_render(),
        req,
        media_pb2.RenderReply,
        timeout=60,
        lane=Lane.DATA,
        max_bytes=subjects.RENDER_MAX_BYTES + 1024,
    )


def pcm(reply: media_pb2.RenderReply) -> np.ndarray:
    assert not reply.HasField("error"), reply.error.message
    return np.frombuffer(reply.pcm, dtype="<i2")


async def test_a_render_request_is_answered_with_speech_at_the_rate_asked_for(
    piper_tts: TtsService,
    bus: Bus,
) -> None:
    narrow = pcm(await ask(bus, SUMMARY, 8000))
    wide_reply = await ask(bus, SUMMARY, 16000)
    wide = pcm(wide_reply)
    assert wide_reply.sample_rate == 16000 and wide_reply.meta.producer.startswith("tts/")
    assert wide_reply.meta.ts_unix_ns > 0
    assert 2.0 < narrow.size / 8000 < 15.0, "a sentence of speech"
    # Piper samples its phoneme durations (noise_w), so two renders of one sentence differ by a
    # few percent (3.10 s against 3.23 s seen on CI); a wrong rate would be off by half or double.
    narrow_s, wide_s = narrow.size / 8000, wide.size / 16000
    assert abs(wide_s - narrow_s) < 0.1 * narrow_s, "the same speech at either rate"
    assert np.abs(narrow).max() > 2000, "audible"


async def test_max_seconds_cuts_the_speech(piper_tts: TtsService, bus: Bus) -> None:
    cut = pcm(await ask(bus, SUMMARY, 8000, max_s=0.5))
    assert 0 < cut.size <= 4000


@pytest.mark.parametrize(
    ("text", "rate"),
    [("", 8000), ("   ", 8000), ("word " * 200, 8000), (SUMMARY, 1000), (SUMMARY, 96000)],
    ids=["empty", "blank", "too-long", "rate-low", "rate-high"],
)
async def test_a_bad_request_is_answered_with_an_error_and_the_next_one_works(
    piper_tts: TtsService,
    bus: Bus,
    text: str,
    rate: int,
) -> None:
    reply = await ask(bus, text, rate)
    assert reply.HasField("error") and not reply.pcm
    assert reply.error.kind == ErrorKind.INVALID_ARGUMENT.wire and reply.error.source == "tts"
    assert pcm(await ask(bus, "Hello.")).size > 0


async def test_an_engine_failure_is_answered_with_safe_text(
    piper_tts: TtsService,
    bus: Bus,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("secret internals /path/to/model")

    engine, _ = piper_tts.voice_for_call()
    monkeypatch.setattr(engine, "synthesize", broken)
    reply = await ask(bus, SUMMARY)
    assert reply.error.kind == ErrorKind.ENGINE_FAILURE.wire
    assert "secret" not in reply.error.message and "path" not in reply.error.message
    with pytest.raises(PhoneAgentError) as failed:  # the edge's side: a failure it can report
        await SummaryVoice(bus, timeout_s=60).render(SUMMARY, 5.0, "c1")
    assert failed.value.kind is ErrorKind.ENGINE_FAILURE
    monkeypatch.undo()
    assert pcm(await ask(bus, "Hello.")).size > 0, "the service goes on"


async def test_the_edge_summary_voice_gets_8khz_speech_from_tts(
    piper_tts: TtsService,
    bus: Bus,
) -> None:
    speech = await SummaryVoice(bus, timeout_s=60).render(SUMMARY, 30.0, "c1")
    assert speech.dtype == np.int16 and 2.0 < speech.size / 8000 < 15.0
    # A summary longer than a request may carry is cut at a word, not refused.
    long = await SummaryVoice(bus, timeout_s=60).render(SUMMARY * 20, 1.0, "c1")
    assert 0 < long.size <= 8000


def test_check_request_names_what_is_wrong() -> None:
    ok = media_pb2.RenderRequest(text=" Hello  there. ", sample_rate=8000, max_seconds=99)
    assert render.check_request(ok) == ("Hello there.", 8000, render.MAX_SECONDS)
    wide = media_pb2.RenderRequest(text="Hi.", sample_rate=48000, max_seconds=0)
    seconds = render.check_request(wide)[2]
    assert seconds * 48000 * 2 <= subjects.RENDER_MAX_BYTES, "a reply fits the bus"
    with pytest.raises(InvalidArgument, match="longer than"):
        render.check_request(media_pb2.RenderRequest(text="a" * 601, sample_rate=8000))
    with pytest.raises(InvalidArgument, match="sample_rate"):
        render.check_request(media_pb2.RenderRequest(text="Hi.", sample_rate=0))
