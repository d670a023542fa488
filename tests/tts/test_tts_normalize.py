from __future__ import annotations

import pytest
from phoneagent.tts.normalize import normalize

CASES = [
    # times
    ("See you at 3:30 pm.", "See you at three thirty p m."),
    ("It opens at 10:00", "It opens at ten o'clock"),
    ("at 10:05 am", "at ten oh five a m"),
    ("by 9 a.m.", "by nine a m."),
    ("by 9 a.m. Then we close", "by nine a m. Then we close"),
    ("at 3PM", "at three p m"),
    ("at 12:00 pm", "at twelve p m"),
    ("at 14:30", "at fourteen thirty"),
    ("the score was 25:99", "the score was twenty-five:ninety-nine"),
    # dates
    ("on 2026-11-23", "on November twenty-third, twenty twenty-six"),
    ("on 11/23", "on November twenty-third"),
    ("on 11/23/2026", "on November twenty-third, twenty twenty-six"),
    ("on Nov 23rd", "on November twenty-third"),
    ("on Nov. 23, 2026", "on November twenty-third, twenty twenty-six"),
    ("on September 1st", "on September first"),
    ("on Sept 2", "on September second"),
    ("open 24/7", "open twenty-four/seven"),
    # money
    ("It costs $42.50", "It costs forty-two dollars and fifty cents"),
    ("only $1", "only one dollar"),
    ("$0.99", "ninety-nine cents"),
    ("$0.01", "one cent"),
    ("$4.5", "four dollars and fifty cents"),
    ("$42.00", "forty-two dollars"),
    ("$1,200", "one thousand two hundred dollars"),
    ("$3.5 million", "three point five million dollars"),
    ("£5.01", "five pounds and one penny"),
    ("€20", "twenty euros"),
    # phone, account and confirmation numbers
    ("Call 415-555-0132", "Call four one five, five five five, zero one three two"),
    ("Call (415) 555-0132", "Call four one five, five five five, zero one three two"),
    ("Call +1 415 555 0132", "Call plus one, four one five, five five five, zero one three two"),
    ("Call 555-0132.", "Call five five five, zero one three two."),
    ("confirmation 48213957", "confirmation four eight two one, three nine five seven"),
    ("account 123456789", "account one two three, four five six, seven eight nine"),
    ("zip 94110", "zip nine four one one zero"),
    ("ref #48213", "ref number four eight two one three"),
    ("code AB12C", "code A B one two C"),
    ("booking XK-4821", "booking X K, four eight two one"),
    # ordinals, percentages, plain numbers
    ("the 1st and 23rd", "the first and twenty-third"),
    ("15% off", "fifteen percent off"),
    ("2.5 %", "two point five percent"),
    ("It is 3.5 miles", "It is three point five miles"),
    ("in 1999 we had 1,200 users", "in nineteen ninety-nine we had one thousand two hundred users"),
    ("I have 2 dogs & 3 cats", "I have two dogs and three cats"),
    ("open 9-5", "open nine to five"),
    ("-5 degrees", "minus five degrees"),
    ("version 2.0.1", "version two point zero point one"),
    ("No. 5", "number five"),
    # abbreviations
    ("Dr. Patel is in.", "Doctor Patel is in."),
    ("We are on Main St.", "We are on Main Street."),
    ("Oak Dr. is near St. Louis", "Oak Drive is near Saint Louis"),
    ("Mr. and Mrs. Smith", "Mister and Missus Smith"),
    ("your appt. is soon", "your appointment is soon"),
    ("apples, pears, etc.", "apples, pears, et cetera."),
    ("pears etc. and more", "pears et cetera and more"),
    ("e.g. Monday", "for example Monday"),
    ("i.e. now", "that is now"),
    # left alone
    ("MP3 player", "MP3 player"),
    ("COVID-19", "COVID-nineteen"),
    ("Hello there.", "Hello there."),
    ("email john.doe@example.com", "email john dot doe at example dot com"),
]


@pytest.mark.parametrize(("text", "spoken"), CASES)
def test_normalize(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


def test_normalize_leaves_no_digits_in_a_realistic_reply() -> None:
    reply = (
        "Your appt. with Dr. Lee is on 2026-11-23 at 3:30 pm; the copay is $25.00, "
        "confirmation 48213957, and our number is (415) 555-0132."
    )
    spoken = normalize(reply)
    assert not any(ch.isdigit() for ch in spoken)
    assert "Doctor Lee" in spoken and "three thirty p m" in spoken and "twenty-five dollars" in spoken


def test_normalize_is_total_on_odd_input() -> None:
    for text in ["", "   ", "$", "%", "1/0/", "99:99", "$.", "12:", "--5", "A-1-B-2", "\u00a0"]:
        assert isinstance(normalize(text), str)


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("I have 42, right?", "I have forty-two, right?"),
        ("ticket 48213957, please", "ticket four eight two one, three nine five seven, please"),
        ("that is 1,200.", "that is one thousand two hundred."),
    ],
)
def test_numbers_next_to_punctuation(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        # identifiers are read digit by digit after the word that names them
        ("Your account number is 4821.", "Your account number is four eight two one."),
        ("the card ending in 1987", "the card ending in one nine eight seven"),
        ("Visa ending in 4242", "Visa ending in four two four two"),
        ("Your PIN is 0042.", "Your PIN is zero zero four two."),
        ("PIN: 1234", "PIN: one two three four"),
        ("call ext. 204", "call extension two zero four"),
        ("extension 12", "extension one two"),
        ("acct. 55123", "account five five one two three"),
        ("confirmation code 48213957", "confirmation code four eight two one, three nine five seven"),
        ("reference: 7731", "reference: seven seven three one"),
        ("order 5512 ships today", "order five five one two ships today"),
        ("Member ID 88231", "Member ID eight eight two three one"),
        (
            "card 4111 1111 1111 1111",
            "card four one one one, one one one one, one one one one, one one one one",
        ),
        # a leading zero makes any number a string of digits
        ("agent 007", "agent zero zero seven"),
        ("box 0815 is yours", "box zero eight one five is yours"),
        # ... and nothing else changes: counts, years, amounts, times, decimals
        ("you are number 3 in line", "you are number three in line"),
        ("the account is 12 months old", "the account is twelve months old"),
        ("the contract ending in 2026", "the contract ending in twenty twenty-six"),
        ("the policy of 2020 applies", "the policy of twenty twenty applies"),
        ("a card for $25", "a card for twenty-five dollars"),
        ("at 09:05", "at nine oh five"),
        ("on 2026-01-05", "on January fifth, twenty twenty-six"),
        ("0.5 miles", "zero point five miles"),
        ("$0.99", "ninety-nine cents"),
    ],
)
def test_identifiers_digit_by_digit(text: str, spoken: str) -> None:
    assert normalize(text) == spoken


@pytest.mark.parametrize("text", ["a." * 100_000, "a" * 200_000 + "@", "x@" + "b." * 100_000])
def test_hostile_long_text_normalises_in_linear_time(text: str) -> None:
    """200 KB of address-like characters (a hostile or broken reply) must not backtrack for
    minutes: the e-mail pattern only starts at the beginning of a run."""
    import time

    started = time.perf_counter()
    normalize(text)
    assert time.perf_counter() - started < 5.0
