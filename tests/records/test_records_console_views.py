"""What the console's pages show, from records built by the records builder (no server)."""

from __future__ import annotations

import csv
import io

import pytest
from phoneagent.records import builder
from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.console import views
from phoneagent.records.console.app import call_filter
from phoneagent.records.console.auth import TokenAuth
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import common_pb2, media_pb2, policy_pb2

MS = 1_000_000


def test_waterfall_leaves_out_hops_whose_points_are_missing() -> None:
    rec = CallRecord(call_id="c1")
    # A code-answered turn: no first token; the playout never came (the caller hung up).
    rec.timings[1] = {"speech_end": 1000 * MS, "asr_final": 1300 * MS, "first_sentence": 1350 * MS}
    rec.timings[2] = {"caller_stop": 5000 * MS, "speech_end": 5050 * MS, "first_rtp": 5900 * MS}
    wf = views.waterfall(rec)
    first, second = wf["turns"]
    assert [s["hop"] for s in first["steps"]] == ["speech_end->asr_final"]
    assert first["steps"][0]["start_ms"] == 0 and first["steps"][0]["end_ms"] == 300
    assert first["hops_ms"]["mouth_to_ear"] is None
    assert second["hops_ms"]["mouth_to_ear"] == 900 and second["hops_ms"]["caller_stop->speech_end"] == 50
    assert wf["stats"]["mouth_to_ear"] == {"n": 1, "p50": 900.0, "p95": 900.0}
    assert wf["stats"]["speech_end->asr_final"]["n"] == 1


def test_a_barge_in_shows_what_was_heard_and_what_was_cut_off() -> None:
    rec = CallRecord(call_id="c1")
    rec.turns.append(Turn("agent", 1, "One. Two three.", 10, generation_id=4, sentence_ends=[4, 15]))
    rec.timings[1] = {"generation": 4}
    msg = media_pb2.Playout(
        meta=common_pb2.EventMeta(call_id="c1", turn_id=1, generation_id=4),
        interrupted=True,
        played_ms=900,
        heard_sentence_seq=1,
        heard_text_chars=3,
    )
    builder.apply_playout(rec, msg)
    (turn,) = views.transcript(rec)
    assert (turn["heard"], turn["cut"], turn["played_ms"]) == ("One. Two", " three.", 900)
    # Another generation's barge-in (a reply that was never stored) changes nothing.
    other = CallRecord(call_id="c1", turns=[Turn("agent", 1, "Hi.", 10, generation_id=5)])
    builder.apply_playout(other, msg)
    assert other.turns[0].heard_chars is None


def test_the_csv_export_does_not_let_a_spreadsheet_run_a_formula() -> None:
    d = policy_pb2.PolicyDecision(
        meta=common_pb2.EventMeta(call_id="none"),
        decision=policy_pb2.DECISION_DENY,
        subject="dial",
        rule="internal_dnc",
        reason="=HYPERLINK(1)",
        number_hint="+…67",
    )
    rows = list(csv.DictReader(io.StringIO(views.audit_csv([views.audit_row(d)]))))
    assert rows[0]["reason"].startswith("'=") and rows[0]["number_hint"] == "'+…67"
    assert rows[0]["call_id"] == "" and rows[0]["decision"] == "deny"


def test_list_filters_are_checked() -> None:
    flt = call_filter({"outcome": "booked", "direction": "inbound", "date": "2026-06-02", "live": "1"})
    assert flt.outcome == "booked" and flt.live_only
    assert flt.started_before_ns - flt.started_from_ns == 86400 * 10**9
    for bad in ({"outcome": "won"}, {"direction": "sideways"}, {"date": "yesterday"}):
        with pytest.raises(InvalidArgument):
            call_filter(bad)


def test_sessions_expire_and_belong_to_one_token() -> None:
    auth = TokenAuth("t0ken")
    cookie = auth.new_session(now=1000.0)
    assert auth.check_session(cookie, now=1000.0 + auth.session_s - 1)
    assert not auth.check_session(cookie, now=1000.0 + auth.session_s)
    assert not TokenAuth("other").check_session(cookie, now=1001.0)
    expires, mac = cookie.split(".")
    assert not auth.check_session(f"{int(expires) + 3600}.{mac}", now=1001.0)  # a longer life is forged
    assert not TokenAuth("").check_session(cookie) and TokenAuth("").open
    assert auth.check_header("Bearer t0ken") and not auth.check_header("Bearer t0ke")
