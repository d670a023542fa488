"""The onset benchmark's scoring and its reading of the lost-frame counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from phoneagent.devtools.onset_bench import lost_frames, missed_first_word
from prometheus_client import CollectorRegistry, Counter, generate_latest


@pytest.mark.parametrize(
    ("reference", "heard", "missed"),
    [
        ("Who is the children's dentist?", "Who is the children's dentist?", False),
        ("Who is the children's dentist?", "Oh, who is the children's dentist?", False),
        ("Who is the children's dentist?", "the children's dentist.", True),
        ("What should new patients bring?", "What's your presentation, please?", False),
        ("Where is your office?", "Where's your office?", False),
        ("Few people know this", "You people know this", True),
        ("So what are your hours?", "'s what are your hours", True),
        ("Who do I talk to?", "", True),
    ],
)
def test_missed_first_word(reference: str, heard: str, missed: bool) -> None:
    assert missed_first_word(reference, heard) is missed


def _exposition() -> bytes:
    """What a service's /metrics serves for the counter (prometheus_client's own text format)."""
    registry = CollectorRegistry()
    lost = Counter("pa_caller_audio_lost_frames_total", "lost", ["stage"], registry=registry)
    lost.labels(stage="edge_jitter").inc(3)
    lost.labels(stage="asr_input").inc(2)
    Counter("pa_other_total", "other", registry=registry).inc(9)
    return generate_latest(registry)


@pytest.fixture
def metrics_port() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(_exposition())

        def log_message(self, *args: object) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_lost_frames_sums_each_stage_over_the_services(metrics_port: int) -> None:
    assert lost_frames([metrics_port, metrics_port]) == {"edge_jitter": 6, "asr_input": 4}


def test_report_tells_live_only_misses_late_onsets_and_losses() -> None:
    from phoneagent.devtools.onset_bench import Heard, report
    from phoneagent.devtools.onset_voices import Planned

    ok = Heard(Planned("piper:joe", "Who is it?", -20.0, False, 1.0), "Who is it?", False, 90.0)
    ok.offline = "Who is it?"
    lost = Heard(Planned("kokoro:af_bella", "Few people know", -32.0, True, 0.5), "people know", True, 640.0)
    lost.offline, lost.lost = "Few people know", {"asr_input": 4}
    text = report({"clean": [ok, lost]}, {"cores": 2}, "cmd")
    row = next(line for line in text.splitlines() if line.strip().startswith("clean"))
    assert row.split()[-1] == "1"  # one onset later than the pre-roll
    assert "1/2 (50.0%)" in row
    assert "LIVE ONLY" in text and "lost={'asr_input': 4}" in text
    assert "utterances during which caller frames were lost: 1" in text
