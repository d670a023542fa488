from __future__ import annotations

import pytest
from phoneagent.tts.numwords import cardinal, decimal, digits, group_digits, ordinal, year


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (7, "seven"),
        (13, "thirteen"),
        (20, "twenty"),
        (42, "forty-two"),
        (100, "one hundred"),
        (101, "one hundred one"),
        (999, "nine hundred ninety-nine"),
        (1000, "one thousand"),
        (1200, "one thousand two hundred"),
        (21_000, "twenty-one thousand"),
        (1_000_000, "one million"),
        (2_500_013, "two million five hundred thousand thirteen"),
        (-5, "minus five"),
    ],
)
def test_cardinal(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (1, "first"),
        (2, "second"),
        (3, "third"),
        (4, "fourth"),
        (5, "fifth"),
        (8, "eighth"),
        (9, "ninth"),
        (12, "twelfth"),
        (20, "twentieth"),
        (21, "twenty-first"),
        (23, "twenty-third"),
        (30, "thirtieth"),
        (100, "one hundredth"),
        (101, "one hundred first"),
        (1000, "one thousandth"),
    ],
)
def test_ordinal(n: int, words: str) -> None:
    assert ordinal(n) == words


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (2026, "twenty twenty-six"),
        (1999, "nineteen ninety-nine"),
        (2000, "two thousand"),
        (2005, "two thousand five"),
        (2010, "twenty ten"),
        (1900, "nineteen hundred"),
        (1905, "nineteen oh five"),
    ],
)
def test_year(n: int, words: str) -> None:
    assert year(n) == words


def test_digits_and_decimals() -> None:
    assert digits("0132") == "zero one three two"
    assert decimal("3.5") == "three point five"
    assert decimal("0.25") == "zero point two five"


@pytest.mark.parametrize(
    ("run", "groups"),
    [
        ("94110", ["94110"]),
        ("4155550132", ["415", "555", "0132"]),
        ("123456789", ["123", "456", "789"]),
        ("12345678", ["1234", "5678"]),
        ("1234567", ["123", "4567"]),
        ("4111111111111111", ["4111", "1111", "1111", "1111"]),
    ],
)
def test_group_digits(run: str, groups: list[str]) -> None:
    assert group_digits(run) == groups
    assert "".join(groups) == run
