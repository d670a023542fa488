"""A minimal server-sent-events line parser (the framing OpenAI-style streaming uses)."""

from __future__ import annotations


class SseParser:
    """Feed decoded lines (without line endings); get each event's data when the event ends.

    Only ``data:`` fields matter for chat-completion streams; ``event:``, ``id:``, ``retry:``
    and comment lines (``:`` keep-alives) are ignored. Multi-line data is joined with ``\\n``.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            return data
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None

    def end(self) -> str | None:
        """The stream closed: return a final event that was not followed by a blank line."""
        return self.feed("")
