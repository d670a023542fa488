"""The caller phrasings the booking eval runs (``python -m phoneagent.devtools.llm_eval``): each
with the appointment it must end in, in the agent's time zone, with the clock at Monday
23 November 2026, 9:30 am in New York. The held-out set is never used for tuning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Phrasing:
    key: str
    turns: tuple[str, ...]
    type_id: str
    local_start: str  # "2026-12-01 10:00", in the agent's time zone


PHRASINGS: tuple[Phrasing, ...] = (
    Phrasing(
        "cleaning-next-tue",
        ("I'd like a cleaning next Tuesday at 10. My name is Maria Lopez.",),
        "cleaning",
        "2026-12-01 10:00",
    ),
    Phrasing(
        "checkup-friday",
        ("Can you book me in for a checkup on Friday afternoon?", "Friday at 2 pm is good. I'm John Smith."),
        "cleaning",
        "2026-11-27 14:00",
    ),
    Phrasing(
        "filling-the-3rd",
        ("Book an appointment for the 3rd at 2 pm for a filling, my name is Sarah Chen.",),
        "filling",
        "2026-12-03 14:00",
    ),
    Phrasing(
        "exam-two-turns",
        ("Hi, I need a new patient exam on Wednesday at 3 pm.", "It's David Kim."),
        "exam",
        "2026-11-25 15:00",
    ),
    Phrasing(
        "cleaning-tomorrow",
        ("Could I get a teeth cleaning tomorrow at 11 am? This is Emma Brown.",),
        "cleaning",
        "2026-11-24 11:00",
    ),
    Phrasing(
        "emergency-today",
        ("I have a bad toothache. Can I come in today at 2 pm? My name is Leo Park.",),
        "emergency",
        "2026-11-23 14:00",
    ),
    Phrasing(
        "filling-dec-2",
        ("I want to book a filling on December 2nd at 10:30. Name's Nina Patel.",),
        "filling",
        "2026-12-02 10:30",
    ),
    Phrasing(
        "cleaning-monday-30th",
        ("Can I schedule a cleaning for Monday the 30th at 9 am?", "Sure, it's Omar Ali."),
        "cleaning",
        "2026-11-30 09:00",
    ),
    Phrasing(
        "checkup-friday-4th",
        ("Please book me for a checkup on Friday the 4th at 11. I'm Grace Hall.",),
        "cleaning",
        "2026-12-04 11:00",
    ),
    Phrasing(
        "cleaning-dec-1-4pm",
        ("Hello, this is Peter Wong. I'd like a cleaning on December 1st at 4 pm.",),
        "cleaning",
        "2026-12-01 16:00",
    ),
    Phrasing(
        "filling-then-when",
        ("I'd like to book a filling.", "Wednesday at 1 pm, and my name is Ruth Green."),
        "filling",
        "2026-11-25 13:00",
    ),
)

# Held out: never used to write or tune the argument repairs (tests/llm/test_llm_realmodel_*.py use
# PHRASINGS). Written as a speech recogniser hands them over: lower case, no punctuation, fillers,
# a self-correction, spoken numbers.
HELD_OUT: tuple[Phrasing, ...] = (
    Phrasing(
        "ho-um-cleaning-tue",
        ("um hi yeah i wanna book a cleaning for uh next tuesday at ten my name is john park",),
        "cleaning",
        "2026-12-01 10:00",
    ),
    Phrasing(
        "ho-filling-correction",
        ("hi id like to come in for a filling on friday um at two no sorry at eleven my names lisa wong",),
        "filling",
        "2026-11-27 11:00",
    ),
    Phrasing(
        "ho-checkup-tomorrow",
        ("can i get a checkup tomorrow morning at nine thirty its dave miller",),
        "cleaning",
        "2026-11-24 09:30",
    ),
    Phrasing(
        "ho-exam-two-turns",
        ("uh yeah i need a new patient exam", "wednesday at three pm and the name is sam ortiz"),
        "exam",
        "2026-11-25 15:00",
    ),
    Phrasing(
        "ho-toothache-today",
        ("i have a toothache can you fit me in today at four my name is kim lee",),
        "emergency",
        "2026-11-23 16:00",
    ),
    Phrasing(
        "ho-cleaning-dec-second",
        (
            "hello so um i was wondering if i could book a cleaning on december second at one pm "
            "uh name is tom brady",
        ),
        "cleaning",
        "2026-12-02 13:00",
    ),
    Phrasing(
        "ho-filling-thursday-3rd",
        ("yeah hi filling please thursday the third at ten this is anna bell",),
        "filling",
        "2026-12-03 10:00",
    ),
    Phrasing(
        "ho-cleaning-30th",
        ("book me a cleaning on monday the thirtieth at two thirty my name is raj patel",),
        "cleaning",
        "2026-11-30 14:30",
    ),
)
# Run apart (each run has a fresh appointment book): some held-out times are main-set times.
SETS = {"main": PHRASINGS, "held-out": HELD_OUT}
