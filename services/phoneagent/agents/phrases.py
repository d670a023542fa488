"""Phrase matching that tolerates ASR text and ignores negated mentions.

ASR output varies in case, punctuation, contractions ("don't", "dont", "do not") and
fillers ("um", "uh"). :func:`normalize` reduces an utterance to lower-case clauses of
plain words with contractions expanded and fillers removed; :class:`PhraseMatcher` then
looks for regular-expression phrases over those words and skips a hit when a negation
("not", "never", "no need", "without") appears shortly before it in the same clause, so
"please don't stop calling me" or "I don't need a person" do not fire.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_CONTRACTIONS = {
    "don't": "do not",
    "dont": "do not",
    "doesn't": "does not",
    "doesnt": "does not",
    "didn't": "did not",
    "didnt": "did not",
    "won't": "will not",
    "wont": "will not",
    "can't": "can not",
    "cant": "can not",
    "cannot": "can not",
    "isn't": "is not",
    "aren't": "are not",
    "wasn't": "was not",
    "shouldn't": "should not",
    "wouldn't": "would not",
    "couldn't": "could not",
    "haven't": "have not",
    "hasn't": "has not",
    "i'm": "i am",
    "im": "i am",
    "i'd": "i would",
    "i'll": "i will",
    "you're": "you are",
    "it's": "it is",
    "let's": "let us",
    "that's": "that is",
    "i've": "i have",
    "gimme": "give me",
    "wanna": "want to",
    "gotta": "got to",
}
FILLERS = frozenset(
    {
        "um",
        "umm",
        "uh",
        "uhh",
        "uhm",
        "erm",
        "er",
        "hmm",
        "hm",
        "mm",
        "mhm",
        "ah",
        "eh",
        "oh",
        "please",
        "pls",
        "just",
        "kindly",
        "actually",
        "really",
        "basically",
        "like",
        "so",
        "well",
    }
)
# "like" and "so" are fillers only outside "would like" / "i think so"; those stay (see _keep_filler).
NEGATORS = ("not", "never", "without", "no need", "no thanks", "no thank you")

# Commas split clauses too: a negation in an earlier clause ("I can't hear you, get me a person")
# must not cancel a request; the cost is that "I don't, uh, want you to stop calling" counts as an
# opt-out, which errs on the caller's side.
_CLAUSE_SPLIT = re.compile(r"[.,!?;:\n]+")
_WORD = re.compile(r"[a-z0-9']+")


def _keep_filler(words: list[str], i: int) -> bool:
    word = words[i]
    prev = words[i - 1] if i > 0 else ""
    return (word == "like" and prev in {"would", "i'd", "d"}) or (word == "so" and prev in {"think", "hope"})


def normalize_words(clause: str) -> list[str]:
    raw = _WORD.findall(clause.lower().replace("\u2019", "'").replace("`", "'"))
    words: list[str] = []
    for i, w in enumerate(raw):
        if w in FILLERS and not _keep_filler(raw, i):
            continue
        words.extend(_CONTRACTIONS.get(w, w.strip("'")).split())
    return [w for w in words if w]


def normalize(text: str) -> list[str]:
    """The utterance as normalised clauses (each a space-joined string of words)."""
    if not text:
        return []
    clauses = (" ".join(normalize_words(c)) for c in _CLAUSE_SPLIT.split(text))
    return [c for c in clauses if c]


@dataclass(frozen=True)
class PhraseHit:
    name: str
    clause: str
    start: int


class PhraseMatcher:
    """Named regex phrases over normalised words, with negation suppression.

    ``phrases`` maps a name to a regex written against normalised text (lower case, single
    spaces, contractions expanded). ``negation_window`` words before a hit are searched for a
    negator; a negated hit does not count.
    """

    def __init__(
        self, phrases: dict[str, str], negation_window: int = 4, negators: Iterable[str] = NEGATORS
    ) -> None:
        self._phrases = [
            (name, re.compile(rf"(?<![a-z0-9]){rx}(?![a-z0-9])")) for name, rx in phrases.items()
        ]
        self._window = negation_window
        self._negators = tuple(negators)

    def find(self, text: str) -> PhraseHit | None:
        for clause in normalize(text):
            for name, rx in self._phrases:
                for m in rx.finditer(clause):
                    if not self._negated(clause, m.start()):
                        return PhraseHit(name=name, clause=clause, start=m.start())
        return None

    def _negated(self, clause: str, start: int) -> bool:
        before = clause[:start].split()[-self._window :]
        first = clause[start:].split(" ", 1)[0]
        joined = " " + " ".join(before) + " "
        # Multi-word negators may end on the hit's first word ("no need for a person").
        spanning = joined + first + " "
        return any(f" {neg} " in (spanning if " " in neg else joined) for neg in self._negators)


def literal(phrase: str) -> str:
    """A configured plain phrase as a regex over normalised words."""
    words = normalize_words(phrase)
    return r"\s+".join(re.escape(w) for w in words)
