import hashlib
import importlib.util
import sys
import warnings

import numpy as np
import pytest
from phoneagent.audio.g711 import (
    PCMA,
    PCMU,
    alaw_decode,
    alaw_encode,
    codec_for,
    ulaw_decode,
    ulaw_encode,
)
from phoneagent.runtime.errors import InvalidArgument

ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
ALL_CODES = bytes(range(256))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = importlib.import_module("audioop") if importlib.util.find_spec("audioop") else None

needs_audioop = pytest.mark.skipif(audioop is None, reason=f"no audioop on Python {sys.version_info[:2]}")


# sha256 of audioop's tables (Python 3.11: lin2ulaw/lin2alaw over every int16 sample from -32768
# up, ulaw2lin/alaw2lin over codes 0-255 as little-endian int16), so the bit-exact check runs
# where audioop is gone (3.13) too.
GOLDEN = {
    "ulaw_encode": "81d633c9e6972a18c74a58720b96cb8ca0bdd096d4060b646dd708c3b846019a",
    "alaw_encode": "38488f6fd710f4686360edc4d38639f96c491595ef93f8eb8d62d5e07ca6ce7b",
    "ulaw_decode": "3dab54339e520bb2c924826e3b72a917a2b612e9fd12fc867500f1d983a75827",
    "alaw_decode": "e04788d110e58ff8c70c93b8480190d973e3b67876b6119abbaec766cc75c174",
}


def test_tables_match_golden_reference_hashes() -> None:
    tables = {
        "ulaw_encode": ulaw_encode(ALL_PCM),
        "alaw_encode": alaw_encode(ALL_PCM),
        "ulaw_decode": ulaw_decode(ALL_CODES).astype("<i2").tobytes(),
        "alaw_decode": alaw_decode(ALL_CODES).astype("<i2").tobytes(),
    }
    assert {name: hashlib.sha256(data).hexdigest() for name, data in tables.items()} == GOLDEN


@needs_audioop
def test_golden_hashes_are_audioops() -> None:
    reference = {
        "ulaw_encode": audioop.lin2ulaw(ALL_PCM.tobytes(), 2),
        "alaw_encode": audioop.lin2alaw(ALL_PCM.tobytes(), 2),
        "ulaw_decode": np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), np.int16).astype("<i2").tobytes(),
        "alaw_decode": np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), np.int16).astype("<i2").tobytes(),
    }
    assert {name: hashlib.sha256(data).hexdigest() for name, data in reference.items()} == GOLDEN


@needs_audioop
def test_ulaw_encode_matches_reference_for_every_sample() -> None:
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


@needs_audioop
def test_alaw_encode_matches_reference_for_every_sample() -> None:
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


@needs_audioop
def test_decoders_match_reference_for_every_code() -> None:
    assert ulaw_decode(ALL_CODES).tobytes() == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES).tobytes() == audioop.alaw2lin(ALL_CODES, 2)


def test_known_code_points() -> None:
    # Fixed points of G.711 that hold without any reference library.
    assert ulaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(np.array([0, 32767, -32768], dtype=np.int16)) == bytes([0xD5, 0xAA, 0x2A])
    assert ulaw_decode(bytes([0xFF, 0x7F])).tolist() == [0, 0]
    assert alaw_decode(bytes([0xD5, 0x55])).tolist() == [8, -8]


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_round_trip_error_is_bounded_by_segment_step(codec) -> None:
    decoded = codec.decode(codec.encode(ALL_PCM)).astype(np.int32)
    err = np.abs(decoded - ALL_PCM.astype(np.int32))
    # Companding: the error is a fixed fraction of the magnitude (8 bits: 4-bit mantissa per segment).
    bound = 16 + np.abs(ALL_PCM.astype(np.int32)) / 16
    assert np.all(err <= bound)
    assert err.max() <= 1024
    # Re-encoding a decoded code gives the code back (mu-law has two zeros: 0x7F decodes to 0 = 0xFF).
    reencoded = codec.encode(codec.decode(ALL_CODES))
    differ = [c for c in range(256) if reencoded[c] != c]
    assert differ == ([0x7F] if codec is PCMU else [])


def test_float_input_is_full_scale() -> None:
    pcm = np.array([0.0, 0.5, -0.5, 1.5], dtype=np.float32)
    ints = np.array([0, 16384, -16384, 32767], dtype=np.int16)
    assert ulaw_encode(pcm) == ulaw_encode(ints)


def test_silence_payloads_decode_to_zero_level() -> None:
    assert np.abs(PCMU.decode(PCMU.silence(160))).max() == 0
    assert np.abs(PCMA.decode(PCMA.silence(160))).max() <= 8


def test_codec_for_payload_types_and_names() -> None:
    assert codec_for(0) is PCMU and codec_for(8) is PCMA
    assert codec_for("PCMU/8000") is PCMU and codec_for("alaw") is PCMA and codec_for(" pcma ") is PCMA
    for bad in (18, "G729", True, 3.0, "x" * 500):
        with pytest.raises(InvalidArgument):
            codec_for(bad)


def test_bad_input_raises_clear_error() -> None:
    with pytest.raises(InvalidArgument):
        ulaw_encode(np.zeros((2, 160), dtype=np.int16))
    with pytest.raises(InvalidArgument):
        alaw_encode(np.zeros(160, dtype=np.int32))
    with pytest.raises(InvalidArgument):
        ulaw_decode("not bytes")  # type: ignore[arg-type]
