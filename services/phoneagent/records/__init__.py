"""Call records: one durable row per call, folded from the PA_CALLS and PA_AUDIT streams."""

# Header naming the message type on a call's tool subject (and its record copy): both kinds travel there.
TOOL_TYPE_HEADER = "Pa-Type"  # "ToolCall" or "ToolResult"
