"""What the model is told: the static system prompt and the short per-turn facts.

The system prompt (persona, speaking style, worked tool-call examples, opening hours and
appointment types) is the same for every turn of every call, so the engine evaluates it
once at warm-up and reuses it. When the agent's documents are short enough
(``documents_chars``, ``PA_LLM_PROMPT_DOCUMENTS_CHARS``) they are part of it too: the model
answers from all of them, and a turn evaluates a retrieved passage only when the model asks for
one with the knowledge tool (the 0.5B model opens a tool call for some questions, "Do you take
insurance?"; without the knowledge tool it chose another tool). What changes (today's
date and the time to five minutes, closures, and for longer documents the passages that
match the caller's words) comes from :meth:`Prompter.turn_context`, one fact per line; the
dialog sends a line with the caller's words only when the conversation does not carry it
yet, so most turns add only the caller's words to what the engine has already evaluated.
Free slots are not listed: the availability and booking tools look them up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from phoneagent.agents.agent import Agent
from phoneagent.llm.domain.calendar_facts import HOURS_SOURCE, calendar_facts
from phoneagent.llm.domain.dates import Resolution, Status, resolve
from phoneagent.llm.domain.knowledge import KnowledgeBase, Passage, sentences
from phoneagent.llm.domain.scheduling import SchedulingStore
from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS
from phoneagent.llm.settings import PROMPT_DOCUMENTS_CHARS

STYLE = (
    "You are on a phone call. Answer in one or two short spoken sentences, no lists, no markdown. "
    "Never claim to be human. If you do not know something, say so and offer to take a message."
)

# Worked examples for a small model: which tool to call, and that days and times are passed
# as the caller said them (the tools resolve dates in code; the model never computes one).
TOOL_RULES = """Tools: when the caller asks for something a tool does, your whole reply is one <tool_call> \
block, as in the examples below, with no words before or after it; the caller then hears what the tool \
answers. Put the day and time in "when" exactly as the caller said them. If the caller has not said their \
name, ask for it before booking.
{knowledge} A caller who asks for a person, a human or the front desk: transfer_to_human. A caller \
who wants to move an appointment to another time: move_appointment with "new_when"; to cancel it: \
cancel_appointment.
Examples:
Caller: I'd like a cleaning next Tuesday at 10. My name is Ann Lee.
You:
<tool_call>
{"name": "book_appointment", "arguments": {"appointment_type": "cleaning", "when": "next Tuesday at 10", \
"name": "Ann Lee"}}
</tool_call>
Caller: Can I come in for a filling on the 3rd at 2 pm?
You: Sure. May I have your name, please?
Caller: Tom Baker.
You:
<tool_call>
{"name": "book_appointment", "arguments": {"appointment_type": "filling", "when": "the 3rd at 2 pm", \
"name": "Tom Baker"}}
</tool_call>
Caller: Can I speak to a real person?
You:
<tool_call>
{"name": "transfer_to_human", "arguments": {"reason": "caller asked for a person"}}
</tool_call>"""
KNOWLEDGE_BY_PASSAGE = (
    "Questions about prices, insurance, payment, location, parking or policies: answer from the facts "
    "given with the caller's words, or use lookup_knowledge."
)
KNOWLEDGE_IN_PROMPT = (
    "Questions about prices, insurance, payment, location, parking or policies: answer from the "
    "practice's documents below, in your own words, or use lookup_knowledge."
)
DOCUMENTS_HEADER = "The practice's documents:"


def prompt_documents(knowledge: KnowledgeBase | None, max_chars: int) -> str | None:
    """The agent's documents as one block for the system prompt, or None when there are none
    or they are longer than ``max_chars`` (then each turn carries the passages that match)."""
    if knowledge is None or max_chars <= 0:
        return None
    lines, heading = [], None
    for chunk in knowledge.chunks:
        if chunk.source == HOURS_SOURCE:  # the configured hours are a static fact already
            continue
        if chunk.heading and chunk.heading != heading:
            lines.append(f"{chunk.heading}:")
        heading = chunk.heading
        lines.append(chunk.text)
    text = "\n".join(lines)
    return text if text and len(text) <= max_chars else None


PASSAGE_MIN_SCORE = 0.25  # cosine similarity of a passage to the caller's words
PASSAGE_TIE = 0.05  # runners-up within this of the best passage come with it
T = TypeVar("T")


def close_to_best(found: Sequence[T], score: Callable[[T], float]) -> list[T]:
    """``found`` (passages, best first) without the runners-up that scored more than
    PASSAGE_TIE below the best."""
    return [p for p in found if score(p) >= score(found[0]) - PASSAGE_TIE] if found else []


def _score(passage: Passage) -> float:
    return passage.score


def _is_static_fact(line: str, agent: Agent) -> bool:
    """Calendar facts that do not change during the day (opening hours, appointment types)."""
    return line.startswith((f"{agent.business_name} is open", "Appointment types:", "Pass the caller"))


class Prompter:
    """Builds the prompt text for one agent; ``clock`` is injectable for evaluations and tests."""

    def __init__(
        self,
        agent: Agent,
        store: SchedulingStore | None = None,
        knowledge: KnowledgeBase | None = None,
        clock: Callable[[], datetime] | None = None,
        passages: int = 2,
        documents_chars: int = PROMPT_DOCUMENTS_CHARS,
    ) -> None:
        self.agent = agent
        self.store = store
        self.knowledge = knowledge
        self.clock = clock or (lambda: datetime.now(UTC))
        self.passages = passages
        self.documents = prompt_documents(knowledge, documents_chars)

    def system_prompt(self) -> str:
        """The part of the prompt that is the same for every turn of every call (cached by the engine)."""
        static = [line for line in self._calendar_lines() if _is_static_fact(line, self.agent)]
        # The documents come last: with them before the tool rules, the 1.5B model answered a
        # booking that named the caller with "May I have your name, please?" instead of booking
        # (tests/llm/test_llm_prompt_tools.py).
        parts = [self.agent.persona.strip(), STYLE]
        if self.agent.tools:
            knowledge = KNOWLEDGE_IN_PROMPT if self.documents else KNOWLEDGE_BY_PASSAGE
            parts.append(TOOL_RULES.replace("{knowledge}", knowledge))
        parts.append("\n".join(static))
        if self.documents:
            parts.append(f"{DOCUMENTS_HEADER}\n{self.documents}")
        return "\n\n".join(parts)

    def turn_context(self, caller_text: str) -> str:
        """Facts for one turn, one per line: today's date and the time (to five minutes),
        closures, and the document passages that match what the caller said."""
        facts = [line for line in self._calendar_lines() if not _is_static_fact(line, self.agent)]
        if self.knowledge is not None and caller_text and not self.documents:
            found = self.knowledge.search(caller_text, k=self.passages, min_score=PASSAGE_MIN_SCORE)
            # A runner-up as close as this to the best is as likely the answer (the embedding
            # ranks "an emergency visit costs ..." just above "new patients should bring ..." for
            # "what should I bring to my first visit?"); a clear winner comes alone.
            facts.extend(f"From the practice's documents: {p.text}" for p in close_to_best(found, _score))
        return "\n".join(facts)

    def warm_up_messages(self) -> list[dict[str, Any]]:
        return [{"role": "system", "content": self.system_prompt()}, {"role": "user", "content": "Hello"}]

    def _calendar_lines(self) -> list[str]:
        return calendar_facts(self.agent, self.clock(), self.store, slots=0, minute_step=5).splitlines()


# --- reading the model's tool arguments back -----------------------------------------------------
# A small model drops words from the day ("11 am" for "tomorrow at 11 am"), invents names and
# phone numbers, and copies facts into notes. The caller's own words are the better source:
# dates are still resolved in code, from the caller's words rather than the model's copy of them.

_NAME_CUE = re.compile(
    r"\b(?i:my name is|my name's|name's|name is|this is|i'm|i am|it's|it is)\s+"
    r"([A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+){0,2})"
)
_NOT_NAMES = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june "
    "july august september october november december today tomorrow".split()
)
_BARE_NAME = re.compile(
    r"^\s*(?:(?i:yes|sure|okay|ok|it's|it is)[,.]?\s+)?([A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+){0,2})\s*[.!]?\s*$"
)
_PERSON = re.compile(
    r"\b(?:talk|speak|put me through|transfer me|connect me)\b.*\b(?:person|human|someone|somebody|"
    r"receptionist|front desk|staff|operator|representative|real one)\b",
    re.I,
)
_BOOKING = re.compile(
    r"\b(?:book|booking|appointment|schedule|come in|get in|slot|available|availability|fit me in|"
    r"reserve|see the dentist|see a dentist)\b",
    re.I,
)
ASK_NAME = "May I have your name, please?"


def _simple(text: str) -> str:
    return " " + re.sub(r"[^a-z0-9]+", " ", text.lower()).strip() + " "


def caller_name(said: Sequence[str], asked: bool = False) -> str | None:
    """A name the caller gave ("my name is Ann Lee", "it's Tom Baker"), latest first. A
    transcript without capitals (a recogniser that does not case its output) is read by its
    cues instead: see :func:`_uncased_name`; ``asked``: the agent has just asked for the name,
    so a turn that is only a name counts there too."""
    for text in reversed(said):
        if text == text.lower():
            found = _uncased_name(text, asked)
            if found is not None:
                return found
            continue
        for m in [*_NAME_CUE.finditer(text), *_BARE_NAME.finditer(text)]:
            words = [w for w in m.group(1).split() if w.lower() not in _NOT_NAMES]
            if words and len(words) == len(m.group(1).split()):
                return " ".join(words)
    return None


# An uncased transcript ("its mark jones", "my names rosa gomez") has no capitals to tell a name
# from other words: a name follows "my name is" (and its spoken contractions) and runs until a
# word no name is made of; after the weaker cues ("it's", "this is", "I'm") the name must end the
# turn and be two or three such words ("i'm not sure" and "it's for a cleaning" are no names).
_UNCASED_STRONG = re.compile(r"\b(?:(?:my|the|her|his) names?|name is|name's)(?:\s+is)?\s+(.+)")
_UNCASED_WEAK = re.compile(r"\b(?:it's|its|it is|this is|i'm|im|i am|yes|sure|okay|ok)\s+")
_NO_NAME_WORDS = _NOT_NAMES | frozenset(
    "a an the and or but so um uh er i me my you your we our he she her his it its it's they them "
    "this that these those for to at on in of with from by about as is are was be been would "
    "can could should please thanks thank yes no not just calling looking trying going want wanted "
    "need needs like here there fine good great okay ok sure done ready new patient patients all set "
    "available free sorry actually also still really very too well now then morning afternoon "
    "evening night noon midnight am pm oclock o'clock next this last week weekend appointment book "
    "booking cleaning checkup filling exam visit emergency dentist doctor dr mr mrs ms one two three "
    "four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty half quarter "
    "past daughter son wife husband mom dad mother father kid kids child children name names called "
    "hi hello hey".split()
)


def _uncased_name(text: str, asked: bool) -> str | None:
    text = text.replace("\u2019", "'")
    for m in _UNCASED_STRONG.finditer(text):
        words = _name_words(m.group(1).split())
        if words:
            return _cased(words)
    cues = [m.end() for m in _UNCASED_WEAK.finditer(text)]
    for start, least in [*((c, 2) for c in reversed(cues)), *([(0, 1)] if asked else [])]:
        words = re.sub(r"[^a-z' -]+$", "", text[start:].strip()).split()
        if least <= len(words) <= 3 and len(_name_words(words)) == len(words):
            return _cased(words)
    return None


def _name_words(words: Sequence[str]) -> list[str]:
    """The leading words of ``words`` a name can be made of (at most three)."""
    out: list[str] = []
    for word in words[:3]:
        w = re.sub(r"[^a-z'-]", "", word).strip("'-")
        if not w or w in _NO_NAME_WORDS or w != word.strip(".,!?;:'-"):
            break
        out.append(w)
    return out


def _cased(words: Sequence[str]) -> str:
    return " ".join(w.strip("'-").title() for w in words)


def mentioned_type(agent: Agent, said: Sequence[str]) -> str | None:
    """The appointment type the caller named most recently (by id, name or alias)."""
    for text in reversed(said):
        words = _simple(text)
        for kind in agent.appointment_types:
            if any(_simple(n) in words for n in (kind.id, kind.name, *kind.aliases)):
                return kind.id
    return None


def caller_when(agent: Agent, said: Sequence[str], now: datetime, exact: bool) -> str | None:
    """The caller's own words for the day and time: the last turn, or the last two together, cut
    to the sentences that name them when the whole is longer than a tool's "when" may be."""
    candidates = [said[-1], " ".join(said[-2:])] if len(said) > 1 else list(said[-1:])
    for text in candidates:
        r = resolve(text, now, agent.tz, agent.hours_on)
        if (r.is_exact and r.status is Status.RESOLVED) if exact else r.ok:
            return _within(text, r, agent, now) if len(text) > WHEN_MAX_CHARS else text
    return None


def _new_time(agent: Agent, said: Sequence[str], now: datetime, offered: Sequence[str]) -> str | None:
    """A move's new day and time in the caller's words: the latest turn that names both, of the
    last two, unless it names the time a tool just confirmed (the booking's present time). The
    0.5B model moved "Wednesday at 9 in the morning" to "9:00 am", and the tool asked again; and
    after "could we do Thursday at two instead?" and "yes, move it please" it moved to noon."""
    present = {_slot(resolve(text, now, agent.tz, agent.hours_on)) for text in offered}
    for back, text in enumerate(reversed(said[-2:])):
        if back and not _MOVE_TO.search(text):
            continue  # the turn before counts only when it asks for the move ("... instead?")
        r = resolve(text, now, agent.tz, agent.hours_on)
        if r.is_exact and r.status is Status.RESOLVED:
            if _slot(r) in present:
                return None
            return _within(text, r, agent, now) if len(text) > WHEN_MAX_CHARS else text
    return None


_MOVE_TO = re.compile(r"\b(?:instead|move|reschedule|change|push|make it|how about|what about)\b", re.I)


def _slot(r: Resolution) -> tuple[object, object] | None:
    return (r.first_day, r.at) if r.is_exact else None


WHEN_MAX_CHARS = TOOL_SCHEMAS["book_appointment"]["parameters"]["properties"]["when"]["maxLength"]


def _within(text: str, whole: Resolution, agent: Agent, now: datetime) -> str:
    """The shortest run of ``text``'s sentences, latest first, that resolves as the whole does; the
    whole text's last WHEN_MAX_CHARS characters when none does. A caller's "Hello, I'm ..., a new
    patient. I'd like my first visit on Wednesday at 3 in the afternoon." with the turn before
    was over the limit, and the booking was refused."""
    parts = sentences(text)
    for size in range(1, len(parts) + 1):
        for start in range(len(parts) - size, -1, -1):
            span = " ".join(parts[start : start + size])
            if len(span) > WHEN_MAX_CHARS:
                continue
            r = resolve(span, now, agent.tz, agent.hours_on)
            if r.status is whole.status and (r.first_day, r.last_day, r.at) == (
                whole.first_day,
                whole.last_day,
                whole.at,
            ):
                return span
    return text[-WHEN_MAX_CHARS:]


_LEAVE = re.compile(
    r"\b(?:good ?bye|bye|that's all|that is all|that's it|that is it|that'll be all|nothing else|"
    r"i'm done|i am done|i'm all set|i am all set|hang up|have a (?:good|nice|great) (?:day|one|evening))\b"
    r"|^\W*no,? thanks?(?: you)?\W*$|^\W*thanks?(?: you)?(?: so much| very much)?\W*$",
    re.I,
)


# "Yes, please do.", "Sure, go ahead.", "That works.": agreeing to what the agent offered.
_ASSENT = re.compile(
    r"^\W*(?:yes|yeah|yep|yup|sure|ok|okay|alright|all right|please do|go ahead|do it|that works"
    r"|sounds good|perfect|great|correct|that's (?:right|fine|great|perfect))\b",
    re.I,
)
ASSENT_MAX_WORDS = 6


def assents(text: str) -> bool:
    """The caller's words only agree ("Yes, go ahead."): short, no question of their own."""
    text = text.replace("\u2019", "'")
    return bool(_ASSENT.match(text)) and "?" not in text and len(text.split()) <= ASSENT_MAX_WORDS


def takes_leave(text: str) -> bool:
    """The caller's words end the call ("that's all, bye", "no, thank you")."""
    return bool(_LEAVE.search(text.replace("\u2019", "'")))


ASK_WHEN = "What day and time would you like?"
ASK_QUESTION = "Sorry, what would you like to know?"
ASK_BOTH = "What day and time would you like, and may I have your name?"


@dataclass
class Normalised:
    tool: str
    arguments: dict[str, Any]
    ask: str = ""  # a question for the caller instead of running the tool
    missing: tuple[str, ...] = ()  # "when", "name": what the question asks for
    declined: bool = False  # the caller did not ask for this: answer without the tool


def normalise_arguments(
    agent: Agent,
    name: str,
    args: dict[str, Any],
    said: Sequence[str],
    now: datetime,
    offered: Sequence[str] = (),
) -> Normalised:
    """Replace what the model made up with what the caller said, for the scheduling tools.

    ``said`` are the caller's recent turns, ``offered`` what the tools told the caller (a slot
    the caller picks from an offer may be passed in the offer's words).
    """
    latest = said[-1] if said else ""
    if name != "transfer_to_human" and _PERSON.search(latest):
        return Normalised("transfer_to_human", {"reason": "caller asked for a person"})
    if name == "lookup_knowledge":
        return _knowledge_question(args, latest)
    if name == "end_call" and not takes_leave(latest):
        # Hanging up is not undone: only when the caller's last words end the call. The 0.5B
        # model ended the bench's call on "Hi, sorry, quick question."
        return Normalised(name, {}, declined=True)
    allowed = TOOL_SCHEMAS.get(name, {}).get("parameters", {}).get("properties", {})
    if name == "check_availability" and ("name" in args or _gave_name_and_time(agent, said, now)):
        # The caller gave a name and an exact time: a booking, whatever the model called it (under
        # the schema grammar the model cannot add a name to an availability check as a hint).
        name, allowed = "book_appointment", TOOL_SCHEMAS["book_appointment"]["parameters"]["properties"]
    out = {k: v for k, v in args.items() if k in allowed} if allowed else dict(args)
    if name == "move_appointment" and said:
        new_when = _new_time(agent, said, now, offered)
        if new_when is not None:
            out["new_when"] = new_when
        return Normalised(name, out)
    if name not in ("book_appointment", "check_availability") or not said:
        return Normalised(name, out)
    heard = _simple(" ".join(said))
    given = out.get("name")
    named = isinstance(given, str) and _simple(given) == _simple(said[-1])  # the name it asked for
    # "Yes, go ahead." to an offered time or a booking is about the turn before it.
    recent = said[-2:] if assents(said[-1]) else said[-1:]
    if not named and not _wants_appointment(agent, recent, now):
        return Normalised(name, out, declined=True)  # a question, not a booking: answer it in words
    kind = mentioned_type(agent, said)
    if kind is not None:
        out["appointment_type"] = kind
    elif isinstance(out.get("appointment_type"), str):
        out["appointment_type"] = _simple(out["appointment_type"]).strip() or out["appointment_type"]
    when = caller_when(agent, said, now, exact=name == "book_appointment")
    if name == "book_appointment" and when is None and not _has_name(given, said, heard):
        day = caller_when(agent, said, now, exact=False)
        if day is not None:
            # A day and no time, no name ("Can someone see me today?"): what is free that day is
            # the answer, not "What day and time would you like, and may I have your name?".
            name = "check_availability"
            allowed = TOOL_SCHEMAS[name]["parameters"]["properties"]
            out = {k: v for k, v in out.items() if k in allowed}
            when = day
    if when is not None:
        out["when"] = when
    if name == "check_availability":
        return Normalised(name, out)
    missing: list[str] = []
    model_when = out.get("when")
    said_or_offered = heard + _simple(" ".join(offered))
    if when is None and (not isinstance(model_when, str) or _simple(model_when) not in said_or_offered):
        missing.append("when")
    _drop_unheard(out, said, heard)
    if not _said_name(given, heard):
        found = caller_name(said)
        if found is None:
            missing.append("name")
        else:
            out["name"] = found
    ask = {("when",): ASK_WHEN, ("name",): ASK_NAME, ("when", "name"): ASK_BOTH}.get(tuple(missing), "")
    return Normalised(name, out, ask, tuple(missing))


# Words a name copied from the caller's words never holds ("10 o'clock Monday, please" is in
# the caller's words, and was booked as a name); months are names too (June, April).
_NOT_IN_NAMES = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday today tomorrow please yes oclock "
    "clock am pm book appointment".split()
)


def _said_name(given: Any, heard: str) -> bool:
    """Whether the model's name for the caller is words the caller said that could be a name."""
    return (
        isinstance(given, str)
        and bool(_simple(given).strip())
        and _simple(given) in heard
        and _could_be_name(given)
    )


def _has_name(given: Any, said: Sequence[str], heard: str) -> bool:
    """Whether the booking has the caller's name: the model's, when the caller said it, or one
    read from the caller's words."""
    return _said_name(given, heard) or caller_name(said) is not None


def _could_be_name(text: str) -> bool:
    words = _simple(text).split()
    return bool(words) and not any(w.isdigit() or w in _NOT_IN_NAMES for w in words)


def _gave_name_and_time(agent: Agent, said: Sequence[str], now: datetime) -> bool:
    return (
        bool(said) and caller_name(said) is not None and caller_when(agent, said, now, exact=True) is not None
    )


def _knowledge_question(args: dict[str, Any], latest: str) -> Normalised:
    """The knowledge tool's one argument: the model's question, else the caller's own words, else
    a question to the caller (never the schema check's message read out)."""
    question = args.get("question")
    if isinstance(question, str) and len(question.strip()) >= 2:
        return Normalised("lookup_knowledge", {"question": question.strip()[:300]})
    if len(latest.strip()) >= 2:
        return Normalised("lookup_knowledge", {"question": latest.strip()[:300]})
    return Normalised("lookup_knowledge", {}, ASK_QUESTION, ("question",))


def wants_appointment(agent: Agent, said: Sequence[str], now: datetime) -> bool:
    """Whether the caller's latest turns are about an appointment (see :func:`_wants_appointment`)."""
    return _wants_appointment(agent, said, now)


def _wants_appointment(agent: Agent, said: Sequence[str], now: datetime) -> bool:
    """Whether the caller's last turns ask for an appointment: booking words, a day or time, or a name."""
    text = " ".join(said)
    if _BOOKING.search(text) or caller_name(said) is not None:
        return True
    return resolve(text, now, agent.tz, agent.hours_on).status is not Status.UNKNOWN


def _drop_unheard(out: dict[str, Any], said: Sequence[str], heard: str) -> None:
    """Phone numbers and notes the caller never said are the model's inventions."""
    digits = re.sub(r"\D", "", " ".join(said))
    phone = out.get("phone")
    phone_digits = re.sub(r"\D", "", phone) if isinstance(phone, str) else ""
    if phone is not None and (len(phone_digits) < 7 or phone_digits not in digits):
        out.pop("phone")  # the caller ID is used
    notes = out.get("notes")
    if notes is not None and (not isinstance(notes, str) or _simple(notes) not in heard):
        out.pop("notes")


def answers(missing: Sequence[str], agent: Agent, text: str, now: datetime) -> bool:
    """Whether ``text`` gives something a booking question asked for (a name, a day or time)."""
    if "name" in missing and caller_name([text], asked=True) is not None:
        return True
    if "question" in missing:
        return len(text.strip()) >= 2
    return "when" in missing and resolve(text, now, agent.tz, agent.hours_on).ok
