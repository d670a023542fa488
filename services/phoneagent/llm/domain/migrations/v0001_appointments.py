"""Appointments and the 5-minute occupancy cells that make double booking impossible.

Times are UTC text ``YYYY-MM-DDTHH:MM:SSZ`` (fixed width, so text order is time order).
An appointment owns one ``appointment_cells`` row per 5 minutes it covers; the primary
key on (agent, cell_start) lets only one appointment hold any 5 minutes.
"""

VERSION = 1
DESCRIPTION = "appointments and occupancy cells"
STATEMENTS = (
    """CREATE TABLE appointments (
        id TEXT PRIMARY KEY,
        agent TEXT NOT NULL,
        type_id TEXT NOT NULL,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        caller_name TEXT NOT NULL,
        phone TEXT NOT NULL,
        phone_key TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        call_id TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS appointments_by_phone ON appointments (agent, phone_key, starts_at)",
    "CREATE INDEX IF NOT EXISTS appointments_by_start ON appointments (agent, starts_at)",
    """CREATE TABLE appointment_cells (
        agent TEXT NOT NULL,
        cell_start TEXT NOT NULL,
        appointment_id TEXT NOT NULL REFERENCES appointments (id),
        PRIMARY KEY (agent, cell_start)
    )""",
    "CREATE INDEX IF NOT EXISTS appointment_cells_by_appointment ON appointment_cells (appointment_id)",
)
