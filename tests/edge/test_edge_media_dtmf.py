import itertools
import random

import pytest
from phoneagent.edge.media.dtmf import (
    DtmfReceiver,
    TelephoneEvent,
    decode_event,
    dtmf_packets,
    encode_event,
    event_for_digit,
)
from phoneagent.runtime.errors import InvalidArgument


def test_payload_layout_round_trip() -> None:
    ev = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert encode_event(ev) == bytes([11, 0x8A, 0x03, 0x20])
    assert decode_event(encode_event(ev)) == ev
    with pytest.raises(InvalidArgument):
        decode_event(b"\x01\x02")
    with pytest.raises(InvalidArgument):
        encode_event(TelephoneEvent(event=1, volume=64))


def test_sender_sequence_for_100ms_digit() -> None:
    packets = dtmf_packets("5", 100)
    events = [decode_event(p.payload) for p in packets]
    assert packets[0].marker and not any(p.marker for p in packets[1:])
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert [p.offset_ms for p in packets] == [0, 20, 40, 60, 80, 100, 120]
    assert {e.event for e in events} == {5}


def test_sender_rejects_bad_digits_and_durations() -> None:
    for bad in ("", "55", "E", 5):
        with pytest.raises(InvalidArgument):
            dtmf_packets(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        dtmf_packets("1", 0)
    with pytest.raises(InvalidArgument):
        dtmf_packets("1", 9000)
    assert event_for_digit("a") == 12 and event_for_digit("#") == 11


def play(rx: DtmfReceiver, digits: str, ts0: int, drop=lambda n, i, p: False) -> list:
    """Send digits 300 ms apart through the receiver; returns the digits it reports, in order."""
    out = []
    wire = []
    for n, d in enumerate(digits):
        ts = (ts0 + n * 2400) & 0xFFFFFFFF
        t0 = n * 0.3
        for i, p in enumerate(dtmf_packets(d, 120)):
            if not drop(n, i, p):
                wire.append((t0 + p.offset_ms / 1000, ts, p.payload))
    for now, ts, payload in wire:
        out += rx.on_packet(ts, payload, now)
        out += rx.poll(now)
    out += rx.poll(100.0)
    return out


def test_each_digit_once_with_duration() -> None:
    rx = DtmfReceiver()
    got = play(rx, "123#", ts0=1000)
    assert "".join(d.digit for d in got) == "123#"
    assert all(d.ended and d.duration_ms == 120 for d in got)


def test_lost_start_and_updates_still_reported_once() -> None:
    got = play(DtmfReceiver(), "90", ts0=5, drop=lambda n, i, p: i < 3)
    assert [(d.digit, d.duration_ms) for d in got] == [("9", 120), ("0", 120)]


def test_all_end_packets_lost_closed_by_next_digit_or_timeout() -> None:
    rx = DtmfReceiver(timeout=0.25)
    got = play(rx, "47", ts0=0, drop=lambda n, i, p: decode_event(p.payload).end)
    assert [d.digit for d in got] == ["4", "7"]
    assert not any(d.ended for d in got)
    assert got[0].duration_ms == 100  # the last update seen before the end packets


def test_late_packets_after_end_do_not_repeat_a_digit() -> None:
    rx = DtmfReceiver()
    packets = dtmf_packets("8", 120)
    out = []
    order = [len(packets) - 3, 0, 1, len(packets) - 1, 2, 3, len(packets) - 2]  # end first, updates late
    for k, i in enumerate(order):
        out += rx.on_packet(160, packets[i].payload, k * 0.02)
    out += rx.poll(10.0)
    assert [d.digit for d in out] == ["8"]


def test_timestamp_wraparound_between_digits() -> None:
    got = play(DtmfReceiver(), "*0A", ts0=0xFFFFFFFF - 3000)
    assert "".join(d.digit for d in got) == "*0A"


def test_random_loss_never_duplicates_or_invents() -> None:
    rng = random.Random(3)
    for _ in range(50):
        digits = "".join(rng.choice("0123456789*#") for _ in range(6))
        lost = [[rng.random() < 0.5 for _ in range(8)] for _ in digits]  # 120 ms: 6 updates + 2 repeats
        ts0 = rng.getrandbits(32)
        got = play(DtmfReceiver(), digits, ts0=ts0, drop=lambda n, i, p, lost=lost: lost[n][i])
        # Every digit with at least one packet through is reported exactly once, in order; no others.
        expected = "".join(d for d, mask in zip(digits, lost, strict=True) if not all(mask))
        assert "".join(d.digit for d in got) == expected


def test_repeated_same_digit_is_reported_each_time() -> None:
    got = play(DtmfReceiver(), "1111", ts0=77)
    assert [d.digit for d in got] == list("1111")


def test_malformed_payloads_are_counted_not_raised() -> None:
    rx = DtmfReceiver()
    assert rx.on_packet(0, b"\x01", 0.0) == []
    assert rx.malformed == 1


def test_non_digit_events_are_not_reported() -> None:
    rx = DtmfReceiver()
    flash = TelephoneEvent(16, end=True, duration=800).to_bytes()
    assert list(itertools.chain(rx.on_packet(0, flash, 0.0), rx.poll(5.0))) == []
