"""Contracts: every message round-trips; subjects are built from validated ids."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import RejectedMessage, decode, event_meta, subject_kind
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, media_pb2, policy_pb2, speech_pb2, tools_pb2


def meta(call_id: str = "c1", turn: int = 2, gen: int = 3) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(
        call_id=call_id, turn_id=turn, generation_id=gen, ts_unix_ns=123, producer="t"
    )


SAMPLES = [
    call_pb2.CallEvent(
        started=call_pb2.CallStarted(
            meta=meta(),
            direction=call_pb2.DIRECTION_INBOUND,
            transport=call_pb2.TRANSPORT_SIP,
            from_uri="sip:a@b",
            sample_rate=16000,
            codec="PCMU",
        )
    ),
    call_pb2.CallEvent(
        ended=call_pb2.CallEnded(meta=meta(), reason=call_pb2.END_REASON_CALLER_HANGUP, duration_ms=1234)
    ),
    media_pb2.AudioFrame(
        meta=meta(), sequence=7, pcm=b"\x01\x00" * 320, sample_rate=16000, capture_unix_ns=9
    ),
    media_pb2.SpeechChunk(
        meta=meta(),
        sequence=1,
        pcm=b"\x00" * 320,
        sample_rate=8000,
        sentence_seq=0,
        text_start=0,
        text_end=5,
        last_in_generation=True,
    ),
    speech_pb2.AsrEvent(
        transcript=speech_pb2.Transcript(
            meta=meta(), final=True, text="hello", speech_start_unix_ns=1, speech_end_unix_ns=2
        )
    ),
    speech_pb2.AgentText(meta=meta(), sentence_seq=1, text="Hi there.", final=True),
    control_pb2.ControlEvent(
        meta=meta(), barge_in=control_pb2.BargeIn(interrupted_generation_id=3, played_ms=840)
    ),
    control_pb2.ControlEvent(
        meta=meta(),
        hangup=control_pb2.Hangup(reason=call_pb2.END_REASON_AGENT_HANGUP),
    ),
    control_pb2.ControlEvent(meta=meta(), dtmf=control_pb2.Dtmf(digit="5", duration_ms=120)),
    policy_pb2.PolicyDecision(
        meta=meta(),
        decision=policy_pb2.DECISION_DENY,
        subject="dial",
        rule="calling_window",
        reason="outside 08:00-21:00 local",
    ),
    tools_pb2.ToolCall(meta=meta(), tool_call_id="t1", name="book_appointment", arguments_json="{}"),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.DESCRIPTOR.name)
def test_round_trip_keeps_every_field(msg) -> None:  # type: ignore[no-untyped-def]
    data = msg.SerializeToString()
    back = decode(type(msg), subjects.lifecycle("c1"), data, 1 << 20)
    assert back == msg
    assert event_meta(back).call_id == "c1"


def _all_descriptors() -> list[Descriptor]:
    """Every message type of every module in phoneagent.v1, nested ones included (map entries
    are covered through their map fields)."""
    import phoneagent.v1 as pkg

    out: list[Descriptor] = []

    def walk(desc: Descriptor) -> None:
        if desc.GetOptions().map_entry:
            return
        out.append(desc)
        for nested in desc.nested_types:
            walk(nested)

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"phoneagent.v1.{info.name}")
            for desc in module.DESCRIPTOR.message_types_by_name.values():
                walk(desc)
    return out


DESCRIPTORS = _all_descriptors()


def _value(field: FieldDescriptor, salt: int) -> Any:
    """A non-default value for a scalar field (distinct per field and salt)."""
    t = field.type
    n = field.number + salt
    if t == FieldDescriptor.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[n % len(values)] if values else 0
    if t == FieldDescriptor.TYPE_BOOL:
        return True
    if t == FieldDescriptor.TYPE_STRING:
        return f"{field.name}-{n}-é中"
    if t == FieldDescriptor.TYPE_BYTES:
        return bytes([0, 255, n % 256]) + field.name.encode()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return n + 0.5
    if t in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32):
        return -(n + 1)
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return -(2**40 + n)
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return 2**63 + n
    return n + 1  # uint32, fixed32


def populate(msg: Message, variant: int = 0, depth: int = 0) -> Message:
    """Set every field of ``msg`` (recursively); of each oneof, member ``variant`` (cycling)."""
    desc = msg.DESCRIPTOR
    chosen = {o.name: o.fields[variant % len(o.fields)].name for o in desc.oneofs}
    for field in desc.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen[oneof.name] != field.name:
            continue
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            key_f, val_f = (
                field.message_type.fields_by_name["key"],
                field.message_type.fields_by_name["value"],
            )
            target = getattr(msg, field.name)
            for salt in (1, 2):
                key = _value(key_f, salt)
                if val_f.message_type is not None:
                    populate(target[key], variant, depth + 1)
                else:
                    target[key] = _value(val_f, salt)
        elif field.is_repeated:
            target = getattr(msg, field.name)
            for salt in (1, 2):
                if field.message_type is not None:
                    populate(target.add(), variant + salt, depth + 1)
                else:
                    target.append(_value(field, salt))
        elif field.message_type is not None:
            assert depth < 6, f"recursive message type {field.message_type.full_name}"
            populate(getattr(msg, field.name), variant, depth + 1)
        else:
            setattr(msg, field.name, _value(field, variant))
    return msg


def _cases() -> list[Any]:
    cases = []
    for desc in DESCRIPTORS:
        variants = max([len(o.fields) for o in desc.oneofs], default=1)
        for v in range(variants):
            cases.append(pytest.param(desc, v, id=f"{desc.full_name}-{v}"))
    return cases


def _unset(msg: Message, prefix: str = "") -> list[str]:
    """Fields of ``msg`` (recursively) that hold their default value."""
    missing = []
    for field in msg.DESCRIPTOR.fields:
        oneof = field.containing_oneof
        if oneof is not None and msg.WhichOneof(oneof.name) != field.name:
            continue
        name = prefix + field.name
        value = getattr(msg, field.name)
        if field.is_repeated:
            if len(value) == 0:
                missing.append(name)
        elif field.message_type is not None:
            if not msg.HasField(field.name):
                missing.append(name)
            else:
                missing += _unset(value, name + ".")
        elif value == field.default_value:
            missing.append(name)
    return missing


def test_every_contract_message_is_covered() -> None:
    names = {d.full_name for d in DESCRIPTORS}
    assert len(names) >= 48, sorted(names)
    assert "phoneagent.v1.PlaceCallRequest" in names and "phoneagent.v1.CallInfo" in names  # gRPC API


@pytest.mark.parametrize(("desc", "variant"), _cases())
def test_every_message_round_trips_with_every_field_set(desc: Descriptor, variant: int) -> None:
    cls = message_factory.GetMessageClass(desc)
    msg = populate(cls(), variant)
    assert _unset(msg) == []  # the generator really filled everything
    data = msg.SerializeToString()
    back = cls.FromString(data)
    assert back == msg and _unset(back) == []
    assert back.SerializeToString(deterministic=True) == msg.SerializeToString(deterministic=True)
    via_bus = decode(cls, "pa.v1.contracts.test", data, 1 << 20)  # the bus's own decode path
    assert via_bus == msg


def test_decode_rejects_garbage_oversized_and_foreign_call_ids() -> None:
    with pytest.raises(RejectedMessage) as e:
        decode(media_pb2.AudioFrame, subjects.audio_in("c1"), b"\xff\xff\xff\xff", 1024)
    assert e.value.reason == "malformed"
    with pytest.raises(RejectedMessage) as e:
        decode(media_pb2.AudioFrame, subjects.audio_in("c1"), b"\x00" * 2048, 1024)
    assert e.value.reason == "oversized"
    other = media_pb2.AudioFrame(meta=meta("c2")).SerializeToString()
    with pytest.raises(RejectedMessage) as e:
        decode(media_pb2.AudioFrame, subjects.audio_in("c1"), other, 1024)
    assert e.value.reason == "call_id_mismatch"


def test_subjects_built_from_ids_and_validated() -> None:
    assert subjects.audio_in("c1") == "pa.v1.call.c1.audio"
    assert subjects.control("c1") == "pa.v1.ctl.c1"
    assert subjects.session_claim("asr") == "pa.v1.session.asr.claim"
    assert subjects.call_id_of(subjects.speech("abc-1")) == "abc-1"
    assert subject_kind(subjects.speech("abc")) == "call.speech"
    assert subject_kind(subjects.control("abc")) == "ctl"
    for bad in ["", "a.b", "a*", "a>", "x" * 65, "a b"]:
        with pytest.raises(PhoneAgentError) as e:
            subjects.audio_in(bad)
        assert e.value.kind is ErrorKind.INVALID_ARGUMENT
    with pytest.raises(PhoneAgentError):
        subjects.session_claim("nope")
    ids = {subjects.new_call_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(subjects.check_id(i) for i in ids)


def test_error_kinds_match_the_wire_enum() -> None:
    for kind in ErrorKind:
        wire_name = "ERROR_KIND_" + kind.name
        assert common_pb2.ErrorKind.Value(wire_name) == kind.wire
        assert ErrorKind.from_wire(kind.wire) is kind


def test_enum_name_never_raises_on_values_a_peer_may_send():
    from phoneagent.runtime.enums import enum_name
    from phoneagent.v1 import call_pb2

    assert (
        enum_name(call_pb2.EndReason, call_pb2.END_REASON_CALLER_HANGUP, prefix="END_REASON_")
        == "CALLER_HANGUP"
    )
    assert enum_name(call_pb2.EndReason, 999) == "UNKNOWN"
    assert enum_name(call_pb2.EndReason, -5, unknown="UNSPECIFIED") == "UNSPECIFIED"
