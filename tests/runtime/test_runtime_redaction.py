"""Transcript redaction: spoken digits, codes and dates of birth, on top of the runtime patterns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from phoneagent.agents import example_agent_path
from phoneagent.agents.agent import load_agent
from phoneagent.devtools import redact_bench
from phoneagent.runtime import redact
from phoneagent.runtime.redact import redact_json, redact_transcript, spoken_digits


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


def test_the_business_name_is_kept_and_the_callers_masked() -> None:
    public = ("Bright Smile Dental",)
    greeting = "Thank you for calling Bright Smile Dental. How can I help you today?"
    assert redact_transcript(greeting, public=public) == greeting
    said = "Hi, this is Maria Lopez. Is this bright smile dental?"
    assert redact_transcript(said, public=public) == "Hi, this is [NAME]. Is this bright smile dental?"
    # A finding that reaches past the public words is masked whole.
    assert redact_transcript("I'm Maria Lopez.", public=("Maria",)) == "I'm [NAME]."


def test_the_names_and_places_of_the_business_documents_are_public() -> None:
    agent = load_agent(example_agent_path())
    public = (*agent.public_words, *redact.public_phrases(agent.own_texts()))
    assert {"Priya Shah", "418 Maple Avenue"} <= set(public)
    for said in (
        "The children's dentist is Dr. Priya Shah.",
        "We are at 418 Maple Avenue, Springfield, above the pharmacy.",
        "I am an AI assistant, not a person.",
        "Dr. Priya Shah sees kids and teenagers.",  # the analyzer's span is "Priya Shah sees"
    ):
        assert redact_transcript(said, public=public) == said
    thanks = "Thanks, Maria Lopez, see you then."
    assert redact_transcript(thanks, public=public) == "Thanks, [NAME], see you then."
    # The caller's own address on the practice's street is masked whole.
    assert redact_transcript("I live at 12 Elm Street.", public=public) == "I live at [LOCATION]"


def test_runtime_patterns_still_apply() -> None:
    out = redact_transcript("card 4111 1111 1111 1111, mail jo@example.com, ssn 123-45-6789")
    assert out == "card [CARD], mail [EMAIL], ssn [SSN]"


# --- Presidio and the phone-specific recognisers -------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Yeah it's four one five, um, five five five, two three four five.", "Yeah it's [PHONE:45]."),
        ("Call me back on four fifteen, five five five, twelve thirty four.", "Call me back on [PHONE:34]."),
        ("It's double five five, oh one, double three.", "It's [PHONE:33]."),
        ("You can email me at john dot smith at gmail dot com.", "You can email me at [EMAIL]."),
        ("it's j o h n at yahoo dot com", "it's [EMAIL]"),
        (
            "My name is Priya Natarajan and my zip code is 94107.",
            "My name is [NAME] and my zip code is [LOCATION].",
        ),
        ("I live at forty two elm street apartment 3B", "I live at [LOCATION]"),
        ("My social is one two three, four five, six seven eight nine.", "My social is [SSN]."),
        ("Date of birth, ten ten eighty.", "Date of birth, [DOB]."),
        ("The Visa's expiry is oh nine twenty eight.", "The Visa's expiry is [CODE]."),
    ],
)
def test_spoken_personal_data_masked(text: str, expected: str) -> None:
    assert redact_transcript(text) == expected


@pytest.mark.parametrize(
    "asked,said,expected",
    [
        (
            "Can I have your date of birth please?",
            "Sure, it's March third, nineteen eighty-five.",
            "Sure, it's [DOB].",
        ),
        ("And your date of birth?", "oh three oh four eighty five", "[DOB]"),
        ("What's the long number on the card?", "four one one one, one one one one", "[CARD]"),
        ("Last four of the social?", "nine nine oh one", "[SSN]"),
        ("Could I get your name please?", "yeah it's david kim", "yeah it's [NAME]"),
        ("Can I get your zip code?", "60614.", "[LOCATION]."),
        (
            "Thanks. What's the best number to reach you?",
            "Six one seven, five five five, oh one two three.",
            "[PHONE:23].",
        ),
    ],
)
def test_answers_to_the_agents_question_masked(asked: str, said: str, expected: str) -> None:
    assert redact_transcript(said, context=asked) == expected
    if any(w in asked for w in ("birth", "social", "zip")):  # a bare date or short number:
        assert redact_transcript(said) == said  # masked only as the answer to the question


@pytest.mark.parametrize(
    "asked,said",
    [
        ("Can I have your date of birth please?", "I'd rather not say."),
        ("What time suits you?", "Tuesday at 3:30 would be great."),
        ("How much was it?", "It was ninety nine dollars and fifty cents."),
        ("Could I get your name please?", "Sorry, what was that?"),
    ],
)
def test_answers_without_personal_data_left_alone(asked: str, said: str) -> None:
    assert redact_transcript(said, context=asked) == said


@pytest.mark.parametrize(
    "text",
    [
        "The cleaning is $120 and the appointment is at 3:30 pm on Tuesday.",
        "It costs ninety nine dollars and fifty cents, and we open at nine thirty.",
        "I'd like to book for two people at seven fifteen tomorrow.",
        "The total was 1,250 dollars for 3 crowns.",
        "Is 2026-11-23 still okay?",
        "Email me the receipt please.",
    ],
)
def test_times_prices_and_counts_kept(text: str) -> None:
    assert redact_transcript(text) == text


def test_json_values_redacted_with_their_key_as_context() -> None:
    out = redact_json('{"name":"Ann Lee","dob":"03/04/1985","time":"10:30","service":"cleaning"}')
    assert json.loads(out) == {"name": "[NAME]", "dob": "[DOB]", "time": "10:30", "service": "cleaning"}


def test_placeholders_are_not_masked_again() -> None:
    once = redact_transcript("Thanks, Ann. I will call you back at 415 555 0134.")
    assert redact_transcript(once) == once == "Thanks, [NAME]. I will call you back at [PHONE:34]."


def test_the_model_comes_from_the_installed_package() -> None:
    path = redact.model_path()
    assert (path / "config.cfg").is_file() and (path / "ner").is_dir()
    assert redact.MODEL_PACKAGE in str(path)


@pytest.mark.parametrize("labelled", ["redact_set.txt", "redact_heldout.txt"])
def test_benchmark_meets_the_targets(labelled: str) -> None:
    """The labelled utterances (written for this): recall >= 99 % for cards, SSNs and phone
    numbers, >= 95 % for dates of birth and e-mail, precision >= 90 %, no kept value masked."""
    examples = redact_bench.load(Path(redact_bench.__file__).with_name(labelled))
    assert len(examples) >= (200 if labelled == "redact_set.txt" else 50)
    s = redact_bench.score(examples)
    for kind, target in (("CARD", 0.99), ("SSN", 0.99), ("PHONE", 0.99), ("DOB", 0.95), ("EMAIL", 0.95)):
        assert s.caught[kind] >= target * s.spans[kind], (kind, s.misses)
    assert sum(s.right.values()) >= 0.9 * sum(s.masked.values()), s.misses
    for kind in redact_bench.KINDS:
        assert s.right[kind] >= 0.9 * s.masked[kind], (kind, s.misses)
    assert s.kept == s.keep, s.misses


def test_benchmark_parser_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        redact_bench.parse_line("my {PASSPORT:X123}", 1)
    ex = redact_bench.parse_line("Your name? || It's {NAME:Ann} at {KEEP:3}.", 2)
    assert ex.context == "Your name?" and ex.text == "It's Ann at 3."
    assert ex.spans == [(5, 8, "NAME"), (12, 13, "KEEP")]


@pytest.mark.parametrize(
    "hostile",
    ["1 " * 100_000, "a " * 100_000 + "b1", "a" * 200_000 + " at gmail dot com", "one two " * 25_000],
    ids=["digit-groups", "spelled-letters", "long-local-part", "digit-words"],
)
def test_long_text_is_cut_not_analysed_whole(hostile: str) -> None:
    """A caller or a bad peer controls the text: a stored copy keeps its first MAX_TEXT
    characters, redacted, and says how much was cut (the analysis stays bounded)."""
    said = "my card is 4111 1111 1111 1111 thanks " + hostile
    out = redact_transcript(said)
    assert out.startswith("my card is [CARD] thanks ")
    assert out.endswith(f"[… {len(said) - redact.MAX_TEXT} characters not kept]")
    assert len(out) < redact.MAX_TEXT + 100


def test_text_over_a_chunk_is_analysed_in_pieces() -> None:
    said = "I'd like to book a cleaning for next week please. " * 100 + "My name is Ann Lee."
    assert len(said) > redact.CHUNK
    assert redact_transcript(said).endswith("My name is [NAME].")
