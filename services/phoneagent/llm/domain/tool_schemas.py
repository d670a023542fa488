"""Tool definitions offered to the model, as JSON Schemas (OpenAI ``tools`` shape).

Dates and times are taken as the caller's own words (``"next Tuesday afternoon"``) or
ISO text; the executor resolves them in code, never the model.
"""

from __future__ import annotations

from typing import Any

from phoneagent.agents.tools import TOOL_NAMES

_WHEN = {
    "type": "string",
    "minLength": 1,
    "maxLength": 120,
    "description": "Day and time as the caller said it, e.g. 'next Tuesday at 10' or '2026-12-01 14:30'.",
}
_TYPE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 60,
    "description": "Appointment type, e.g. 'cleaning'.",
}
_APPT_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 40,
    "description": "Appointment id from a previous tool result.",
}
_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 80,
    "description": "The name the caller gave; ask for it first, never make one up.",
}
_REFERENCE = {
    "type": "string",
    "minLength": 1,
    "maxLength": 60,
    "description": "The 6-digit booking reference as the caller said it; leave out until they say it.",
}
_BIRTH = {
    "type": "string",
    "minLength": 1,
    "maxLength": 60,
    "description": "The caller's date of birth as they said it, e.g. 'March 14, 1980'; only when asked.",
}
BIRTH_DATE = "date_of_birth"  # offered only where the agent file collects it
_PHONE = {
    "type": "string",
    "pattern": r"^\+?[0-9 ().-]{7,20}$",
    "maxLength": 20,
    "description": "Only a number the caller said aloud; otherwise leave out (the caller ID is used).",
}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


TOOL_SCHEMAS: dict[str, dict[str, Any]] = {
    "check_availability": {
        "description": "Find free appointment slots.",
        "parameters": _obj({"appointment_type": _TYPE, "when": _WHEN}, ["appointment_type"]),
    },
    "book_appointment": {
        "description": "Book an appointment.",
        "parameters": _obj(
            {
                "appointment_type": _TYPE,
                "when": _WHEN,
                "name": _NAME,
                "phone": _PHONE,
                BIRTH_DATE: _BIRTH,
                "notes": {
                    "type": "string",
                    "maxLength": 300,
                    "description": "Leave out unless the caller asks to add a note.",
                },
            },
            ["appointment_type", "when", "name"],
        ),
    },
    # Existing bookings: only those made from the number the caller calls from, once the caller
    # gives the booking reference or date of birth (the tool asks); never a number said on the call.
    "find_appointments": {
        "description": "List the caller's upcoming appointments (needs the booking reference).",
        "parameters": _obj({"reference": _REFERENCE, BIRTH_DATE: _BIRTH}, []),
    },
    "move_appointment": {
        "description": "Move one of the caller's appointments to a new day and time.",
        "parameters": _obj(
            {"appointment_id": _APPT_ID, "new_when": _WHEN, "reference": _REFERENCE, BIRTH_DATE: _BIRTH},
            ["new_when"],
        ),
    },
    "cancel_appointment": {
        "description": "Cancel one of the caller's appointments.",
        "parameters": _obj(
            {"appointment_id": _APPT_ID, "when": _WHEN, "reference": _REFERENCE, BIRTH_DATE: _BIRTH}, []
        ),
    },
    "lookup_knowledge": {
        "description": "Look up facts about the business (prices, services, policies, directions).",
        "parameters": _obj({"question": {"type": "string", "minLength": 2, "maxLength": 300}}, ["question"]),
    },
    "transfer_to_human": {
        "description": "Transfer the caller to a person when they ask for a human, staff or front desk.",
        "parameters": _obj({"reason": {"type": "string", "maxLength": 200}}, []),
    },
    "take_message": {
        "description": "Take a message for the staff to call back.",
        "parameters": _obj(
            {
                "name": _NAME,
                "message": {"type": "string", "minLength": 1, "maxLength": 1000},
                "phone": _PHONE,
                "urgent": {"type": "boolean"},
            },
            ["name", "message"],
        ),
    },
    "end_call": {
        "description": "End the call after saying goodbye.",
        "parameters": _obj({"reason": {"type": "string", "maxLength": 200}}, []),
    },
}

if tuple(TOOL_SCHEMAS) != TOOL_NAMES:  # the agent file's names and the model's tools are one set
    raise RuntimeError("TOOL_SCHEMAS and phoneagent.agents.tools.TOOL_NAMES name different tools")


def tool_definitions(
    enabled: frozenset[str] | None = None, date_of_birth: bool = False
) -> list[dict[str, Any]]:
    """The ``tools`` list for a chat-completion request, limited to ``enabled`` tools; the date of
    birth argument only where the agent collects it (``date_of_birth``)."""
    return [
        {"type": "function", "function": {"name": name, **(spec if date_of_birth else _without_birth(spec))}}
        for name, spec in TOOL_SCHEMAS.items()
        if enabled is None or name in enabled
    ]


def _without_birth(spec: dict[str, Any]) -> dict[str, Any]:
    props = spec["parameters"]["properties"]
    if BIRTH_DATE not in props:
        return spec
    kept = {k: v for k, v in props.items() if k != BIRTH_DATE}
    return {**spec, "parameters": {**spec["parameters"], "properties": kept}}
