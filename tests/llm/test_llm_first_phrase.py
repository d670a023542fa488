"""A reply's first sentence reaches TTS at a phrase boundary when it has no early comma, so the
caller hears the agent sooner; the cut never splits a number, a title or "the ... noun"."""

from __future__ import annotations

import re

import pytest
from phoneagent.llm.settings import LlmSettings
from phoneagent.llm.streaming import SentenceSplitter
from phoneagent.runtime.settings import SettingsError, load
from phoneagent.tts.chunker import split_text as tts_split


def _stream(text: str, **kwargs: int) -> list[str]:
    """``text`` pushed token by token as a model streams it (a leading space per word)."""
    splitter = SentenceSplitter(first_clause_min_words=2, first_max_words=8, **kwargs)
    out: list[str] = []
    for piece in re.findall(r"\s*\S+", text):
        out += splitter.push(piece)
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "Bright Smile Dental is located at 480 Maple Avenue. It is on the second floor.",
            ["Bright Smile Dental is located", "at 480 Maple Avenue.", "It is on the second floor."],
        ),
        (
            "There is a parking lot behind the pharmacy, but it closes at six.",
            ["There is a parking lot", "behind the pharmacy, but it closes at six."],
        ),
        # no phrase opener: cut after eight words, not after "the"
        (
            "Our hygienists clean teeth gently every single working day without fail.",
            ["Our hygienists clean teeth gently every single working", "day without fail."],
        ),
        # short sentences and early commas keep the rules they had
        ("The children's dentist is Dr. Priya Shah.", ["The children's dentist is Dr. Priya Shah."]),
        ("Yes, we do take Delta Dental.", ["Yes, we do take Delta Dental."]),
        ("Sure, I can book that for you.", ["Sure, I can book that for you."]),
        (
            "Of course, we are open Monday through Friday from nine.",
            ["Of course,", "we are open Monday through Friday from nine."],
        ),
    ],
)
def test_first_sentence_cuts(text: str, pieces: list[str]) -> None:
    assert _stream(text) == pieces


def test_never_between_number_groups_a_title_or_an_article() -> None:
    # past eight words, but inside a phone number: the number stays whole
    assert _stream("You can call our main office line 415 555 0132 any time today.") == [
        "You can call our main office line 415 555 0132",
        "any time today.",
    ]
    # at eight words the cut would fall after "Dr.", or after "the": it waits a word
    assert _stream("Tomorrow morning our youngest patients will meet Dr. Lee again today.") == [
        "Tomorrow morning our youngest patients will meet Dr. Lee",
        "again today.",
    ]
    assert _stream("Please remember your photo ID card plus the insurance papers too.") == [
        "Please remember your photo ID card plus the insurance",
        "papers too.",
    ]


def test_a_word_still_growing_is_not_taken_for_an_opener() -> None:
    splitter = SentenceSplitter(first_clause_min_words=2, first_max_words=8)
    assert splitter.push("Your appointment is booked") == []
    assert splitter.push(" to") == []  # "to" or "today"? not known until the next space
    assert splitter.push("day") == []
    assert splitter.push(" at ten.") == ["Your appointment is booked today"]
    assert splitter.flush() == ["at ten."]


def test_only_the_first_sentence_is_cut_and_off_means_off() -> None:
    text = "Yes. Our office is located right next to the pharmacy at the corner."
    assert _stream(text) == ["Yes.", "Our office is located right next to the pharmacy at the corner."]
    plain = SentenceSplitter(first_clause_min_words=2)
    assert plain.push("Bright Smile Dental is located at 480 Maple Avenue ") == []


def test_the_setting_and_its_bounds() -> None:
    assert load(LlmSettings, {}).first_max_words == 8
    assert load(LlmSettings, {"PA_LLM_FIRST_MAX_WORDS": "0"}).first_max_words == 0
    for bad in ("2", "-1"):
        with pytest.raises(SettingsError, match="PA_LLM_FIRST_MAX_WORDS"):
            load(LlmSettings, {"PA_LLM_FIRST_MAX_WORDS": bad})
    with pytest.raises(ValueError):
        SentenceSplitter(first_max_words=2)


def test_tts_pauses_a_clause_not_a_sentence_after_a_piece_without_its_mark() -> None:
    (piece,) = tts_split("Bright Smile Dental is located", first_in_reply=True)
    assert not piece.sentence_end
    (whole,) = tts_split("at 480 Maple Avenue.", first_in_reply=False)
    assert whole.sentence_end
