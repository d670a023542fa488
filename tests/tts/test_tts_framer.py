from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from phoneagent.tts.framer import Framer, coverage
from phoneagent.tts.outbox import Outbox, OutboxClosed


def test_coverage_advances_by_whole_words() -> None:
    text = "hello big world"
    marks = coverage(150, text, 0, len(text))
    assert marks[0] == 0 and marks[-1] == len(text)
    assert set(np.unique(marks)) <= {0, 5, 9, 15}
    assert np.all(np.diff(marks) >= 0)


def test_framer_emits_whole_frames_and_keeps_the_last_for_finish() -> None:
    framer = Framer(160)
    frames = framer.push(np.ones(480, dtype=np.int16), 7)
    assert len(frames) == 2  # the third is held back to be marked last
    rest = framer.finish()
    assert len(rest) == 1
    assert all(len(f.pcm) == 320 for f in frames + rest)
    tail = Framer(160)
    tail.push(np.ones(170, dtype=np.int16), 3)
    last = tail.finish()
    assert len(last) == 1 and last[0].text_end == 3
    assert np.frombuffer(last[0].pcm, dtype=np.int16)[10:].sum() == 0  # padded with silence


def test_framer_text_ranges_are_contiguous() -> None:
    framer = Framer(80)
    text = "one two three four"
    frames = framer.push(np.ones(800, dtype=np.int16), coverage(800, text, 0, len(text))) + framer.finish()
    assert frames[0].text_start == 0 and frames[-1].text_end == len(text)
    for a, b in zip(frames, frames[1:], strict=False):
        assert b.text_start == a.text_end


def test_empty_framer_finishes_with_one_silent_frame() -> None:
    frames = Framer(160).finish()
    assert len(frames) == 1 and frames[0].pcm == bytes(320)


async def test_outbox_purge_and_bounded_put() -> None:
    box: Outbox[int] = Outbox(asyncio.get_running_loop(), limit=2)
    assert box.put(1, lambda: True) and box.put(2, lambda: True)
    wanted = threading.Event()
    wanted.set()
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(box.put(3, wanted.is_set)))
    worker.start()
    assert await box.get() == 1  # frees a slot: the blocked put goes in
    await asyncio.to_thread(worker.join, 5)
    assert result == [True]
    assert box.purge(lambda item: item == 2) == 1
    assert await box.get() == 3
    refused = box.put(4, lambda: False)
    assert refused is False and len(box) == 0
    box.close()
    with pytest.raises(OutboxClosed):
        await asyncio.wait_for(box.get(), 2)
