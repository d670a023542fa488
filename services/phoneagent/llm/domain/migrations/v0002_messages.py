"""Messages taken for the staff when nobody can answer."""

VERSION = 2
DESCRIPTION = "messages"
STATEMENTS = (
    """CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        caller_name TEXT NOT NULL,
        phone TEXT NOT NULL,
        body TEXT NOT NULL,
        urgent INTEGER NOT NULL DEFAULT 0,
        call_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        handled_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS messages_by_agent ON messages (agent, created_at)",
)
