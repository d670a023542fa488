from __future__ import annotations

import pytest
from phoneagent.tts.chunker import ChunkPolicy, sentence_spans, split_text


def texts(text: str, first: bool = True, policy: ChunkPolicy | None = None) -> list[str]:
    return [c.text for c in split_text(text, first_in_reply=first, policy=policy)]


def test_first_chunk_is_the_first_clause() -> None:
    text = "Of course, I can do that; it will take a moment to find the right slot for you."
    assert texts(text) == [
        "Of course, I can do that;",
        "it will take a moment to find the right slot for you.",
    ]


def test_first_chunk_falls_back_to_word_limit_without_clause() -> None:
    text = "I can help you book an appointment with our team for next Tuesday afternoon."
    chunks = texts(text, policy=ChunkPolicy(first_max_words=6))
    assert chunks[0] == "I can help you book an"
    assert len(chunks) == 2


def test_short_reply_is_one_chunk_and_later_sentences_are_whole() -> None:
    assert texts("I can help with that.") == ["I can help with that."]
    text = "Sure, I can help you book an appointment with our team for next Tuesday afternoon at noon."
    assert texts(text, first=False) == [text]


@pytest.mark.parametrize(
    "text",
    [
        "Sure, I can help you book an appointment with Dr. Patel for next Tuesday afternoon please.",
        "Sure, I can help you book an appointment with J. Patel for next Tuesday afternoon please.",
    ],
)
def test_never_splits_titles_or_initials(text: str) -> None:
    for chunk in texts(text):
        assert not chunk.endswith(("Dr.", "J."))


def test_never_splits_numbers() -> None:
    text = "Please call us back at 415 555 0132 when you have the confirmation number ready for me."
    chunks = texts(text, policy=ChunkPolicy(first_max_words=8))
    assert any("415 555 0132" in c for c in chunks)
    assert texts("The total is 3.5 dollars. Thanks!") == ["The total is 3.5 dollars.", "Thanks!"]


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Dr. Smith sees you at 3 p.m. Then we close.", ["Dr. Smith sees you at 3 p.m.", "Then we close."]),
        (
            "We sell apples, pears, etc. and more. Thanks!",
            ["We sell apples, pears, etc. and more.", "Thanks!"],
        ),
        ("Wow!!! Really?", ["Wow!!!", "Really?"]),
        ("He said (really). Bye", ["He said (really).", "Bye"]),
        ("Version 2.0.1 is out", ["Version 2.0.1 is out"]),
        ("e.g. this one. Or that", ["e.g. this one.", "Or that"]),
    ],
)
def test_sentence_split(text: str, sentences: list[str]) -> None:
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences


def test_offsets_point_into_the_text_and_cover_it() -> None:
    text = "  Sure, I can help you with that today.  Your number is 48213957.  "
    chunks = split_text(text, first_in_reply=True, policy=ChunkPolicy(first_max_words=4))
    assert [c.sentence_end for c in chunks] == [False, True, True]
    for c in chunks:
        assert text[c.start : c.end] == c.text
    joined = " ".join(c.text for c in chunks)
    assert joined.split() == text.split()


def test_long_sentence_is_cut_under_max_chars() -> None:
    text = ", ".join(["a clause with several words"] * 30) + "."
    chunks = split_text(text, first_in_reply=False, policy=ChunkPolicy(max_chars=100))
    assert len(chunks) > 5
    assert all(len(c.text) <= 100 for c in chunks)
    assert chunks[-1].sentence_end and not chunks[0].sentence_end
    words = "word " * 120
    chunks = split_text(words, first_in_reply=False, policy=ChunkPolicy(max_chars=100))
    assert all(len(c.text) <= 100 for c in chunks)


def test_blank_text_gives_no_chunks() -> None:
    assert split_text("   ", first_in_reply=True) == []
