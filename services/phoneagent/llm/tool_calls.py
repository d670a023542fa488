"""Schema-constrained tool calls, the same way on every engine.

The model answers freely until its output starts a tool call (Qwen's ``<tool_call>`` marker, or
a bare or fenced JSON object). That free request is then stopped, and the call is finished under
:func:`tool_call_schema`, passed as the engine's ``json_schema`` (a llama.cpp grammar built from
the JSON Schema, vLLM's structured outputs, the OpenAI ``response_format``): the name is one of
the offered tools and the arguments match that tool's parameters. An engine that continues a
reply gets Qwen's marker and its line break (:func:`call_prefix`, whichever opener the model wrote)
as the reply's start and generates only the object after it, so the model
goes on from where it stopped and reads a few new prompt tokens; on any other engine the call is
generated again from the start of the reply. Reading a free-text call back with repairs is only
the fallback (an engine that cannot build the grammar, or output cut off by the token limit),
counted in ``pa_llm_tool_call_repairs_total``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import Counter

TOOL_CALL_REPAIRS = Counter(
    "pa_llm_tool_call_repairs_total",
    "Tool calls read from unconstrained model text (the schema-constrained call was not usable).",
    ["engine", "reason"],
)
CONSTRAINED_MIN_TOKENS = 200  # a booking with notes is about 80 tokens of JSON

# Qwen's marker is <tool_call>; the 1.5B model also writes <tools> or <tool> around the object.
CALL_MARKER = "<tool_call>\n"  # as Qwen's chat template writes a call in the history
_TOOL_CALL = re.compile(r"<tool(?:_call|s)?>\s*(\{.*?\})\s*(?:</tool(?:_call|s)?>|$)", re.S)
_OPENING = re.compile(r'\s*(?:<tool(?:_call|s)?>|(?:```(?:json)?\s*)?\{\s*")')


def starts_tool_call(text: str) -> bool:
    """True once ``text`` has begun a tool call (the marker, or a JSON object's first key)."""
    return bool(_OPENING.match(text))


def call_prefix(text: str) -> str:
    """How a continued tool call starts, once ``text`` (free output) has opened one
    (:func:`starts_tool_call`; "" when it has not): Qwen's marker and its line break, whichever
    opener the model wrote (the marker, ``<tools>``, a fenced or a bare JSON object). The
    dialog's history renders every call as Qwen's template does (``<tool_call>\n{...}``), so a
    call continued after the same marker leaves in the engine's context exactly the tokens the
    next turn's prompt holds; after a bare ``{"`` the whole call was read again on that turn."""
    return CALL_MARKER if _OPENING.match(text) else ""


def tool_call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON Schema for ``{"name": ..., "arguments": {...}}`` over the offered tools."""
    options = []
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


_CLOSER = re.compile(r"\s*(?:</tool(?:_call|s)?>|```)\s*$")


def read_constrained(text: str) -> dict[str, Any] | None:
    """The call generated under the schema, or None when it is not one (cut off, say). A call
    that continued an opened marker may be followed by its closer (``</tool_call>``)."""
    try:
        call = json.loads(_CLOSER.sub("", text))
    except json.JSONDecodeError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    if not isinstance(call.get("arguments"), dict):
        return None
    return call


_TOOL_OPENERS = ("<tool_call>", "<tools>", "<tool>", "```json", "```", "{")


def maybe_tool_call(text: str) -> bool:
    """True while ``text`` could still be the start of a tool call.

    Qwen's template asks for ``<tool_call>{...}</tool_call>``; small models also answer
    with the bare JSON object or a fenced code block. None of these is ever spoken.
    """
    stripped = text.lstrip()
    if not stripped:
        return True
    return any(stripped.startswith(o) or o.startswith(stripped) for o in _TOOL_OPENERS)


UNBACKED_CLAIMS = Counter(
    "pa_llm_unbacked_claims_total",
    "Reply sentences that said a booking was made, moved or cancelled when no tool had done it: "
    "before any tool ran in their turn (when=before_tool) the sentence was not said and the model "
    "wrote the tool call instead; in the answer after a tool that did no booking, move or "
    'cancellation (when=after_tool; "You\'re cancelled." after a declined call) the sentence was '
    "not said.",
    ["engine", "when"],
)
ACTION_WITHOUT_TOOL = Counter(
    "pa_llm_action_replies_without_tool_total",
    "Replies to a caller who asked for a booking, a move or a cancellation with a day or time that "
    "began with neither a tool call nor a question to the caller: the sentence was not said and the "
    "model wrote the tool call instead.",
    ["engine"],
)
CONTRADICTED = Counter(
    "pa_llm_contradicted_replies_total",
    "Reply sentences that said the opposite of a statement in the agent's documents (\"Yes, we "
    'accept Medicaid." where they say "We do not accept Medicaid."): not said; the model answered '
    "again from the knowledge tool's passages (outcome=lookup), or the statement was said "
    "(outcome=statement) when the answer after the passages contradicted it too.",
    ["engine", "outcome"],
)
REFUSALS = Counter(
    "pa_llm_refusals_total",
    "Reply sentences that were a bare refusal (\"I'm sorry, but I can't assist with that.\", the 0.5B "
    "model's answer to a caller with a toothache and to a corrected booking): not said; the model "
    "wrote a tool call instead (outcome=tool), or the sentence was dropped (outcome=dropped).",
    ["engine", "outcome"],
)
# The whole sentence is the refusal; "I can't give medical advice, but ..." says more and stays.
# "but I can't assist with that." is one too: the first clause "I'm sorry," may have gone out alone.
_REFUSAL = re.compile(
    r"^\W*(?:(?:(?:i'?m|i am)\s+)?(?:so\s+|very\s+)?(?:sorry|afraid),?\s*)?(?:but\s+)?"
    r"(?:i\s+(?:can'?t|cannot|can not|won'?t be able to|am unable to|am not able to)"
    r"|i'?m\s+(?:unable|not able)\s+to)\s+(?:assist|help)(?:\s+you)?"
    r"(?:\s+with\s+(?:that|this|your request|this request))?\W*$",
    re.I,
)


def refuses(sentence: str) -> bool:
    """``sentence`` is a bare refusal and nothing more."""
    return bool(_REFUSAL.match(sentence.replace("\u2019", "'")))


_DONE = r"(?:booked|scheduled|re-?scheduled|moved|changed|cancel+ed|confirmed)"
# "You're booked", "you are now all set and booked", "I've moved it", "your cleaning has been
# cancelled", "it's rescheduled": a booking said to be done. Not "I can book", "shall I move it",
# "to be booked", "booked up" (a question, an offer, a full day).
_CLAIM = re.compile(
    r"\b(?:you(?:'re|\s+are)|i(?:'ve|\s+have)|it(?:'s|\s+is|\s+has\s+been)|that(?:'s|\s+is|\s+has\s+been)"
    r"|(?:has|have)\s+been|(?:is|are)\s+now)"
    r"(?:\s+(?:now|all|also|successfully|already|been|set|and|for|it|that|your\s+\w+))*"
    rf"\s+{_DONE}\b(?!\s+up\b)",
    re.I,
)


def claims_done_action(text: str) -> bool:
    """True when ``text`` says a booking was made, moved or cancelled (a question does not)."""
    for sentence in re.split(r"(?<=[.!;])\s+", text):
        if _CLAIM.search(sentence) and not sentence.rstrip().endswith("?"):
            return True
    return False


def plain_words(text: str) -> str:
    """Lower-case words and numbers only: how a reply is compared with a tool's or the caller's words."""
    # Apostrophes go: straight, curly, or curly as a tool result's JSON escapes it.
    text = text.lower().replace("\\u2019", "").replace("\u2019", "").replace("'", "")
    return " ".join(re.findall(r"[a-z0-9]+", text))


def asks_caller(sentence: str, caller: str) -> bool:
    """Whether ``sentence`` asks the caller something, rather than repeating the caller's own
    words back as a question ("Can you move it to Thursday at 2?" to that very question)."""
    if not (sentence.rstrip().endswith("?") or _QUESTION_START.match(sentence)):
        return False  # a first clause cut at a comma ("May I have your name,") starts like one
    words = plain_words(sentence).split()
    theirs = set(plain_words(caller).split())
    return not words or sum(w in theirs for w in words) < ECHO_SHARE * len(words)


ECHO_SHARE = 0.75  # a question this much made of the caller's words is their question, repeated

UNANSWERED = Counter(
    "pa_llm_unanswered_replies_total",
    "First reply sentences to a caller who asked what time the practice opens or closes, how much "
    "something costs, or whether there is a fee, that held no time (no amount): not said; the "
    "model answered again from "
    "the knowledge tool's passages (the 0.5B model's \"The business is open on Monday and is "
    'parking free on Wednesday." to "What time do you open on Monday, and is parking free?").',
    ["engine", "kind"],
)
OFF_TOPIC = Counter(
    "pa_llm_off_topic_replies_total",
    "First reply sentences that put a name from the agent's documents with words no sentence of "
    'theirs holding it uses (reason=name: "The bus that goes to your office is Delta Dental."), or '
    "whose words from the documents mostly come from none of the paragraphs that best match the "
    "caller's words (reason=passage): not said; the model answered again from the knowledge tool's "
    "passages.",
    ["engine", "reason"],
)
ANSWER_MIN_WORDS = 4  # a shorter first sentence ("Sure!", "Good question.") is not yet the answer
# "What time do you open on Monday", "when do you close", "what are your hours on Friday", "how
# late are you open": the answer is a time (or that the practice is closed).
_ASKS_TIME = re.compile(
    r"\bwhat(?:'s|\s+(?:is|are))?\s+(?:your\s+|the\s+)?(?:opening\s+)?hours\b"
    r"|\b(?:what\s+time|when|how\s+(?:late|early))\b"
    r"(?:(?!\b(?:and|but)\b)[^?.])*?\b(?:open|opens|close|closes|closing|opening|hours)\b",
    re.I,
)
# "How much is a cleaning", "what does whitening cost", "what's the fee for ...": an amount.
_ASKS_PRICE = re.compile(
    r"\bhow\s+much\b(?!\s+(?:notice|time|longer|later|earlier))|\bwhat(?:'s|\s+(?:is|are|does|do|would|will))\b(?:(?!\b(?:and|but)\b)[^?.])*?"
    r"\b(?:cost|costs|price|prices|fee|fees|charge|charges)\b",
    re.I,
)
# "Is there a fee if I cancel late?", "do you charge for X-rays?": the answer names the amount,
# or says there is none.
_ASKS_FEE = re.compile(
    r"\b(?:is|are)\s+there\s+(?:a|any)\s+(?:\w+\s+)?(?:fee|fees|charge|charges|cost|costs)\b"
    r"|\bdo\s+you\s+charge\b",
    re.I,
)
_NUMBER_WORD = (
    r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty"
    r"|sixty|seventy|eighty|ninety|hundred|thousand"
)
_GIVES = {
    "time": re.compile(
        rf"\d|\b(?:{_NUMBER_WORD}|noon|midday|midnight|o'clock|closed|close|24/7|around the clock)\b", re.I
    ),
    "price": re.compile(
        rf"\d|\$|\b(?:{_NUMBER_WORD}|free|no\s+(?:charge|cost|fee)|nothing|covered|depends)\b", re.I
    ),
    "fee": re.compile(rf"\d|\$|\b(?:{_NUMBER_WORD}|free|no|not|never|nothing|covered|depends)\b|n't\b", re.I),
}


def answer_kind(question: str) -> str | None:
    """What the caller's question asks for, where its answer must hold it: "time" (when the
    practice opens or closes), "price" (how much something costs), "fee" (whether something
    costs extra: the amount, or that it does not), or None."""
    if _ASKS_TIME.search(question):
        return "time"
    if _ASKS_PRICE.search(question):
        return "price"
    if _ASKS_FEE.search(question):
        return "fee"
    return None


def gives(kind: str, sentence: str) -> bool:
    """Whether ``sentence`` holds what a question of ``kind`` asks for (a time, a number, that
    the practice is closed, that it is free)."""
    return bool(_GIVES[kind].search(sentence))


_QUESTION_START = re.compile(
    r"^\W*(?:may|can|could|would|will|shall|should|what|which|when|where|who|how|do|does|did|is|are)\b", re.I
)


TEMPLATE_LEAKS = Counter(
    "pa_llm_template_leaks_total",
    "Replies in which the model wrote its chat template's own text (the tool preamble, the tags): "
    "the rest of the completion was not said.",
    ["engine"],
)
# Qwen's tool preamble ("You may call one or more functions to assist with the user query. You are
# provided with function signatures within <tools></tools> XML tags") and the template's tags.
# The prompt's own labels too: the 0.5B model read out a turn's facts block and went on with
# "Caller: I'd like a cleaning next Tuesday at 10." (an example from its instructions).
_TEMPLATE = re.compile(
    r"\bone or more functions\b|\bfunction signatures\b|</?tools>|</?tool_call>|<\|im_(?:start|end)\|>"
    r"|(?-i:\bCaller:)|\bfacts for you\b",
    re.I,
)


def leaks_template(text: str) -> bool:
    """Whether ``text`` holds the chat template's own words, never meant for the caller."""
    return bool(_TEMPLATE.search(text))


CODE_REPLIES = Counter(
    "pa_llm_code_replies_total",
    "Reply sentences written as code (a bracketed or quoted list, a JSON object: the 0.5B model's "
    '\'[Signa, "Signa", "Signa"]\' to "Do you guys take Signa?"): not said; the model answered '
    "again from the knowledge tool's passages (outcome=lookup) or the sentence was dropped "
    "(outcome=dropped).",
    ["engine", "outcome"],
)
# A sentence that is a bracketed list or object, opens one with quoted items, or holds quoted
# items in a row or in brackets ("{Sorry} we are closed today." is words).
_CODE = re.compile(r'^\W*[\[{](?:[^\]}]*[\]}]\W*$|[^\]}]*")|"\s*,\s*"|[\[{(]\s*"|"\s*[\]}]')


def written_as_code(sentence: str) -> bool:
    """Whether ``sentence`` is code rather than words for the caller (see CODE_REPLIES)."""
    return bool(_CODE.search(sentence))


def looks_like_json(text: str) -> bool:
    return bool(re.match(r'\s*(?:<tool_call>|```(?:json)?)?\s*\{\s*"', text))


def looks_like_call(text: str) -> bool:
    return bool(re.match(r'\s*(?:<tool_call>|```(?:json)?)?\s*\{\s*"name"\s*:', text))


def parse_tool_call(text: str) -> dict[str, Any] | None:
    m = _TOOL_CALL.search(text)
    body = m.group(1) if m else text.strip().removeprefix("<tool_call>")
    body = body.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
    start, end = body.find("{"), body.rfind("}")
    call: Any = None
    if start >= 0 and end > start:
        try:
            call = json.loads(body[start : end + 1])
        except json.JSONDecodeError:
            call = None
    if call is None and start >= 0:
        call = _complete_truncated(body[start:])
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    return call


def _complete_truncated(body: str, attempts: int = 8) -> Any:
    """Read a JSON object cut off by the token limit: keep the members that are complete.

    ``{"name": "x", "arguments": {"a": "1", "b": "unfinis`` becomes ``{"name": "x", "arguments":
    {"a": "1"}}``. Only whole members are kept; a half-written value is dropped, never guessed.
    """
    cuts = [i for i, ch in enumerate(body) if ch == ","][::-1][:attempts]
    for cut in cuts:
        head = body[:cut]
        closers = _open_brackets(head)
        if closers is None:
            continue
        try:
            return json.loads(head + closers)
        except json.JSONDecodeError:
            continue
    return None


def _open_brackets(text: str) -> str | None:
    """The closing brackets ``text`` needs, or None when it ends inside a string."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    return None if in_string else "".join(reversed(stack))


# Words a reply shares with any passage ("the", "you", "dollars", "appointment" ...) say nothing
# about which passage it used.
_COMMON = frozenset(
    "about above after also and are at be been before can dollar dollars for from have in is it its "
    "of on or our per please the their there they this to we with you your appointment appointments "
    "patient patients practice".split()
)
PASSAGE_USED_WORDS = 2  # of a passage's own words, this many in a reply mean the reply used it


def uses_passage(said: str, passage: str) -> bool:
    """Whether the reply ``said`` uses ``passage``: shares at least PASSAGE_USED_WORDS of its
    words beyond the common ones (all of them, for a passage with fewer)."""
    theirs = {w for w in plain_words(passage).split() if w not in _COMMON and len(w) > 2}
    mine = set(plain_words(said).split())
    return len(theirs & mine) >= min(PASSAGE_USED_WORDS, len(theirs))
