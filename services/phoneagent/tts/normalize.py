"""Rewrite agent text into words a speech engine reads the way a person would on the phone.

Times ("3:30 pm" -> "three thirty p m"), dates ("2026-11-23", "11/23", "Nov 23rd"), money,
percentages, ordinals, phone numbers and identifiers (digit by digit, with a comma between
groups so the engine pauses): a number after "account", "card ... ending in", "PIN",
"ext.", "confirmation", "reference", "#" and the like, and any number with a leading zero;
codes ("AB12C" spelled out) and common abbreviations.
Passes run in a fixed order: the more specific patterns (dates, phone numbers) before
the generic number rules that would otherwise take their digits apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from phoneagent.tts.numwords import cardinal, decimal, digits, group_digits, ordinal, year

Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]

MONTHS = ("January February March April May June July August September October November December").split()
_MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"Sept": "September"}
_MONTH_NAMES = "|".join(sorted({*MONTHS, *_MONTH_ABBR}, key=len, reverse=True))


def _end(m: re.Match[str]) -> str:
    """A sentence-ending period that an abbreviation swallowed, given back."""
    return "." if m.group("end") is not None else ""


def _int(text: str) -> int:
    return int(text.replace(",", ""))


# --- abbreviations -----------------------------------------------------------------------------
# expansion, and whether the abbreviation's period may also end a sentence ("... et cetera.")
_ABBREVIATIONS: dict[str, tuple[str, bool]] = {
    "Mr.": ("Mister", False),
    "Mrs.": ("Missus", False),
    "Ms.": ("Miz", False),
    "Jr.": ("Junior", True),
    "Sr.": ("Senior", True),
    "appt.": ("appointment", True),
    "Appt.": ("Appointment", False),
    "approx.": ("approximately", False),
    "Ave.": ("Avenue", True),
    "Blvd.": ("Boulevard", True),
    "Rd.": ("Road", True),
    "Apt.": ("Apartment", False),
    "Dept.": ("Department", True),
    "Mt.": ("Mount", False),
    "etc.": ("et cetera", True),
    "e.g.": ("for example", False),
    "i.e.": ("that is", False),
    "vs.": ("versus", False),
    "hrs.": ("hours", True),
    "mins.": ("minutes", True),
    "min.": ("minutes", True),
    "Ph.D.": ("P H D", True),
}
# Lookahead for "this period also ends the sentence": end of text, or a capitalised word next.
_SENTENCE_AFTER = r"(?P<end>(?=\s*$|\s+[A-Z]))?"
_ABBR_RE = re.compile(
    r"(?<![\w.])("
    + "|".join(re.escape(k) for k in sorted(_ABBREVIATIONS, key=len, reverse=True))
    + r")"
    + _SENTENCE_AFTER
)


def _abbr(m: re.Match[str]) -> str:
    word, may_end = _ABBREVIATIONS[m.group(1)]
    return word + ("." if may_end and m.group("end") is not None else "")


_TITLE_RE = re.compile(r"\b(Dr|St)\.(?=\s+[A-Z])")  # "Dr. Patel", "St. Louis"
_PLACE_RE = re.compile(r"(?<=[A-Za-z] )(Dr|St)\." + _SENTENCE_AFTER)  # "Main St.", "Oak Dr."
_NUMBER_ABBR_RE = re.compile(r"\b(No|no|Nr)\.\s*(?=\d)|#(?=\d)")


def _title(m: re.Match[str]) -> str:
    return {"Dr": "Doctor", "St": "Saint"}[m.group(1)]


def _place(m: re.Match[str]) -> str:
    return {"Dr": "Drive", "St": "Street"}[m.group(1)] + _end(m)


# --- dates and times ---------------------------------------------------------------------------
def _date_words(month: int, day: int, yr: str | None) -> str:
    out = f"{MONTHS[month - 1]} {ordinal(day)}"
    if yr:
        n = int(yr)
        out += f", {year(n + 2000 if len(yr) == 2 else n)}"
    return out


def _iso_date(m: re.Match[str]) -> str:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0)
    return _date_words(mo, d, str(y))


def _slash_date(m: re.Match[str]) -> str:
    mo, d = int(m.group(1)), int(m.group(2))
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m.group(0)
    return _date_words(mo, d, m.group(3))


def _month_date(m: re.Match[str]) -> str:
    month = _MONTH_ABBR.get(m.group(1), m.group(1))
    d = int(m.group(2))
    if not 1 <= d <= 31:
        return m.group(0)
    return _date_words(MONTHS.index(month) + 1, d, m.group(3))


def _meridiem(text: str | None) -> str:
    if not text:
        return ""
    return " " + " ".join(ch for ch in text.lower() if ch.isalpha())


def _minutes(mm: int, has_meridiem: bool) -> str:
    if mm == 0:
        return "" if has_meridiem else " o'clock"
    if mm < 10:
        return f" oh {cardinal(mm)}"
    return f" {cardinal(mm)}"


def _clock(m: re.Match[str]) -> str:
    hh, mm = int(m.group(1)), int(m.group(2) or 0)
    if hh > 23 or mm > 59:
        return m.group(0)
    mer = m.group(3)
    if hh == 0 and not mer:
        return "zero hundred" if mm == 0 else f"zero {cardinal(mm)}"
    end = _end(m) if mer and mer.endswith(".") else ""
    return cardinal(hh) + _minutes(mm, bool(mer)) + _meridiem(mer) + end


_MERIDIEM = r"\s*([ap]\.m\.|[ap]m\b|[AP]M\b|[AP]\.M\.)"

# --- money, percent ----------------------------------------------------------------------------
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_SCALE_WORDS = {
    "k": "thousand",
    "K": "thousand",
    "thousand": "thousand",
    "million": "million",
    "m": "million",
    "M": "million",
    "billion": "billion",
    "bn": "billion",
}


def _money(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m.group(1)]
    whole_text, frac, scale = m.group(2), m.group(3), m.group(4)
    if scale:
        amount = decimal(f"{whole_text}.{frac}") if frac else cardinal(_int(whole_text))
        return f"{amount} {_SCALE_WORDS[scale]} {many}"
    whole = _int(whole_text)
    cents = int((frac or "0").ljust(2, "0"))
    parts = []
    if whole or not cents:
        parts.append(f"{cardinal(whole)} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def _percent(m: re.Match[str]) -> str:
    return f"{_number(m.group(1))} percent"


def _number(text: str) -> str:
    return decimal(text) if "." in text else cardinal(_int(text))


# --- digit strings: phone, account, confirmation numbers -----------------------------------------
def _read_groups(groups: list[str]) -> str:
    return ", ".join(digits(g) for g in groups if g)


def _grouped_digits(m: re.Match[str]) -> str:
    text = m.group(0)
    groups = re.findall(r"\d+", text)
    total = sum(len(g) for g in groups)
    spaced_only = not re.search(r"[-.()+]", text)
    if total < 7 or (spaced_only and any(len(g) < 3 for g in groups[1:])):
        return text
    head = "plus " if text.startswith("+") else ""
    return head + _read_groups(groups)


def _long_run(m: re.Match[str]) -> str:
    return _read_groups(group_digits(m.group(0)))


def _code(m: re.Match[str]) -> str:
    parts = m.group(0).split("-")
    if len(m.group(0).replace("-", "")) < 4 or any(len(p) >= 4 and p.isalpha() for p in parts):
        return m.group(0)  # "MP3", "COVID-19": a word, not a code to spell
    spoken = [" ".join(digits(ch) if ch.isdigit() else ch for ch in part) for part in parts]
    return ", ".join(spoken)


# Words after which a number is an identifier, read digit by digit ("account number is 4821",
# "card ending in 1987", "PIN is 0042", "ext. 204"): the keyword, then a few linking words.
_ID_KEYWORDS = (
    r"account|acct|card|credit card|debit card|visa|mastercard|amex|pin|passcode|extension|ext|"
    r"confirmation|reference|ref|order|member|membership|policy|routing|ticket|booking|case|claim|"
    r"invoice|id|code|number"
)
_ID_LINKS = r"number|no\.?|#|is|was|ending|ends|in|with|code|id"
_ID_RE = re.compile(
    rf"(?<![\w.])(?P<key>(?:{_ID_KEYWORDS})\b\.?)(?P<mid>(?:\s+(?:{_ID_LINKS})\b)*)(?P<sep>\s*:?\s*)"
    r"(?P<num>\d+(?:[ -]\d{3,})*)(?![\d.,]\d|[\w$%])",
    re.IGNORECASE,
)
_ID_SPOKEN = {"ext": "extension", "ext.": "extension", "acct": "account", "acct.": "account"}
_ID_ALWAYS = {"pin", "passcode", "extension", "ext", "ext.", "card", "visa", "mastercard", "amex"}


def _identifier(m: re.Match[str]) -> str:
    key, num = m.group("key"), m.group("num")
    groups = re.findall(r"\d+", num)
    key_word = key.lower()
    short = len(groups) == 1 and len(num) < 3 and not num.startswith("0")
    if short and key_word not in _ID_ALWAYS and "ending" not in m.group("mid").lower():
        return m.group(0)  # "number 3 in line", "account is 12 months old": a count, not an identifier
    if len(groups) == 1:
        groups = group_digits(num)
    key = _ID_SPOKEN.get(key_word, key)
    sep = m.group("sep") if m.group("sep").strip() else " "
    return f"{key}{m.group('mid')}{sep}{_read_groups(groups)}"


def _leading_zero(m: re.Match[str]) -> str:
    return digits(m.group(0))  # "0042", "007": digit by digit, never "forty-two"


def _plain_number(m: re.Match[str]) -> str:
    text = m.group(0)
    if "," not in text and len(text) == 4 and 1100 <= int(text) <= 2099:
        return year(int(text))
    return cardinal(_int(text))


_EMAIL_RE = re.compile(r"(?<![\w.+-])([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")


def _email(m: re.Match[str]) -> str:
    user = m.group(1).replace(".", " dot ")
    domain = m.group(2).replace(".", " dot ")
    return f"{user} at {domain}"


_RULES: list[Rule] = [
    (_EMAIL_RE, _email),
    (_TITLE_RE, _title),
    (_PLACE_RE, _place),
    (_ABBR_RE, _abbr),
    (_NUMBER_ABBR_RE, lambda m: "number "),
    (_ID_RE, _identifier),
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), _iso_date),
    (re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?:/(\d{4}|\d{2}))?(?![\d/])"), _slash_date),
    (re.compile(rf"\b({_MONTH_NAMES})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}})\b)?"), _month_date),
    (re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])(?:" + _MERIDIEM + r")?" + _SENTENCE_AFTER), _clock),
    (re.compile(r"(?<![\d:.,])(\d{1,2})()" + _MERIDIEM + _SENTENCE_AFTER), _clock),
    (
        re.compile(
            r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?!\d)"
            r"(?:\s?(thousand|million|billion|bn|k|K|m|M)\b)?"
        ),
        _money,
    ),
    (re.compile(r"(\d+(?:\.\d+)?)\s?%"), _percent),
    (re.compile(r"\b(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)*\b"), _code),
    (re.compile(r"(?<![\w.])\+?\(?\d{1,4}\)?(?:[ .-]\(?\d{1,4}\)?){1,5}(?![\w]|\.\d)"), _grouped_digits),
    (re.compile(r"\b(\d+)(st|nd|rd|th)\b"), lambda m: ordinal(int(m.group(1)))),
    (re.compile(r"(?<![\d,.])\d{5,}(?!\d|[,.]\d)"), _long_run),
    (re.compile(r"(?<![\w.,:$€£-])0\d+(?![\d:]|[.,]\d)"), _leading_zero),
    (
        re.compile(r"(?<![\d.])\d+(?:\.\d+){2,}(?![\d.])"),
        lambda m: " point ".join(cardinal(int(p)) for p in m.group(0).split(".")),
    ),
    (re.compile(r"(?<![\d.])(\d+(?:,\d{3})*|\d+)\.(\d+)(?![\d.])"), lambda m: decimal(m.group(0))),
    (
        re.compile(r"\b(\d{1,4})\s?-\s?(\d{1,4})\b"),
        lambda m: f"{cardinal(int(m.group(1)))} to {cardinal(int(m.group(2)))}",
    ),
    (re.compile(r"(?:(?<=\s)|^)-(?=\d)"), lambda m: "minus "),
    (re.compile(r"(?<![A-Za-z\d,])(?:\d{1,3}(?:,\d{3})+|\d+)(?!\d|,\d)"), _plain_number),
    (re.compile(r"\s&\s"), lambda m: " and "),
    (re.compile(r"\s\+\s"), lambda m: " plus "),
]
_SPACES = re.compile(r"[ \t]{2,}")


def normalize(text: str) -> str:
    """Return ``text`` with numbers, dates, times, money and abbreviations spelled out."""
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return _SPACES.sub(" ", text).strip()
