"""What the caller heard of each agent reply, for the call records (``Playout`` on a call's
``playout`` subject, kept in PA_CALLS).

Per generation the edge notes the first TTS chunk (when TTS produced it, its synthesis time)
and the caller's last stop of speech as its VAD heard it; the record is published when the
reply's first audio packet goes out, and again, marked interrupted, when the caller barges in.
Publishing is core NATS (a buffered write): a failure is logged and counted, never raised into
the playout clock.
"""

from __future__ import annotations

import logging
import time

from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.meta import new_meta
from phoneagent.runtime.metrics import ERRORS
from phoneagent.v1 import media_pb2

log = logging.getLogger(__name__)
MAX_PENDING = 64  # generations noted and not finished; older ones are forgotten first


class PlayoutRecords:
    def __init__(self, bus: Bus, call_id: str) -> None:
        self.bus = bus
        self.call_id = call_id
        self._pending: dict[int, media_pb2.Playout] = {}

    def first_chunk(self, chunk: media_pb2.SpeechChunk, caller_stop_unix_ns: int) -> None:
        """Note a generation's first chunk (sequence 0) as it arrives from TTS."""
        gen = chunk.meta.generation_id
        self._pending[gen] = media_pb2.Playout(
            meta=new_meta(self.call_id, "edge", turn_id=chunk.meta.turn_id, generation_id=gen),
            caller_stop_unix_ns=caller_stop_unix_ns,
            # when TTS stamped it; one that came unstamped, when it arrived here
            tts_first_audio_unix_ns=chunk.meta.ts_unix_ns or time.time_ns(),
            tts_synth_ms=chunk.synth_ms,
        )
        while len(self._pending) > MAX_PENDING:
            self._pending.pop(min(self._pending))

    async def first_packet(self, generation: int) -> None:
        """The generation's first audio packet went to the caller now."""
        record = self._pending.get(generation)
        if record is None or record.first_packet_unix_ns:
            return
        record.first_packet_unix_ns = time.time_ns()
        await self._publish(record)

    async def interrupted(self, generation: int, played_ms: int, heard: tuple[int, int]) -> None:
        """The caller spoke over the generation after ``played_ms`` of it."""
        record = self._pending.pop(generation, None)
        if record is None:
            return
        record.interrupted = True
        record.played_ms = played_ms
        record.heard_sentence_seq, record.heard_text_chars = heard
        record.meta.ts_unix_ns = time.time_ns()
        await self._publish(record)

    def finished(self, generation: int) -> None:
        """The generation played to its end (nothing more to record about it)."""
        self._pending.pop(generation, None)

    def forget_below(self, floor: int) -> None:
        """Generations below ``floor`` were cancelled."""
        for gen in [g for g in self._pending if g < floor]:
            del self._pending[gen]

    async def _publish(self, record: media_pb2.Playout) -> None:
        try:
            await self.bus.publish(subjects.playout(self.call_id), record)
        except Exception as exc:  # noqa: BLE001 - the record is lost, the call goes on
            ERRORS.labels(kind="playout_record").inc()
            log.warning(
                "playout record not published", extra={"call_id": self.call_id, "error": type(exc).__name__}
            )
