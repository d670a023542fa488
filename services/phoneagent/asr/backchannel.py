"""Backchannels: short acknowledgements ("yeah", "uh-huh", "got it") said while the
agent is talking. The dialog uses the flag to keep talking instead of treating the
utterance as a new turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Canonical phrases, written as normalised words.
_PHRASES: frozenset[tuple[str, ...]] = frozenset(
    tuple(p.split())
    for p in (
        "yeah",
        "yes",
        "yep",
        "yup",
        "uh huh",
        "mm hmm",
        "mhm",
        "hmm",
        "okay",
        "ok",
        "right",
        "sure",
        "got it",
        "i see",
        "alright",
        "all right",
    )
)
_MAX_PHRASE = max(len(p) for p in _PHRASES)
# Spelling variants that ASR engines produce for the same sounds.
_VARIANTS = {
    "o.k.": "ok",
    "o.k": "ok",
    "k": "ok",
    "kay": "okay",
    "okey": "okay",
    "okay-dokay": "okay",
    "uh-huh": "uh huh",
    "uhhuh": "uh huh",
    "uh-uh-huh": "uh huh",
    "mm-hmm": "mm hmm",
    "mmhmm": "mm hmm",
    "mm-hm": "mm hmm",
    "m-hm": "mm hmm",
    "mmhm": "mm hmm",
    "hm": "hmm",
    "mhmm": "mhm",
    "mm": "mm hmm",
    "yeah-yeah": "yeah yeah",
    "ya": "yeah",
    "yea": "yeah",
}
_STRIP = re.compile(r"[^\w\s'.-]")


@dataclass(frozen=True)
class BackchannelConfig:
    max_words: int = 4
    max_duration_s: float = 1.6


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation removed and spelling variants mapped."""
    words: list[str] = []
    for raw in _STRIP.sub(" ", text.lower()).split():
        token = _VARIANTS.get(raw, raw)
        token = _VARIANTS.get(token.strip(".-'"), token.strip(".-'"))
        words.extend(token.split())
    return [w for w in words if w]


def _covered(words: list[str]) -> bool:
    """True when ``words`` is a sequence of backchannel phrases ("yeah okay", "uh huh right")."""
    i = 0
    while i < len(words):
        for size in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            if tuple(words[i : i + size]) in _PHRASES:
                i += size
                break
        else:
            return False
    return True


def is_backchannel(text: str, duration_s: float, config: BackchannelConfig | None = None) -> bool:
    """True for a short acknowledgement: few words, short audio, only backchannel phrases."""
    cfg = config or BackchannelConfig()
    if duration_s > cfg.max_duration_s:
        return False
    words = normalise(text)
    if not words or len(words) > cfg.max_words:
        return False
    return _covered(words)
