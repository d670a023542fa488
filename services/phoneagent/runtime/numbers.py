"""Phone number normalisation to E.164, with the stricter North American (NANP) format check.

Only what policy needs: turning what people type into CSV files ("(212) 555-0123",
"1-212-555-0123", "+44 20 7946 0958") into one canonical form so that DNC and consent
look-ups match, and refusing anything that is not a dialable number. And what is kept of a
call's parties where it is stored (:func:`stored_call`).
"""

from __future__ import annotations

import re

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.v1 import call_pb2

NANP_COUNTRY_CODE = "1"

_SEPARATORS = re.compile(r"[\s().\-/]")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# NPA (area code) and NXX (exchange) both start with 2-9; area codes of the form N11 are service codes.
_NANP = re.compile(r"^\+1([2-9]\d{2})([2-9]\d{2})(\d{4})$")


def normalize_e164(raw: str, default_country: str = NANP_COUNTRY_CODE) -> str:
    """Return ``raw`` as an E.164 string (``+12125550123``) or raise InvalidArgument.

    Numbers without a leading ``+`` are read as national numbers of ``default_country``
    (only NANP national forms, 10 digits or 11 starting with 1, are understood).
    """
    if not isinstance(raw, str):
        raise InvalidArgument("phone number must be text")
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise InvalidArgument("phone number is empty")
    if text.startswith("+"):
        candidate = text
    elif text.isdigit() and default_country == NANP_COUNTRY_CODE:
        candidate = _nanp_national(text)
    else:
        raise InvalidArgument("phone number needs a leading + and country code")
    if not _E164.match(candidate):
        raise InvalidArgument("phone number is not a valid E.164 number")
    if candidate.startswith("+1") and not is_valid_nanp(candidate):
        raise InvalidArgument("phone number is not a valid North American number")
    return candidate


def _nanp_national(digits: str) -> str:
    if len(digits) == 10:
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    raise InvalidArgument("national number must have 10 digits")


def is_valid_e164(number: str) -> bool:
    """True when ``number`` is already in canonical E.164 form (and NANP-valid for +1)."""
    if not isinstance(number, str) or not _E164.match(number):
        return False
    return not number.startswith("+1") or is_valid_nanp(number)


def is_valid_nanp(number: str) -> bool:
    m = _NANP.match(number)
    if m is None:
        return False
    area = m.group(1)
    return not (area[1] == "1" and area[2] == "1")


def nanp_area_code(number: str) -> str | None:
    """The three-digit area code of a canonical +1 number, else None."""
    m = _NANP.match(number) if isinstance(number, str) else None
    return m.group(1) if m else None


def masked_party(uri: str) -> str:
    """What is stored of a call party's SIP/tel URI or number: the last two digits of its user
    part (``…23``); nothing of a display name, user name or host. Empty without digits."""
    digits = re.sub(r"\D", "", (uri or "").split("@", 1)[0])
    return "…" + digits[-2:] if digits else ""


# Labels a stored CallStarted keeps: how the call was placed, nothing about the person called
# (a campaign's contact name and fields, the voicemail message, an API caller's labels go).
STORED_LABELS = frozenset({"amd", "purpose"})


def stored_call(started: call_pb2.CallStarted) -> call_pb2.CallStarted:
    """The copy of ``started`` for the call's lifecycle subject, which PA_CALLS stores: its
    parties masked (:func:`masked_party`) and only the :data:`STORED_LABELS`. The stages that
    need the number or the contact's fields (policy's DNC, opt-out and consent rules, the
    LLM's caller look-up and outbound conversation) get them whole in the session claim, a
    request that is not stored."""
    out = call_pb2.CallStarted()
    out.CopyFrom(started)
    out.from_uri = masked_party(started.from_uri)
    out.to_uri = masked_party(started.to_uri)
    for key in [k for k in out.labels if k not in STORED_LABELS]:
        del out.labels[key]
    return out
