"""The tools an agent file may enable (its ``tools`` list), by name.

The llm owns what each tool does and the schema the model sees
(:mod:`phoneagent.llm.domain.tool_schemas`, which defines exactly these names); the agent
file only names the ones it wants, so the names live here, below both.
"""

from __future__ import annotations

TOOL_NAMES: tuple[str, ...] = (
    "check_availability",
    "book_appointment",
    "find_appointments",
    "move_appointment",
    "cancel_appointment",
    "lookup_knowledge",
    "transfer_to_human",
    "take_message",
    "end_call",
)
