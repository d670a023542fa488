"""Whether a sentence the model wrote says the opposite of the practice's documents.

A small model answers yes/no questions about the business with "yes" more often than the
documents allow: asked "Do you take Medicaid?", the 0.5B model said "Yes, we accept Medicaid."
with "We do not accept Medicaid." in its prompt, and "No fee if you cancel late." where they say
a late cancellation costs 50 dollars. A clause of a reply (cut at commas, semicolons and "but",
so "No, we don't take Medicaid, but we accept Delta Dental" is two) contradicts the documents
when:

- it names a rare word (one in at most :data:`RARE_IN` of the documents' sentences) of a
  negative statement ("We do not accept Medicaid.") without a negation of its own;
- it is negative, and every rare word it names appears only in positive statements ("No fee if
  you cancel late."). With ``strict``, only where those words are all names the documents
  capitalise inside a sentence ("No, we do not accept Cigna."; not "Dr. Okafor is not the
  children's dentist", which may be right).

The dialog answers a contradicted first reply again from the knowledge tool's passages, where a
false alarm costs a lookup and not a wrong answer; the answer after the passages is checked
``strict``ly, and only then is the documents' statement said in its place. Questions are never
checked.

A name in the wrong place (:meth:`DocumentClaims.misplaced`): asked which bus goes to the
practice, the 0.5B model said "The bus that goes to your office is Delta Dental." A clause names
a rare name of the documents (a word they capitalise inside a sentence: "Delta", "Moreno",
"Elm"), and other words the documents use ("bus"), none of which any sentence holding that name
uses. Words the documents never use ("Sorry, Medicaid isn't something we take.", "Thank you for
calling ...") and the business's own name ("Bright Smile Dental") say nothing either way. Only
the first reply is checked so: the knowledge tool's passages answer instead.

Words from the wrong paragraphs (:meth:`DocumentClaims.document_words` gives a sentence's words
that the documents use; the dialog asks the knowledge base which paragraphs best match the
caller's words): asked "Do you do whitening, and how much notice do I need to cancel?", the 0.5B
model said the emergency paragraph's "... call the on-call dentist at the number on our
voicemail ..."; asked "Is there a fee if I cancel late?", "The fee for a dental emergency during
opening hours is 95 dollars, plus the cost of any treatment.", a blend of two paragraphs, neither
about cancelling.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from phoneagent.llm.domain.knowledge import sentences

RARE_IN = 2  # a word in at most this many of the documents' sentences identifies what they are about
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]+")
_NEGATION = re.compile(r"\b(?:not|no|never|cannot|none|nor)\b|n't\b", re.I)
_CLAUSE = re.compile(r"[,;:]|\bbut\b", re.I)
_HEADING = re.compile(r"^\s*#+\s.*$", re.M)
_COMMON = frozenset(
    "the and you are for can not our all any was has had his her its who how why yes may per get "
    "got let one two six ten off out own see use way did does don't can't won't isn't aren't "
    "about above after again also always another any because been before being below between both "
    "call calls could does doing done during each every from have having here into just like made "
    "make many more most much must need only other over please same should some such than that "
    "their them then there these they this those through under until very want were what when "
    "where which while will with within would your yours our ours we're you're it's that's "
    "accept accepts accepted take takes offer offers available patient patients appointment "
    "appointments practice office dentist dentists".split()
)


@dataclass(frozen=True)
class Statement:
    text: str
    negative: bool
    words: frozenset[str]  # its content words, lower case
    names: frozenset[str]  # words capitalised inside it (not its first word), lower case


class DocumentClaims:
    """The documents' sentences, ready to check a reply's sentence against."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.statements: list[Statement] = []
        for text in texts:
            for line in _HEADING.sub("", text).splitlines():
                for sentence in sentences(line):
                    if sentence.strip():
                        self.statements.append(_statement(sentence.strip()))
        counts = Counter(w for s in self.statements for w in s.words)
        self._rare = frozenset(w for w, n in counts.items() if n <= RARE_IN)
        self._vocabulary = frozenset(counts)
        self._names = frozenset(n for s in self.statements for n in s.names) & self._vocabulary

    def contradicted(self, sentence: str, *, strict: bool = False) -> Statement | None:
        """The documents' statement ``sentence`` contradicts, or None (see the module's rules)."""
        if not self.statements or sentence.rstrip().endswith("?"):
            return None
        for clause in _CLAUSE.split(sentence):
            words = _content_words(clause) & self._rare
            if not words:
                continue
            negative = bool(_NEGATION.search(clause))
            for s in self.statements:
                if s.negative and not negative and words & s.words:
                    return s
            if negative and all(self._positive_only(w, strict) for w in words):
                # The statement that shares the most of the clause's words.
                return max(self.statements, key=lambda s: len(words & s.words))
        return None

    def misplaced(self, sentence: str, *, known: Iterable[str] = ()) -> str | None:
        """A rare name of the documents that ``sentence`` puts with words no sentence holding
        that name uses (see the module doc), or None. ``known``: phrases whose words never
        count as such names (the business's name)."""
        if not self.statements or sentence.rstrip().endswith("?"):
            return None
        exempt = {w.lower() for phrase in known for w in _WORD.findall(phrase)}
        for clause in _CLAUSE.split(sentence):
            words = _content_words(clause)
            names = (words & self._rare & self._names) - exempt
            others = (words - self._names) & self._vocabulary
            for name in sorted(names):
                holding = [s for s in self.statements if name in s.words]
                if others and not any(others & s.words for s in holding):
                    return name
        return None

    def document_words(self, text: str) -> frozenset[str]:
        """The content words of ``text`` that the documents use."""
        return _content_words(text) & self._vocabulary

    def _positive_only(self, word: str, name: bool) -> bool:
        holding = [s for s in self.statements if word in s.words]
        return bool(holding) and all(not s.negative and (not name or word in s.names) for s in holding)


def _statement(text: str) -> Statement:
    words = _WORD.findall(text)
    names = frozenset(w.lower() for w in words[1:] if w[0].isupper())
    return Statement(text, bool(_NEGATION.search(text)), _content_words(text), names)


def _content_words(text: str) -> frozenset[str]:
    return frozenset(
        w for w in (m.lower().strip("'-") for m in _WORD.findall(text)) if len(w) >= 3 and w not in _COMMON
    )
