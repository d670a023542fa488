"""Transcript redaction: spoken digits, codes and dates of birth, on top of the runtime patterns."""

from __future__ import annotations

import pytest
from phoneagent.runtime.redact import redact_transcript, spoken_digits


@pytest.mark.parametrize(
    "text",
    [
        "my card is four one one one one one one one one one one one one one one one",
        "It's four one one one, one one one one, one one one one, one one one one.",
        "Four one one one 1111 one one one one 1111 thanks",
        "five five double five, five five five five, five five five five, four four four four",
    ],
)
def test_spoken_card_numbers_masked(text: str) -> None:
    out = redact_transcript(text)
    assert "[CARD]" in out
    assert "one one" not in out.lower() and "1111" not in out and "five five" not in out


def test_spoken_long_and_phone_like_runs() -> None:
    out = redact_transcript("account number one two three four five six seven eight nine")
    assert out == "account number [NUMBER]"
    assert redact_transcript("call five five five oh one two three") == "call [PHONE:23]"
    # A non-Luhn 16 digit run is still masked, as a number.
    sixteen = " ".join(["one two three four"] * 4)
    assert redact_transcript(sixteen) == "[NUMBER]"


def test_spoken_digits_conversion() -> None:
    assert spoken_digits("double five, oh triple two 42") == "55022242"


def test_security_codes_and_pins() -> None:
    assert redact_transcript("the CVV is one two three") == "the CVV is [CODE]"
    assert redact_transcript("My PIN is 4321.") == "My PIN is [CODE]."
    assert redact_transcript("security code: 9 8 7") == "security code: [CODE]"


def test_booking_references_masked() -> None:
    said = "You're booked on Tuesday 1 December at 9 am. Your booking reference is 471209; keep it."
    assert redact_transcript(said) == (
        "You're booked on Tuesday 1 December at 9 am. Your booking reference is [CODE]; keep it."
    )
    assert redact_transcript("my booking reference is four seven one two oh nine") == (
        "my booking reference is [CODE]"
    )
    assert redact_transcript("the reference is 471 209") == "the reference is [CODE]"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("my date of birth is March 3rd, 1985", "my date of birth is [DOB]"),
        ("DOB: 03/04/1985.", "DOB: [DOB]."),
        ("I was born on the third of March nineteen eighty five", "I was born on the [DOB]"),
        ("born in 1985 and raised in Ohio", "born in [DOB] and raised in [LOCATION]"),  # a place too
        ("my birthday is July twenty first", "my birthday is [DOB]"),
    ],
)
def test_dates_of_birth_masked_after_their_keyword(text: str, expected: str) -> None:
    assert redact_transcript(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "My appointment is on March 3rd at 10.",
        "I have one or two questions.",
        "Call me in five minutes.",
        "I was born on a farm.",
        "My birthday party is on Saturday.",
        "Oh, one more thing.",
        "Room two oh four please",
        "",
    ],
)
def test_ordinary_text_left_alone(text: str) -> None:
    assert redact_transcript(text) == text


def test_runtime_patterns_still_apply() -> None:
    out = redact_transcript("card 4111 1111 1111 1111, mail jo@example.com, ssn 123-45-6789")
    assert out == "card [CARD], mail [EMAIL], ssn [SSN]"
