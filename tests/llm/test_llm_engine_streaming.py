"""The sentence/clause splitter that feeds TTS from streamed LLM text."""

from __future__ import annotations

import pytest
from phoneagent.llm.streaming import SentenceSplitter, split_text


def stream_chars(text: str, **kwargs: int) -> list[str]:
    """Feed one character at a time, the worst case for look-ahead decisions."""
    splitter = SentenceSplitter(**kwargs)
    out: list[str] = []
    for ch in text:
        out += splitter.push(ch)
    return out + splitter.flush()


@pytest.mark.parametrize("feed", [split_text, stream_chars])
def test_first_clause_then_whole_sentences(feed) -> None:
    text = "Sure, I can book that for you today, no problem at all. Which time suits you? We have 9 or 10."
    assert feed(text) == [
        "Sure, I can book that for you today,",
        "no problem at all.",
        "Which time suits you?",
        "We have 9 or 10.",
    ]


@pytest.mark.parametrize("feed", [split_text, stream_chars])
def test_numbers_times_and_abbreviations_stay_whole(feed) -> None:
    text = (
        "Dr. Lee sees you at 3:30 p.m. on Friday. The fee is $3.50, e.g. cash or card, "
        "and 1,250 points apply. Call ext. 12 or Mrs. J. Smith. Thanks!"
    )
    assert feed(text) == [
        "Dr. Lee sees you at 3:30 p.m. on Friday.",
        "The fee is $3.50, e.g. cash or card, and 1,250 points apply.",
        "Call ext. 12 or Mrs. J. Smith.",
        "Thanks!",
    ]


def test_decimal_split_across_pieces_is_not_cut() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("It costs 3.") == []
    assert splitter.push("5 dollars") == []
    assert splitter.push(" today. Anything") == ["It costs 3.5 dollars today."]
    assert splitter.flush() == ["Anything"]


def test_abbreviation_at_sentence_end_waits_for_next_word() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("We close at 6 p.m. ") == []
    assert splitter.push("See you") == ["We close at 6 p.m."]
    assert splitter.flush() == ["See you"]
    splitter.reset()
    assert splitter.push("We open at 8 a.m. tomorrow. ") == ["We open at 8 a.m. tomorrow."]


def test_short_clause_is_not_released_alone() -> None:
    assert split_text("Okay, great. Bye.") == ["Okay, great.", "Bye."]
    assert split_text("Okay, great. Bye.", first_clause_min_words=1) == ["Okay,", "great.", "Bye."]


def test_later_commas_do_not_split_sentences() -> None:
    text = "Hello there. Monday, Tuesday, Wednesday and Thursday, we are open."
    assert split_text(text) == ["Hello there.", "Monday, Tuesday, Wednesday and Thursday, we are open."]


def test_list_lines_and_quotes() -> None:
    assert split_text("1. Bring your card\n2. Arrive early") == ["1. Bring your card", "2. Arrive early"]
    assert split_text('He said "see you soon." Then he left.') == ['He said "see you soon."', "Then he left."]


def test_flush_empties_and_pending_shows_rest() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Almost done") == []
    assert splitter.pending == "Almost done"
    assert splitter.flush() == ["Almost done"]
    assert splitter.flush() == []
    assert split_text("   ") == []


def test_bad_option_is_rejected() -> None:
    with pytest.raises(ValueError):
        SentenceSplitter(first_clause_min_words=0)
