"""The edge notes where its VAD heard each caller talk spurt start, as a position in the audio
it publishes to ASR (16 kHz samples): set beside ASR's onsets (``Final.onset_sample``) it tells
whether a turn's first words were lost at the edge or in ASR (issue 16)."""

from __future__ import annotations

import numpy as np
from phoneagent.edge.callflow import EdgeCall, EdgeCallConfig
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.v1 import call_pb2, common_pb2, media_pb2
from support.common import wait_for
from support.edge import SilentLine

RATE = SilentLine.sample_rate
FRAME = 160


async def test_talk_spurt_onsets_are_positions_in_the_published_audio(bus: Bus) -> None:
    call_id = "edge-onsets-1"
    published: list[media_pb2.AudioFrame] = []

    async def on_audio(f: media_pb2.AudioFrame, _: Delivery) -> None:
        published.append(f)

    await bus.subscribe(subjects.audio_in(call_id), media_pb2.AudioFrame, on_audio, max_pending=1000)
    started = call_pb2.CallStarted(meta=common_pb2.EventMeta(call_id=call_id), sample_rate=16000)
    call = EdgeCall(bus, started, SilentLine(), EdgeCallConfig(stages=()))
    t = np.arange(RATE) / RATE
    voiced = (6000 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.int16)
    line = np.concatenate([np.zeros(RATE, np.int16), voiced, np.zeros(RATE, np.int16), voiced])
    for i in range(0, len(line), FRAME):
        await call._caller_frame(line[i : i + FRAME])
    # Two spurts, at 1 s and 3 s of the call: 16000 and 48000 samples into the published audio.
    assert list(call.onsets) == [16000, 48000]
    count = len(line) // FRAME
    await wait_for(lambda: len(published) == count, timeout=10)
    audio = np.concatenate([np.frombuffer(f.pcm, "<i2") for f in sorted(published, key=lambda f: f.sequence)])
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > 300)
    assert abs(int(loud[0]) - 16000) < 40  # the resampler's filter delay, a few samples
